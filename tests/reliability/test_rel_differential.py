"""Differential checks under the pessimistic profiles: the same seed synced once cleanly, and once with lost
responses and 5xx on every write route followed by a clean re-run, leaves both sides holding the same records
(no duplicate, nothing missing). Forward: QuickBooks, whether or not Merge honours the Idempotency-Key.
Reverse: Coperniq (no idempotency key at all), for invoices and payments entered in QuickBooks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sandbox.seed import seed_coperniq
from tests.conftest import start_coperniq, start_merge
from tests.reverse.reverse_helpers import reverse_run
from tests.target_quickbooks_merge.qbm_helpers import BOTH_TRIGGERS, Pipeline, merge_rows, qbo_customers

FORWARD_PROJECTS = 120  # 81 customers and jobs, 80 invoices, 70 payments, 30+ 5xx under the faults below
REVERSE_PROJECTS = 120  # 40+ jobs for the invoices entered by hand below; the faults hit only the reverse writes
CONFIG = {"trigger_phases": BOTH_TRIGGERS, "backfill": True, "invoice_sync": True, "default_item": "Services"}


def books(merge: Any) -> dict[str, Counter[tuple[Any, ...]]]:
    """What QuickBooks holds, by natural keys only (ids differ between two worlds)."""
    customers = qbo_customers(merge)
    names = {c["Id"]: c["DisplayName"] for c in customers.values()}
    contacts = {r["id"]: r["name"] for r in merge.state.contacts.order}
    invoices = merge_rows(merge, "invoices")
    numbers = {i["id"]: i["number"] for i in invoices}
    return {
        "customers": Counter(
            (c["DisplayName"], bool(c.get("Job")), names.get((c.get("ParentRef") or {}).get("value")))
            for c in customers.values()
        ),
        "invoices": Counter(
            (i["number"], contacts.get(i["contact"]), round(float(i["total_amount"]), 2)) for i in invoices
        ),
        "payments": Counter(
            (
                round(float(p["total_amount"]), 2),
                tuple(sorted(numbers.get(a["related_object_id"], "?") for a in p["applied_to_lines"])),
            )
            for p in merge_rows(merge, "payments")
        ),
    }


def sync_world(tmp_path: Path, name: str, *, faults: dict[str, Any] | None) -> dict[str, Counter[tuple[Any, ...]]]:
    coperniq = start_coperniq(rate_limit_per_day=None, rate_limit_per_second=None, profile="pessimistic")
    merge = start_merge(rate_limit_per_minute=1_000_000, profile="pessimistic")
    try:
        seed_coperniq(coperniq.app, projects=FORWARD_PROJECTS, seed=11)
        pipe = Pipeline(coperniq, merge, tmp_path / f"{name}.duckdb", config=CONFIG)
        if faults:
            merge.faults.update(**faults)
        pipe.run()
        merge.faults.reset()
        for _ in range(2):  # Merge's periodic sync makes passthrough jobs visible; their invoices follow
            merge.app.sync()
            pipe.run()
        if faults:
            assert sum(n for s, n in merge.stats.by_status.items() if s >= 500) >= 20, "faults must have happened"
        return books(merge.app)
    finally:
        coperniq.server.stop()
        merge.server.stop()


@pytest.mark.timeout(600)
def test_lost_responses_and_5xx_then_a_clean_rerun_hold_the_same_books_as_a_clean_sync(tmp_path: Path) -> None:
    clean = sync_world(tmp_path, "clean", faults=None)
    assert sum(clean["customers"].values()) > 50 and clean["invoices"] and clean["payments"]
    faulted = sync_world(
        tmp_path, "faulted", faults={"lost_response_rate": 0.2, "error_rate": 0.1, "error_status": 503, "seed": 5}
    )
    for kind in ("customers", "invoices", "payments"):
        extra, missing = faulted[kind] - clean[kind], clean[kind] - faulted[kind]
        assert not extra and not missing, f"{kind}: duplicates/extra {list(extra)[:5]}, missing {list(missing)[:5]}"


def coperniq_books(coperniq: Any, before: set[int]) -> dict[str, Counter[tuple[Any, ...]]]:
    """Invoices and payments the reverse leg wrote into Coperniq, by natural keys."""
    st = coperniq.state
    new = {iid: inv for iid, inv in st.invoices.items() if iid not in before}
    return {
        "invoices": Counter(
            (
                inv["_record"],
                round(float(inv["amount"]), 2),
                tuple(
                    sorted((li.get("quantity"), float(li.get("unitPrice") or 0)) for li in inv.get("lineItems") or [])
                ),
            )
            for inv in new.values()
        ),
        "payments": Counter(
            (new[iid]["_record"], round(float(p["amount"]), 2)) for iid in new for p in st.payments.get(iid, [])
        ),
    }


def reverse_world(tmp_path: Path, name: str, *, faults: dict[str, Any] | None) -> dict[str, Counter[tuple[Any, ...]]]:
    coperniq = start_coperniq(rate_limit_per_day=None, rate_limit_per_second=None, profile="pessimistic")
    merge = start_merge(rate_limit_per_minute=1_000_000, profile="pessimistic")
    try:
        seed_coperniq(coperniq.app, projects=REVERSE_PROJECTS, seed=11)
        ledger_path = tmp_path / f"{name}.duckdb"
        forward = Pipeline(coperniq, merge, ledger_path, config=CONFIG)
        forward.run()
        merge.app.sync()
        forward.run()
        before = set(coperniq.app.state.invoices)
        with forward.ledger() as ledger:
            jobs = sorted(
                (link for link in ledger.links("coperniq", "project") if link.target_id),
                key=lambda link: int(link.source_id),
            )[:40]
        assert len(jobs) == 40
        for n, job in enumerate(jobs):  # entered by the bookkeeper in QuickBooks
            invoice = merge.app.create_invoice(
                job.target_id,
                [
                    {
                        "description": "Extra panels",
                        "quantity": 1 + n % 3,
                        "unit_price": 300.0 + n,
                        "total_amount": (1 + n % 3) * (300.0 + n),
                    },
                    {"description": "Permit", "quantity": 1, "unit_price": 125.0, "total_amount": 125.0},
                ],
            )
            if n % 2 == 0:
                merge.app.create_payment(job.target_id, 100.0 + n, applied_to=[(invoice["id"], 100.0 + n)])
        if faults:
            coperniq.faults.update(**faults)
        state = reverse_run(merge, coperniq, ledger_path, None)
        coperniq.faults.reset()
        reverse_run(merge, coperniq, ledger_path, state)
        if faults:
            assert sum(n for s, n in coperniq.stats.by_status.items() if s >= 500) >= 10, "faults must have happened"
        return coperniq_books(coperniq.app, before)
    finally:
        coperniq.server.stop()
        merge.server.stop()


@pytest.mark.timeout(600)
def test_reverse_lost_responses_and_5xx_then_a_clean_rerun_hold_the_same_coperniq_records(tmp_path: Path) -> None:
    clean = reverse_world(tmp_path, "clean", faults=None)
    assert sum(clean["invoices"].values()) == 40 and sum(clean["payments"].values()) == 20
    faulted = reverse_world(
        tmp_path, "faulted", faults={"lost_response_rate": 0.2, "error_rate": 0.1, "error_status": 503, "seed": 5}
    )
    for kind in ("invoices", "payments"):
        extra, missing = faulted[kind] - clean[kind], clean[kind] - faulted[kind]
        assert not extra and not missing, f"{kind}: duplicates/extra {list(extra)[:5]}, missing {list(missing)[:5]}"
