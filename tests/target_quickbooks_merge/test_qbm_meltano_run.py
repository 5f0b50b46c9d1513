"""`meltano run tap-coperniq target-quickbooks-merge` as a process, against both sandboxes over 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from sync_ledger import Ledger
from tests.conftest import meltano_sys_dir
from tests.target_quickbooks_merge.qbm_helpers import (
    BOTH_TRIGGERS,
    assert_no_duplicate_names,
    merge_rows,
    qbo_jobs,
    qbo_top_customers,
)

ROOT = Path(__file__).resolve().parents[2]
MELTANO = ROOT / ".venv" / "bin" / "meltano"
SECRETS = ("sandbox-merge-key", "sandbox-account-token")

pytestmark = [pytest.mark.meltano, pytest.mark.meltano_private, pytest.mark.timeout(240)]


class MeltanoRunner:
    def __init__(self, coperniq: Any, merge: Any, tmp: Path) -> None:
        self.coperniq, self.merge, self.tmp = coperniq, merge, tmp
        self.ledger_path = tmp / "ledger.duckdb"
        self.suffix = f"qbm-{uuid.uuid4().hex[:8]}"
        # Own .meltano (run dir, system db) sharing the installed plugin venvs: other engineers' concurrent
        # `meltano run`s in this project would otherwise race on .meltano/run/<plugin>/ files.
        self.sys_dir = meltano_sys_dir(tmp / "meltano-sys")

    def run(self, **settings: Any) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "MELTANO_PROJECT_ROOT": str(ROOT),
            "MELTANO_ENVIRONMENT": "dev",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_SYS_DIR_ROOT": str(self.sys_dir),
            "MELTANO_RUN_NO_INSTALL": "true",
            "MELTANO_STATE_BACKEND_URI": f"file://{self.tmp / 'state'}",
            "TAP_COPERNIQ_API_URL": self.coperniq.url,
            "TAP_COPERNIQ_API_KEY": self.coperniq.api_key,
            "TAP_COPERNIQ_MAX_REQUESTS_PER_SECOND": "1000",
            "TARGET_QUICKBOOKS_MERGE_BASE_URL": self.merge.url,
            "TARGET_QUICKBOOKS_MERGE_MERGE_API_KEY": self.merge.api_key,
            "TARGET_QUICKBOOKS_MERGE_ACCOUNT_TOKEN": self.merge.account_token,
            "TARGET_QUICKBOOKS_MERGE_LEDGER_PATH": str(self.ledger_path),
            "TARGET_QUICKBOOKS_MERGE_MAX_REQUESTS_PER_MINUTE": "60000",
        }
        for key, value in settings.items():
            env[f"TARGET_QUICKBOOKS_MERGE_{key.upper()}"] = json.dumps(value) if not isinstance(value, str) else value
        proc = subprocess.run(
            [str(MELTANO), "run", "--state-id-suffix", self.suffix, "tap-coperniq", "target-quickbooks-merge"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=200,
            check=False,
        )
        for secret in SECRETS:
            assert secret not in proc.stdout + proc.stderr, "secret leaked into the logs"
        return proc

    def writes(self) -> int:
        stats = self.merge.stats.by_route
        posted = sum(n for r, n in stats.items() if r.split()[0] in {"POST", "PATCH"} and "/__admin" not in r)
        return posted - stats["PASSTHROUGH GET"]  # passthrough reads (tax preferences) are POSTs that write nothing


@pytest.fixture
def meltano(coperniq_sandbox: Any, merge_sandbox: Any, tmp_path: Path) -> MeltanoRunner:
    if not MELTANO.exists():
        pytest.skip("meltano is not installed in .venv")
    from sandbox.seed import seed_coperniq

    seed_coperniq(coperniq_sandbox.app, projects=12, seed=11)
    return MeltanoRunner(coperniq_sandbox, merge_sandbox, tmp_path)


def test_meltano_run_syncs_then_rerun_makes_zero_writes(meltano: MeltanoRunner) -> None:
    proc = meltano.run(trigger_phases=BOTH_TRIGGERS, invoice_sync=True, backfill=True, default_item="Services")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Run summary" in proc.stderr and "created" in proc.stderr
    jobs, customers = qbo_jobs(meltano.merge), qbo_top_customers(meltano.merge)
    assert jobs and customers and merge_rows(meltano.merge, "invoices")
    assert_no_duplicate_names(meltano.merge)
    with Ledger(meltano.ledger_path) as ledger:
        assert ledger.runs(1)[0]["status"] == "success"
        assert len(ledger.links("coperniq", "project")) == len(jobs)
    state_files = list((meltano.tmp / "state").rglob("state.json"))
    assert state_files and json.loads(state_files[0].read_text())["completed"]["singer_state"]["bookmarks"]

    before = meltano.writes()
    proc = meltano.run(trigger_phases=BOTH_TRIGGERS, invoice_sync=True, backfill=True, default_item="Services")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert meltano.writes() == before, "re-run must not write to QuickBooks"
    assert len(qbo_jobs(meltano.merge)) == len(jobs)


@pytest.mark.parametrize("strategy", ["enrich", "replace", "skip"])
def test_meltano_run_matching_strategies(meltano: MeltanoRunner, strategy: str) -> None:
    # A QuickBooks customer that already exists for one client (upper-cased name, no email).
    projects = meltano.coperniq.app.state.projects
    accounts = meltano.coperniq.app.state.accounts
    client = accounts[next(iter(projects.values()))["accountId"]]
    existing = meltano.merge.app.add_contact(client["title"].upper())
    proc = meltano.run(trigger_phases=BOTH_TRIGGERS, backfill=True, matching_strategy=strategy)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = next(r for r in merge_rows(meltano.merge, "contacts") if r["id"] == existing["id"])
    synced = [c for c in qbo_top_customers(meltano.merge) if c["DisplayName"].casefold() == client["title"].casefold()]
    assert len(synced) == 1  # never duplicated
    with Ledger(meltano.ledger_path) as ledger:
        link = ledger.get_link("coperniq", "account", str(client["id"]))
    if link is None:  # this client had no triggered project: nothing may touch the record
        assert row["email_address"] in (None, "")
        return
    assert link.target_id == existing["id"]
    expected_email = None if strategy == "skip" else client["primaryEmail"]
    assert (row["email_address"] or None) == expected_email
    assert row["name"] == (client["title"] if strategy == "replace" else client["title"].upper())


def test_meltano_dry_run_prints_plan_and_writes_nothing(meltano: MeltanoRunner) -> None:
    proc = meltano.run(
        trigger_phases=BOTH_TRIGGERS, backfill=True, dry_run=True, invoice_sync=True, default_item="Services"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "DRY RUN plan" in proc.stderr and "CREATE" in proc.stderr and "quickbooks name" in proc.stderr
    assert meltano.writes() == 0 and merge_rows(meltano.merge, "contacts") == []


def test_meltano_no_trigger_fails_at_start_in_one_line(meltano: MeltanoRunner) -> None:
    proc = meltano.run(trigger_phases=[], invoice_sync=False)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if "trigger_phases is not set" in ln]
    # one line from the target, no traceback of ours (Meltano prints its own BrokenPipe one: the target stopped
    # before reading the tap's output, which is the point: the tap is stopped before it spends the API quota)
    assert len(lines) == 1 and "/target_quickbooks_merge/" not in proc.stderr
    assert meltano.writes() == 0
    with Ledger(meltano.ledger_path) as ledger:
        assert ledger.last_run()["status"] == "refused"


def test_meltano_invoice_sync_off_warns(meltano: MeltanoRunner) -> None:
    proc = meltano.run(trigger_phases=BOTH_TRIGGERS, invoice_sync=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "invoice_sync is off" in proc.stderr


def test_a_failed_tap_is_not_recorded_as_a_successful_sync(
    meltano: MeltanoRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tap fails at once (Coperniq rejects the key): `meltano run` exits non-zero, and the ledger must not show
    a successful sync for what never arrived."""
    monkeypatch.setattr(meltano.coperniq, "api_key", "wrong-key")
    proc = meltano.run(trigger_phases=BOTH_TRIGGERS, backfill=True)
    assert proc.returncode != 0
    assert "the API key was rejected" in proc.stderr
    if meltano.ledger_path.exists():
        with Ledger(meltano.ledger_path) as ledger:
            assert ledger.last_run(successful=True) is None, ledger.runs()
