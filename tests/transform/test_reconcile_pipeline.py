"""The reconciliation end to end: sync into the sandboxes, break two invoices in QuickBooks, run the `reconcile`
Meltano job (both taps into DuckDB, dbt run, dbt test) and find both problems in the report.

Only 127.0.0.1: both sandboxes run in this process; Meltano (a subprocess) reaches them by URL.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[2]
MELTANO = ROOT / ".venv" / "bin" / "meltano"
TRIGGERS = [
    {"workflow": "Residential Solar", "phase": "Install"},
    {"workflow": "HVAC Replacement", "phase": "Installation"},
]

# The forward target's classes (the Merge sandbox's company has Solar, HVAC, Other); the reconcile job gets the same
# mapping as a dbt var and must find every pushed invoice's class as mapped.
TRACKING = {
    "class": {
        "field": "workflowName",
        "values": {"Residential Solar": "Solar", "HVAC Replacement": "HVAC"},
        "default": "Other",
    }
}

pytestmark = [pytest.mark.meltano, pytest.mark.timeout(300)]


def load_reconcile() -> Any:
    """transform/reconcile.py (a script, not a package) as a module."""
    spec = importlib.util.spec_from_file_location("transform_reconcile", ROOT / "transform" / "reconcile.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def forward_sync(coperniq: Any, merge: Any, ledger: Path, **settings: Any) -> None:
    """tap-coperniq -> target-quickbooks-merge in-process (the forward leg; its own tests cover it via Meltano)."""
    from singer_sdk.testing import target_sync_test

    from tap_coperniq.tap import TapCoperniq
    from target_quickbooks_merge.target import TargetQuickbooksMerge

    tap = TapCoperniq(
        config={
            "api_url": coperniq.url,
            "api_key": coperniq.api_key,
            "start_date": "2020-01-01T00:00:00Z",
            "max_requests_per_second": 1000,
        }
    )
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        tap.sync_all()
    target = TargetQuickbooksMerge(
        config={
            "merge_api_key": merge.api_key,
            "account_token": merge.account_token,
            "base_url": merge.url,
            "ledger_path": str(ledger),
            "trigger_phases": TRIGGERS,
            "invoice_sync": True,
            "backfill": True,
            "default_item": "Services",
            "max_requests_per_minute": 60000,
            "tracking_category_mapping": TRACKING,
            **settings,
        }
    )
    target_sync_test(target, io.StringIO(buf.getvalue()), finalize=True)


def linked_invoices(ledger: Path) -> list[tuple[str, str]]:
    """(Coperniq invoice id, Merge invoice id) pairs of the id map, read-only (the target has closed the file)."""
    con = duckdb.connect(str(ledger), read_only=True)
    try:
        return con.execute(
            "select source_id, target_id from id_map where source_system = 'coperniq' and source_type = 'invoice' "
            "and target_system = 'quickbooks' and target_id is not null and status = 'active' order by source_id"
        ).fetchall()
    finally:
        con.close()


#: The kinds of QuickBooks company: the sandbox's default (US, manual sales tax, nothing taxed) and a non-US one
#: (every line taxed): the amounts compare before tax, so a taxed pair reconciles too.
COMPANIES = {
    "us_manual": ({}, {}),
    "non_us": ({"company_tax": "non_us", "currency": "CAD"}, {"currency": "CAD", "default_tax_code": "GST"}),
}


@pytest.fixture(params=list(COMPANIES))
def merge_company(request: pytest.FixtureRequest) -> Iterator[tuple[Any, dict[str, Any]]]:
    """An empty Merge sandbox of one kind of company, and the forward target's settings for it."""
    from tests.conftest import start_merge

    company, settings = COMPANIES[request.param]
    sb = start_merge(**company)
    yield sb, settings
    sb.server.stop()


