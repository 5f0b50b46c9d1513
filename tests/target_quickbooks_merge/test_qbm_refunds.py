"""`refund_policy: refund_receipt`: a pushed payment Coperniq shows REFUNDED stays in QuickBooks and one Refund
Receipt is created through passthrough (right customer, amount, account), exactly once: a no-op re-run writes
nothing, a lost answer and a crash between the call and the ledger leave one receipt; an unknown refund_account
refuses the run naming the setting (target_quickbooks_merge/refunds.py)."""

from __future__ import annotations

from typing import Any

import pytest
from singer_sdk.exceptions import ConfigValidationError

from sync_ledger import Link
from target_quickbooks_merge.target import TargetError, TargetQuickbooksMerge
from tests.target_quickbooks_merge.qbm_helpers import Pipeline
from tests.target_quickbooks_merge.test_qbm_payment_voids import (
    PAID,
    invoice_balance,
    paid,
    payment_link,
    payment_voids,
    rows_of,
    set_payment_status,
)
from tests.target_quickbooks_merge.test_qbm_voids import Crash, admin, crash_before_recording_voids

PROFILES = ["optimistic", "pessimistic"]
REFUND = {"refund_policy": "refund_receipt", "refund_account": "Checking"}


def receipts(pipe: Pipeline) -> list[dict[str, Any]]:
    return list(admin(pipe, "refund-receipts")["refund_receipts"])


def refunded(pipe: Pipeline, **config: Any) -> tuple[dict[str, Any], dict[str, Any], Link]:
    inv, pay, link = paid(pipe, **REFUND, **config)
    set_payment_status(pipe, inv, pay, "REFUNDED")
    return inv, pay, link


@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_a_refund_makes_one_refund_receipt_and_keeps_the_payment(pipeline: Pipeline) -> None:
    inv, pay, link = refunded(pipeline)
    run = pipeline.run()
    assert run.counts["payments"]["failed"] == 0
    [receipt] = receipts(pipeline)
    with pipeline.ledger() as ledger:
        inv_link = ledger.get_link("coperniq", "invoice", str(inv["id"]))
    assert inv_link is not None
    qbo_invoice = admin(pipeline, f"invoices/{inv_link.target_id}")["qbo"]
    assert receipt["CustomerRef"]["value"] == qbo_invoice["CustomerRef"]["value"]
    assert receipt["TotalAmt"] == PAID and receipt["Line"][0]["Amount"] == PAID
    assert receipt["DocNumber"] == f"R-{qbo_invoice['DocNumber']}-{pay['id']}"
    assert str(pay["id"]) in receipt["PrivateNote"]
    assert payment_voids(pipeline, link.target_id) == []
    assert admin(pipeline, f"payments/{link.target_id}")["qbo"]["TotalAmt"] == PAID  # the payment stays
    assert invoice_balance(pipeline, inv) == 400.0
    assert payment_link(pipeline, pay).status == "refunded"
    [logged] = rows_of(pipeline, pay, "updated")
    assert logged["reason"] == (
        f"payment is REFUNDED in Coperniq; refund receipt {receipt['DocNumber']} created in QuickBooks "
        "(the payment stays)"
    )
    assert pipeline.run().writes == 0 and len(receipts(pipeline)) == 1
    assert len(rows_of(pipeline, pay, "updated")) == 1


@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_no_refund_receipt_for_a_payment_voided_in_quickbooks(pipeline: Pipeline) -> None:
    inv, pay, link = paid(pipeline, **REFUND)
    pipeline.merge.app.void_payment(str(link.target_id))  # the bookkeeper voided it there: no money received
    set_payment_status(pipeline, inv, pay, "REFUNDED")
    run = pipeline.run()
    assert run.counts["payments"]["failed"] == 0
    assert receipts(pipeline) == []  # a receipt would take the money out a second time
    [skip] = rows_of(pipeline, pay, "skipped")
    assert skip["reason"] == (
        "payment is REFUNDED in Coperniq, but no refund receipt is made; already voided in QuickBooks (nothing sent)"
    )
    assert payment_link(pipeline, pay).status == "voided"
    assert pipeline.run().writes == 0 and receipts(pipeline) == []


def test_the_receipt_is_paid_from_refund_account(pipeline: Pipeline) -> None:
    refunded(pipeline)
    pipeline.run()
    [receipt] = receipts(pipeline)
    accounts = pipeline.merge.app.state.data.t("accounts")
    checking = next(r for r in accounts.order if r["name"] == "Checking")
    assert receipt["DepositToAccountRef"]["value"] == checking["remote_id"]


@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_a_lost_answer_leaves_one_receipt(pipeline: Pipeline) -> None:
    _, pay, _ = refunded(pipeline)
    pipeline.merge.faults.update(lost_response_rate=1.0, only_paths=["/refundreceipt"])
    pipeline.run()
    pipeline.merge.faults.reset()
    assert len(receipts(pipeline)) == 1
    assert not rows_of(pipeline, pay, "failed")
    [logged] = rows_of(pipeline, pay, "updated")
    assert logged["reason"].endswith("; its answer was lost, and QuickBooks shows it (not created twice)")
    assert pipeline.run().writes == 0 and len(receipts(pipeline)) == 1


def test_a_crash_after_the_call_leaves_one_receipt(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    _, pay, _ = refunded(pipeline)
    with crash_before_recording_voids(monkeypatch, "forward:refund:"), pytest.raises(Crash):
        pipeline.run()
    assert len(receipts(pipeline)) == 1 and payment_link(pipeline, pay).status == "active"
    pipeline.run()
    assert len(receipts(pipeline)) == 1
    assert payment_link(pipeline, pay).status == "refunded"
    with pipeline.ledger() as ledger:
        assert ledger.pending_intents("forward:") == []
    assert "by a run that stopped before recording it" in rows_of(pipeline, pay, "updated")[0]["reason"]
    assert pipeline.run().writes == 0


def test_other_statuses_are_still_voided_and_leave_leaves(pipeline: Pipeline) -> None:
    inv, pay, link = paid(pipeline, **REFUND, void_policy="leave")
    set_payment_status(pipeline, inv, pay, "REFUNDED")
    pipeline.run()
    assert receipts(pipeline) == [] and payment_voids(pipeline, link.target_id) == []
    pipeline.config["void_policy"] = "void"
    set_payment_status(pipeline, inv, pay, "VOIDED")
    pipeline.run()
    assert receipts(pipeline) == [] and len(payment_voids(pipeline, link.target_id)) == 1


def test_an_unknown_refund_account_is_refused_naming_the_setting(pipeline: Pipeline) -> None:
    refunded(pipeline)
    pipeline.config["refund_account"] = "No Such Bank"
    with pytest.raises(TargetError, match="refund_account 'No Such Bank'"):
        pipeline.run()
    assert receipts(pipeline) == []


def test_an_unknown_refund_account_stops_the_run_before_anything_is_written(pipeline: Pipeline) -> None:
    from tests.target_quickbooks_merge.qbm_helpers import merge_rows

    pipeline.config.update(invoice_sync=True, default_item="Services", **{**REFUND, "refund_account": "No Such Bank"})
    with pytest.raises(TargetError, match="refund_account 'No Such Bank'"):
        pipeline.run()
    assert merge_rows(pipeline.merge, "contacts") == [] and merge_rows(pipeline.merge, "invoices") == []


def test_refund_receipt_needs_refund_account() -> None:
    with pytest.raises(ConfigValidationError) as info:
        TargetQuickbooksMerge(config={"merge_api_key": "k", "account_token": "t", "refund_policy": "refund_receipt"})
    assert "refund_account" in str(info.value.errors)
