"""`refund_policy: refund_receipt`: a pushed payment Coperniq shows REFUNDED stays in QuickBooks (the money was
received and deposited) and a QuickBooks Refund Receipt records the money paid back.

Merge's common model has no refund receipt, so it is created through passthrough (`POST .../refundreceipt`). It is
announced by a write-ahead intent (`forward:refund:payment:<id>`) made durable with its batch before the call, sent
without blind retries (a lost answer is looked up by DocNumber and the payment id in PrivateNote before anything
is sent again), and recorded as the link's status `refunded` with the intent's clear in one journal batch; the
receipt's QuickBooks Id goes to ledger meta `forward:refund_receipt:payment:<id>`. An intent left by a crash is
settled by the same lookup, never by creating another receipt.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import partial
from typing import Any

from sync_ledger import Link, to_money
from sync_ledger.rows import RowFailure, Wait
from sync_ledger.util import day_of
from sync_ledger.writer import PlannedWrite

from .context import Context
from .merge_client import WriteError, WriteResult
from .merge_index import qbo_id_of
from .taxes import TaxBook

#: The link status of a payment refunded by a refund receipt (the QuickBooks payment stays).
REFUNDED = "refunded"
#: QuickBooks keeps at most 21 characters of a DocNumber.
DOC_NUMBER_LIMIT = 21
#: A refund is logged `updated` (the ledger's LOG_ACTIONS has no refund action).
REFUND_ACTION = "updated"


def intent_key(pay_id: str) -> str:
    return f"forward:refund:payment:{pay_id}"


def meta_key(pay_id: str) -> str:
    return f"forward:refund_receipt:payment:{pay_id}"


def doc_number(invoice_number: str, pay_id: str) -> str:
    """`R-<invoice number>-<payment id>`: deterministic, and one per payment (an invoice may have several refunded);
    `R-<payment id>` when that is longer than QuickBooks keeps."""
    full = f"R-{invoice_number}-{pay_id}"
    return full if len(full) <= DOC_NUMBER_LIMIT else f"R-{pay_id}"[:DOC_NUMBER_LIMIT]


def recovery_note(lost: bool, recovered: bool, *, answer: str = "its answer", made: str = "created") -> str:
    """What a refund's log line adds when its write was found rather than answered (a lost answer, or a run that
    stopped before recording it)."""
    if lost:
        return f"; {answer} was lost, and QuickBooks shows it (not {made} twice)"
    if recovered:
        return f" by a run that stopped before recording it; recorded now (not {made} twice)"
    return ""


def refund_amount(pay: Mapping[str, Any], nothing: str) -> Decimal:
    """A refund's amount, or RowFailure(`nothing`) when it has none."""
    if not pay.get("amount") or to_money(pay["amount"]) <= 0:
        raise RowFailure(nothing)
    return to_money(pay["amount"])


def private_note(pay_id: str) -> str:
    return f"Refund of Coperniq payment {pay_id} (coperniq-quickbooks)"


def txn_date(pay: Mapping[str, Any]) -> str | None:
    """The day Coperniq last changed the payment (its refund), as QuickBooks dates are written."""
    day = day_of(pay.get("updatedAt") or pay.get("paymentDate"))
    return day.isoformat() if day else None


@dataclass(frozen=True)
class RefundAnswer:
    """The receipt QuickBooks shows; `lost`: our create's answer was lost; `recovered`: an interrupted run's."""

    receipt: dict[str, Any]
    lost: bool = False
    recovered: bool = False
    request_id: str | None = None


