"""The mismatch summary `make reconcile` prints (transform/reconcile.py), read from the warehouse dbt built: the
reconciliation_* and sync_* tables, as plain Python and as text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

PROBLEM_STATUSES = ("mismatched", "missing_in_quickbooks", "missing_in_coperniq")
# reconciliation_summary's per-kind columns, printed when not 0: the mismatch kinds, then the explained differences
MISMATCH_KINDS = (
    "tax_mismatches",
    "voided_in_coperniq_only",
    "voided_in_quickbooks_only",
    "zeroed_link_mismatches",
    "class_mismatches",
    "department_mismatches",
    "zeroed_by_policy",
    "left_by_policy",
)


def read_results(warehouse: Path, limit: int = 20) -> dict[str, Any]:
    """The reconciliation results as plain Python (read-only; used by the printer and the tests)."""
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:

        def rows(sql: str) -> list[dict[str, Any]]:
            cur = con.execute(sql)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

        problems = ", ".join(f"'{s}'" for s in PROBLEM_STATUSES)
        return {
            "summary": rows(
                "select * from reconciliation.reconciliation_summary order by entity, is_problem desc, "
                "reconciliation_status"
            ),
            "invoices": rows(
                f"select * from reconciliation.reconciliation_invoices where reconciliation_status in "
                f"({problems}) order by reconciliation_status, reconciliation_key limit {limit}"
            ),
            "customers": rows(
                f"select * from reconciliation.reconciliation_customers where reconciliation_status in "
                f"({problems}) order by reconciliation_status, reconciliation_key limit {limit}"
            ),
            "runs": rows("select * from reconciliation.sync_health order by started_at desc nulls last limit 10"),
            "reasons": rows("select * from reconciliation.sync_failure_reasons order by reason_rank limit 10"),
            "failing_rows": rows(
                "select * from reconciliation.sync_failing_rows where is_persistent "
                f"order by failing_runs desc, direction, stream, source_id limit {limit}"
            ),
        }
    finally:
        con.close()


def kind_count(results: dict[str, Any], kind: str) -> int:
    """Records of one mismatch or explained kind (a reconciliation_summary column), over every status."""
    return sum(int(r.get(kind) or 0) for r in results["summary"])


def problem_count(results: dict[str, Any]) -> int:
    return sum(r["records"] for r in results["summary"] if r["is_problem"])


def _money(v: Any) -> str:
    return "-" if v is None else f"{float(v):,.2f}"


def _invoice_lines(r: dict[str, Any]) -> list[str]:
    line = (
        f"  {r['reconciliation_status']:<22} {r['coperniq_invoice_id'] or '-':>8} <-> "
        f"{r['quickbooks_invoice_id'] or '-':<38} amount {_money(r['coperniq_amount'])} / "
        f"{_money(r['quickbooks_amount'])}  balance {_money(r['coperniq_balance'])} / "
        f"{_money(r['quickbooks_balance'])}  status {r['coperniq_status'] or '-'} / "
        f"{r['quickbooks_status'] or '-'}  [{r['mismatch_reasons'] or ''}]"
    )
    return [line, f"      {r['mismatch_details']}"] if r.get("mismatch_details") else [line]


def _customer_lines(r: dict[str, Any]) -> list[str]:
    line = (
        f"  {r['reconciliation_status']:<22} {r['coperniq_type'] or ''}:{r['coperniq_id'] or '-':>6} <-> "
        f"{r['quickbooks_contact_id'] or '-':<38} {r['coperniq_name']!r} / {r['quickbooks_name']!r}  "
        f"{r['coperniq_email'] or '-'} / {r['quickbooks_email'] or '-'}  [{r['mismatch_reasons'] or ''}]"
    )
    return [line]


def _run_lines(r: dict[str, Any]) -> list[str]:
    return [
        f"  {r['run_id']:<30} {r['direction']:<8} {r['health']:<8} created={r['created']} updated={r['updated']} "
        f"linked={r['linked']} skipped={r['skipped']} failed={r['failed']}"
        + (f"  top reason: {r['top_failure_reason']}" if r["top_failure_reason"] else "")
    ]


def _reason_lines(r: dict[str, Any]) -> list[str]:
    line = (
        f"  #{r['reason_rank']} {r['failures']}x {r['direction']}/{r['stream']} "
        f"rows={r['distinct_rows']} runs={r['runs']}: {r['latest_example']}"
    )
    return [line]


def _failing_lines(r: dict[str, Any]) -> list[str]:
    return [f"  {r['direction']}/{r['stream']}/{r['source_id']}: {r['failing_runs']} runs, last: {r['last_reason']}"]


#: The sections after the counts: (results key, heading, the lines of one row, what to print when it has none).
SECTIONS: tuple[tuple[str, str, Callable[[dict[str, Any]], list[str]], str | None], ...] = (
    (
        "invoices",
        "-- invoices with problems (Coperniq id <-> Merge id: amount, balance, status per side)",
        _invoice_lines,
        None,
    ),
    ("customers", "-- customers with problems (Coperniq <-> Merge contact: name, email)", _customer_lines, None),
    ("runs", "-- sync runs (newest first)", _run_lines, "  (no runs in the ledger)"),
    ("reasons", "-- failure reasons (ranked)", _reason_lines, None),
    ("failing_rows", "-- rows failing for more than the threshold of runs", _failing_lines, None),
)


def format_results(results: dict[str, Any]) -> str:
    """The human summary `make reconcile` prints."""
    out: list[str] = ["", "== Reconciliation: Coperniq <-> QuickBooks =="]
    for entity in ("customer", "invoice"):
        parts = [f"{r['reconciliation_status']}={r['records']}" for r in results["summary"] if r["entity"] == entity]
        out.append(f"{entity + 's':<10} " + ("  ".join(parts) if parts else "(none)"))
    out.append(f"problems   {problem_count(results)} (mismatched / missing on one side)")
    kinds = [f"{k}={n}" for k in MISMATCH_KINDS if (n := kind_count(results, k))]
    if kinds:
        out.append("by kind    " + "  ".join(kinds))
    for key, heading, lines, empty in SECTIONS:
        if results[key] or empty is not None:
            out += ["", heading]
        if not results[key] and empty is not None:
            out.append(empty)
        for r in results[key]:
            out += lines(r)
    out.append("")
    return "\n".join(out)
