"""A Coperniq payment on a credit (money paid back) is recorded in QuickBooks the way QuickBooks refunds a credit
memo: a Check from refund_account to Accounts Receivable for the customer, and a Payment of 0 linking the Check to
the Credit Memo (its remaining credit drops to what is left). Exactly once under lost answers and crashes at either
step; a refund larger than the credit left is a failed row; without refund_account it is skipped naming the
setting; a refund taken back later is left for review, said once; the reverse leg brings nothing back
(target_quickbooks_merge/credit_refunds.py)."""

from __future__ import annotations

from typing import Any

import pytest

from sync_ledger import Link
from target_quickbooks_merge.credit_refunds import CREDIT_REFUND
from target_quickbooks_merge.merge_client import MergeClient
from target_quickbooks_merge.target import TargetError
from tests.reverse.reverse_helpers import reverse_run
from tests.target_quickbooks_merge.qbm_helpers import Pipeline, coperniq_patch, log_rows, merge_rows
from tests.target_quickbooks_merge.test_qbm_credit_notes import add_credit, credit_memos, link_of, start
from tests.target_quickbooks_merge.test_qbm_payment_voids import set_payment_status
from tests.target_quickbooks_merge.test_qbm_voids import Crash, admin, crash_before_recording_voids

PROFILES = ["optimistic", "pessimistic"]
REFUND = {"refund_account": "Checking"}


class Killed(BaseException):
    """The process dies between the check and the payment (BaseException: nothing may swallow it)."""


def refunded_credit(pipe: Pipeline, amount: float = 150.0, price: float = -150, **config: Any) -> tuple[Any, Any]:
    """A credit of -price pushed as a credit memo, then `amount` of it paid back to the customer in Coperniq."""
    project, _, _ = start(pipe, **config)
    credit = add_credit(pipe, project, price=price)
    pipe.run()
    pipe.coperniq.app.allow_overpayment = True  # the sandbox's own check would refuse a payment on a credit
    pay = pipe.coperniq.app.add_payment(credit["id"], amount)
    return credit, pay