class Refunds:
    """Refund receipts of refunded payments. The account, item and (non-US) tax code are resolved once (at the start
    of the run: PaymentSync.check_settings)."""

    def __init__(self, ctx: Context, taxes: TaxBook) -> None:
        self.ctx = ctx
        self.taxes = taxes
        self._refs: tuple[str, str, str | None] | None = None

    @property
    def applies(self) -> bool:
        return self.ctx.s.refund_policy == "refund_receipt"

    def refs(self) -> tuple[str, str, str | None]:
        """(account, item, tax code or None) QuickBooks Ids of refund_account, refund_item and refund_tax_code:
        ConfigRefused naming the setting."""
        if self._refs is None:
            s, client = self.ctx.s, self.ctx.client
            account = qbo_id_of(client, "/accounts", str(s.refund_account), "refund_account")
            item = qbo_id_of(client, "/items", str(s.refund_item), "refund_item")
            self._refs = (account, item, self.taxes.refund_code())
        return self._refs

    def find(self, number: str, pay_id: str) -> dict[str, Any] | None:
        """Our receipt of this payment in QuickBooks: its DocNumber and the payment id in its PrivateNote."""
        note = private_note(pay_id)
        hits = [r for r in self.ctx.client.refund_receipts(number) if note in str(r.get("PrivateNote") or "")]
        return hits[0] if hits else None

    def settled(self, pay_id: str, link: Link) -> Link:
        """A refund an interrupted run (or a lost answer) left unrecorded: QuickBooks says whether it was made."""
        ctx = self.ctx
        key = intent_key(pay_id)
        if key not in ctx.leftover or ctx.dry:
            return link
        number = str(ctx.leftover[key].get("doc_number") or "")
        found = self.find(number, pay_id) if number and link.status == "active" else None
        if found is None:
            ctx.end(key)
            return link
        return self.commit(pay_id, link, RefundAnswer(found, recovered=True))

    def plan(self, pay_id: str, link: Link, pay: dict[str, Any]) -> None:
        """Create the refund receipt with the next batch (a dry run only logs the plan)."""
        ctx = self.ctx
        why = "payment is REFUNDED in Coperniq"
        if ctx.dry:
            reason = f"{why}; a refund receipt would be created in QuickBooks (the payment stays)"
            ctx.record("payments", pay_id, REFUND_ACTION, reason, target_id=link.target_id)
            return
        refund_amount(pay, "refunded payment has no amount: no refund receipt can be made")
        account, item, tax_code = self.refs()
        invoice = self._invoice(str(pay.get("invoiceId")))
        number = doc_number(str(invoice.get("DocNumber") or invoice.get("Id")), pay_id)
        customer = (invoice.get("CustomerRef") or {}).get("value")
        if not customer:
            raise RowFailure(f"QuickBooks invoice {invoice.get('Id')} has no customer: no refund receipt")
        amount = str(to_money(pay["amount"]))
        body = {
            "CustomerRef": {"value": str(customer)},
            "DepositToAccountRef": {"value": account},
            "TxnDate": txn_date(pay),
            "DocNumber": number,
            "PrivateNote": private_note(pay_id),
            "Line": [
                {
                    "DetailType": "SalesItemLineDetail",
                    "Amount": to_money(amount),  # a JSON number (passthrough_body), never a float
                    "Description": f"Refund of payment {pay_id}",
                    "SalesItemLineDetail": {
                        "ItemRef": {"value": item},
                        **({"TaxCodeRef": {"value": tax_code}} if tax_code else {}),
                    },
                }
            ],
        }
        intent = {"kind": "payment_refund", "merge_id": link.target_id, "doc_number": number, "amount": amount}
        send = partial(self._send, body, number, pay_id)
        finish = partial(self._finish, pay_id, link)
        ctx.writer.plan(PlannedWrite("payments", pay_id, intent_key(pay_id), intent, send, finish, self._refused))

    def _invoice(self, inv_id: str) -> dict[str, Any]:
        """QuickBooks' own invoice of the payment (its job and DocNumber)."""
        ctx = self.ctx
        inv_link = ctx.links.get("invoice", inv_id)
        if inv_link is None or not inv_link.target_id:
            raise Wait(f"invoice {inv_id} of the refunded payment is not linked")
        qbo_id = inv_link.target_remote_id or str(ctx.client.invoice(inv_link.target_id).get("remote_id") or "")
        found = ctx.client.qbo_transaction("Invoice", qbo_id) if qbo_id else None
        if found is None:
            raise RowFailure(f"QuickBooks has no invoice {qbo_id or inv_link.target_id}: no refund receipt made")
        return found

    def _send(self, body: dict[str, Any], number: str, pay_id: str) -> RefundAnswer:
        """On a writer thread: create it; after a lost answer look it up before sending again (send_checked)."""
        client = self.ctx.client

        def create() -> RefundAnswer:
            res: WriteResult = client.create_refund_receipt(body)
            return RefundAnswer(res.model, request_id=res.request_id)

        def lookup() -> RefundAnswer | None:
            hit = self.find(number, pay_id)
            return None if hit is None else RefundAnswer(hit, lost=True)

        return client.send_checked(create, lookup)

    def _refused(self, exc: Exception) -> None:
        if isinstance(exc, WriteError) and not exc.ambiguous:
            raise RowFailure(f"QuickBooks refused the refund receipt: {exc.detail}", exc.request_id) from exc
        raise exc

    def _finish(self, pay_id: str, link: Link, answer: RefundAnswer) -> None:
        self.commit(pay_id, link, answer)
        self.ctx.mark("payments", pay_id, "done")

    def commit(self, pay_id: str, link: Link, answer: RefundAnswer) -> Link:
        """The receipt's Id to meta, then the link's status and the intent's clear in one journal batch."""
        ctx = self.ctx
        receipt = answer.receipt
        number = str(receipt.get("DocNumber") or "")
        ctx.ledger.set_meta(meta_key(pay_id), json.dumps({"qbo_id": str(receipt.get("Id")), "doc_number": number}))
        settled = replace(link, status=REFUNDED)
        ctx.commit_create(settled, intent_key(pay_id))
        note = recovery_note(answer.lost, answer.recovered)
        reason = (
            f"payment is REFUNDED in Coperniq; refund receipt {number} created in QuickBooks (the payment stays){note}"
        )
        ctx.record("payments", pay_id, REFUND_ACTION, reason, target_id=link.target_id, request_id=answer.request_id)
        return settled
