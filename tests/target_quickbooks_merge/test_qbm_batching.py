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
    log_rows,
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


def test_invoice_list_read_is_bounded_when_quickbooks_holds_far_more_invoices(pipeline: Pipeline) -> None:
    """Reading the whole list would cost more pages than there are new invoices: each lookup reads one page more
    and looks its number up, so the run pays 2 calls per new invoice, not the whole list."""
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
    assert lookups == 2 * created, (lookups, new, created)


def staged_records_after_dry_run(pipe: Pipeline, stream: str) -> dict[str, dict]:
    pipe.run(dry_run=True, **INVOICES)
    return staged_records(pipe, stream)


def test_customer_refused_after_every_suffix_fails_its_projects_and_leaves_no_intent(pipeline: Pipeline) -> None:
    """A definite refusal (QuickBooks 6240 on every name tried) is not an interrupted write: no intent survives, so
    the next run cannot "recover" the unrelated record holding the last name; every project of the client fails."""
    from target_quickbooks_merge.mapping import name_candidates

    account = first_triggered_account(pipeline)
    app = pipeline.merge.app
    names = name_candidates(account["title"], str(account.get("number") or account["id"]))
    with app.lock:
        for _ in range(6):  # the base name and the five suffixes the target tries
            app.state.qbo.create("Vendor", {"DisplayName": next(names)}, notify=False)
    pipeline.run()
    with pipeline.ledger() as ledger:
        assert ledger.pending_intents("forward:") == []
        assert ledger.get_link("coperniq", "account", str(account["id"])) is None
    projects = [p for p in staged_records(pipeline, "projects").values() if p.get("accountId") == account["id"]]
    failed = {r["source_id"]: r["reason"] for r in log_rows(pipeline, stream="projects", action="failed")}
    triggered = [str(p["id"]) for p in projects if str(p["id"]) in failed]
    assert triggered and all("Duplicate Name" in failed[pid] for pid in triggered), failed
    account_rows = [
        r
        for r in log_rows(pipeline, stream="accounts")
        if r["source_id"] == str(account["id"]) and r["action"] != "planned"
    ]  # not the dry run's
    assert [r["action"] for r in account_rows] == ["failed"] and "Duplicate Name" in account_rows[0]["reason"]
    again = pipeline.run().target.result.counts  # retried next run: the same failures, nothing "recovered"
    assert again["projects"]["failed"] == len(triggered) and again["accounts"]["failed"] == 1
    assert not again["accounts"]["linked"] and not again["projects"]["linked"]


def test_leftover_invoice_intent_never_links_another_customers_invoice(pipeline: Pipeline) -> None:
    """A crash can leave the intent of an invoice that was never sent; if QuickBooks holds that number for another
    customer, the re-run must report the clash, not "recover" (and pay into) the other customer's invoice."""
    pipeline.run(dry_run=True, **INVOICES)
    with pipeline.ledger() as ledger:
        planned = ledger.log_rows(stream="invoices", action="planned", limit=1)
    iid = planned[0]["source_id"]
    invoice = staged_records(pipeline, "invoices")[iid]
    number = f"CQ-{invoice.get('uid') or invoice['id']}"  # the number it would get (default prefix)
    app = pipeline.merge.app
    other = app.add_contact("Someone Else Entirely")
    theirs = app.create_invoice(other["id"], amount=99.0, number=number)
    with pipeline.ledger() as ledger:
        ledger.begin_intent(f"forward:invoice:{iid}", {"kind": "invoice", "number": number})
    pipeline.run(**INVOICES)
    with pipeline.ledger() as ledger:
        assert ledger.get_link("coperniq", "invoice", iid) is None
        assert ledger.pending_intents("forward:") == []
    failed = {r["source_id"]: r["reason"] for r in log_rows(pipeline, stream="invoices", action="failed")}
    assert "already used in QuickBooks by another customer" in failed[iid]
    assert not [
        p
        for p in merge_rows(pipeline.merge, "payments")
        if any(a.get("related_object_id") == theirs["id"] for a in p.get("applied_to_lines") or [])
    ]


def test_failed_invoice_list_read_falls_back_to_one_lookup_per_invoice(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of the invoice list that cannot be read (e.g. a cursor expired in a long run) must not leave a partial
    index that hides existing invoices: the run goes on with one lookup per invoice."""
    from sync_ledger import ApiError
    from target_quickbooks_merge.merge_client import MergeClient

    original = MergeClient.iter_pages

    def list_fails(self: MergeClient, path: str, params: dict | None = None):  # type: ignore[no-untyped-def]
        if path == "/invoices" and "number" not in (params or {}):
            raise ApiError(503, "GET /invoices failed with HTTP 503 (gave up after 6 retries)")
        yield from original(self, path, params)

    monkeypatch.setattr(MergeClient, "iter_pages", list_fails)
    run = pipeline.run(**INVOICES)
    created = run.counts["invoices"]["created"]
    assert created > 0 and run.target.result.failed == 0
    assert pipeline.merge.stats.count("GET", "/invoices") == created  # every one looked up by number
    with pipeline.ledger() as ledger:
        assert ledger.pending_intents("forward:") == []