def killed_between_check_and_payment(pipe: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that dies once the check is in QuickBooks, before the payment linking it is sent."""
    original = MergeClient.create_qbo

    def killed_before_payment(self: MergeClient, entity: str, body: dict[str, Any], refused: str) -> Any:
        if entity == "Payment":
            raise Killed("killed after the check, before the payment")
        return original(self, entity, body, refused)

    monkeypatch.setattr(MergeClient, "create_qbo", killed_before_payment)
    with pytest.raises(Killed):
        pipe.run()
    monkeypatch.setattr(MergeClient, "create_qbo", original)


def purchases(pipe: Pipeline) -> list[dict[str, Any]]:
    return list(admin(pipe, "purchases")["purchases"])


def zero_payments(pipe: Pipeline) -> list[dict[str, Any]]:
    return [p for p in merge_rows(pipe.merge, "payments") if p["total_amount"] == 0]


def rows_of(pipe: Pipeline, pay: dict[str, Any], action: str | None = None) -> list[dict[str, Any]]:
    return [r for r in log_rows(pipe, stream="payments", action=action) if r["source_id"] == str(pay["id"])]


def refund_link(pipe: Pipeline, pay: dict[str, Any]) -> Link | None:
    with pipe.ledger() as ledger:
        return ledger.get_link("coperniq", "payment", str(pay["id"]))


def account(pipe: Pipeline, name: str) -> dict[str, Any]:
    return next(r for r in pipe.merge.app.state.data.t("accounts").order if r["name"] == name)


@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_a_refunded_credit_is_a_check_to_receivables_linked_to_the_credit_memo(pipeline: Pipeline) -> None:
    credit, pay = refunded_credit(pipeline, **REFUND)
    run = pipeline.run()
    assert run.counts["payments"]["failed"] == 0
    [memo] = credit_memos(pipeline)
    memo_qbo = admin(pipeline, f"credit-notes/{memo['id']}")["qbo"]
    [check] = purchases(pipeline)
    assert check["PaymentType"] == "Check" and check["TotalAmt"] == 150.0
    assert check["AccountRef"]["value"] == account(pipeline, "Checking")["remote_id"]
    assert check["EntityRef"] == {"value": memo_qbo["CustomerRef"]["value"], "type": "Customer"}
    [line] = check["Line"]
    assert (
        line["AccountBasedExpenseLineDetail"]["AccountRef"]["value"]
        == (account(pipeline, "Accounts Receivable (A/R)")["remote_id"])
    )
    assert check["DocNumber"] == f"R-{memo['number']}-{pay['id']}" and str(pay["id"]) in check["PrivateNote"]
    [linking] = zero_payments(pipeline)
    assert linking["contact"] == memo["contact"]
    assert [
        (a["related_object_type"], a["related_object_id"], a["applied_amount"]) for a in linking["applied_to_lines"]
    ] == [("CREDIT_NOTE", memo["id"], "150.00")]
    payment_qbo = admin(pipeline, f"payments/{linking['id']}")["qbo"]
    assert sorted(
        (ln["LinkedTxn"][0]["TxnType"], ln["LinkedTxn"][0]["TxnId"], ln["Amount"]) for ln in payment_qbo["Line"]
    ) == [
        ("Check", check["Id"], 150.0),
        ("CreditMemo", memo["remote_id"], 150.0),
    ]
    assert credit_memos(pipeline)[0]["remaining_credit"] == 0.0  # the credit is used up: paid back
    link = refund_link(pipeline, pay)
    assert link is not None and link.target_type == CREDIT_REFUND and link.target_remote_id == payment_qbo["Id"]
    [logged] = rows_of(pipeline, pay, "updated")
    assert logged["reason"] == (
        f"refund of Coperniq credit {credit['id']}: check {check['DocNumber']} of 150.00 to Accounts Receivable and "
        "a payment linking it to the credit memo created in QuickBooks"
    )
    assert pipeline.run().writes == 0 and len(purchases(pipeline)) == 1 and len(zero_payments(pipeline)) == 1


def test_a_partial_refund_leaves_the_rest_of_the_credit_open(pipeline: Pipeline) -> None:
    refunded_credit(pipeline, amount=60.0, **REFUND)
    pipeline.run()
    assert [p["TotalAmt"] for p in purchases(pipeline)] == [60.0]
    assert credit_memos(pipeline)[0]["remaining_credit"] == 90.0


def test_without_refund_account_the_refund_is_skipped_naming_the_setting(pipeline: Pipeline) -> None:
    credit, pay = refunded_credit(pipeline)
    run = pipeline.run()
    assert run.counts["payments"]["failed"] == 0
    [skipped] = rows_of(pipeline, pay, "skipped")
    assert skipped["reason"] == (
        f"payment on Coperniq credit {credit['id']} (pushed as a QuickBooks credit memo) is money paid back; set "
        "refund_account to record it in QuickBooks (a check to Accounts Receivable linked to the credit memo)"
    )
    assert purchases(pipeline) == [] and zero_payments(pipeline) == []
    assert pipeline.run().writes == 0 and len(rows_of(pipeline, pay, "skipped")) == 1


@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_lost_answers_leave_one_check_and_one_payment(pipeline: Pipeline) -> None:
    _, pay = refunded_credit(pipeline, **REFUND)
    pipeline.merge.faults.update(lost_response_rate=1.0, only_paths=["/purchase?", "/payment?minorversion"])
    run = pipeline.run()
    pipeline.merge.faults.reset()
    assert run.counts["payments"]["failed"] == 0
    assert len(purchases(pipeline)) == 1 and len(zero_payments(pipeline)) == 1
    [logged] = rows_of(pipeline, pay, "updated")
    assert logged["reason"].endswith("; an answer was lost, and QuickBooks shows it (not made twice)")
    assert pipeline.run().writes == 0 and len(purchases(pipeline)) == 1 and len(zero_payments(pipeline)) == 1


def test_a_crash_between_the_check_and_the_payment_leaves_one_of_each(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, pay = refunded_credit(pipeline, **REFUND)
    killed_between_check_and_payment(pipeline, monkeypatch)
    assert len(purchases(pipeline)) == 1 and zero_payments(pipeline) == []
    with pipeline.ledger() as ledger:
        assert [k for k, _ in ledger.pending_intents("forward:credit_refund:")] == [
            f"forward:credit_refund:{pay['id']}"
        ]
    pipeline.run()
    assert len(purchases(pipeline)) == 1 and len(zero_payments(pipeline)) == 1
    assert credit_memos(pipeline)[0]["remaining_credit"] == 0.0
    with pipeline.ledger() as ledger:
        assert ledger.pending_intents("forward:") == []
    assert pipeline.run().writes == 0


def test_a_crash_after_both_writes_leaves_one_of_each(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    _, pay = refunded_credit(pipeline, **REFUND)
    with crash_before_recording_voids(monkeypatch, "forward:credit_refund:"), pytest.raises(Crash):
        pipeline.run()
    assert len(purchases(pipeline)) == 1 and len(zero_payments(pipeline)) == 1
    assert refund_link(pipeline, pay) is None
    pipeline.run()
    assert len(purchases(pipeline)) == 1 and len(zero_payments(pipeline)) == 1
    link = refund_link(pipeline, pay)
    assert link is not None and link.target_type == CREDIT_REFUND
    assert "by a run that stopped before recording it" in rows_of(pipeline, pay, "updated")[0]["reason"]
    assert pipeline.run().writes == 0


def test_a_refund_larger_than_the_credit_left_fails_with_the_reason(pipeline: Pipeline) -> None:
    project, inv, _ = start(pipeline, **REFUND)
    credit = add_credit(pipeline, project, price=-150, based_on=inv)  # applied to the open invoice: nothing left
    pipeline.run()
    assert credit_memos(pipeline)[0]["remaining_credit"] == 0.0
    pipeline.coperniq.app.allow_overpayment = True
    pay = pipeline.coperniq.app.add_payment(credit["id"], 150.0)
    run = pipeline.run()
    assert run.counts["payments"]["failed"] == 1
    [failed] = rows_of(pipeline, pay, "failed")
    assert "refund of 150.00 is more than the 0.00 credit memo" in failed["reason"]
    assert "retried next run" in failed["reason"]
    assert purchases(pipeline) == [] and zero_payments(pipeline) == []


def test_a_refund_taken_back_later_is_left_for_review_once(pipeline: Pipeline) -> None:
    credit, pay = refunded_credit(pipeline, **REFUND)
    pipeline.run()
    [check] = purchases(pipeline)
    set_payment_status(pipeline, credit, pay, "VOIDED")
    pipeline.run()
    [skipped] = rows_of(pipeline, pay, "skipped")
    assert skipped["reason"] == (
        f"refund of credit recorded in QuickBooks earlier is now VOIDED in Coperniq; left unchanged in QuickBooks: "
        f"review check {check['DocNumber']} and the payment linking it to the credit memo there"
    )
    assert len(purchases(pipeline)) == 1 and len(zero_payments(pipeline)) == 1
    assert pipeline.run().writes == 0 and len(rows_of(pipeline, pay, "skipped")) == 1


def test_an_unknown_refund_account_or_receivable_account_stops_the_run_naming_it(pipeline: Pipeline) -> None:
    start(pipeline)
    with pytest.raises(TargetError, match="refund_account 'No Such Bank'"):
        pipeline.run(refund_account="No Such Bank")
    with pytest.raises(TargetError, match="receivable_account 'Checking' is not an Accounts Receivable account"):
        pipeline.run(refund_account="Checking", receivable_account="Checking")


def test_the_reverse_leg_brings_nothing_of_the_refund_back(pipeline: Pipeline) -> None:
    _, pay = refunded_credit(pipeline, **REFUND)
    pipeline.run()
    before = {k: len(v) for k, v in pipeline.coperniq.state.payments.items()}
    reverse_run(pipeline.merge, pipeline.coperniq, pipeline.ledger_path, None)
    assert {k: len(v) for k, v in pipeline.coperniq.state.payments.items()} == before
    assert len(zero_payments(pipeline)) == 1 and refund_link(pipeline, pay) is not None


def test_a_refund_paid_from_an_other_current_asset_account_is_a_cash_expense(pipeline: Pipeline) -> None:
    """QuickBooks writes checks from Bank accounts only; from another account the refund is a Cash purchase, which
    a payment links as an `Expense`."""
    refunded_credit(pipeline, refund_account="Undeposited Funds")
    run = pipeline.run()
    assert run.counts["payments"]["failed"] == 0
    [cash] = purchases(pipeline)
    assert cash["PaymentType"] == "Cash"
    assert cash["AccountRef"]["value"] == account(pipeline, "Undeposited Funds")["remote_id"]
    [linking] = zero_payments(pipeline)
    payment_qbo = admin(pipeline, f"payments/{linking['id']}")["qbo"]
    assert {ln["LinkedTxn"][0]["TxnType"] for ln in payment_qbo["Line"]} == {"CreditMemo", "Expense"}


def test_two_refunds_of_one_credit_in_one_run_never_use_more_than_it_holds(pipeline: Pipeline) -> None:
    credit, first = refunded_credit(pipeline, amount=100.0, **REFUND)
    second = pipeline.coperniq.app.add_payment(credit["id"], 100.0)  # 200 paid back on a credit of 150
    run = pipeline.run()
    assert run.counts["payments"]["failed"] == 1
    assert len(purchases(pipeline)) == 1 and len(zero_payments(pipeline)) == 1  # no check without its link
    [failed] = [r for p in (first, second) for r in rows_of(pipeline, p, "failed")]
    assert "or by another refund of this run" in failed["reason"]
    assert credit_memos(pipeline)[0]["remaining_credit"] == 50.0


def test_a_refund_an_earlier_version_asked_to_record_by_hand_is_not_recorded_again(pipeline: Pipeline) -> None:
    from target_quickbooks_merge.credit_refunds import OLD_ADVICE

    credit, pay = refunded_credit(pipeline)
    pipeline.run()  # skipped: no refund_account
    with pipeline.ledger() as ledger:  # as the version before this one logged it
        ledger.log(
            "old-run",
            direction="forward",
            stream="payments",
            source_id=str(pay["id"]),
            action="skipped",
            reason=f"payment on Coperniq credit {credit['id']}: {OLD_ADVICE}",
        )
    pipeline.config.update(REFUND)  # the setting wakes the skipped row
    pipeline.run()
    assert purchases(pipeline) == [] and zero_payments(pipeline) == []
    assert (
        "asked for it to be recorded in QuickBooks by hand: not recorded again"
        in rows_of(pipeline, pay, "skipped")[0]["reason"]
    )
    assert pipeline.run().writes == 0


def test_setting_refund_account_records_a_refund_skipped_for_want_of_it(pipeline: Pipeline) -> None:
    _, pay = refunded_credit(pipeline)
    pipeline.run()
    assert purchases(pipeline) == []
    pipeline.config.update(REFUND)
    pipeline.run()
    assert len(purchases(pipeline)) == 1 and len(zero_payments(pipeline)) == 1
    assert rows_of(pipeline, pay, "updated")


def test_a_refund_begun_by_a_stopped_run_and_voided_since_is_said_for_review(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    credit, pay = refunded_credit(pipeline, **REFUND)
    killed_between_check_and_payment(pipeline, monkeypatch)
    [check] = purchases(pipeline)
    set_payment_status(pipeline, credit, pay, "VOIDED")
    pipeline.run()
    [skipped] = rows_of(pipeline, pay, "skipped")
    assert skipped["reason"] == (
        f"refund of credit begun by a run that stopped (check {check['DocNumber']} in QuickBooks) is now VOIDED in "
        "Coperniq; left in QuickBooks: review it there"
    )
    with pipeline.ledger() as ledger:
        assert ledger.pending_intents("forward:") == []
    assert zero_payments(pipeline) == [] and pipeline.run().writes == 0


def test_a_paid_back_credit_declined_later_is_not_zeroed_and_says_why(pipeline: Pipeline) -> None:
    """QuickBooks refuses a credit memo's total below what it has used, and a refund uses it: zeroing fails with
    both causes named, nothing changes, retried next run."""
    credit, _ = refunded_credit(pipeline, **REFUND)
    pipeline.run()
    coperniq_patch(pipeline.coperniq, f"/invoices/{credit['id']}", {"status": "DECLINED"})
    run = pipeline.run()
    assert run.counts["invoices"]["failed"] == 1
    [failed] = [
        r for r in log_rows(pipeline, stream="invoices", action="failed") if r["source_id"] == str(credit["id"])
    ]
    assert "if it was paid back (a refund check linked to it), review that refund there" in failed["reason"]
    [memo] = credit_memos(pipeline)
    assert memo["total_amount"] == 150.0 and memo["remaining_credit"] == 0.0
    assert link_of(pipeline, credit).status == "active"
