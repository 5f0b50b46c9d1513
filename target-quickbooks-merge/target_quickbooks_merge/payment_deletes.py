"""Payments deleted in Coperniq, seen as missing from their invoice's whole payment list (tap-coperniq's
`payment_sets`), and handed to `void_policy` like a payment Coperniq took back (payment_voids.py).

Coperniq's API deletes no payment and lists no deleted one (its UI can delete one), so a payment that its invoice's
list held last time and holds no more is the only sign. The list is one unpaged call, so a miss is exact: taken as a
delete at once (an invoice's sweep needs two misses, invoice_deletes.py); an empty answer for a paid invoice is
not taken for a list (the tap drops it), and lists missing most of what they held (MASS_SHARE) void nothing.
Ledger meta `forward:payment_set:<invoice>` keeps the ids the invoice's last list held (none kept for an empty
list). A payment gone from it (and still staged on that invoice) is re-staged with `_sdc_deleted_at`, so the
payment pass voids it in the same run with its intent, log and retries; one never pushed is only skipped. An
invoice showing nothing paid has an empty list: the tap says so without a call on an invoice it reads again, and
the invoice sweep (`unpaidIds`) says it for every invoice (unless the tap listed it since), so a last payment
deleted without its invoice's `updatedAt` moving (ASSUMPTION, README "Deletes") is still seen by the next sweep.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from .context import SRC, Context
from .invoice_deletes import DELETED_KEY, deleted_at

#: The tap's stream: one record per invoice (tap_coperniq.streams.PaymentSetsStream).
SETS_STREAM = "payment_sets"
#: Ledger meta prefix: + invoice id -> the payment ids (JSON list) the invoice's last list held.
SET_META = "forward:payment_set:"
#: The status a deleted payment is handled as (payment_voids.VOID_PAYMENT_STATUSES holds it).
DELETED_STATUS = "DELETED"
#: A chunk of lists missing more than this share of the payments they held (and more than MASS_MIN) is not believed.
MASS_SHARE = 0.5
MASS_MIN = 10


def payment_status(pay: Mapping[str, Any]) -> str:
    """The Coperniq status, or DELETED for a payment its invoice's list no longer holds."""
    return DELETED_STATUS if deleted_at(pay) else str(pay.get("status") or "").upper()


class PaymentDeletes:
    """Reads the staged payment sets, once, before the payment pass."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def sweep(self) -> None:
        ctx = self.ctx
        if ctx.dry:
            return  # as the invoice sweep: a dry run writes no meta and stages nothing
        for chunk in ctx.ledger.iter_staged_chunks(SRC, SETS_STREAM, status=("pending", "failed")):
            valid = [(rid, row) for rid, row, _, _ in chunk if "__invalid__" not in row]  # a failed row already
            lists = ctx.ledger.get_metas(SET_META + rid for rid, _ in valid)
            before = {key[len(SET_META) :]: value for key, value in lists.items()}
            sets = {rid: (row.get("paymentIds") or [], str(row.get("seenAt") or "")) for rid, row in valid}
            self._compare(before, sets)
            for rid in sets:
                ctx.mark(SETS_STREAM, rid, "done")

    def stage_unpaid(self, invoice_ids: Iterable[str], seen_at: str) -> None:
        """The invoice sweep's invoices that show nothing paid: an empty set for each that had payments on its
        last list (staged for the payment pass, as if the tap had emitted it)."""
        ctx = self.ctx
        known = [key[len(SET_META) :] for key in ctx.ledger.get_metas(SET_META + i for i in invoice_ids)]
        newer = ctx.ledger.staged_many(SRC, SETS_STREAM, known)  # a set the tap read after the sweep stands
        empty = sorted(i for i in known if str((newer.get(i) or {}).get("seenAt") or "") < seen_at)
        if empty:
            sets = [
                (iid, {"id": iid, "invoiceId": iid, "paymentIds": [], "listed": False, "seenAt": seen_at})
                for iid in empty
            ]
            ctx.ledger.stage(SRC, SETS_STREAM, sets)

    def _compare(self, before: Mapping[str, str], sets: Mapping[str, tuple[list[Any], str]]) -> None:
        ctx = self.ctx
        gone: dict[str, tuple[str, str]] = {}  # payment id -> (its invoice, when the list was seen without it)
        held = 0
        for inv_id, (ids, seen_at) in sets.items():
            now = {str(i) for i in ids}
            was = set(json.loads(before.get(inv_id) or "[]"))
            held += len(was)
            for pay_id in was - now:
                gone[pay_id] = (inv_id, seen_at)
        if len(gone) > MASS_MIN and len(gone) > held * MASS_SHARE:
            ctx.warn(
                f"{len(gone)} of the {held} payments {len(sets)} invoices' last lists held are missing from their "
                "lists in Coperniq now: taken as lost access (the API key's scope), not as deletes; nothing is voided"
            )
            return  # the kept lists stay, so the next read is compared with them again
        if gone:
            staged = ctx.ledger.staged_many(SRC, "payments", gone)
            again = [
                (pid, {**pay, DELETED_KEY: gone[pid][1] or "unknown"})
                for pid, pay in staged.items()
                if deleted_at(pay) is None and str(pay.get("invoiceId")) == gone[pid][0]  # not moved elsewhere
            ]
            if again:
                ctx.log.info(
                    "%d payment(s) no longer listed on their invoice in Coperniq (%s): deleted there, voided by "
                    "void_policy if pushed",
                    len(again),
                    ", ".join(pid for pid, _ in again[:10]),
                )
                ctx.ledger.stage(SRC, "payments", again)  # pending now: the payment pass below voids them
        ctx.ledger.set_metas(
            {
                SET_META + inv_id: json.dumps(sorted(str(i) for i in ids)) if ids else None
                for inv_id, (ids, _) in sets.items()
            }
        )
