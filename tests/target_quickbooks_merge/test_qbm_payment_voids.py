"""A payment pushed to QuickBooks that Coperniq takes back (refunded, voided, failed, declined, cancelled) follows
`void_policy`: voided through passthrough exactly once (its invoice's balance open again; a no-op re-run writes
nothing), also after a lost answer or a crash between the void and the ledger; left by `leave`; voided by
`zero_and_note`; planned only in a dry run; skipped when it was never pushed (target_quickbooks_merge/payment_voids.py
and void_writes.py, the path invoices' voids take too)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from sync_ledger import Link
from tests.target_quickbooks_merge.qbm_helpers import Pipeline, log_rows
from tests.target_quickbooks_merge.test_qbm_voids import Crash, T, admin, crash_before_recording_voids, start

PROFILES = ["optimistic", "pessimistic"]
PAID = 100.0


# --------------------------------------------------------------------------------------------------- helpers
def paid(pipe: Pipeline, **config: Any) -> tuple[dict[str, Any], dict[str, Any], Link]:
    """One SENT invoice of our own (500.00) pushed, then a payment of 100.00 on it pushed."""
    inv, _ = start(pipe, **config)
    pay = pipe.coperniq.app.add_payment(inv["id"], PAID)
    pipe.run()
    return inv, pay, payment_link(pipe, pay)


def payment_link(pipe: Pipeline, pay: dict[str, Any]) -> Link:
    with pipe.ledger() as ledger:
        link = ledger.get_link("coperniq", "payment", str(pay["id"]))
    assert link is not None and link.target_id, "the payment should be pushed"
    return link


def set_payment_status(pipe: Pipeline, inv: dict[str, Any], pay: dict[str, Any], status: str) -> None:
    """The payment's status changed in Coperniq (refunded in its UI: its API has no payment update): the payment and
    its invoice get a new `updatedAt`, so tap-coperniq emits the invoice again and reads its payments. Its amount
    stays in `amountPaid` (optimistic) or leaves it (pessimistic: ASSUMPTION, target README "Voids and deletes")."""
    resp = requests.post(
        f"{pipe.coperniq.server.root_url}/__admin/invoices/{inv['id']}/payments/{pay['id']}/status",
        json={"status": status},
        timeout=T,
    )
    assert resp.status_code == 200, resp.text


def payment_voids(pipe: Pipeline, merge_id: str | None) -> list[dict[str, Any]]:
    """Every void QuickBooks accepted for this payment (a no-op re-void would be listed too)."""
    return [v for v in admin(pipe, "voids")["voids"] if v["entity"] == "Payment" and v["merge_id"] == merge_id]


def rows_of(pipe: Pipeline, pay: dict[str, Any], action: str | None = None) -> list[dict[str, Any]]:
    """The payment's integration-log rows, newest first."""
    return [r for r in log_rows(pipe, stream="payments", action=action) if r["source_id"] == str(pay["id"])]


def invoice_balance(pipe: Pipeline, inv: dict[str, Any]) -> float:
    """The open balance QuickBooks itself shows on the pushed invoice."""
    with pipe.ledger() as ledger:
        link = ledger.get_link("coperniq", "invoice", str(inv["id"]))
    assert link is not None
    return float(admin(pipe, f"invoices/{link.target_id}")["qbo"]["Balance"])


VOIDED_REASON = "payment is REFUNDED in Coperniq; voided in QuickBooks (its invoice's balance is open again)"


# ------------------------------------------------------------------------------------------------------ void
@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_a_refunded_payment_is_voided_once_and_a_rerun_writes_nothing(pipeline: Pipeline) -> None:
    inv, pay, link = paid(pipeline)
    assert invoice_balance(pipeline, inv) == 400.0
    set_payment_status(pipeline, inv, pay, "REFUNDED")
    run = pipeline.run()
    [void] = payment_voids(pipeline, link.target_id)
    assert void["changed"] and void["via"] == "passthrough"
    record = admin(pipeline, f"payments/{link.target_id}")
    assert record["qbo"]["TotalAmt"] == 0 and str(record["qbo"].get("PrivateNote")).startswith("Voided")
    assert record["qbo"]["Line"] == []
    assert invoice_balance(pipeline, inv) == 500.0  # the invoice is open again
    [logged] = rows_of(pipeline, pay, "updated")
    assert logged["reason"] == VOIDED_REASON
    assert payment_link(pipeline, pay).status == "voided"
    assert run.counts["payments"]["failed"] == 0
    logged_before = len(rows_of(pipeline, pay))

    again = pipeline.run()
    assert again.writes == 0 and len(payment_voids(pipeline, link.target_id)) == 1
    assert len(rows_of(pipeline, pay)) == logged_before
    if pipeline.merge.app.assumptions.passthrough_void_visible_after_sync:  # Merge's next sync shows the void
        pipeline.merge.app.sync()
        assert admin(pipeline, f"payments/{link.target_id}")["merge"]["total_amount"] == 0
        assert pipeline.run().writes == 0 and len(payment_voids(pipeline, link.target_id)) == 1
        assert len(rows_of(pipeline, pay)) == logged_before


@pytest.mark.parametrize("status", ["VOIDED", "FAILED", "CANCELED"])
def test_every_taking_back_status_voids_it(pipeline: Pipeline, status: str) -> None:
    inv, pay, link = paid(pipeline)
    set_payment_status(pipeline, inv, pay, status)
    pipeline.run()
    assert len(payment_voids(pipeline, link.target_id)) == 1
    assert rows_of(pipeline, pay, "updated")[0]["reason"].startswith(f"payment is {status} in Coperniq; voided")
    assert pipeline.run().writes == 0


