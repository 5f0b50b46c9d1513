"""A worker that starts with an empty disk, as in a container or an orchestrator pod: `meltano run` with the sync
ledger (ledger_url) and Meltano's system database (MELTANO_DATABASE_URI, where its state lives) on PostgreSQL, the
company's state under its own state_id suffix. A second run on another empty disk finds every link and bookmark
and writes nothing; the forward and reverse legs of the company then run at the same time."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from sync_ledger import Ledger, LedgerNotFoundError
from tests.conftest import meltano_sys_dir
from tests.target_quickbooks_merge.qbm_helpers import BOTH_TRIGGERS, assert_no_duplicate_names, merge_rows, qbo_jobs

ROOT = Path(__file__).resolve().parents[2]
MELTANO = ROOT / ".venv" / "bin" / "meltano"
FORWARD = ("tap-coperniq", "target-quickbooks-merge")
REVERSE = ("tap-quickbooks-merge", "target-coperniq")

pytestmark = [pytest.mark.meltano, pytest.mark.meltano_private, pytest.mark.timeout(400)]


class Worker:
    def __init__(self, coperniq: Any, merge: Any, tmp: Path, ledger_url: str, system_db: str) -> None:
        self.coperniq, self.merge, self.tmp = coperniq, merge, tmp
        self.ledger_url, self.system_db = ledger_url, system_db
        self.company = "acme-solar"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MELTANO_STATE_BACKEND")}
        return {
            **env,
            "MELTANO_PROJECT_ROOT": str(ROOT),
            "MELTANO_ENVIRONMENT": "dev",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_SYS_DIR_ROOT": str(meltano_sys_dir(self.tmp / f"worker-{uuid.uuid4().hex[:6]}")),  # empty disk
            "MELTANO_RUN_NO_INSTALL": "true",
            "MELTANO_DATABASE_URI": self.system_db,  # state backend: the system database (Meltano's default)
            "SYNC_LEDGER_URL": self.ledger_url,
            "SYNC_COMPANY": self.company,
            "SYNC_TRIGGER_PHASES": json.dumps(BOTH_TRIGGERS),
            "SYNC_BACKFILL": "true",
            "TAP_COPERNIQ_API_URL": self.coperniq.url,
            "TAP_COPERNIQ_API_KEY": self.coperniq.api_key,
            "TAP_COPERNIQ_MAX_REQUESTS_PER_SECOND": "1000",
            "TARGET_QUICKBOOKS_MERGE_BASE_URL": self.merge.url,
            "TARGET_QUICKBOOKS_MERGE_MERGE_API_KEY": self.merge.api_key,
            "TARGET_QUICKBOOKS_MERGE_ACCOUNT_TOKEN": self.merge.account_token,
            "TARGET_QUICKBOOKS_MERGE_MAX_REQUESTS_PER_MINUTE": "60000",
            "TARGET_QUICKBOOKS_MERGE_INVOICE_SYNC": "true",
            "TARGET_QUICKBOOKS_MERGE_DEFAULT_ITEM": "Services",
            "TAP_QUICKBOOKS_MERGE_BASE_URL": self.merge.url,
            "TAP_QUICKBOOKS_MERGE_MERGE_API_KEY": self.merge.api_key,
            "TAP_QUICKBOOKS_MERGE_ACCOUNT_TOKEN": self.merge.account_token,
            "TARGET_COPERNIQ_API_URL": self.coperniq.url,
            "TARGET_COPERNIQ_API_KEY": self.coperniq.api_key,
        }

    def start(self, pipeline: tuple[str, str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(MELTANO), "run", "--state-id-suffix", self.company, *pipeline],
            cwd=ROOT,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, pipeline: tuple[str, str]) -> tuple[int, str]:
        return self.finish(self.start(pipeline))

    def finish(self, proc: subprocess.Popen[str]) -> tuple[int, str]:
        out, err = proc.communicate(timeout=300)
        text = out + err
        for secret in (urlsplit(self.ledger_url).password, urlsplit(self.system_db).password):
            assert secret and secret not in text, "a database password leaked into the logs"
        return proc.returncode, err

    def writes(self) -> int:
        stats = self.merge.stats.by_route
        posted = sum(n for r, n in stats.items() if r.split()[0] in {"POST", "PATCH"} and "/__admin" not in r)
        return posted - stats["PASSTHROUGH GET"]


@pytest.fixture
def worker(coperniq_sandbox: Any, merge_sandbox: Any, pg_server: Any, tmp_path: Path) -> Worker:
    if not MELTANO.exists():
        pytest.skip("meltano is not installed in .venv")
    from sandbox.seed import seed_coperniq

    seed_coperniq(coperniq_sandbox.app, projects=12, seed=11)
    name = f"w_{uuid.uuid4().hex[:10]}"
    ledger_url = pg_server.create_database(f"{name}_ledger")
    system_db = pg_server.create_database(f"{name}_meltano").replace("postgresql://", "postgresql+psycopg://", 1)
    return Worker(coperniq_sandbox, merge_sandbox, tmp_path, ledger_url, system_db)


def test_a_fresh_worker_resumes_from_postgres_and_both_legs_run_at_once(worker: Worker) -> None:
    rc, err = worker.run(FORWARD)
    assert rc == 0, err[-3000:]
    jobs = qbo_jobs(worker.merge)
    assert jobs and merge_rows(worker.merge, "invoices")
    with Ledger(worker.ledger_url, company=worker.company, read_only=True) as ledger:
        assert ledger.runs(1)[0]["status"] == "success"
        assert len(ledger.links("coperniq", "project")) == len(jobs)
    with psycopg.connect(worker.system_db.replace("+psycopg", "")) as conn:  # Meltano's state, in PostgreSQL
        states = [r[0] for r in conn.execute("SELECT state_id FROM state").fetchall()]
    assert f"dev:tap-coperniq-to-target-quickbooks-merge:{worker.company}" in states

    before = worker.writes()
    rc, err = worker.run(FORWARD)  # another empty disk: links and bookmarks come from PostgreSQL
    assert rc == 0, err[-3000:]
    assert worker.writes() == before, "a re-run on a fresh worker must not write to QuickBooks"

    # a payment recorded in QuickBooks for a synced invoice: the reverse leg brings it back while the forward
    # leg of the same company runs (the ledger admits both at once on PostgreSQL)
    invoice = next(i for i in merge_rows(worker.merge, "invoices") if float(i.get("balance") or 0) >= 10)
    payment = worker.merge.app.create_payment(invoice["contact"], 10.0, applied_to=[(invoice["id"], 10.0)])
    forward, reverse = worker.start(FORWARD), worker.start(REVERSE)
    (frc, ferr), (rrc, rerr) = worker.finish(forward), worker.finish(reverse)
    assert frc == 0, ferr[-3000:]
    assert rrc == 0, rerr[-3000:]
    assert_no_duplicate_names(worker.merge)
    assert len(qbo_jobs(worker.merge)) == len(jobs)
    with Ledger(worker.ledger_url, company=worker.company, read_only=True) as ledger:
        assert {r["direction"] for r in ledger.runs(10) if r["status"] == "success"} == {"forward", "reverse"}
        coperniq_invoice = ledger.get_link_by_target("quickbooks", "invoice", invoice["id"])
        brought = ledger.get_link("quickbooks", "payment", payment["id"])
    assert coperniq_invoice is not None and brought is not None
    paid = worker.coperniq.app.state.payments[int(coperniq_invoice.source_id)]
    assert [p["amount"] for p in paid if str(p["id"]) == brought.target_id] == [10.0]  # once
    with pytest.raises(LedgerNotFoundError):  # nothing was written outside the company
        Ledger(worker.ledger_url, read_only=True)
