"""Many companies on Dagster: COMPANIES companies x PROJECTS projects, each with its own Coperniq API key and its
own Merge linked account (a QuickBooks company of its own) on one sandbox server each, the ledger and Meltano's
system database on PostgreSQL. `sync_all_companies` runs every company's forward leg as a step of the multiprocess
executor; one step's worker (and the meltano, tap and target under it) is killed with SIGKILL mid-run; re-executing
the failed step completes it. Every company's QuickBooks then holds exactly its own records: no duplicates,
nothing missing, nothing of another company."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from sync_ledger import Ledger
from tests.conftest import RunningMultiSandbox, meltano_sys_dir, start_multi_coperniq, start_multi_merge
from tests.reliability.rel_helpers import TRIGGERS, assert_forward_complete, qbo_customers

# 6 x 100 in `make test` (two waves of the 3 concurrent steps, and the victim's re-execution; 10 x 100 cost 96
# CPU-seconds and 20 x 200 173, mostly process start-ups, and the suite has a 10-minute budget on 2 cores);
# SCALE_COMPANIES=20 SCALE_PROJECTS=200 runs the larger case (docs/DEPLOY.md).
COMPANIES = int(os.environ.get("SCALE_COMPANIES", "6"))
PROJECTS = int(os.environ.get("SCALE_PROJECTS", "100"))
VICTIM = "co-04"  # the company whose worker is killed
KILL_AT = 25  # ... once its QuickBooks holds this many customers and jobs
WITH_INVOICES = {"co-00", VICTIM, "co-05", "co-09", "co-13"}  # companies with invoice_sync on

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.meltano, pytest.mark.meltano_private, pytest.mark.timeout(540)]


def keys() -> list[str]:
    return [f"co-{i:02d}" for i in range(COMPANIES)]


@pytest.fixture
def world(pg_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    from sandbox.seed import seed_coperniq

    cop = start_multi_coperniq(rate_limit_per_day=None)
    merge = start_multi_merge(rate_limit_per_minute=10_000_000)
    companies = []
    for i, key in enumerate(keys()):
        seed_coperniq(cop.add_company(f"cop-key-{key}").app, projects=PROJECTS, seed=100 + i)
        merge.add_company(f"merge-token-{key}")
        env = {
            "TAP_COPERNIQ_API_KEY": f"${{COPERNIQ_KEY_{i}}}",
            "TARGET_QUICKBOOKS_MERGE_ACCOUNT_TOKEN": f"${{MERGE_TOKEN_{i}}}",
            # a setting per company: invoices and payments for some (the victim among them), customers and jobs
            # only for the rest (which keeps the test's cost within the suite's budget)
            "TARGET_QUICKBOOKS_MERGE_INVOICE_SYNC": "true" if key in WITH_INVOICES else "false",
        }
        companies.append({"key": key, "env": env})
        monkeypatch.setenv(f"COPERNIQ_KEY_{i}", f"cop-key-{key}")
        monkeypatch.setenv(f"MERGE_TOKEN_{i}", f"merge-token-{key}")
    companies_file = tmp_path / "companies.yml"
    companies_file.write_text(yaml.safe_dump({"companies": companies}))
    sys_dir = meltano_sys_dir(tmp_path / "meltano-sys")  # the worker's disk: the installed plugins only
    # the tap's catalog, discovered once: each `meltano run` would otherwise discover it again (a tap start each)
    from tap_coperniq.tap import TapCoperniq

    catalog = tmp_path / "tap-coperniq.catalog.json"
    catalog.write_text(json.dumps(TapCoperniq(config={"api_key": "x"}, validate_config=False).catalog_dict))
    ledger_url = pg_server.create_database("scale_ledger")
    env = {
        "COPERNIQ_QBO_COMPANIES": str(companies_file),
        "COPERNIQ_QBO_MAX_CONCURRENT": "3",
        "COPERNIQ_QBO_RETRIES": "0",  # the kill must surface as a failed step, re-executed below
        "MELTANO_PROJECT_ROOT": str(ROOT),
        "MELTANO_ENVIRONMENT": "dev",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MELTANO_SYS_DIR_ROOT": str(sys_dir),
        "MELTANO_RUN_NO_INSTALL": "true",
        "MELTANO_DATABASE_URI": pg_server.create_database("scale_meltano").replace(
            "postgresql://", "postgresql+psycopg://", 1
        ),
        "SYNC_LEDGER_URL": ledger_url,
        "SYNC_TRIGGER_PHASES": json.dumps(TRIGGERS),
        "SYNC_BACKFILL": "true",
        "TAP_COPERNIQ__CATALOG": str(catalog),
        "TAP_COPERNIQ_API_URL": cop.url,
        "TAP_COPERNIQ_MAX_REQUESTS_PER_SECOND": "1000",
        "TARGET_QUICKBOOKS_MERGE_BASE_URL": merge.url,
        "TARGET_QUICKBOOKS_MERGE_MERGE_API_KEY": merge.api_key,
        "TARGET_QUICKBOOKS_MERGE_MAX_REQUESTS_PER_MINUTE": "600000",
        "TARGET_QUICKBOOKS_MERGE_DEFAULT_ITEM": "Services",
        "DAGSTER_HOME": str(tmp_path / "dagster-home"),
    }
    (tmp_path / "dagster-home").mkdir()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MELTANO_STATE_BACKEND_URI", raising=False)
    yield {"cop": cop, "merge": merge, "ledger_url": ledger_url}
    cop.server.stop()
    merge.server.stop()


def _kill_worker_of(company: str, merge: RunningMultiSandbox, stop: threading.Event) -> list[int]:
    """When the company's QuickBooks holds KILL_AT customers/jobs, SIGKILL its step worker and everything under
    it (as when a container dies): found as the target process running with SYNC_COMPANY=<company>."""
    me = os.getpid()
    app = merge.company(f"merge-token-{company}")
    killed: list[int] = []
    while not stop.is_set():
        if len(qbo_customers(app)) >= KILL_AT:
            for proc in psutil.process_iter(["cmdline"]):
                try:
                    if "target-quickbooks-merge" not in " ".join(proc.info["cmdline"] or []):
                        continue
                    if proc.environ().get("SYNC_COMPANY") != company:
                        continue
                    worker = proc
                    while worker.parent() is not None and worker.parent().pid != me:  # type: ignore[union-attr]
                        worker = worker.parent()  # type: ignore[assignment]
                    tree = [*worker.children(recursive=True), worker]
                    for p in tree:
                        p.send_signal(signal.SIGKILL)
                    killed.extend(p.pid for p in tree)
                    return killed
                except psutil.Error:
                    continue
        time.sleep(0.005)
    return killed


def test_many_companies_on_dagster_survive_a_killed_worker(world: dict[str, Any]) -> None:
    from coperniq_qbo_dagster.definitions import sync_all_companies
    from dagster import DagsterInstance, ReexecutionOptions, execute_job, reconstructable

    instance = DagsterInstance.get()  # DAGSTER_HOME: a run storage the step workers share
    stop = threading.Event()
    killed: list[int] = []
    watcher = threading.Thread(target=lambda: killed.extend(_kill_worker_of(VICTIM, world["merge"], stop)))
    watcher.start()
    try:
        first = execute_job(reconstructable(sync_all_companies), instance=instance)
    finally:
        stop.set()
        watcher.join()
    assert killed, "the victim's worker was never killed"
    assert not first.success
    failed = {e.step_key for e in first.all_events if e.event_type_value == "STEP_FAILURE"}
    assert failed == {f"company_forward[{VICTIM.replace('-', '_')}]"}, failed  # the others finished

    with execute_job(
        reconstructable(sync_all_companies),
        instance=instance,
        reexecution_options=ReexecutionOptions.from_failure(first.run_id, instance),
    ) as again:
        assert again.success
        output = again.output_for_node("company_forward")  # only the failed step ran again
        shown = [  # the run metadata Dagster shows for that step: the ledger's run, its counts, failed rows
            e.event_specific_data.metadata  # type: ignore[union-attr]
            for e in again.all_events
            if e.event_type_value == "STEP_OUTPUT" and e.step_key == f"company_forward[{VICTIM.replace('-', '_')}]"
        ]
    assert set(output) == {VICTIM.replace("-", "_")}
    assert output[VICTIM.replace("-", "_")]["ledger_status"] == "success"
    assert shown and shown[0]["ledger_status"].value == "success" and "rows_created" in shown[0]
    for key in keys():
        cop = world["cop"].company(f"cop-key-{key}")
        merge = world["merge"].company(f"merge-token-{key}")
        try:
            # exactly its own records, none missing, no duplicate
            assert_forward_complete(cop, merge, invoices=key in WITH_INVOICES)
        except AssertionError as exc:
            raise AssertionError(f"company {key}: {exc}") from None
        with Ledger(world["ledger_url"], company=key, read_only=True) as ledger:
            assert ledger.pending_intents() == []
            statuses = [r["status"] for r in ledger.runs(5, direction="forward")]
        assert statuses[0] == "success", (key, statuses)
        assert statuses == (["success", "interrupted"] if key == VICTIM else ["success"]), (key, statuses)
