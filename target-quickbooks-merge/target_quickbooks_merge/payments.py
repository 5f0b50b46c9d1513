"""Coperniq payments of synced invoices -> QuickBooks payments applied to those invoices."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from sync_ledger import Link, fingerprint, to_money
from sync_ledger.rows import RowFailure, Wait, link_key
from sync_ledger.util import PAYMENT_DATE_SLACK, closest_by_day, day_of

from .context import QBO, SRC, Context, link_for
from .credit_notes import CREDIT_NOTE
from .credit_refunds import CREDIT_REFUND, CreditRefunds
from .invoices import InvoiceSync
from .mapping import payment_payload
from .merge_client import WriteResult
from .merge_index import deposit_account_id
from .payment_changes import REPLACED, PaymentChanges
from .payment_deletes import PaymentDeletes, payment_status
from .payment_voids import VOID_PAYMENT_STATUSES, PaymentVoids
from .writes import create_model

#: Not pushed in these statuses; a pushed payment that moves to one of VOID_PAYMENT_STATUSES follows void_policy.
SKIP_PAYMENT_STATUSES = VOID_PAYMENT_STATUSES | {"PENDING"}


class PaymentSync:
    """Payments: created (batched) on the synced invoice, never twice, never more than QuickBooks shows open."""

    def __init__(self, ctx: Context, invoices: InvoiceSync) -> None:
        self.ctx = ctx
        self.invoices = invoices
        self._deposit_account: str | None = None
        self.voids = PaymentVoids(ctx, invoices.taxes)  # void_policy: pushed payments Coperniq takes back
        self.changes = PaymentChanges(ctx)  # pushed payments Coperniq changed
        self.credit_refunds = CreditRefunds(ctx)  # payments on credits: money paid back

    def sync(self) -> None:
        ctx = self.ctx
        if not ctx.s.invoice_sync:
            return
        PaymentDeletes(ctx).sweep()  # payments deleted in Coperniq: re-staged as deleted, voided below
        for pay_id, pay, status, _ in ctx.todo("payments", prefetch=("invoices",)):
            if "__invalid__" in pay:
                continue
            ctx.guard(
                "payments",
                pay_id,
                partial(self._payment, pay_id, pay, status),
                status,
            )
        ctx.writer.flush_all()

    def check_settings(self) -> None:
        """What the settings name in QuickBooks for payments, resolved before anything is written (ConfigRefused
        naming the setting): the refund account and item of refund_policy: refund_receipt, the accounts of a refunded
        credit."""
        refunds = self.voids.refunds
        if self.ctx.s.invoice_sync and refunds.applies and not self.ctx.dry:
            refunds.refs()
        if self.ctx.s.invoice_sync and self.credit_refunds.applies and not self.ctx.dry:
            self.credit_refunds.accounts()

    def _deposit_account_id(self) -> str:
        if self._deposit_account is None:
            self._deposit_account = deposit_account_id(self.ctx.client, self.ctx.s.payment_account)
        return self._deposit_account

    def _payment(self, pay_id: str, pay: Mapping[str, Any], status: str) -> None:
        ctx = self.ctx
        if ctx.echo("payments", "payment", pay_id, status, pay):
            return
        pay_status = payment_status(pay)  # DELETED: gone from its invoice's list (payment_deletes.py)
        link = ctx.links.get("payment", pay_id)
        if link is not None and link.target_type == CREDIT_REFUND:
            taken_back = pay_status if pay_status in VOID_PAYMENT_STATUSES else None
            self.credit_refunds.known(pay_id, link, pay, taken_back, status)
            return
        again = None
        if link is not None and self.changes.settled(pay_id, link).status == REPLACED:
            link = None  # voided in QuickBooks to be created again (payment_changes.py): created below
            again = "created again (its earlier QuickBooks payment was voided when its amount changed)"
        if link is not None and pay_status in VOID_PAYMENT_STATUSES:  # pushed earlier: voided or left
            self.voids.left(pay_id, link, pay_status, status, pay)
            return
        if pay_status in SKIP_PAYMENT_STATUSES:
            if link is None and self.credit_refunds.interrupted(pay_id, pay_status):
                return
            if status != "skipped":
                ctx.skip("payments", pay_id, f"payment status is {pay_status}")
            return
        if link is not None and self.voids.back(pay_id, link, pay_status, status):
            return
        inv_id = str(pay.get("invoiceId"))
        inv_link = ctx.links.get("invoice", inv_id)
        if inv_link is None or not inv_link.target_id:
            raise Wait(f"invoice {inv_id} is not synced to QuickBooks yet", on=link_key("invoice", inv_id))
        if inv_link.target_type == CREDIT_NOTE:  # money paid back on a credit (credit_refunds.py)
            self.credit_refunds.refund(pay_id, pay, inv_link, status)
            return
        invoice = ctx.ledger.staged(SRC, "invoices", inv_id) or {}
        contact = self.invoices.contact_of(invoice)
        if not pay.get("paymentDate") and not pay.get("createdAt"):
            raise RowFailure("payment has no paymentDate (QuickBooks needs a transaction date)")
        if not pay.get("amount"):
            raise RowFailure("payment has no amount")
        desired = payment_payload(
            pay, contact_id=contact, account_id=self._deposit_account_id(), invoice_id=str(inv_link.target_id)
        )
        fp = fingerprint(desired)
        if link is not None:
            if link.fingerprint == fp:
                ctx.mark("payments", pay_id, "done")
                return
            self.changes.update(pay_id, link, desired, fp, partial(self._create, pay_id, contact, desired, fp))
            return
        if inv_link.origin == QBO and self._link_twin(pay_id, contact, desired, inv_id):
            return
        if self._recover(pay_id, contact, desired, fp):
            return
        self._create(pay_id, contact, desired, fp, again or f"applied to invoice {inv_id}")

    def _create(self, pay_id: str, contact: str, desired: dict[str, Any], fp: str, why: str) -> None:
        ctx = self.ctx

        def created(link: Link, res: WriteResult) -> None:
            ctx.record("payments", pay_id, "created", why, target_id=link.target_id, write=res)
            ctx.mark("payments", pay_id, "done")

        create_model(ctx, "payment", pay_id, desired, fp, None, created, partial(self._find, contact, desired))

    def _recover(self, pay_id: str, contact: str, desired: Mapping[str, Any], fp: str) -> bool:
        """A create left by an interrupted run: link the payment it made, if it made one."""
        ctx = self.ctx
        intent_key = f"forward:payment:{pay_id}"
        if intent_key not in ctx.leftover:
            return False
        found = self._find(contact, desired)
        ctx.end(intent_key)
        if found is None:
            return False
        link = link_for("payment", pay_id, "payment", found, fp)
        ctx.save_link(link)
        ctx.record(
            "payments",
            pay_id,
            "linked",
            "recovered payment created by an interrupted run (no duplicate created)",
            target_id=link.target_id,
        )
        ctx.mark("payments", pay_id, "done")
        return True

    def _link_twin(self, pay_id: str, contact: str, desired: Mapping[str, Any], inv_id: str) -> bool:
        """The invoice was matched in QuickBooks (not created by us), so QuickBooks may already show this payment:
        link its twin (same amount applied to the invoice, within PAYMENT_DATE_SLACK days) instead of paying it
        twice; a payment larger than the invoice's open balance there is a failed row, never an overpayment."""
        ctx = self.ctx
        twin = self._find(contact, desired, date_slack_days=PAYMENT_DATE_SLACK)
        if twin is not None:
            link = link_for("payment", pay_id, "payment", twin, fingerprint(desired), origin=QBO)
            ctx.save_link(link)
            ctx.record(
                "payments",
                pay_id,
                "linked",
                f"QuickBooks already shows this payment on the matched invoice "
                f"({twin.get('total_amount')} on {str(twin.get('transaction_date') or '')[:10]}): linked, "
                "not paid twice",
                target_id=link.target_id,
            )
            ctx.mark("payments", pay_id, "done")
            return True
        invoice_id = desired["applied_to_lines"][0]["related_object_id"]
        invoice = None if ctx.dry else ctx.client.api.get(f"/invoices/{invoice_id}")
        balance = (invoice or {}).get("balance")
        if balance is not None and to_money(desired["total_amount"]) > to_money(balance):
            number = (invoice or {}).get("number") or invoice_id
            raise RowFailure(
                f"payment of {desired['total_amount']} is more than the open balance {to_money(balance)} QuickBooks "
                f"shows on matched invoice {number} (Coperniq invoice {inv_id}); it was probably "
                "recorded there differently: record it in one place"
            )
        return False

    def _find(self, contact: str, desired: Mapping[str, Any], *, date_slack_days: int = 0) -> dict[str, Any] | None:
        """Natural key of a payment: same contact, amount, date (within `date_slack_days`; the closest wins) and
        applied invoice, not linked to another one."""
        invoice_id = desired["applied_to_lines"][0]["related_object_id"]
        same = []
        for payment in self.ctx.client.payments_for_contact(contact):
            if str(payment.get("id")) in self.ctx.links.targets or payment.get("remote_was_deleted"):
                continue
            if to_money(payment.get("total_amount") or 0) != to_money(desired["total_amount"]):
                continue
            applied = payment.get("applied_to_lines") or []
            if applied and not any(
                isinstance(a, dict) and str(a.get("related_object_id")) == invoice_id for a in applied
            ):
                continue
            same.append(payment)
        return closest_by_day(
            same, day_of(desired.get("transaction_date")), lambda p: p.get("transaction_date"), date_slack_days
        )
