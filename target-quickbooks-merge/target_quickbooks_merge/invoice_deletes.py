"""Invoices deleted in Coperniq, seen by tap-coperniq's invoice sweep (`invoice_sweeps`: every invoice id the whole
list held) and handed to `void_policy` like an invoice Coperniq took back.

Coperniq's invoice list has no tombstones, so a pushed invoice missing from a sweep is the only sign of a delete.
Taken as deleted only when **two sweeps in a row** miss it (ledger meta `forward:invoices_missing` keeps the ids
the last sweep missed): a page-numbered list read while invoices are deleted can shift a row past the page being
read, and one sweep's miss must not void a live invoice. A sweep missing most of the pushed invoices (the key lost
access to them, not a mass delete) voids nothing and says so. A confirmed delete re-stages the invoice's last
snapshot with `_sdc_deleted_at` (the Singer convention for a deleted record), so the invoice pass voids it in the
same run, with its intent, log and retries; an invoice that comes back in Coperniq is a new snapshot without it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .context import SRC, Context
from .void_writes import DELETED, VOIDED, ZEROED

#: The tap's stream and its one record id (tap_coperniq.streams.InvoiceSweepStream).
SWEEP_STREAM = "invoice_sweeps"
#: Ledger meta: the pushed invoice ids the last sweep did not list (JSON list).
MISSING_META = "forward:invoices_missing"
DELETED_KEY = "_sdc_deleted_at"
#: A sweep missing more than this share of the pushed invoices (and more than MASS_MIN of them) is not believed.
MASS_SHARE = 0.5
MASS_MIN = 10


def deleted_at(invoice: Mapping[str, Any]) -> str | None:
    value = invoice.get(DELETED_KEY)
    return str(value) if value else None


class InvoiceDeletes:
    """Reads the newest staged sweep, once, before the invoice pass."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def sweep(self) -> list[tuple[list[str], str]]:
        """Take the new sweeps; returns each one's invoices that show nothing paid, with its time (for
        payment_deletes.py: their payment lists are empty)."""
        ctx = self.ctx
        if ctx.dry:
            return []  # the sweep waits for a real run (a dry run writes no meta and stages nothing)
        unpaid = []
        for rid, sweep, _, _ in ctx.ledger.iter_staged(SRC, SWEEP_STREAM, status=("pending", "failed")):
            self._take(sweep)
            unpaid.append(([str(i) for i in sweep.get("unpaidIds") or []], str(sweep.get("sweptAt") or "")))
            ctx.mark(SWEEP_STREAM, rid, "done")
        return unpaid

    def _take(self, sweep: Mapping[str, Any]) -> None:
        ctx = self.ctx
        linked, missing = ctx.ledger.linked_ids_not_in(
            SRC, "invoice", sweep.get("invoiceIds") or [], skip_status=(VOIDED, DELETED, ZEROED)
        )
        if len(missing) > MASS_MIN and len(missing) > linked * MASS_SHARE:
            ctx.warn(
                f"the invoice sweep of {sweep.get('sweptAt')} lists {sweep.get('count')} invoices and misses "
                f"{len(missing)} of the {linked} pushed to QuickBooks: taken as lost access (the API key's scope), "
                "not as deletes; nothing is voided"
            )
            return
        missing = [iid for iid in missing if self._live(iid)]
        before = set(json.loads(ctx.ledger.get_meta(MISSING_META) or "[]"))
        confirmed = [iid for iid in missing if iid in before]
        waiting = sorted(set(missing) - set(confirmed))
        if waiting:
            ctx.log.info(
                "%d pushed invoice(s) missing from Coperniq's invoice list (%s): voided by void_policy if the next "
                "sweep misses them too",
                len(waiting),
                ", ".join(waiting[:10]),
            )
        staged = ctx.ledger.staged_many(SRC, "invoices", confirmed)
        gone = [(iid, {**staged[iid], DELETED_KEY: sweep.get("sweptAt")}) for iid in confirmed if iid in staged]
        if gone:
            ctx.ledger.stage(SRC, "invoices", gone)  # pending now: the invoice pass below voids them
        ctx.ledger.set_meta(MISSING_META, json.dumps(waiting))

    def _live(self, iid: str) -> bool:
        """Staged and not re-staged as deleted already (its void failed and is retried by the invoice pass)."""
        staged = self.ctx.ledger.staged(SRC, "invoices", iid)
        return staged is not None and deleted_at(staged) is None