def test_reconcile_job_reports_a_changed_and_a_deleted_invoice(
    coperniq_sandbox: Any, merge_company: tuple[Any, dict[str, Any]], tmp_path: Path
) -> None:
    if not MELTANO.exists():
        pytest.skip("meltano is not installed in .venv")
    from sandbox.seed import seed_coperniq

    merge_sandbox, settings = merge_company
    reconcile = load_reconcile()
    seed_coperniq(coperniq_sandbox.app, projects=10, seed=11)
    ledger, warehouse = tmp_path / "sync-ledger.duckdb", tmp_path / "warehouse.duckdb"
    forward_sync(coperniq_sandbox, merge_sandbox, ledger, **settings)
    pairs = linked_invoices(ledger)
    assert len(pairs) >= 3, f"the forward sync linked too few invoices to test with: {pairs}"

    # The known mismatches, made in QuickBooks (the Merge sandbox) after the sync:
    # someone edits one invoice's total there, and deletes another.
    (changed_cq, changed_qb), (deleted_cq, deleted_qb) = pairs[0], pairs[1]
    invoices = merge_sandbox.state.table("invoices")
    row = invoices.get(changed_qb)
    row["total_amount"] = round(row["total_amount"] + 123.45, 2)
    row["balance"] = round(row["balance"] + 123.45, 2)
    invoices.touch(row)
    merge_sandbox.state.data.delete("invoices", deleted_qb)

    env = reconcile.pipeline_env(tmp_path, coperniq_sandbox.url, merge_sandbox.url, warehouse, ledger)
    env.update(reconcile.RECONCILE_SELECT)
    env["MELTANO_ENVIRONMENT"] = "dev"
    env[reconcile.TRACKING_MAPPING_ENV] = reconcile.tracking_mapping_from_config(
        {"tracking_category_mapping": TRACKING}
    )
    started = time.monotonic()
    proc = subprocess.run(
        [str(MELTANO), "run", "reconcile"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "Done. PASS=" in proc.stderr and "ERROR=0" in proc.stderr, "dbt run/test did not pass"
    for secret in ("sandbox-merge-key", "sandbox-account-token", "sandbox-coperniq-key"):
        assert secret not in proc.stdout + proc.stderr

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = {
            r[0]: r
            for r in con.execute(
                "select coperniq_invoice_id, quickbooks_invoice_id, reconciliation_status, mismatch_reasons, "
                "coperniq_amount, quickbooks_amount, amount_diff, is_amount_mismatch, class_comparison, expected_class "
                "from reconciliation.reconciliation_invoices where coperniq_invoice_id is not null"
            ).fetchall()
        }
        raw = con.execute("select count(*) from raw_quickbooks.invoices").fetchone()[0]
        landed = con.execute(
            "select (select count(*) from raw_coperniq.projects), "
            "(select count(*) from raw_quickbooks.tracking_categories)"
        ).fetchone()
    finally:
        con.close()
    assert raw >= len(pairs)

    changed = rows[changed_cq]
    assert changed[1] == changed_qb
    assert changed[2] == "mismatched" and "amount" in changed[3] and changed[7] is True
    assert float(changed[6]) == pytest.approx(-123.45)
    assert rows[deleted_cq][2] == "missing_in_quickbooks"
    # every other linked invoice reconciles
    others = {cq: rows[cq][2] for cq, _ in pairs[2:]}
    assert set(others.values()) == {"matched"}, others
    # classes: the projects and the categories landed, and each pushed invoice has the class the mapping gives
    assert landed[0] >= 10 and landed[1] >= 6, landed
    classes = {cq: rows[cq][8:] for cq, _ in pairs[2:]}
    assert {c for c, _ in classes.values()} == {"match"}, classes
    assert {e for _, e in classes.values()} <= {"Solar", "HVAC", "Other"}

    # and the printed summary (what `make reconcile` shows) names both
    results = reconcile.read_results(warehouse)
    text = reconcile.format_results(results)
    assert reconcile.problem_count(results) == 2
    assert f" {changed_cq} <-> {changed_qb}" in text and "[amount, balance]" in text
    assert "missing_in_quickbooks" in text and deleted_qb in text
    print(text, f"\nmeltano run reconcile took {took:.1f} s")
