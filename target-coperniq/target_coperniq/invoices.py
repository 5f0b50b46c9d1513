"""QuickBooks customer invoices -> Coperniq invoices on the linked project or account; voids by `void_policy`."""

from __future__ import annotations

from typing import Any

from sync_ledger import ApiError, Link, fingerprint
from sync_ledger.rows import Outcome, Wait
from target_coperniq.catalog import Catalog
from target_coperniq.context import FORWARD_ECHO, INTENT_PREFIX, NOT_SYNCED, SOURCE, TARGET, Context
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


class InvoiceRules:
    """Creates an invoice once (intent first: a crash between create and link is found by its marker), updates
    it when QuickBooks changes it, and never touches what the forward leg wrote."""

    def __init__(self, ctx: Context, lookups: Lookups, catalog: Catalog) -> None:
        self.ctx = ctx
        self.lookups = lookups
        self.catalog = catalog

    def invoice(self, rid: str, inv: dict[str, Any], final: bool) -> list[Outcome]:
        def skip(reason: str) -> list[Outcome]:
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
            update_invoice_lines(ctx.api, str(link.target_id), update_body(payload))
            new_link.target_id = link.target_id
            ctx.journal.link(new_link)
            return [Outcome("done", rid, "updated", "changed in QuickBooks", link.target_id)]
        if ctx.settings.dry_run:
            return [Outcome("done", rid, "planned", f"would create an invoice on Coperniq {kind} {record_id}")]
        key = f"{INTENT_PREFIX}invoice:{rid}"
        if key in ctx.intents and (found := ctx.api.find_invoice(record_id, kind, marker(rid))):
            new_link.target_id = str(found["id"])
            try:
                update_invoice_lines(ctx.api, new_link.target_id, update_body(payload))
            except InvoiceUpdateError:
                new_link.fingerprint = None  # linked, not up to date: the next run updates it again
                ctx.intents.commit(key, new_link)
                raise
            ctx.intents.commit(key, new_link)
            return [Outcome("done", rid, "linked", "found in Coperniq after an interrupted run", new_link.target_id)]
        ctx.intents.begin(key, {"record_id": record_id, "kind": kind, "marker": marker(rid)})
        created = ctx.api.create_invoice(
            create_body(payload), record_id=record_id, record_kind=kind, marker=marker(rid)
        )
        new_link.target_id = str(created["id"])
        ctx.intents.commit(key, new_link)
        return [Outcome("done", rid, "created", f"on Coperniq {kind} {record_id}", new_link.target_id)]

    def _void(self, rid: str, inv: dict[str, Any], link: Link | None, gone: str) -> Outcome:
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
            try:
                ctx.api.delete_invoice(target_id)
            except ApiError as exc:
                if exc.status != 404:
                    raise
            link.status = "deleted"
            ctx.journal.link(link)
            return Outcome("done", rid, "deleted", f"{gone} in QuickBooks; void_policy=delete", target_id)
        prefix = DELETED_PREFIX if gone == "deleted" else VOID_PREFIX
        ctx.api.update_invoice(
            target_id, {"status": "DECLINED", "description": invoice_description(inv, prefix=prefix)}
        )
        link.status = "deleted" if gone == "deleted" else "voided"
        ctx.journal.link(link)
        return Outcome(
            "done",
            rid,
            "updated",
            f"{gone} in QuickBooks; marked (status DECLINED, description prefixed {prefix.strip()})",
            target_id,
        )