def test_zero_and_note_voids_a_payment(pipeline: Pipeline) -> None:
    inv, pay, link = paid(pipeline, void_policy="zero_and_note")
    set_payment_status(pipeline, inv, pay, "REFUNDED")
    pipeline.run()
    assert len(payment_voids(pipeline, link.target_id)) == 1
    assert rows_of(pipeline, pay, "updated")[0]["reason"] == VOIDED_REASON
    assert pipeline.run().writes == 0


def test_a_payment_voided_in_quickbooks_already_is_logged_skipped_not_voided_again(pipeline: Pipeline) -> None:
    inv, pay, link = paid(pipeline)
    pipeline.merge.app.void_payment(str(link.target_id))  # the bookkeeper voided it there
    set_payment_status(pipeline, inv, pay, "REFUNDED")
    pipeline.run()
    [void] = payment_voids(pipeline, link.target_id)
    assert void["via"] == "admin"  # only the bookkeeper's
    [skip] = rows_of(pipeline, pay, "skipped")
    assert skip["reason"] == "payment is REFUNDED in Coperniq; already voided in QuickBooks (nothing sent)"
    assert payment_link(pipeline, pay).status == "voided"
    assert pipeline.run().writes == 0


def test_a_payment_never_pushed_is_only_skipped(pipeline: Pipeline) -> None:
    inv, _ = start(pipeline)
    pay = pipeline.coperniq.app.add_payment(inv["id"], PAID)
    set_payment_status(pipeline, inv, pay, "REFUNDED")
    pipeline.run()
    [skip] = rows_of(pipeline, pay, "skipped")
    assert skip["reason"] == "payment status is REFUNDED"
    assert admin(pipeline, "voids")["voids"] == []
    with pipeline.ledger() as ledger:
        assert ledger.get_link("coperniq", "payment", str(pay["id"])) is None


# ----------------------------------------------------------------------------------------------- failures
@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_a_payment_void_whose_answer_is_lost_is_read_back_not_voided_twice(pipeline: Pipeline) -> None:
    inv, pay, link = paid(pipeline)
    set_payment_status(pipeline, inv, pay, "REFUNDED")
    pipeline.merge.faults.update(lost_response_rate=1.0, only_paths=["operation=update&include=void"])
    pipeline.run()
    pipeline.merge.faults.reset()
    [void] = payment_voids(pipeline, link.target_id)
    assert void["changed"]
    assert not rows_of(pipeline, pay, "failed")
    [logged] = rows_of(pipeline, pay, "updated")
    assert (
        logged["reason"] == f"{VOIDED_REASON}; its answer was lost, and QuickBooks shows it voided (not voided twice)"
    )
    assert pipeline.run().writes == 0 and len(payment_voids(pipeline, link.target_id)) == 1
    assert len(rows_of(pipeline, pay, "updated")) == 1 and invoice_balance(pipeline, inv) == 500.0


def test_a_crash_between_the_payment_void_and_the_ledger_is_settled_by_reading_quickbooks(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv, pay, link = paid(pipeline)
    set_payment_status(pipeline, inv, pay, "REFUNDED")
    with crash_before_recording_voids(monkeypatch), pytest.raises(Crash):
        pipeline.run()
    with pipeline.ledger() as ledger:
        assert [key for key, _ in ledger.pending_intents("forward:void:")] == [f"forward:void:payment:{pay['id']}"]
    assert payment_link(pipeline, pay).status == "active"

    pipeline.run()
    assert len(payment_voids(pipeline, link.target_id)) == 1  # read back, not voided again
    [logged] = rows_of(pipeline, pay, "updated")
    assert "voided in QuickBooks (its invoice's balance is open again) by a run that stopped" in logged["reason"]
    with pipeline.ledger() as ledger:
        assert ledger.pending_intents("forward:") == []
    assert payment_link(pipeline, pay).status == "voided"
    assert pipeline.run().writes == 0


# ------------------------------------------------------------------------------------------ leave, dry run
def test_leave_logs_the_payment_once_and_a_policy_change_voids_it(pipeline: Pipeline) -> None:
    inv, pay, link = paid(pipeline, void_policy="leave")
    set_payment_status(pipeline, inv, pay, "REFUNDED")
    pipeline.run()
    [skip] = rows_of(pipeline, pay, "skipped")
    assert skip["reason"] == (
        "payment pushed to QuickBooks earlier is now REFUNDED in Coperniq; left unchanged in QuickBooks "
        "(void_policy: leave): review it there"
    )
    assert payment_voids(pipeline, link.target_id) == [] and invoice_balance(pipeline, inv) == 400.0
    assert pipeline.run().writes == 0 and len(rows_of(pipeline, pay, "skipped")) == 1  # once per version

    pipeline.config["void_policy"] = "void"  # a setting that decides skipped rows: they are evaluated again
    pipeline.run()
    assert len(payment_voids(pipeline, link.target_id)) == 1
    assert pipeline.run().writes == 0


def test_dry_run_plans_the_payment_void_and_writes_nothing(pipeline: Pipeline) -> None:
    inv, pay, link = paid(pipeline)
    set_payment_status(pipeline, inv, pay, "REFUNDED")
    dry = pipeline.run(dry_run=True)
    assert dry.writes == 0 and payment_voids(pipeline, link.target_id) == []
    [planned] = rows_of(pipeline, pay, "planned")
    assert planned["reason"] == "would be updated: payment is REFUNDED in Coperniq; would be voided in QuickBooks"
    assert payment_link(pipeline, pay).status == "active" and invoice_balance(pipeline, inv) == 400.0
    with pipeline.ledger() as ledger:
        assert ledger.pending_intents("forward:") == []

    pipeline.run()  # the real run does it (the row stayed pending)
    assert len(payment_voids(pipeline, link.target_id)) == 1
