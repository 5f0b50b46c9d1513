"""Full round trip with the real forward leg: Coperniq -> QuickBooks, then QuickBooks -> Coperniq, then forward
again, asserting on both sandboxes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from reverse_helpers import log_rows, reverse_run

from sync_ledger import Ledger
from tests.target_quickbooks_merge.qbm_helpers import BOTH_TRIGGERS, Pipeline


def synced_forward(coperniq_sandbox: Any, merge_sandbox: Any, tmp_path: Path) -> Pipeline:
    """8 seeded projects synced forward with their invoices and payments (default item Services)."""
    from sandbox.seed import seed_coperniq

    seed_coperniq(coperniq_sandbox.app, projects=8, seed=7)
    forward = Pipeline(
        coperniq_sandbox,
        merge_sandbox,
        tmp_path / "sync-ledger.duckdb",
        config={"trigger_phases": BOTH_TRIGGERS, "backfill": True, "invoice_sync": True, "default_item": "Services"},
    )
    forward.run()
    return forward


def round_trip(
    coperniq_sandbox: Any, merge_sandbox: Any, tmp_path: Path, place: Path | str | None = None
) -> dict[str, Any]:
    """Forward run, an invoice + payment entered in QuickBooks for a synced job, reverse run (the ledger: a DuckDB
    file, default tmp_path's, or a postgresql:// URL: `place`)."""
    from sandbox.seed import seed_coperniq

    seed_coperniq(coperniq_sandbox.app, projects=8, seed=7)
    ledger_path = place or tmp_path / "sync-ledger.duckdb"
    forward = Pipeline(
        coperniq_sandbox,
        merge_sandbox,
        ledger_path,
        config={"trigger_phases": BOTH_TRIGGERS, "backfill": True, "invoice_sync": True},
    )
    forward.run()
    with Ledger(ledger_path) as ledger:
        job_link = next(link for link in ledger.links("coperniq", "project") if link.target_id)
        forward_invoice_ids = {link.target_id for link in ledger.links("coperniq", "invoice") if link.target_id}
    coperniq_invoices_before = set(coperniq_sandbox.state.invoices)

    merge = merge_sandbox.app  # entered directly in QuickBooks for the synced job
    qbo_invoice = merge.create_invoice(
        job_link.target_id, [{"description": "Extra panels", "quantity": 2, "unit_price": 450.0, "total_amount": 900.0}]
    )
    qbo_payment = merge.create_payment(job_link.target_id, 900.0, applied_to=[(qbo_invoice["id"], 900.0)])
    merge_counts = {t: len(merge.state.table(t)) for t in ("invoices", "payments", "contacts")}
    state = reverse_run(merge_sandbox, coperniq_sandbox, ledger_path, None)
    return {
        "forward": forward,
        "ledger": ledger_path,
        "project_id": int(job_link.source_id),
        "forward_invoice_ids": forward_invoice_ids,
        "before": coperniq_invoices_before,
        "qbo_payment": qbo_payment,
        "merge_counts": merge_counts,
        "tap_state": state,
    }


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_round_trip(
    coperniq_sandbox: Any, merge_sandbox: Any, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    ledger = str(request.getfixturevalue("pg_url")) if backend == "postgres" else None
    rt = round_trip(coperniq_sandbox, merge_sandbox, tmp_path, ledger)

    new_ids = set(coperniq_sandbox.state.invoices) - rt["before"]
    assert len(new_ids) == 1
    created = coperniq_sandbox.state.invoices[new_ids.pop()]
    assert created["_record"] == ("project", rt["project_id"]) and created["amount"] == 900.0
    [payment] = coperniq_sandbox.state.payments[created["id"]]
    assert payment["amount"] == 900.0 and payment["paymentReference"] == rt["qbo_payment"]["id"]
    skipped = {r["source_id"]: r["reason"] for r in log_rows(rt["ledger"], action="skipped")}
    for merge_invoice_id in rt["forward_invoice_ids"]:  # what the forward leg wrote never comes back
        assert skipped[merge_invoice_id].startswith("written by the forward leg")

    # a second reverse run is a no-op
    writes = coperniq_sandbox.stats.count("POST") + coperniq_sandbox.stats.count("PATCH")
    reverse_run(merge_sandbox, coperniq_sandbox, rt["ledger"], rt["tap_state"])
    assert coperniq_sandbox.stats.count("POST") + coperniq_sandbox.stats.count("PATCH") == writes
    assert len(set(coperniq_sandbox.state.invoices) - rt["before"]) == 1


def test_second_forward_run_writes_nothing_new(coperniq_sandbox: Any, merge_sandbox: Any, tmp_path: Path) -> None:
    rt = round_trip(coperniq_sandbox, merge_sandbox, tmp_path)
    rt["forward"].run()
    merge = merge_sandbox.app
    assert {t: len(merge.state.table(t)) for t in ("invoices", "payments", "contacts")} == rt["merge_counts"]


def test_a_payment_recorded_in_both_systems_is_counted_once_on_each_side(
    coperniq_sandbox: Any, merge_sandbox: Any, tmp_path: Path
) -> None:
    """The client paid 100; the office recorded it in Coperniq and the bookkeeper in QuickBooks before the sync
    linked them. The reverse leg runs first: it links the QuickBooks payment to Coperniq's instead of importing
    it, and the forward leg then does not push Coperniq's: each side shows 100 paid once."""
    forward = synced_forward(coperniq_sandbox, merge_sandbox, tmp_path)
    ledger_path = forward.ledger_path
    st = coperniq_sandbox.state
    with Ledger(ledger_path) as ledger:
        links = {link.source_id: link for link in ledger.links("coperniq", "invoice") if link.target_id}
    iid = next(int(i) for i in sorted(links) if st.invoices[int(i)]["amount"] - st.invoices[int(i)]["amountPaid"] > 100)
    coperniq_sandbox.app.add_payment(iid, 100.0)
    paid, payments = st.invoices[iid]["amountPaid"], len(st.payments[iid])
    invoice_row = merge_sandbox.app.state.table("invoices").get(links[str(iid)].target_id)
    merge_sandbox.app.create_payment(invoice_row["contact"], 100.0, applied_to=[(links[str(iid)].target_id, 100.0)])
    qbo_payments_before = len(merge_sandbox.app.state.table("payments"))

    reverse_run(merge_sandbox, coperniq_sandbox, ledger_path, None)
    assert len(st.payments[iid]) == payments and st.invoices[iid]["amountPaid"] == paid  # not imported twice
    assert any("not counted twice" in r["reason"] for r in log_rows(ledger_path, action="linked"))
    forward.run()
    assert len(merge_sandbox.app.state.table("payments")) == qbo_payments_before  # not pushed a second time
    assert st.invoices[iid]["amountPaid"] == paid


def test_a_reverse_record_without_its_link_is_still_not_echoed(
    coperniq_sandbox: Any, merge_sandbox: Any, tmp_path: Path
) -> None:
    """Forward and reverse run at once on PostgreSQL: a forward run may read a Coperniq invoice and payment the
    reverse leg has just created but not linked yet (or never will: it died in between). Their marks (the invoice's
    `[qbo-merge:...]` description, the payment's notes) keep them out of QuickBooks anyway."""
    rt = round_trip(coperniq_sandbox, merge_sandbox, tmp_path)
    with Ledger(rt["ledger"]) as ledger:  # as if the reverse run had not committed its links
        reverse = [link for link in ledger.links("quickbooks") if link.target_system == "coperniq"]
        assert {link.source_type for link in reverse} >= {"invoice", "payment"}
        ledger._c.conn.execute("DELETE FROM id_map WHERE source_system = 'quickbooks'")
        ledger._c.link_cache.clear()
    rt["forward"].run()
    merge = merge_sandbox.app
    assert {t: len(merge.state.table(t)) for t in ("invoices", "payments", "contacts")} == rt["merge_counts"]
    reasons = {r["reason"] for r in log_rows(rt["ledger"], action="skipped", direction="forward")}
    assert "invoice was created from QuickBooks by the reverse leg: not echoed back" in reasons
    assert "payment was created from QuickBooks by the reverse leg: not echoed back" in reasons


def test_a_forward_create_in_flight_is_not_imported_before_its_link(
    coperniq_sandbox: Any, merge_sandbox: Any, tmp_path: Path
) -> None:
    """The reverse leg reads a QuickBooks invoice and payment the forward leg has just created, before the forward
    run saved their links (both legs at once), or after it died in between: its intents are still pending, so
    they wait instead of coming back into Coperniq as the bookkeeper's; once the forward leg links them they are
    echoes, skipped."""
    forward = synced_forward(coperniq_sandbox, merge_sandbox, tmp_path)
    ledger_path = forward.ledger_path
    with Ledger(ledger_path) as ledger:  # the forward run's invoice and payment links "not committed yet"
        saved = [link for link in ledger.links("coperniq") if link.source_type in ("invoice", "payment")]
        assert {link.source_type for link in saved} == {"invoice", "payment"}
        ledger._c.conn.execute("DELETE FROM id_map WHERE source_type IN ('invoice', 'payment')")
        ledger._c.link_cache.clear()
        ledger.begin_intents([(f"forward:{link.source_type}:{link.source_id}", {}) for link in saved])
    before = set(coperniq_sandbox.state.invoices)
    paid = {i: len(p) for i, p in coperniq_sandbox.state.payments.items()}

    state = reverse_run(merge_sandbox, coperniq_sandbox, ledger_path, None)
    assert set(coperniq_sandbox.state.invoices) == before  # nothing imported
    assert {i: len(p) for i, p in coperniq_sandbox.state.payments.items()} == paid
    waits = [r for r in log_rows(ledger_path) if "pending intent" in r["reason"]]
    assert {r["stream"] for r in waits} >= {"invoices", "payments"}

    # the forward leg finishes: links saved, intents ended in one go
    with Ledger(ledger_path) as ledger, ledger.transaction():
        ledger.upsert_links(saved)
        ledger.end_intents([f"forward:{link.source_type}:{link.source_id}" for link in saved])
    reverse_run(merge_sandbox, coperniq_sandbox, ledger_path, state)
    assert set(coperniq_sandbox.state.invoices) == before  # echoes: skipped, never imported
    assert {i: len(p) for i, p in coperniq_sandbox.state.payments.items()} == paid
