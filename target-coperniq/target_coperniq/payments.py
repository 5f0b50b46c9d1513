"""QuickBooks customer payments -> Coperniq payments, one per invoice a payment is applied to."""

from __future__ import annotations

from decimal import Decimal
from functools import partial
from typing import Any

from sync_ledger import Link, fingerprint, to_money
from sync_ledger.rows import Outcome
from sync_ledger.util import PAYMENT_DATE_SLACK, closest_by_day, day_of
from target_coperniq.context import FORWARD_ECHO, FORWARD_IN_FLIGHT, INTENT_PREFIX, NOT_SYNCED, SOURCE, TARGET, Context
from target_coperniq.lookups import Lookups
from target_coperniq.mapping import invoice_applications, payment_body, payment_source_id
from target_coperniq.writes import Decision, Write

#: Coperniq payments that hold no money (a twin is never one of these).
VOID_STATUSES = frozenset({"VOIDED", "FAILED", "DECLINED", "CANCELLED", "REFUNDED"})
#: The forward leg's link of a refund of credit: its QuickBooks Payment of 0 (the forward credit_refunds.py).
CREDIT_REFUND = "credit_refund"
CENT = Decimal("0.01")  # re-exported by target_coperniq.reconcile; amounts are rounded by sync_ledger.money


