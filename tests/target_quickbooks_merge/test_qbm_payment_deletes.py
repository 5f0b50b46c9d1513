"""A payment pushed to QuickBooks and then deleted in Coperniq (its UI; the API deletes none) is voided there by
`void_policy`, once, its invoice's balance open again, the invoice's other payments untouched; a re-run writes
nothing (target_quickbooks_merge/payment_deletes.py: a pushed payment missing from its invoice's whole payment list).

Both profiles. Optimistic: the delete bumps the invoice's `updatedAt`, so the next run reads the invoice and its
payment list again. Pessimistic (`payment_delete_bumps_invoice` off): only `amountPaid` moves, so the next run sees
nothing (and voids nothing) until the invoice changes for another reason, or, for a last payment (the invoice then
shows nothing paid), until the invoice sweep lists the invoice as unpaid. One case runs on a PostgreSQL ledger."""

from __future__ import annotations

from typing import Any

import pytest

from tests.target_quickbooks_merge.qbm_helpers import Pipeline, coperniq_patch, log_rows
from tests.target_quickbooks_merge.test_qbm_payment_voids import invoice_balance, payment_link, payment_voids
from tests.target_quickbooks_merge.test_qbm_voids import start

PROFILES = ["optimistic", "pessimistic"]
VOIDED = "payment was deleted in Coperniq; voided in QuickBooks (its invoice's balance is open again)"


def bumps(pipe: Pipeline) -> bool:
    return bool(pipe.coperniq.app.assumptions.payment_delete_bumps_invoice)


def reasons(pipe: Pipeline, pay: dict[str, Any]) -> list[str]:
    return [r["reason"] for r in log_rows(pipe, stream="payments") if r["source_id"] == str(pay["id"])]


@pytest.mark.parametrize("pipeline", [*PROFILES, "pessimistic-postgres"], indirect=True)
def test_a_deleted_payment_is_voided_once_and_the_other_payment_stays(pipeline: Pipeline) -> None:
    inv, _ = start(pipeline)
    app = pipeline.coperniq.app
    kept, gone = app.add_payment(inv["id"], 150.0), app.add_payment(inv["id"], 100.0)
    pipeline.run()
    kept_link, gone_link = payment_link(pipeline, kept), payment_link(pipeline, gone)
    assert invoice_balance(pipeline, inv) == 250.0

    app.delete_payment(inv["id"], gone["id"])
    if not bumps(pipeline):  # the invoice did not move: nothing to read, nothing voided (no guess)
        assert pipeline.run().writes == 0 and payment_voids(pipeline, gone_link.target_id) == []
        coperniq_patch(pipeline.coperniq, f"/invoices/{inv['id']}", {"description": "Deposit (revised)"})
    run = pipeline.run()
    [void] = payment_voids(pipeline, gone_link.target_id)
    assert void["changed"] and void["via"] == "passthrough"
    assert payment_voids(pipeline, kept_link.target_id) == []
    assert invoice_balance(pipeline, inv) == 350.0  # 500 less the 150 still paid
    assert VOIDED in reasons(pipeline, gone)
    assert payment_link(pipeline, gone).status == "voided" and payment_link(pipeline, kept).status == "active"
    assert run.counts["payments"]["failed"] == 0
    logged = len(reasons(pipeline, gone))
    assert pipeline.run().writes == 0 and len(payment_voids(pipeline, gone_link.target_id)) == 1
    assert len(reasons(pipeline, gone)) == logged


@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_a_deleted_last_payment_is_voided_by_the_next_run_or_sweep(pipeline: Pipeline) -> None:
    inv, _ = start(pipeline)
    pay = pipeline.coperniq.app.add_payment(inv["id"], 100.0)
    pipeline.run()
    link = payment_link(pipeline, pay)
    assert invoice_balance(pipeline, inv) == 400.0

    pipeline.coperniq.app.delete_payment(inv["id"], pay["id"])
    if not bumps(pipeline):
        assert pipeline.run().writes == 0 and payment_voids(pipeline, link.target_id) == []
        pipeline.tap_config = {**pipeline.tap_config, "invoice_sweep_interval": 0}  # a sweep each run
    pipeline.run()
    [void] = payment_voids(pipeline, link.target_id)
    assert void["changed"]
    assert invoice_balance(pipeline, inv) == 500.0
    assert VOIDED in reasons(pipeline, pay)
    assert pipeline.run().writes == 0 and len(payment_voids(pipeline, link.target_id)) == 1


