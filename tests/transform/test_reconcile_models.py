"""The dbt models over a small hand-made warehouse and ledger (no sandboxes): every status and health verdict.

Runs `dbt build` (models + their schema tests) with the dbt-duckdb utility's venv that `meltano install` makes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[2]
DBT = ROOT / ".meltano" / "utilities" / "dbt-duckdb" / "venv" / "bin" / "dbt"
sys.path.insert(0, str(Path(__file__).parent))
from reconcile_fixtures import build_ledger, build_warehouse  # noqa: E402

pytestmark = [pytest.mark.timeout(240)]


def dbt_build(tmp: Path, warehouse: Path, ledger: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DBT_DUCKDB_PATH": str(warehouse),
        "SYNC_LEDGER_PATH": str(ledger),
        "DBT_PROFILES_DIR": str(ROOT / "transform" / "profiles" / "duckdb"),
        "DBT_TARGET_PATH": str(tmp / "dbt-target"),
        "DBT_LOG_PATH": str(tmp / "dbt-logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MELTANO_ENVIRONMENT": "dev",
    }
    return subprocess.run(
        [str(DBT), "build", "--project-dir", str(ROOT / "transform"), *extra],
        cwd=ROOT / "transform",
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    if not DBT.exists():
        pytest.skip("dbt-duckdb is not installed (meltano install dbt-duckdb)")
    tmp = tmp_path_factory.mktemp("models")
    warehouse, ledger = tmp / "warehouse.duckdb", tmp / "ledger.duckdb"
    build_warehouse(warehouse)
    build_ledger(ledger)
    proc = dbt_build(tmp, warehouse, ledger, "--vars", "{failing_runs_threshold: 3}")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "ERROR=0" in proc.stdout and "attaching sync ledger" in proc.stdout
    con = duckdb.connect(str(warehouse), read_only=True)
    yield con
    con.close()


def statuses(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, tuple[str, str | None]]:
    return {
        k: (s, r)
        for k, s, r in con.execute(
            f"select reconciliation_key, reconciliation_status, mismatch_reasons from reconciliation.{table}"
        ).fetchall()
    }


def test_invoices_pair_through_the_ledger_and_report_each_difference(built: duckdb.DuckDBPyConnection) -> None:
    got = statuses(built, "reconciliation_invoices")
    assert got == {
        "link:101:q-101": ("matched", None),  # SENT vs OPEN are the same status
        "link:102:q-102": ("mismatched", "amount, balance"),
        "link:103:q-103": ("mismatched", "balance, status"),
        "link:104:q-104": ("missing_in_quickbooks", "missing_in_quickbooks"),  # deleted in QuickBooks
        "link:106:q-106": ("matched", None),  # born in QuickBooks (reverse link)
        "coperniq:105": ("only_in_coperniq", None),
        "quickbooks:q-200": ("only_in_quickbooks", None),
    }
    diff = built.execute(
        "select amount_diff, balance_diff from reconciliation.reconciliation_invoices "
        "where reconciliation_key = 'link:102:q-102'"
    ).fetchone()
    assert [float(v) for v in diff] == [-50.0, -50.0]
    origin = built.execute(
        "select origin from reconciliation.reconciliation_invoices where reconciliation_key = 'link:106:q-106'"
    ).fetchone()[0]
    assert origin == "quickbooks"


def test_customers_compare_name_email_phone(built: duckdb.DuckDBPyConnection) -> None:
    got = statuses(built, "reconciliation_customers")
    assert got == {
        "link:account:1:c-1": ("matched", None),  # "Jane Smith (1207)": suffixed display name, same phone digits
        "link:account:2:c-2": ("mismatched", "phone"),  # the phone never reached QuickBooks
        "link:account:3:c-3": ("mismatched", "email"),
        "link:account:4:c-4": ("missing_in_quickbooks", "missing_in_quickbooks"),
        "coperniq:account:5": ("only_in_coperniq", None),
        "quickbooks:c-9": ("only_in_quickbooks", None),
    }


def test_sync_health_counts_ranks_reasons_and_flags_rows_failing_too_long(built: duckdb.DuckDBPyConnection) -> None:
    runs = {
        r[0]: r[1:]
        for r in built.execute(
            "select run_id, created, updated, failed, health, persistent_failing_rows, is_latest_run "
            "from reconciliation.sync_health"
        ).fetchall()
    }
    assert runs["f1"] == (1, 0, 2, "warning", 1, False)
    assert runs["f2"] == (1, 1, 1, "warning", 1, False)
    assert runs["f4"] == (1, 0, 1, "warning", 1, True)
    assert runs["r1"] == (1, 0, 0, "ok", 0, True)
    top = built.execute(
        "select reason_rank, reason_pattern, failures, distinct_rows, runs "
        "from reconciliation.sync_failure_reasons order by reason_rank"
    ).fetchall()
    assert top[0] == (1, "HTTP <n> on customer <n>: Duplicate Name Exists Error (id <n>)", 4, 1, 4)
    assert top[1][1:3] == ("timeout", 1)
    failing = built.execute(
        "select source_id, failing_runs, is_persistent, staging_attempts from reconciliation.sync_failing_rows"
    ).fetchall()
    assert failing == [("77", 4, True, 4)]  # row 78 recovered, so it is not listed


def test_summary_marks_problems(built: duckdb.DuckDBPyConnection) -> None:
    problems = built.execute(
        "select entity, reconciliation_status, records from reconciliation.reconciliation_summary "
        "where is_problem order by 1, 2"
    ).fetchall()
    assert problems == [
        ("customer", "mismatched", 2),
        ("customer", "missing_in_quickbooks", 1),
        ("invoice", "mismatched", 2),
        ("invoice", "missing_in_quickbooks", 1),
    ]


def test_builds_without_a_ledger_and_with_an_empty_quickbooks_side(tmp_path: Path) -> None:
    """A fresh project: no sync has run (no ledger file) and a stream never landed; everything is unlinked."""
    if not DBT.exists():
        pytest.skip("dbt-duckdb is not installed")
    warehouse = tmp_path / "warehouse.duckdb"
    build_warehouse(warehouse)
    con = duckdb.connect(str(warehouse))
    con.execute("drop table raw_quickbooks.invoices")
    con.close()
    proc = dbt_build(
        tmp_path, warehouse, tmp_path / "no-such-ledger.duckdb", "--select", "+reconciliation_invoices", "+sync_health"
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "using an empty ledger" in proc.stdout
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        got = dict(
            con.execute(
                "select reconciliation_status, count(*) from reconciliation.reconciliation_invoices group by 1"
            ).fetchall()
        )
        assert got == {"only_in_coperniq": 6}
        assert con.execute("select count(*) from reconciliation.sync_health").fetchone()[0] == 0
    finally:
        con.close()