class PaymentRules:
    """Coperniq payments cannot be edited or deleted through the API, so each is created once, never twice:
    not when a crash interrupted the create, nor when the same payment was already recorded in Coperniq."""

    def __init__(self, ctx: Context, lookups: Lookups) -> None:
        self.ctx = ctx
        self.lookups = lookups
        self._claimed_payments: set[str] | None = None

    def payment(self, rid: str, pay: dict[str, Any], final: bool) -> list[Decision]:
        if (pay.get("type") or "ACCOUNTS_RECEIVABLE").upper() != "ACCOUNTS_RECEIVABLE":
            return [Outcome("skipped", rid, "skipped", "bill payment (accounts payable)")]
        if self.lookups.forward_link("payment", rid, pay.get("remote_id")) or self.lookups.forward_link(
            CREDIT_REFUND, rid, pay.get("remote_id")
        ):
            return [Outcome("skipped", rid, "skipped", FORWARD_ECHO)]
        applications = invoice_applications(pay)
        if not applications:
            return [Outcome("skipped", rid, "skipped", "not applied to any invoice")]
        if pay.get("contact") and self.lookups.record_for(pay["contact"]) is None:
            return [Outcome("wait", rid, reason=NOT_SYNCED)]
        known = any(
            self.lookups.reverse_link("payment", payment_source_id(rid, inv, applications))
            for inv, _, _ in applications
        )
        if not known and not pay.get("remote_was_deleted") and self.lookups.forward_in_flight("payment"):
            return [Outcome("wait", rid, reason=FORWARD_IN_FLIGHT)]
        return [self._application(rid, pay, invoice_id, amount, applications) for invoice_id, amount, _ in applications]

    def _twin_payment(self, invoice: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """A Coperniq payment on this invoice that this QuickBooks payment mirrors (the same amount, dated within
        PAYMENT_DATE_SLACK days) and that no link claims yet: a payment recorded in both systems before the
        forward leg linked them. Importing it would count the money twice in Coperniq. Never one this leg created
        in a run a crash interrupted (its reference has an open intent: a batch can leave several)."""
        claimed = self._claimed()
        same = [
            p
            for p in self.ctx.api.payments(invoice)
            if str(p.get("id")) not in claimed
            and f"{INTENT_PREFIX}payment:{p.get('paymentReference')}" not in self.ctx.intents
            and str(p.get("status") or "").upper() not in VOID_STATUSES
            and to_money(p.get("amount") or 0) == to_money(body["amount"])
        ]
        return closest_by_day(same, day_of(body.get("paymentDate")), lambda p: p.get("paymentDate"), PAYMENT_DATE_SLACK)

    def _claimed(self) -> set[str]:
        """Coperniq payments some link holds (read once per run, then kept up to date by this run's links)."""
        if self._claimed_payments is None:
            ledger = self.ctx.ledger
            self._claimed_payments = {link.source_id for link in ledger.links(TARGET, "payment")} | {
                str(link.target_id) for link in ledger.links(SOURCE, "payment") if link.target_id
            }
        return self._claimed_payments

    def _coperniq_invoice(self, merge_invoice_id: str) -> str | Outcome:
        """Coperniq id of the invoice a QuickBooks payment applies to: forward-leg or reverse-leg link."""
        fwd = self.ctx.ledger.get_link_by_target(SOURCE, "invoice", merge_invoice_id)
        if fwd is not None and fwd.source_system == TARGET:
            return fwd.source_id
        rev = self.lookups.reverse_link("invoice", merge_invoice_id)
        if rev is not None:
            if rev.status == "deleted" and self.ctx.settings.void_policy == "delete":
                return Outcome("skipped", "", "skipped", f"invoice {merge_invoice_id} was deleted in Coperniq")
            return str(rev.target_id)
        return Outcome("wait", "", reason=f"invoice {merge_invoice_id} not synced to Coperniq")

    def _application(
        self,
        rid: str,
        pay: dict[str, Any],
        invoice_id: str,
        amount: Decimal,
        applications: list[tuple[str, Decimal, str | None]],
    ) -> Decision:
        ctx = self.ctx
        sid = payment_source_id(rid, invoice_id, applications)
        link = self.lookups.reverse_link("payment", sid)
        if pay.get("remote_was_deleted"):
            if link is None:
                return Outcome("skipped", sid, "skipped", "deleted in QuickBooks before it was synced")
            if link.status == "deleted":
                return Outcome("done", sid, target_id=link.target_id)
            if not ctx.settings.dry_run:
                link.status = "deleted"
                ctx.journal.link(link)
            return Outcome(
                "skipped",
                sid,
                "skipped",
                "deleted in QuickBooks; Coperniq has no API to delete "
                f"payments: remove payment {link.target_id} by hand",
                link.target_id,
            )
        body = payment_body(pay, amount, sid, ctx.settings.payment_method)
        fp = fingerprint(body)
        if link is not None:
            if link.fingerprint == fp:
                return Outcome("done", sid, target_id=link.target_id)
            return Outcome(
                "skipped",
                sid,
                "skipped",
                "changed in QuickBooks; Coperniq payments cannot be edited "
                f"through the API: check payment {link.target_id}",
                link.target_id,
            )
        invoice = self._coperniq_invoice(invoice_id)
        if isinstance(invoice, Outcome):
            invoice.source_id = sid
            return invoice
        if ctx.settings.dry_run:
            return Outcome("done", sid, "planned", f"would add a payment of {amount} to Coperniq invoice {invoice}")
        key = f"{INTENT_PREFIX}payment:{sid}"
        new_link = Link(SOURCE, "payment", sid, TARGET, "payment", None, fingerprint=fp, origin=SOURCE)
        if key in ctx.intents and (found := ctx.api.find_payment(invoice, sid)):
            new_link.target_id = str(found["id"])
            ctx.intents.commit(key, new_link)
            self._claimed().add(new_link.target_id)
            return Outcome("done", sid, "linked", "found in Coperniq after an interrupted run", new_link.target_id)
        if (twin := self._twin_payment(invoice, body)) is not None:
            new_link.target_id, new_link.origin = str(twin["id"]), TARGET
            self._claimed().add(new_link.target_id)
            ctx.intents.commit(key, new_link)
            return Outcome(
                "done",
                sid,
                "linked",
                f"Coperniq invoice {invoice} already has this payment ({amount} on "
                f"{str(twin.get('paymentDate') or '')[:10]}): linked, not counted twice",
                new_link.target_id,
            )
        return Write(
            partial(ctx.api.create_payment, invoice, body),
            partial(self._created, key, new_link, f"on Coperniq invoice {invoice}"),
            (key, {"invoice_id": invoice, "payment_reference": sid}),
        )

    def _created(self, key: str, link: Link, reason: str, created: dict[str, Any]) -> Outcome:
        """Main thread, when the writer applies the answer: claimed at once, so it is never the "twin" of a later
        payment of the same amount."""
        link.target_id = str(created["id"])
        self._claimed().add(link.target_id)
        self.ctx.intents.commit(key, link)
        return Outcome("done", link.source_id, "created", reason, link.target_id)
