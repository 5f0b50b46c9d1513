"""Pushed payments that Coperniq takes back (voided, refunded, failed, declined, cancelled, or deleted:
payment_deletes.py): voided in QuickBooks or left, by `void_policy`.

QuickBooks voids a payment by a sparse update (`payment?operation=update&include=void`): its amount becomes zero
and its applications go, so the invoice it paid is open again. The void is sent, recorded and recovered by
void_writes.py, the path invoices' voids take. The policies, for a payment:

  void (default)  void it; the link becomes `voided` (a no-op re-run reads and writes nothing);
  zero_and_note   the same as void: a payment at zero with a note is what QuickBooks' void already is, and a
                  zeroed payment could not be applied or restored any better;
  leave           log it (once per version) and leave it unchanged.

REFUNDED is voided too by default (`refund_policy: void`); `refund_policy: refund_receipt` keeps the payment and
records the money paid back as a QuickBooks Refund Receipt instead (refunds.py). `leave` leaves a refund too.
A payment Coperniq never let into QuickBooks in one of these statuses is only skipped (payments.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync_ledger import Link

from .context import Context
from .payment_deletes import DELETED_STATUS
from .refunds import REFUNDED, Refunds
from .taxes import TaxBook
from .void_writes import DELETED, PAYMENT, VOIDED, VoidWrites

#: Coperniq payment statuses that take a payment back (PENDING is not pushed yet, not taken back).
VOID_PAYMENT_STATUSES = frozenset({"VOIDED", "REFUNDED", "FAILED", "DECLINED", "CANCELLED", "CANCELED", DELETED_STATUS})


class PaymentVoids:
    """The `void_policy` rules for pushed payments (module docstring); PaymentSync hands it every linked payment
    whose Coperniq status is in VOID_PAYMENT_STATUSES (`left`), or that is back from one after a void (`back`)."""

    def __init__(self, ctx: Context, taxes: TaxBook) -> None:
        self.ctx = ctx
        self.writes = VoidWrites(ctx, PAYMENT, refused_note=lambda _: "; retried next run (or set void_policy: leave)")
        self.refunds = Refunds(ctx, taxes)  # refund_policy: refund_receipt (refunds.py)

    def left(self, pay_id: str, link: Link, pay_status: str, status: str, pay: Mapping[str, Any]) -> None:
        """A pushed payment Coperniq shows as `pay_status` now: voided in QuickBooks, refunded, or left."""
        ctx = self.ctx
        why = (
            "payment was deleted in Coperniq"
            if pay_status == DELETED_STATUS
            else f"payment is {pay_status} in Coperniq"
        )
        link = self.refunds.settled(pay_id, self.writes.settled(pay_id, link, why))
        if link.status in (VOIDED, DELETED, REFUNDED):
            ctx.mark("payments", pay_id, "done")  # done before: QuickBooks has nothing more to change
            return
        if ctx.policy.leaves_alone(link) or ctx.s.void_policy == "leave":
            if status != "skipped":  # once per version of the record
                rule = (
                    "matching_strategy skip leaves a matched payment alone"
                    if ctx.policy.leaves_alone(link)
                    else "void_policy: leave"
                )
                ctx.skip(
                    "payments",
                    pay_id,
                    f"payment pushed to QuickBooks earlier is now {pay_status} in Coperniq; left unchanged in "
                    f"QuickBooks ({rule}): review it there",
                    target_id=link.target_id,
                )
            return
        if pay_status == "REFUNDED" and self.refunds.applies:
            # a payment the bookkeeper voided or deleted in QuickBooks counts no money received: a refund receipt
            # would take it out twice
            if not self.writes.gone_there(pay_id, link, f"{why}, but no refund receipt is made"):
                self.refunds.plan(pay_id, link, dict(pay))
            return
        self.writes.plan(pay_id, link, why)  # void and zero_and_note alike (module docstring)

    def back(self, pay_id: str, link: Link, pay_status: str, status: str) -> bool:
        """A payment voided (or deleted) in QuickBooks that Coperniq shows as `pay_status` again: QuickBooks cannot
        un-void, so it is logged once, never PATCHed. False when the link is not voided (an ordinary payment)."""
        link = self.writes.settled(pay_id, link, f"payment is {pay_status} in Coperniq")
        if link.status not in (VOIDED, DELETED):
            return False
        if status != "skipped":
            self.ctx.skip(
                "payments",
                pay_id,
                f"payment is {pay_status} in Coperniq again but its QuickBooks payment is {link.status} there "
                "(QuickBooks cannot un-void): record it in QuickBooks again if it was really paid",
                target_id=link.target_id,
            )
        return True