def test_void_policy_leave_logs_a_deleted_payment_and_leaves_it(pipeline: Pipeline) -> None:
    inv, _ = start(pipeline, void_policy="leave")
    pay = pipeline.coperniq.app.add_payment(inv["id"], 100.0)
    pipeline.run()
    link = payment_link(pipeline, pay)
    pipeline.coperniq.app.delete_payment(inv["id"], pay["id"])
    pipeline.run()
    assert payment_voids(pipeline, link.target_id) == []
    assert invoice_balance(pipeline, inv) == 400.0
    [skip] = [r for r in reasons(pipeline, pay) if "left unchanged" in r]
    assert "payment pushed to QuickBooks earlier is now DELETED in Coperniq" in skip and "void_policy: leave" in skip
    assert pipeline.run().writes == 0 and len([r for r in reasons(pipeline, pay) if "left unchanged" in r]) == 1


def test_a_dry_run_voids_nothing_and_the_next_run_voids_the_deleted_payment(pipeline: Pipeline) -> None:
    inv, _ = start(pipeline)
    pay = pipeline.coperniq.app.add_payment(inv["id"], 100.0)
    pipeline.run()
    link = payment_link(pipeline, pay)
    pipeline.coperniq.app.delete_payment(inv["id"], pay["id"])
    state = pipeline.tap_state
    dry = pipeline.run(keep_state=False, dry_run=True)
    assert dry.writes == 0 and payment_voids(pipeline, link.target_id) == []
    pipeline.tap_state = state
    pipeline.run()
    assert len(payment_voids(pipeline, link.target_id)) == 1


def test_an_empty_payment_list_of_a_paid_invoice_voids_nothing(pipeline: Pipeline) -> None:
    """Coperniq answers a paid invoice's payment list with nothing (an empty body, a key that lost scope): not a
    list, so no payment is taken for deleted."""
    from sandbox.coperniq_state import iso

    inv, _ = start(pipeline)
    app = pipeline.coperniq.app
    pay = app.add_payment(inv["id"], 100.0)
    pipeline.run()
    link = payment_link(pipeline, pay)
    with app.lock:  # the list comes back empty while the invoice still shows 100.00 paid (and has changed)
        app.state.payments[inv["id"]] = []
        now = app.state.clock.tick()
        invoice = app.state.invoices[inv["id"]]
        invoice["updatedAt"], invoice["_u"] = iso(now), now
        app.state.touch("invoices")
    assert pipeline.run().writes == 0
    assert payment_voids(pipeline, link.target_id) == [] and payment_link(pipeline, pay).status == "active"


def test_lists_missing_most_of_their_payments_void_nothing_and_warn(pipeline: Pipeline) -> None:
    """11 of an invoice's 12 pushed payments gone from its list at once: taken as lost access, not as deletes (as
    the invoice sweep does); the one left stays too."""
    inv, _ = start(pipeline)
    app = pipeline.coperniq.app
    pays = [app.add_payment(inv["id"], 10.0) for _ in range(12)]
    pipeline.run()
    links = [payment_link(pipeline, p) for p in pays]
    for pay in pays[:11]:
        app.delete_payment(inv["id"], pay["id"])
    if not bumps(pipeline):
        coperniq_patch(pipeline.coperniq, f"/invoices/{inv['id']}", {"description": "Deposit (revised)"})
    run = pipeline.run()
    assert run.target.result is not None
    warnings = run.target.result.warnings
    assert any("taken as lost access" in w and "nothing is voided" in w for w in warnings), warnings
    assert all(payment_voids(pipeline, link.target_id) == [] for link in links)
