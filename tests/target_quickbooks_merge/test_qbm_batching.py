"""Planned creates: sent max_parallel_writes at a time with their intents made durable per batch; DisplayName
collisions found only by QuickBooks are planned again; the invoice-number lookup reads the invoice list only when
that is cheaper."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.target_quickbooks_merge.qbm_helpers import (
    Pipeline,
    assert_no_duplicate_names,
    first_triggered_account,
    merge_rows,
    staged_records,
)

INVOICES = {"invoice_sync": True, "default_item": "Services"}
WRITE_PATHS = ["/contacts", "/passthrough", "/invoices", "/payments"]
INVOICE_LIST = "GET /api/accounting/v1/invoices"


@pytest.mark.parametrize("workers", [1, 4])
def test_creates_go_out_max_parallel_writes_at_a_time(pipeline: Pipeline, workers: int) -> None:
    pipeline.merge.faults.update(latency_ms=40, only_paths=WRITE_PATHS)
    run = pipeline.run(max_parallel_writes=workers, **INVOICES)
    peak = pipeline.merge.stats.max_in_flight
    if workers == 1:
        assert peak == 1
    else:
        assert 2 <= peak <= workers, peak
    created = {stream: c["created"] for stream, c in run.counts.items()}
    assert created["accounts"] > 1 and created["projects"] > 1 and created["invoices"] > 1
    assert created["payments"] > 1 and run.target.result.failed == 0
    with pipeline.ledger() as ledger:
        links = Counter(link.target_type for link in ledger.links("coperniq"))
        assert ledger.pending_intents("forward:") == []
    assert links["invoice"] == len(merge_rows(pipeline.merge, "invoices")) == created["invoices"]
    assert links["payment"] == len(merge_rows(pipeline.merge, "payments")) == created["payments"]
    assert_no_duplicate_names(pipeline.merge)
    assert pipeline.run(max_parallel_writes=workers, **INVOICES).writes == 0


def test_name_taken_outside_merge_contacts_is_planned_again_with_a_suffix(pipeline: Pipeline) -> None:
    """A vendor Merge has not synced yet holds the name: QuickBooks answers 6240 and the next suffix is tried."""
    account = first_triggered_account(pipeline)
    app = pipeline.merge.app
    with app.lock:
        app.state.qbo.create("Vendor", {"DisplayName": account["title"]}, notify=False)
    assert all(c["name"] != account["title"] for c in merge_rows(pipeline.merge, "contacts"))
    run = pipeline.run()
    assert run.target.result.failed == 0
    with pipeline.ledger() as ledger:
        link = ledger.get_link("coperniq", "account", str(account["id"]))
        assert ledger.pending_intents("forward:") == []
    ours = next(r for r in merge_rows(pipeline.merge, "contacts") if r["id"] == link.target_id)
    assert ours["name"] == f"{account['title']} (#{account['number']})"
    assert_no_duplicate_names(pipeline.merge)
    assert pipeline.run().writes == 0


def test_invoice_numbers_are_prefetched_in_one_pass_when_that_is_cheaper(pipeline: Pipeline) -> None:
    pipeline.run(**INVOICES)
    routes = pipeline.merge.stats.by_route
    assert routes[INVOICE_LIST] == 1  # one page holds every QuickBooks invoice: no lookup per new invoice


def test_invoice_prefetch_stops_when_quickbooks_holds_far_more_invoices(pipeline: Pipeline) -> None:
    """Reading the whole list would cost more pages than there are new invoices: stop, look each one up."""
    new = len(staged_records_after_dry_run(pipeline, "invoices"))
    app = pipeline.merge.app
    holder = app.add_contact("Bookkeeping Only Customer")
    for n in range(100 * new + 1):  # more than `new` pages of 100
        app.create_invoice(holder["id"], amount=10.0, number=f"QBO-{n}")
    pipeline.merge.stats.reset()
    run = pipeline.run(**INVOICES)
    lookups = pipeline.merge.stats.count("GET", "/invoices")
    created = run.counts["invoices"]["created"]
    assert created > 0
    assert lookups == new + created, (lookups, new, created)  # `new` pages read, then one lookup per create


def staged_records_after_dry_run(pipe: Pipeline, stream: str) -> dict[str, dict]:
    pipe.run(dry_run=True, **INVOICES)
    return staged_records(pipe, stream)
