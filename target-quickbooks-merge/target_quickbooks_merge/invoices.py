"""Coperniq invoices of synced projects -> QuickBooks AR invoices on the project's job."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from typing import Any

from sync_ledger import Link, fingerprint
from sync_ledger.rows import RowFailure, Wait, link_key, record_key

from .context import QBO, SRC, Context, link_for
from .credit_notes import CreditNoteSync
from .invoice_deletes import InvoiceDeletes
from .jobs import JobSync
from .mapping import diff_for_strategy, invoice_fingerprint, invoice_line, invoice_number, invoice_payload
from .merge_client import WriteResult
from .merge_index import InvoiceIndex, ItemIndex
from .payment_deletes import PaymentDeletes
from .taxes import TaxBook, with_tax
from .tracking import TrackingBook
from .voids import InvoiceVoids
from .writes import create_model


class InvoiceSync:
    """Invoices: matched by number, created (batched) or updated; never pushed for an unsynced project."""

    def __init__(self, ctx: Context, jobs: JobSync, items: ItemIndex, existing: InvoiceIndex, taxes: TaxBook) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self.items = items
        self.existing = existing
        self.taxes = taxes
        self.voids = InvoiceVoids(ctx, self._find)  # void_policy: pushed invoices Coperniq takes back
        self.credits = CreditNoteSync(ctx, self)  # negative invoices: QuickBooks Credit Memos
        self.tracking = TrackingBook(ctx)  # tracking_category_mapping: checked here, before any write

    def sync(self) -> None:
        ctx = self.ctx
        if not ctx.s.invoice_sync:
            self._invoice_sync_off()
            return
        self.tracking.wake_pushed()
        self.tracking.wake_moved()
        for unpaid, swept_at in InvoiceDeletes(ctx).sweep():  # invoices deleted in Coperniq: voided below
            PaymentDeletes(ctx).stage_unpaid(unpaid, swept_at)  # their payment lists are empty: payment pass
        for iid, inv, status, _ in ctx.todo("invoices", prefetch=self.tracking.prefetch):
            if "__invalid__" in inv:
                continue
            ctx.guard("invoices", iid, partial(self._invoice, iid, inv, status), status)
        ctx.writer.flush_all()
        self.credits.apply_deferred()  # credits pushed before the invoice they credit, now that it is there

    def _invoice_sync_off(self) -> None:
        ctx = self.ctx
        arrived = 0
        for iid, _, _, _ in ctx.ledger.iter_staged(SRC, "invoices", status=("pending", "failed")):
            arrived += 1
            ctx.skip("invoices", iid, "invoice_sync is off")
        for pay_id, _, _, _ in ctx.ledger.iter_staged(SRC, "payments", status=("pending", "failed")):
            ctx.skip("payments", pay_id, "invoice_sync is off")
        if arrived:
            ctx.warn(
                f"invoice_sync is off but {arrived} invoice(s) arrived; nothing was written for them "
                "(set invoice_sync: true to push invoices and payments)"
            )

    def contact_of(self, invoice: Mapping[str, Any]) -> str:
        """The Merge id of the job (or, for an account-level invoice, the customer) an invoice belongs on."""
        ctx = self.ctx
        record = invoice.get("record") or {}
        pid = str(record.get("id")) if record.get("id") is not None else None
        job = ctx.links.get("project", pid) if pid else None
        if job is not None:
            merge_id = job.target_id or self.jobs.resolve(job)
            if not merge_id:
                raise Wait(
                    f"waiting for Merge to sync job (QBO Id {job.target_remote_id}) of project {pid}; retried next run"
                )
            return merge_id
        if pid and ctx.ledger.staged_status(SRC, "projects", pid) is not None:
            raise Wait(f"project {pid} is not synced to QuickBooks (not triggered)", on=link_key("project", pid))
        account = invoice.get("account") or {}
        customer = ctx.links.get("account", str(account.get("id"))) if account.get("id") is not None else None
        if customer is not None and customer.target_id and pid is None:  # account-level invoice
            return customer.target_id
        raise Wait(
            f"project {pid or '?'} of this invoice is not synced to QuickBooks (not triggered or not received yet)",
            on=record_key("projects", pid) if pid else link_key("account", account.get("id")),
        )

    def _invoice(self, iid: str, inv: Mapping[str, Any], status: str) -> None:
        ctx = self.ctx
        if ctx.echo("invoices", "invoice", iid, status, inv):
            return
        link = ctx.links.get("invoice", iid)
        if self.credits.handles(inv, link):
            return self.credits.sync(iid, inv, link, status)
        gone = self.voids.gone(inv)  # a status invoice_statuses does not push, or archived
        if gone is not None:
            if link is not None:  # pushed earlier: voided, zeroed or left by void_policy
                self.voids.left(iid, inv, link, gone, status)
            elif status != "skipped":  # once per version of the record
                ctx.skip("invoices", iid, gone.unpushed(ctx.s.invoice_statuses))
            return
        contact = self.contact_of(inv)
        lines = inv.get("lineItems") or []
        if not lines:
            raise RowFailure("invoice has no line items (QuickBooks needs at least one line)")
        tax_code = self.taxes.line_code(inv)  # before any write: an invoice that cannot be taxed right fails
        categories = self.tracking.for_invoice(inv)  # None without the setting: the payload as before
        desired = invoice_payload(
            inv,
            contact,
            [with_tax(invoice_line(line, self.items.for_line(line)), tax_code) for line in lines],
            number_prefix=ctx.s.invoice_number_prefix,
        )
        if categories is not None:
            desired = categories.apply(desired)
        if link is not None:
            if not self.voids.reinstated(iid, inv, link, desired, contact):  # not voided or zeroed before
                self._update(iid, inv, link, desired)
        elif not self._match(iid, inv, desired, contact):
            self._create(iid, desired, contact)

    def _update(self, iid: str, inv: Mapping[str, Any], link: Link, desired: dict[str, Any]) -> None:
        """A pushed invoice keeps its number (the prefix, or a bookkeeper's renumbering, never renumbers it)."""
        ctx = self.ctx
        fp = invoice_fingerprint(desired)
        legacy = {**desired, "number": invoice_number(inv)}
        if link.fingerprint in (fingerprint({**legacy, "status": "DRAFT"}), fingerprint(legacy)):
            ctx.save_link(replace(link, fingerprint=fp))  # synced by an older version, unchanged since
        elif link.fingerprint != fp:
            if ctx.policy.leaves_alone(link):
                ctx.save_link(replace(link, fingerprint=fp))
            else:

                def finish(request_id: str | None) -> None:
                    ctx.save_link(replace(link, fingerprint=fp))
                    ctx.record(
                        "invoices",
                        iid,
                        "updated",
                        "invoice changed in Coperniq",
                        target_id=link.target_id,
                        request_id=request_id,
                        name=f"#{desired['number']}",
                    )
                    ctx.mark("invoices", iid, "done")

                update = {k: v for k, v in desired.items() if k != "number"}
                ctx.plan_update("invoices", iid, "invoices", str(link.target_id), update, finish)
                return
        ctx.mark("invoices", iid, "done")

    def _candidates(self, inv: Mapping[str, Any], number: str, contact: str) -> list[dict[str, Any]]:
        ctx = self.ctx
        existing = [
            i
            for i in self.existing.by_number(number)
            if not i.get("remote_was_deleted") and str(i.get("id")) not in ctx.links.targets
        ]
        if not existing and number != invoice_number(inv) and self.existing.complete:
            # Pushed without the prefix by an older version (and the ledger lost since): the same number on the
            # same customer/job is ours; on anybody else it is a bookkeeper's own invoice, the prefix's very point.
            # Checked only once the whole list is read (free then); never worth an extra call per invoice.
            existing = [
                i
                for i in self.existing.listed(invoice_number(inv))
                if not i.get("remote_was_deleted")
                and str(i.get("id")) not in ctx.links.targets
                and str(i.get("contact")) == contact
            ]
        return existing

    def _match(self, iid: str, inv: Mapping[str, Any], desired: dict[str, Any], contact: str) -> bool:
        """Link an invoice QuickBooks already holds under this number (ours from an interrupted run, or the
        bookkeeper's); False when there is none."""
        ctx = self.ctx
        number = desired["number"]
        intent_key = f"forward:invoice:{iid}"
        existing = self._candidates(inv, number, contact)
        if not existing:
            if intent_key in ctx.leftover:
                ctx.end(intent_key)  # nothing with that number exists: the interrupted create never happened
            return False
        found = next((i for i in existing if str(i.get("contact")) == contact), existing[0])
        found = self.existing.full(found)
        recovered = intent_key in ctx.leftover
        if str(found.get("contact")) != contact:
            if recovered:
                ctx.end(intent_key)  # no invoice of ours with that number: the interrupted create never happened
            raise RowFailure(
                f"invoice number {number} is already used in QuickBooks by another customer's "
                f"invoice ({found.get('id')}); renumber one of them"
            )
        strategy = "skip" if recovered else ctx.policy.strategy
        patch = diff_for_strategy(
            {k: v for k, v in desired.items() if k not in {"line_items", "status", "number"}}, found, strategy
        )
        rid = None
        if patch and not ctx.dry:
            body = {**patch, "line_items": desired["line_items"]} if strategy == "replace" else patch
            rid = ctx.client.update("invoices", str(found["id"]), body).request_id
        link = link_for(
            "invoice", iid, "invoice", found, invoice_fingerprint(desired), origin=SRC if recovered else QBO
        )
        ctx.save_link(link)
        ctx.end(intent_key)
        why = (
            "recovered invoice created by an interrupted run (no duplicate created)"
            if recovered
            else f"matched existing QuickBooks invoice number {found.get('number')} ({strategy}: "
            f"{'updated ' + ', '.join(sorted(patch)) if patch else 'left unchanged'})"
        )
        ctx.record("invoices", iid, "linked", why, target_id=link.target_id, request_id=rid, name=f"#{number}")
        ctx.mark("invoices", iid, "done")
        return True

    def _create(self, iid: str, desired: dict[str, Any], contact: str) -> None:
        ctx = self.ctx
        number = desired["number"]

        def created(link: Link, res: WriteResult) -> None:
            ctx.record(
                "invoices",
                iid,
                "created",
                f"invoice #{number} for synced project",
                target_id=link.target_id,
                name=f"#{number}",
                write=res,
            )
            ctx.mark("invoices", iid, "done")

        create_model(
            ctx,
            "invoice",
            iid,
            desired,
            invoice_fingerprint(desired),
            {"number": number},
            created,
            lambda: self._find(number, contact),
        )

    def _find(self, number: str, contact: str) -> dict[str, Any] | None:
        """Natural key of an invoice we created: its number, on the same customer/job, not linked to another one
        (thread-safe: reads Merge directly, not the run's invoice-list index)."""
        return next(
            (
                i
                for i in self.ctx.client.invoices_by_number(number)
                if not i.get("remote_was_deleted")
                and str(i.get("contact")) == contact
                and str(i.get("id")) not in self.ctx.links.targets
            ),
            None,
        )
