"""A Coperniq payment on a credit (money paid back to the customer) -> QuickBooks' refund of a credit memo.

QuickBooks records it in two transactions (Intuit's help "Refund a customer's credit"): a Check from the bank
account (`refund_account`) to Accounts Receivable for the customer, and a Payment of 0 that links the Check to the
Credit Memo (the Payment reference's `Line.LinkedTxn.TxnType` `Check`: "reimbursement for expense paid by check made
on behalf of the customer"; `Expense` for one paid from another account in cash; `CreditMemo`). The books end as
they should: the bank down, the customer's credit used up, income untouched (the credit memo already took it).
Merge's common models cannot say this (its payment lines link invoices, journal entries and credit notes, not a
check), so both go through passthrough.

Exactly once: one intent (`forward:credit_refund:<payment>`) is durable before the first call; each of the two
writes is looked up first (the check by DocNumber, the payment by PaymentRefNum, both `R-<credit memo>-<payment>`,
and the payment id in PrivateNote) and never resent blindly, so a lost answer, a crash between the two, or a refusal
of the second leaves one check and one payment. The link (`target_type` credit_refund) holds the payment's QuickBooks
Id; ledger meta `forward:credit_refund:payment:<id>` both Ids.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from sync_ledger import Link, fingerprint, to_money
from sync_ledger.rows import RowFailure
from sync_ledger.util import day_of
from sync_ledger.writer import PlannedWrite

from .context import QBO, SRC, Context
from .errors import ConfigRefused
from .merge_client import WriteError
from .merge_index import named_record
from .refunds import doc_number, recovery_note, refund_amount

#: The link target_type of a Coperniq payment recorded as a refund of credit.
CREDIT_REFUND = "credit_refund"
#: Refunds are logged `updated`, like refund receipts (refunds.REFUND_ACTION).
ACTION = "updated"
#: What versions before credit refunds logged for one, asking the bookkeeper to record it by hand.
OLD_ADVICE = "a refund of a credit is not synced; record it in QuickBooks as a Refund Receipt"
#: Merge's account_type of the account a refund is paid from -> QuickBooks' PaymentType and the TxnType linking it.
PAYMENT_TYPES = {"BANK": ("Check", "Check"), "OTHER_CURRENT_ASSET": ("Cash", "Expense")}


def intent_key(pay_id: str) -> str:
    return f"forward:credit_refund:{pay_id}"


def meta_key(pay_id: str) -> str:
    return f"forward:credit_refund:payment:{pay_id}"


def refund_date(pay: Mapping[str, Any]) -> str | None:
    """The day the money was paid back: the Coperniq payment's own date (a later edit does not move it)."""
    day = day_of(pay.get("paymentDate") or pay.get("createdAt"))
    return day.isoformat() if day else None


def private_note(pay_id: str) -> str:
    return f"Refund of credit, Coperniq payment {pay_id} (coperniq-quickbooks)"


@dataclass(frozen=True)
class Accounts:
    """QuickBooks Ids: the account refunds are paid from (and how: Check or Cash) and Accounts Receivable."""

    paid_from: str
    payment_type: str
    linked_as: str
    receivable: str | None  # None: QuickBooks shows no single one (why: `receivable_problem`)
    receivable_problem: str = ""


@dataclass(frozen=True)
class Plan:
    """What one refund sends: the check's body, and the body of the payment linking it to the credit memo (its line
    on the check is added once the check's Id is known)."""

    pay_id: str
    number: str
    amount: str
    check: dict[str, Any]
    payment: dict[str, Any]
    linked_as: str


@dataclass(frozen=True)
class Answer:
    check: dict[str, Any]
    payment: dict[str, Any]
    lost: bool = False
    found: bool = False  # both were there already (an interrupted run's)


