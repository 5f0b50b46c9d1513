"""Two companies' forward legs at once on one worker's .meltano, overlapping deterministically: each company's tap is
held at its first Coperniq request until both taps and targets are running. `meltano run` gives a tap its catalog and
state (the bookmarks) as .meltano/run/<plugin>/tap.properties.json and state.json whatever the state id, so without
a .meltano of each lane's own (legs.lane_sys_dir) company A's tap can start from company B's bookmarks, and one run's
clean-up breaks the other's start ("Failed to copy catalog file"). Asserted: no file given to both companies'
plugins, both legs succeed, each QuickBooks holds exactly its own records, and both companies' state is in the
worker's one system database."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import RunningSandbox, meltano_sys_dir, start_coperniq, start_merge
from tests.reliability.rel_helpers import TRIGGERS, assert_forward_complete, qbo_customers

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.meltano, pytest.mark.meltano_private, pytest.mark.timeout(300)]


class Gate:
    """Holds every API request of one sandbox until opened; `entered` is set by the first one."""

    def __init__(self, sandbox: RunningSandbox) -> None:
        self.entered, self.opened = threading.Event(), threading.Event()
        app = sandbox.server.app
        dispatch = app.dispatch

        def held(req: Any) -> Any:
            if not req.path.startswith("/__admin/"):
                self.entered.set()
                self.opened.wait(120)
            return dispatch(req)

        app.dispatch = held


def plugin_files(company: str) -> set[str]:
    """The --config / --catalog / --state files of the running plugin processes of one company."""
    out = set()
    for proc in psutil.process_iter(["cmdline"]):
        try:
            args = proc.info["cmdline"] or []
            if proc.environ().get("SYNC_COMPANY") == company:
                out |= {args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--config", "--catalog", "--state")}
        except psutil.Error:
            continue
    return out


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    from sandbox.seed import seed_coperniq
    from tap_coperniq.tap import TapCoperniq

    sandboxes = {}
    for i, key in enumerate(("co-a", "co-b")):
        cop, merge = start_coperniq(rate_limit_per_day=None), start_merge(rate_limit_per_minute=10_000_000)
        seed_coperniq(cop.app, projects=8, seed=300 + i)
        sandboxes[key] = (cop, merge)
    catalog = tmp_path / "tap-coperniq.catalog.json"
    catalog.write_text(json.dumps(TapCoperniq(config={"api_key": "x"}, validate_config=False).catalog_dict))
    sys_dir = meltano_sys_dir(tmp_path / "meltano-sys")
    inherited = {k: v for k, v in os.environ.items() if k not in ("MELTANO_DATABASE_URI", "MELTANO_STATE_BACKEND_URI")}
    base = {
        **inherited,
        "MELTANO_PROJECT_ROOT": str(ROOT),
        "MELTANO_ENVIRONMENT": "dev",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MELTANO_SYS_DIR_ROOT": str(sys_dir),
        "MELTANO_RUN_NO_INSTALL": "true",
        "SYNC_TRIGGER_PHASES": json.dumps(TRIGGERS),
        "SYNC_BACKFILL": "true",
        "TAP_COPERNIQ__CATALOG": str(catalog),
        "TAP_COPERNIQ_MAX_REQUESTS_PER_SECOND": "1000",
        "TARGET_QUICKBOOKS_MERGE_MAX_REQUESTS_PER_MINUTE": "600000",
        "TARGET_QUICKBOOKS_MERGE_DEFAULT_ITEM": "Services",
        "TARGET_QUICKBOOKS_MERGE_INVOICE_SYNC": "false",  # customers and jobs: enough to tell companies apart
    }
    yield {"base": base, "sandboxes": sandboxes, "sys_dir": sys_dir, "tmp": tmp_path}
    for cop, merge in sandboxes.values():
        cop.server.stop()
        merge.server.stop()


def test_two_companies_legs_overlapping_on_one_meltano_keep_apart(world: dict[str, Any]) -> None:
    from coperniq_qbo_dagster.companies import Company
    from coperniq_qbo_dagster.legs import LegResult, prepare_system_db, run_leg

    companies = {}
    for key, (cop, merge) in world["sandboxes"].items():
        companies[key] = Company(
            key,
            {
                "TAP_COPERNIQ_API_URL": cop.url,
                "TAP_COPERNIQ_API_KEY": cop.api_key,
                "TARGET_QUICKBOOKS_MERGE_BASE_URL": merge.url,
                "TARGET_QUICKBOOKS_MERGE_MERGE_API_KEY": merge.api_key,
                "TARGET_QUICKBOOKS_MERGE_ACCOUNT_TOKEN": merge.account_token or "",
                "TARGET_QUICKBOOKS_MERGE_LEDGER_PATH": str(world["tmp"] / f"ledger-{key}.duckdb"),
            },
        )
    base = world["base"]
    prepare_system_db(base)
    for company in companies.values():  # a first run each, one after the other: the second ones have state
        assert run_leg(company, "forward", environ=base).returncode == 0
    gates = {key: Gate(cop) for key, (cop, _) in world["sandboxes"].items()}
    results: dict[str, Any] = {}

    def run(key: str) -> None:
        try:
            results[key] = run_leg(companies[key], "forward", environ=base)
        except Exception as exc:  # noqa: BLE001 - asserted below, with the log
            results[key] = exc

    legs = [threading.Thread(target=run, args=(key,)) for key in companies]
    try:
        legs[0].start()
        assert gates["co-a"].entered.wait(120), "company A's tap never reached Coperniq"
        legs[1].start()
        assert gates["co-b"].entered.wait(120), "company B's tap never reached Coperniq"
        files = {key: plugin_files(key) for key in companies}  # both taps and targets are running now
    finally:
        for gate in gates.values():
            gate.opened.set()
        for leg in legs:
            leg.join(240)
    for key, paths in files.items():  # each tap was given its config, catalog and state (its own bookmarks)
        assert {Path(f).name.split(".")[-2] for f in paths} >= {"config", "properties", "state"}, (key, paths)
    assert not files["co-a"] & files["co-b"], files["co-a"] & files["co-b"]  # no file read by both companies
    for key, (cop, merge) in world["sandboxes"].items():
        result = results[key]
        assert isinstance(result, LegResult), result
        assert result.returncode == 0 and result.run and result.run["status"] == "success", (key, result.log_tail)
        assert qbo_customers(merge)  # something synced ...
        assert_forward_complete(cop, merge, invoices=False)  # ... exactly its own records, not the other company's
    assert list((world["sys_dir"] / "lanes").iterdir()) == []  # each run's own .meltano went with it
    with sqlite3.connect(world["sys_dir"] / "meltano.db") as db:  # the worker's one system database
        state_ids = {row[0] for row in db.execute("select state_id from state")}
    assert {s.rsplit(":", 1)[-1] for s in state_ids} >= {"co-a", "co-b"}, state_ids
