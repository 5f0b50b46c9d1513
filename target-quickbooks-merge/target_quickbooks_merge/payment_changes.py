"""A pushed payment that changed in Coperniq (amount, date): updated in QuickBooks, or voided and created again
where QuickBooks keeps the old amount.

QuickBooks changes a payment in place (Merge `PATCH /payments`). Two answers need more (README "Changes after
sync"):

  - the PATCH is accepted, yet the payment Merge returns still has the old amount (ASSUMPTION: Merge's QuickBooks
    integration may apply only some fields of a payment update, with a warning; sandbox switch
    `payment_amount_patch_ignored`): the payment is voided (void_writes.py, intent `forward:replace:payment:<id>`,
    link status `replaced`) and created again with the new amount (writes.py); both steps are in the log, and a
    crash between them leaves a `replaced` link that the next run creates again, once;
  - QuickBooks refuses because the payment is on a bank deposit (its error 6540): a failed row that says so,
    retried next run, after the bookkeeper takes it off the deposit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

from sync_ledger import Link, to_money
from sync_ledger.rows import RowFailure
from sync_ledger.writer import PlannedWrite

from .context import Context
from .merge_client import WriteError, WriteResult
from .void_writes import PAYMENT_REPLACED, REPLACED, VoidWrites

#: QuickBooks' "Deposited Transaction cannot be changed".
QBO_DEPOSITED = "6540"

__all__ = ["QBO_DEPOSITED", "REPLACED", "PaymentChanges"]


class PaymentChanges:
    """Updates of pushed payments; `create(why)` (PaymentSync's) creates the payment again after a replacing void."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.writes = VoidWrites(ctx, PAYMENT_REPLACED)

    def settled(self, pay_id: str, link: Link) -> Link:
        """A replacing void a crash or a lost answer left unrecorded: recorded if QuickBooks shows it."""
        return self.writes.settled(pay_id, link, "payment changed in Coperniq")

    def update(
        self,
        pay_id: str,
        link: Link,
        desired: dict[str, Any],
        fp: str,
        create: Callable[[str], None],
    ) -> None:
        """PATCH the payment with the next batch; what QuickBooks then shows decides whether that was enough."""
        ctx = self.ctx

        def send() -> WriteResult | None:
            return None if ctx.dry else ctx.client.update("payments", str(link.target_id), desired)

        def finish(res: WriteResult | None) -> None:
            kept = None if res is None else res.model.get("total_amount")
            if kept is not None and to_money(kept) != to_money(desired["total_amount"]):
                self._replace(pay_id, link, desired, to_money(kept), create)
                return
            ctx.save_link(replace(link, fingerprint=fp))
            ctx.record(
                "payments",
                pay_id,
                "updated",
                "payment changed in Coperniq",
                target_id=link.target_id,
                request_id=None if res is None else res.request_id,
            )
            ctx.mark("payments", pay_id, "done")

        def refused(exc: Exception) -> None:
            if isinstance(exc, WriteError) and QBO_DEPOSITED in exc.codes:
                raise RowFailure(
                    f"payment changed in Coperniq, but QuickBooks refuses to change its payment (QBO Id "
                    f"{link.target_remote_id or link.target_id}): it is on a bank deposit. Take it off the deposit in "
                    "QuickBooks (or record the change there); retried next run",
                    exc.request_id,
                ) from exc
            raise exc

        ctx.writer.plan(PlannedWrite("payments", pay_id, None, {}, send, finish, refused))

    def _replace(
        self, pay_id: str, link: Link, desired: dict[str, Any], kept: Decimal, create: Callable[[str], None]
    ) -> None:
        """QuickBooks kept the old amount: void that payment, then create it again (`create`) once the void is
        recorded."""
        why = (
            f"payment changed in Coperniq to {desired['total_amount']}, but QuickBooks kept {kept} on update "
            "(it does not change a payment's amount in place)"
        )

        def again(_: Link) -> None:
            create(f"created again with {desired['total_amount']} (its earlier QuickBooks payment was voided)")

        self.writes.plan(pay_id, link, why, then=again)