class CreditRefunds:
    """Refunds of credit memos. Recorded when `refund_account` is set (the account the money is paid from)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._accounts: Accounts | None = None
        self._planned: dict[str, Decimal] = {}  # credit memo QuickBooks Id -> refunds planned on it this run

    @property
    def applies(self) -> bool:
        return bool(self.ctx.s.refund_account)

    def accounts(self) -> Accounts:
        """refund_account and the Accounts Receivable account, resolved once (ConfigRefused naming the setting)."""
        if self._accounts is None:
            s = self.ctx.s
            records = [r for r in self.ctx.client.settings_list("/accounts") if not r.get("remote_was_deleted")]
            paid = named_record(records, str(s.refund_account))
            if paid is None:
                raise ConfigRefused(f"refund_account {s.refund_account!r} is not an account in QuickBooks")
            kind = PAYMENT_TYPES.get(str(paid.get("account_type")))
            if kind is None:
                raise ConfigRefused(
                    f"refund_account {s.refund_account!r} is a {paid.get('account_type')} account; a refund is paid "
                    "from a Bank or Other Current Asset account"
                )
            self._accounts = Accounts(str(paid["remote_id"]), kind[0], kind[1], *self._receivable(records))
        return self._accounts

    def receivable(self) -> str:
        """The Accounts Receivable account's QuickBooks Id; RowFailure naming receivable_account when the company
        has several (or Merge shows none), so a company that refunds no credit never stops on it."""
        accounts = self.accounts()
        if accounts.receivable is None:
            raise RowFailure(accounts.receivable_problem)
        return accounts.receivable

    def _receivable(self, records: list[dict[str, Any]]) -> tuple[str | None, str]:
        """(QuickBooks Id, "") of the Accounts Receivable account, or (None, why) when the company has not one."""
        wanted = self.ctx.s.receivable_account
        if wanted:
            found = named_record(records, wanted)
            if found is None or found.get("account_type") != "ACCOUNTS_RECEIVABLE":
                raise ConfigRefused(f"receivable_account {wanted!r} is not an Accounts Receivable account")
            return str(found["remote_id"]), ""
        ar = [r for r in records if r.get("account_type") == "ACCOUNTS_RECEIVABLE" and r.get("remote_id")]
        if len(ar) != 1:
            return None, (
                f"receivable_account: QuickBooks shows {len(ar)} Accounts Receivable accounts; name the one a "
                "refunded credit's check goes to"
            )
        return str(ar[0]["remote_id"]), ""

    def recorded_by_hand(self, pay_id: str, status: str) -> bool:
        """Versions before this one skipped a refund of credit telling the bookkeeper to record it in QuickBooks by
        hand: such a payment is never recorded again (that would pay the money out twice in the books)."""
        logged = self.ctx.ledger.log_rows(stream="payments", action="skipped", search=pay_id, limit=20)
        if not any(r["source_id"] == pay_id and OLD_ADVICE in str(r["reason"]) for r in logged):
            return False
        if status != "skipped":
            self.ctx.skip(
                "payments",
                pay_id,
                "refund of credit skipped by an earlier version, which asked for it to be recorded in QuickBooks by "
                "hand: not recorded again",
            )
        return True

    def interrupted(self, pay_id: str, pay_status: str) -> bool:
        """A refund a run began and did not record (its intent left) of a payment Coperniq now shows taken back:
        what QuickBooks holds of it is said once for review and the intent ends. False when it made nothing."""
        ctx = self.ctx
        key = intent_key(pay_id)
        if key not in ctx.leftover or ctx.dry:
            return False
        number = str(ctx.leftover[key].get("doc_number") or "")
        check = self._find("Purchase", "DocNumber", number, pay_id) if number else None
        payment = self._find("Payment", "PaymentRefNum", number, pay_id) if number else None
        ctx.end(key)
        if check is None and payment is None:
            return False
        made = f"check {number}" + (" and the payment linking it to the credit memo" if payment else "")
        ctx.skip(
            "payments",
            pay_id,
            f"refund of credit begun by a run that stopped ({made} in QuickBooks) is now {pay_status} in Coperniq; "
            "left in QuickBooks: review it there",
        )
        return True

    def refund(self, pay_id: str, pay: Mapping[str, Any], credit: Link, status: str) -> None:
        """A payment on a pushed credit, not recorded yet: recorded with refund_account set (unless an earlier
        version asked for it to be recorded by hand), else skipped naming the setting."""
        if not self.applies:
            self._skipped(pay_id, str(pay.get("invoiceId")), status)
        elif not self.recorded_by_hand(pay_id, status):
            self.plan(pay_id, pay, credit)

    def _skipped(self, pay_id: str, inv_id: str, status: str) -> None:
        """refund_account unset: the refund is not recorded, said once."""
        if status != "skipped":
            self.ctx.skip(
                "payments",
                pay_id,
                f"payment on Coperniq credit {inv_id} (pushed as a QuickBooks credit memo) is money paid back; set "
                "refund_account to record it in QuickBooks (a check to Accounts Receivable linked to the credit memo)",
            )

    def known(self, pay_id: str, link: Link, pay: Mapping[str, Any], taken_back: str | None, status: str) -> None:
        """A refund recorded earlier: unchanged is done; taken back (`taken_back`: its status) or changed in
        Coperniq is left for review (the check may be printed or cleared by the bank), said once."""
        ctx = self.ctx
        if taken_back is None and link.fingerprint == self._fingerprint(pay):
            ctx.mark("payments", pay_id, "done")
            return
        if status == "skipped":
            return
        number = json.loads(ctx.ledger.get_meta(meta_key(pay_id)) or "{}").get("doc_number") or "?"
        what = f"is now {taken_back} in Coperniq" if taken_back else "changed in Coperniq"
        ctx.skip(
            "payments",
            pay_id,
            f"refund of credit recorded in QuickBooks earlier {what}; left unchanged in QuickBooks: review check "
            f"{number} and the payment linking it to the credit memo there",
            target_id=link.target_remote_id,
        )

    @staticmethod
    def _fingerprint(pay: Mapping[str, Any]) -> str:
        return fingerprint({"amount": str(to_money(pay.get("amount") or 0)), "invoice": str(pay.get("invoiceId"))})

    def plan(self, pay_id: str, pay: Mapping[str, Any], credit: Link) -> None:
        """The check and its linking payment with the next batch (a dry run only logs the plan)."""
        ctx = self.ctx
        inv_id = str(pay.get("invoiceId"))
        if ctx.dry:
            reason = f"refund of Coperniq credit {inv_id}: a check and a payment linking it would be made in QuickBooks"
            ctx.record("payments", pay_id, ACTION, reason, target_id=credit.target_id)
            return
        amount = refund_amount(pay, "refund of a credit has no amount: nothing can be recorded")
        accounts = self.accounts()
        receivable = self.receivable()
        memo = self._credit_memo(credit)
        leftover = ctx.leftover.get(intent_key(pay_id)) or {}
        number = str(leftover.get("doc_number") or doc_number(str(memo.get("DocNumber") or memo.get("Id")), pay_id))
        customer = str((memo.get("CustomerRef") or {}).get("value") or "")
        if not customer:
            raise RowFailure(f"QuickBooks credit memo {memo.get('Id')} has no customer: no refund recorded")
        memo_id = str(memo["Id"])
        left = to_money(memo.get("RemainingCredit") or 0) - self._planned.get(memo_id, to_money(0))
        if amount > left and not self._made(number, pay_id):
            raise RowFailure(
                f"refund of {amount} is more than the {left} credit memo {memo.get('DocNumber')} has left in "
                "QuickBooks (used on an invoice there, or by another refund of this run?); correct it in one place, "
                "retried next run"
            )
        self._planned[memo_id] = self._planned.get(memo_id, to_money(0)) + amount
        note = private_note(pay_id)
        check = {
            "PaymentType": accounts.payment_type,
            "AccountRef": {"value": accounts.paid_from},
            "EntityRef": {"value": customer, "type": "Customer"},
            "TxnDate": refund_date(pay),
            "DocNumber": number,
            "PrivateNote": note,
            "Line": [
                {
                    "DetailType": "AccountBasedExpenseLineDetail",
                    "Amount": amount,  # a JSON number (passthrough_body), never a float
                    "Description": f"Refund of credit memo {memo.get('DocNumber') or memo.get('Id')}",
                    "AccountBasedExpenseLineDetail": {
                        "AccountRef": {"value": receivable},
                        "CustomerRef": {"value": customer},
                    },
                }
            ],
        }
        payment = {
            "CustomerRef": {"value": customer},
            "TotalAmt": 0,
            "TxnDate": refund_date(pay),
            "PaymentRefNum": number,
            "ARAccountRef": {"value": receivable},
            "PrivateNote": note,
            "Line": [{"Amount": amount, "LinkedTxn": [{"TxnId": memo_id, "TxnType": "CreditMemo"}]}],
        }
        plan = Plan(pay_id, number, str(amount), check, payment, accounts.linked_as)
        intent = {"kind": "credit_refund", "credit": credit.target_id, "doc_number": number, "amount": str(amount)}
        finish = partial(self._finish, pay_id, pay, plan)
        ctx.writer.plan(
            PlannedWrite(
                "payments", pay_id, intent_key(pay_id), intent, partial(self._send, plan), finish, self._refused
            )
        )

    def _credit_memo(self, credit: Link) -> dict[str, Any]:
        """QuickBooks' own credit memo (its customer, DocNumber and what it has left), read through passthrough."""
        client = self.ctx.client
        qbo_id = credit.target_remote_id or str(
            client.api.get(f"/credit-notes/{credit.target_id}").get("remote_id") or ""
        )
        found = client.query_qbo("CreditMemo", "Id", qbo_id) if qbo_id else []
        if not found:
            raise RowFailure(f"QuickBooks has no credit memo {qbo_id or credit.target_id}: no refund recorded")
        return found[0]

    def _made(self, number: str, pay_id: str) -> bool:
        """Did an earlier attempt make the check already (then the credit it used is ours)?"""
        return self._find("Purchase", "DocNumber", number, pay_id) is not None

    def _find(self, entity: str, field_name: str, number: str, pay_id: str) -> dict[str, Any] | None:
        note = private_note(pay_id)
        hits = [
            r for r in self.ctx.client.query_qbo(entity, field_name, number) if note in str(r.get("PrivateNote") or "")
        ]
        return hits[0] if hits else None

    def _send(self, plan: Plan) -> Answer:
        """On a writer thread: the check, then the payment linking it to the credit memo, each looked up first."""
        check, had_check, lost_check = self._found_or_made(
            "Purchase", "DocNumber", plan, plan.check, "QuickBooks refused the refund's check"
        )
        to_check = {
            "Amount": to_money(plan.amount),
            "LinkedTxn": [{"TxnId": str(check["Id"]), "TxnType": plan.linked_as}],
        }
        payment, had_payment, lost_payment = self._found_or_made(
            "Payment",
            "PaymentRefNum",
            plan,
            {**plan.payment, "Line": [*plan.payment["Line"], to_check]},
            f"check {plan.number} is in QuickBooks, but QuickBooks refused the payment linking it to the credit memo "
            "(link them there by hand, or delete the check)",
        )
        return Answer(check, payment, lost=lost_check or lost_payment, found=had_check and had_payment)

    def _found_or_made(
        self, entity: str, field_name: str, plan: Plan, body: dict[str, Any], refused: str
    ) -> tuple[dict[str, Any], bool, bool]:
        """(record, it was there already, its create's answer was lost): our `entity` of this refund as QuickBooks
        shows it, else created (send_checked: a lost answer is looked up before anything is sent again)."""
        found = self._find(entity, field_name, plan.number, plan.pay_id)
        if found is not None:
            return found, True, False
        lost = False

        def lookup() -> dict[str, Any] | None:
            nonlocal lost
            hit = self._find(entity, field_name, plan.number, plan.pay_id)
            lost = lost or hit is not None
            return hit

        made = self.ctx.client.send_checked(lambda: self.ctx.client.create_qbo(entity, body, refused).model, lookup)
        return made, False, lost

    def _refused(self, exc: Exception) -> None:
        if isinstance(exc, WriteError) and not exc.ambiguous:
            raise RowFailure(f"{exc.detail}; retried next run", exc.request_id) from exc
        raise exc

    def _finish(self, pay_id: str, pay: Mapping[str, Any], plan: Plan, answer: Answer) -> None:
        """Both Ids to meta, then the link and the intent's clear in one journal batch, then the log."""
        ctx = self.ctx
        ids = {
            "check": str(answer.check.get("Id")),
            "payment": str(answer.payment.get("Id")),
            "doc_number": plan.number,
        }
        ctx.ledger.set_meta(meta_key(pay_id), json.dumps(ids))
        link = Link(SRC, "payment", pay_id, QBO, CREDIT_REFUND, None, ids["payment"], self._fingerprint(pay))
        ctx.commit_create(link, intent_key(pay_id))
        note = recovery_note(answer.lost, answer.found, answer="an answer", made="made")
        reason = (
            f"refund of Coperniq credit {pay.get('invoiceId')}: check {plan.number} of {plan.amount} to Accounts "
            f"Receivable and a payment linking it to the credit memo created in QuickBooks{note}"
        )
        ctx.record("payments", pay_id, ACTION, reason, target_id=ids["payment"])
        ctx.mark("payments", pay_id, "done")
