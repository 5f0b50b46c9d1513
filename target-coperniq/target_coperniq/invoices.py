"""QuickBooks customer invoices -> Coperniq invoices on the linked project or account; voids by `void_policy`.

The rules decide here; each Coperniq write is returned as a `Write` (writes.py) for the batched writer.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from sync_ledger import ApiError, Link, fingerprint
from sync_ledger.rows import Outcome, Wait
from target_coperniq.catalog import Catalog
from target_coperniq.context import FORWARD_ECHO, FORWARD_IN_FLIGHT, INTENT_PREFIX, NOT_SYNCED, SOURCE, TARGET, Context
from target_coperniq.invoice_update import InvoiceUpdateError, update_invoice_lines
from target_coperniq.lookups import Lookups
from target_coperniq.mapping import (
    DELETED_PREFIX,
    VOID_PREFIX,
    build_line_items,
    create_body,
    invoice_description,
    invoice_payload,
    marker,
    update_body,
)
from target_coperniq.writes import Decision, Write


class InvoiceRules:
    """Creates an invoice once (intent first: a crash between create and link is found by its marker), updates
    it when QuickBooks changes it, and never touches what the forward leg wrote."""

    def __init__(self, ctx: Context, lookups: Lookups, catalog: Catalog) -> None:
        self.ctx = ctx
        self.lookups = lookups
        self.catalog = catalog

    def invoice(self, rid: str, inv: dict[str, Any], final: bool) -> list[Decision]:
        def skip(reason: str) -> list[Decision]:
            return [Outcome("skipped", rid, "skipped", reason)]

        ctx = self.ctx
        if (inv.get("type") or "ACCOUNTS_RECEIVABLE").upper() != "ACCOUNTS_RECEIVABLE":
            return skip("bill (accounts payable), not a customer invoice")
        gone = "deleted" if inv.get("remote_was_deleted") else "voided" if (inv.get("status") or "") == "VOID" else ""
        if fwd := self.lookups.forward_link("invoice", rid, inv.get("remote_id")):
            note = f"; {gone} in QuickBooks, Coperniq invoice {fwd.source_id} is owned by Coperniq" if gone else ""
            return skip(FORWARD_ECHO + note)
        link = self.lookups.reverse_link("invoice", rid)
        if gone:
            return [self._void(rid, inv, link, gone)]
        if link is None and self.lookups.forward_in_flight("invoice"):
            return [Outcome("wait", rid, reason=FORWARD_IN_FLIGHT)]
        record = self.lookups.record_for(inv.get("contact"))
        if record is None:
            return [Outcome("wait", rid, reason=NOT_SYNCED)]
        kind, record_id = record
        try:
            lines = build_line_items(inv, lambda line: self.catalog.line_ref(line, final), self.catalog.adjustment_ref)
        except Wait as wait:
            return [Outcome("wait", rid, reason=str(wait))]
        payload = invoice_payload(inv, record_id, lines)
        fp = fingerprint(payload)
        new_link = Link(SOURCE, "invoice", rid, TARGET, "invoice", None, fingerprint=fp, origin=SOURCE)
        if link is not None:
            if link.status != "active":
                return skip(f"Coperniq invoice {link.target_id} was already {link.status}")
            if link.fingerprint == fp:
                return [Outcome("done", rid, target_id=link.target_id)]
            if ctx.settings.dry_run:
                return [
                    Outcome("done", rid, "planned", f"would update Coperniq invoice {link.target_id}", link.target_id)
                ]
            new_link.target_id = link.target_id
            return [
                Write(
                    partial(update_invoice_lines, ctx.api, str(link.target_id), update_body(payload)),
                    partial(self._updated, new_link),
                )
            ]
        if ctx.settings.dry_run:
            return [Outcome("done", rid, "planned", f"would create an invoice on Coperniq {kind} {record_id}")]
        key = f"{INTENT_PREFIX}invoice:{rid}"
        if key in ctx.intents and (found := ctx.api.find_invoice(record_id, kind, marker(rid))):
            new_link.target_id = str(found["id"])
            return [
                Write(
                    partial(update_invoice_lines, ctx.api, new_link.target_id, update_body(payload)),
                    partial(self._recovered, key, new_link),
                    on_error=partial(self._recovered_stale, key, new_link),
                )
            ]
        send = partial(
            ctx.api.create_invoice, create_body(payload), record_id=record_id, record_kind=kind, marker=marker(rid)
        )
        intent = {"record_id": record_id, "kind": kind, "marker": marker(rid)}
        return [Write(send, partial(self._created, key, new_link, f"on Coperniq {kind} {record_id}"), (key, intent))]

    # --- finishing a write (main thread, when the writer applies its answer) ----------------------
    def _updated(self, link: Link, _: Any) -> Outcome:
        self.ctx.journal.link(link)
        return Outcome("done", link.source_id, "updated", "changed in QuickBooks", link.target_id)

    def _created(self, key: str, link: Link, reason: str, created: dict[str, Any]) -> Outcome:
        link.target_id = str(created["id"])
        self.ctx.intents.commit(key, link)
        return Outcome("done", link.source_id, "created", reason, link.target_id)

    def _recovered(self, key: str, link: Link, _: Any) -> Outcome:
        self.ctx.intents.commit(key, link)
        return Outcome("done", link.source_id, "linked", "found in Coperniq after an interrupted run", link.target_id)

    def _recovered_stale(self, key: str, link: Link, exc: Exception) -> None:
        """Found but not brought up to date: linked anyway (no second create), with no fingerprint, so the next
        run updates it again."""
        if isinstance(exc, InvoiceUpdateError):
            link.fingerprint = None
            self.ctx.intents.commit(key, link)

    def _void(self, rid: str, inv: dict[str, Any], link: Link | None, gone: str) -> Decision:
        """QuickBooks void/delete of an invoice the reverse leg created, by `void_policy`."""
        ctx = self.ctx
        policy = ctx.settings.void_policy
        if link is None:
            return Outcome("skipped", rid, "skipped", f"{gone} in QuickBooks before it was synced to Coperniq")
        if link.status in ("voided", "deleted"):
            return Outcome("done", rid, target_id=link.target_id)
        target_id = str(link.target_id)
        if policy == "ignore":
            return Outcome("skipped", rid, "skipped", f"{gone} in QuickBooks; void_policy=ignore", target_id)
        if ctx.settings.dry_run:
            return Outcome(
                "done",
                rid,
                "planned",
                f"{gone} in QuickBooks; would {policy} Coperniq invoice {target_id}",
                target_id,
            )
        if policy == "delete":
            return Write(
                partial(self._delete, target_id),
                partial(self._gone, link, "deleted", f"{gone} in QuickBooks; void_policy=delete", "deleted"),
            )
        prefix = DELETED_PREFIX if gone == "deleted" else VOID_PREFIX
        body = {"status": "DECLINED", "description": invoice_description(inv, prefix=prefix)}
        reason = f"{gone} in QuickBooks; marked (status DECLINED, description prefixed {prefix.strip()})"
        status = "deleted" if gone == "deleted" else "voided"
        return Write(
            partial(ctx.api.update_invoice, target_id, body), partial(self._gone, link, status, reason, "updated")
        )

    def _delete(self, invoice_id: str) -> None:
        """DELETE, where an invoice already gone (404) is what was wanted."""
        try:
            self.ctx.api.delete_invoice(invoice_id)
        except ApiError as exc:
            if exc.status != 404:
                raise

    def _gone(self, link: Link, status: str, reason: str, action: str, _: Any) -> Outcome:
        link.status = status
        self.ctx.journal.link(link)
        return Outcome("done", link.source_id, action, reason, link.target_id)
