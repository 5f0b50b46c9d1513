"""The forward run holds nothing whole in memory: links, staging statuses, echo answers and phase snapshots are read
a chunk at a time through bounded caches (issue: cost grows with history). Here every cache and chunk is shrunk to
a handful of entries, so nearly every lookup is evicted before it is used again, and the run must still create
every customer, job, invoice and payment exactly once, and a re-run must write nothing. Both sandbox profiles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sync_ledger import ledger_links, ledger_rows, ledger_staging
from target_quickbooks_merge import links
from tests.conftest import start_coperniq, start_merge
from tests.reliability.rel_helpers import assert_forward_complete
from tests.target_quickbooks_merge.qbm_helpers import BOTH_TRIGGERS, Pipeline, log_rows


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_links, "LINK_CACHE", 4)
    monkeypatch.setattr(ledger_rows, "ROW_CACHE", 4)
    monkeypatch.setattr(ledger_staging, "CHUNK", 7)
    monkeypatch.setattr(ledger_staging, "PAYLOAD_CACHE", 5)
    monkeypatch.setattr(links, "READ_HELD", 5)
    monkeypatch.setattr(links, "MADE_HELD", 3)


@pytest.fixture(params=["optimistic", "pessimistic"])
def pipe(request: pytest.FixtureRequest, tmp_path: Path, tiny: None) -> Iterator[Pipeline]:
    from sandbox.seed import seed_coperniq

    coperniq = start_coperniq(profile=request.param, rate_limit_per_day=None)
    merge = start_merge(profile=request.param, rate_limit_per_minute=1_000_000)
    seed_coperniq(coperniq.app, projects=40, seed=11)
    config = {
        "trigger_phases": BOTH_TRIGGERS,
        "backfill": True,
        "invoice_sync": True,
        "default_item": "Services",
    }
    yield Pipeline(coperniq, merge, tmp_path / "ledger.duckdb", config=config)
    coperniq.server.stop()
    merge.server.stop()


def test_tiny_caches_sync_everything_exactly_once(pipe: Pipeline) -> None:
    runs = [pipe.run()]
    if pipe.merge.app.assumptions.passthrough_visible_after_sync:  # jobs listed after Merge's next sync
        pipe.merge.app.sync()
        runs.append(pipe.run())
    assert [r.target.result.failed for r in runs] == [0] * len(runs), [r.target.result.counts for r in runs]
    assert not log_rows(pipe, action="failed")
    exp = assert_forward_complete(pipe.coperniq, pipe.merge)
    assert len(exp["projects"]) >= 10 and exp["invoice_numbers"] and exp["payments_per_invoice"]
    again = pipe.run()
    assert again.writes == 0 and again.target.result.failed == 0
    assert_forward_complete(pipe.coperniq, pipe.merge)


def test_the_invoice_list_keeps_only_invoices_no_coperniq_invoice_is_linked_to(pipe: Pipeline) -> None:
    """The QuickBooks invoice list read for matching grows with the bookkeeper's own invoices, not with the
    sync's: by the end of a first run most listed invoices are its own, and they are never candidates."""
    import logging

    from sync_ledger.rows import Journal
    from target_quickbooks_merge.merge_index import InvoiceIndex

    pipe.run()
    pipe.merge.app.sync()  # the pessimistic Merge shows passthrough jobs only after its sync: their invoices follow
    run = pipe.run()
    merge = pipe.merge
    own = len(merge.state.table("invoices").order)
    contact = next(c for c in merge.state.table("contacts").order if c.get("is_customer"))
    bookkeepers = run.target.client.create(
        "invoices",
        {
            "type": "ACCOUNTS_RECEIVABLE",
            "contact": contact["id"],
            "number": "BK-1",
            "line_items": [{"description": "Own work", "unit_price": 10, "quantity": 1, "total_amount": 10}],
        },
    )
    with pipe.ledger() as ledger:
        view = links.LinkMap(ledger, Journal(ledger, "coperniq", dry=True), dry=True)
        index = InvoiceIndex(run.target.client, logging.getLogger("t"), lambda ids: view.linked_targets("invoice", ids))
        while not index.complete:
            index.by_number("none")
    assert own > 5
    assert [i["id"] for i in index.listed("BK-1")] == [bookkeepers.model["id"]]
    assert index.held == 1
