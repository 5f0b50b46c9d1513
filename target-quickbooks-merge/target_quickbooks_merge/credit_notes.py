"""Coperniq credits (invoices with a negative total) -> QuickBooks Credit Memos (Merge credit notes), applied to the
invoice they credit when QuickBooks shows it open.

A credit of a synced project goes on the job its invoices go on, numbered like them (`CQ-1044`), its amounts
positive as QuickBooks keeps a Credit Memo's. Its `basedOnId` names the invoice it credits (ASSUMPTION, README
"Credits"): when that invoice is linked and open in QuickBooks, the credit is applied to it, the smaller of the
credit and the open balance; otherwise it stays the customer's open credit, and the log says why. A credit whose
invoice is on its way to QuickBooks waits for it.

Crash safety, as for every create: the create has a write-ahead intent (`forward:credit_note:<id>`) and a lost answer
is looked up by number on the same job; the application has its own intent (`forward:credit_apply:<id>`) and is
settled by reading the credit note (it lists the invoices it is applied to), never sent twice. Once applied, ledger
meta `forward:credit_applied:<id>` says so: a later change of the credit is PATCHed, never applied again.

A credit whose invoice was not in QuickBooks when the credit was pushed (skipped then, say as a draft, or not
received yet) is kept in ledger meta `forward:credit_open:<id>` (the invoice's Coperniq id): after each invoice pass,
those whose invoice is linked now are applied to it (`apply_deferred`), so a credit and the invoice it credits end up
applied whatever order they reach QuickBooks in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from typing import Any, Protocol

from sync_ledger import Link, to_decimal, to_money
from sync_ledger.rows import RowFailure, Wait, link_key
from sync_ledger.writer import PlannedWrite

from .context import QBO, SRC, Context, idempotency_key, link_for
from .credit_writes import (
    PATH,
    applied_to,
    apply_credit_note,
    create_credit_note,
    credit_line,
    credit_note,
    credit_payload,
    find_credit_note,
    find_twin_credit_note,
    is_credit,
    zero_lines,
)
from .mapping import invoice_fingerprint, invoice_number, money
from .merge_client import WriteResult
from .merge_index import ItemIndex
from .taxes import TaxBook, with_tax
from .tracking import TrackingBook
from .void_writes import ZEROED
from .voids import Gone

__all__ = ["CREDIT_NOTE", "CreditNoteSync", "is_credit"]

#: The ledger's target type of a Coperniq credit (its source type stays `invoice`: one link per Coperniq invoice).
CREDIT_NOTE = "credit_note"
#: Ledger meta: the Merge id of the invoice a credit was applied to (applied once, for good).
APPLIED_META = "forward:credit_applied:"
#: Ledger meta: a pushed credit whose invoice was not in QuickBooks then (value: that invoice's Coperniq id).
OPEN_META = "forward:credit_open:"
STREAM = "invoices"
#: Merge invoice statuses a credit is not applied to.
CLOSED = ("PAID", "VOID")


class InvoiceRules(Protocol):
    """What a credit shares with the invoices (InvoiceSync): the job it goes on, its items, taxes and classes."""

    items: ItemIndex
    taxes: TaxBook
    tracking: TrackingBook

    def contact_of(self, invoice: Mapping[str, Any]) -> str: ...


class CreditNoteSync:
    """The rules of a Coperniq credit (module docstring); InvoiceSync routes every credit here (`handles`)."""

    def __init__(self, ctx: Context, invoices: InvoiceRules) -> None:
        self.ctx = ctx
        self.invoices = invoices
        self._deferred: dict[str, str] | None = None  # OPEN_META, read once a run

    def deferred(self) -> dict[str, str]:
        """{credit id: invoice id} of the pushed credits whose invoice was not in QuickBooks yet."""
        if self._deferred is None:
            metas = self.ctx.ledger.meta_with_prefix(OPEN_META)
            self._deferred = {key[len(OPEN_META) :]: value for key, value in metas.items()}
        return self._deferred

    def _defer(self, iid: str, target: str) -> None:
        if not self.ctx.dry and self.deferred().get(iid) != target:
            self.ctx.ledger.set_meta(OPEN_META + iid, target)
            self.deferred()[iid] = target

    def _undefer(self, iid: str) -> None:
        if self.deferred().pop(iid, None) is not None:
            self.ctx.ledger.set_meta(OPEN_META + iid, None)

    def apply_deferred(self) -> None:
        """After the invoice pass: each credit left open because its invoice was not in QuickBooks is applied to
        that invoice if it is linked now (logged `updated`, "... applied 100.00 to invoice #CQ-1043"). One meta
        read a run; nothing else when no credit waits."""
        ctx = self.ctx
        if ctx.dry:
            return
        for iid, target in sorted(self.deferred().items()):
            based = ctx.links.get("invoice", target)
            if based is None or based.target_type != "invoice":
                continue  # still not in QuickBooks: stays the customer's open credit
            link = ctx.links.get("invoice", iid)
            if link is None or link.target_type != CREDIT_NOTE or link.status != "active":
                self._undefer(iid)  # the credit itself was taken back (zeroed) or unlinked
                continue
            inv = ctx.ledger.staged(SRC, STREAM, iid)
            if inv is None:
                continue  # never happens for a linked credit; its number comes from its record
            why = f"invoice {target} it is based on is in QuickBooks now"
            number = invoice_number(inv, ctx.s.invoice_number_prefix)
            ctx.guard(STREAM, iid, partial(self._apply, iid, link, target, None, why, number), "done")
        ctx.writer.flush_all()

    def handles(self, invoice: Mapping[str, Any], link: Link | None) -> bool:
        """A credit, or a Coperniq invoice pushed as a credit note."""
        return is_credit(invoice) or (link is not None and link.target_type == CREDIT_NOTE)

    def sync(self, iid: str, inv: Mapping[str, Any], link: Link | None, status: str) -> None:
        ctx = self.ctx
        if link is not None and link.target_type != CREDIT_NOTE:
            raise RowFailure(
                "invoice pushed to QuickBooks as an invoice now has a negative total in Coperniq (a QuickBooks "
                "invoice cannot be negative): void it there and enter the credit, or correct it in Coperniq"
            )
        if link is not None and not is_credit(inv):
            raise RowFailure(
                "credit pushed to QuickBooks as a credit memo no longer has a negative total in Coperniq: correct it "
                "there or in QuickBooks (a credit memo is not turned into an invoice)"
            )
        gone = Gone.of(inv, ctx.s.invoice_statuses)
        if gone is not None:
            if link is not None:
                self._taken_back(iid, link, gone, status)
            elif status != "skipped":
                ctx.skip(STREAM, iid, gone.unpushed(ctx.s.invoice_statuses).replace("invoice", "credit", 1))
            return
        contact = self.invoices.contact_of(inv)
        lines = inv.get("lineItems") or []
        if not lines:
            raise RowFailure("credit has no line items (QuickBooks needs at least one line)")
        charged = sum((to_decimal(ln.get("quantity")) or 0) * money(ln.get("unitPrice")) for ln in lines)
        if charged >= 0:  # the total says credit, the lines say charge: which one QuickBooks should get is unknown
            raise RowFailure(
                f"credit's total is {money(inv.get('amount'))} but its lines add up to {to_money(charged)}: "
                "a QuickBooks credit memo needs lines that add up to the credit; correct it in Coperniq"
            )
        tax_code = self.invoices.taxes.line_code(inv)
        desired = credit_payload(
            inv,
            contact,
            [with_tax(credit_line(line, self.invoices.items.for_line(line)), tax_code) for line in lines],
            number_prefix=ctx.s.invoice_number_prefix,
        )
        categories = self.invoices.tracking.for_invoice(inv)  # its class and location, as its invoices get them
        if categories is not None:
            desired = categories.apply(desired)
        target = self._credited(inv)
        if link is None:
            self._create(iid, desired, contact, target)
        else:
            self._update(iid, link, desired, target)

    # --- create / update ------------------------------------------------------------------------------------
    def _credited(self, inv: Mapping[str, Any]) -> str | None:
        """The Coperniq invoice this credit credits (`basedOnId`); waits while that invoice is on its way."""
        based = inv.get("basedOnId")
        if based is None:
            return None
        based = str(based)
        if self.ctx.links.get("invoice", based) is None:
            staged = self.ctx.ledger.staged_status(SRC, "invoices", based)
            if staged is not None and staged[0] in ("pending", "failed", "waiting"):
                raise Wait(
                    f"waiting for invoice {based}, which this credit is based on, to be pushed to QuickBooks first",
                    on=link_key("invoice", based),
                )
        return based

    def _create(self, iid: str, desired: dict[str, Any], contact: str, target: str | None) -> None:
        ctx = self.ctx
        number, key = str(desired["number"]), f"forward:{CREDIT_NOTE}:{iid}"
        fp = invoice_fingerprint(desired)
        find = partial(
            find_credit_note, ctx.client, number, contact, desired.get("transaction_date"), ctx.links.targets
        )
        if key in ctx.leftover and not ctx.dry:
            found = find()
            if found is not None:
                link = link_for("invoice", iid, CREDIT_NOTE, found, fp)
                ctx.commit_create(link, key)
                why = f"recovered credit memo #{number} created by an interrupted run (no duplicate created)"
                self._apply(iid, link, target, "linked", why, number)
                return
            ctx.end(key)  # nothing with that number: the interrupted create never happened
        twin = find_twin_credit_note(ctx.client, desired, contact, ctx.links.targets)
        if twin is not None:  # entered by hand in QuickBooks: the customer must not get the credit twice
            link = link_for("invoice", iid, CREDIT_NOTE, twin, fp, origin=QBO)
            ctx.save_link(link)
            why = (
                f"credit memo #{twin.get('number')} the bookkeeper entered in QuickBooks for this credit (same "
                f"customer/job, {twin.get('total_amount')} on {str(twin.get('transaction_date') or '')[:10]}): "
                "linked, not created again"
            )
            self._apply(iid, link, target, "linked", why, str(twin.get("number") or number))
            return
        ikey = idempotency_key(CREDIT_NOTE, iid, fp)

        def send() -> WriteResult:
            if ctx.dry:
                return WriteResult({"id": ctx.fake_id(CREDIT_NOTE)})
            return create_credit_note(ctx.client, desired, ikey, find)

        def finish(res: WriteResult) -> None:
            link = link_for("invoice", iid, CREDIT_NOTE, res.model, fp)
            ctx.commit_create(link, key)
            self._apply(iid, link, target, "created", f"credit memo #{number} for synced project", number, res)

        intent = {"kind": CREDIT_NOTE, "number": number, "idempotency_key": ikey}
        ctx.writer.plan(PlannedWrite(STREAM, iid, key, intent, send, finish))

    def _update(self, iid: str, link: Link, desired: dict[str, Any], target: str | None) -> None:
        """A changed credit is PATCHed (its number kept); a zeroed one gets its lines back."""
        ctx = self.ctx
        fp = invoice_fingerprint(desired)
        number = str(desired["number"])
        if link.fingerprint == fp and link.status != ZEROED:
            self._apply(iid, link, target, None, "", number)
            return
        restored = link.status == ZEROED
        why = (
            "credit is sent again in Coperniq: its lines are back in QuickBooks"
            if restored
            else "credit changed in Coperniq"
        )

        def finish(request_id: str | None) -> None:
            updated = replace(link, fingerprint=fp, status="active")
            ctx.save_link(updated)
            self._apply(iid, updated, target, "updated", why, number, request_id=request_id)

        patch = {k: v for k, v in desired.items() if k != "number"}
        ctx.plan_update(STREAM, iid, PATH, str(link.target_id), patch, finish)

    # --- the application ------------------------------------------------------------------------------------
    def _apply(
        self,
        iid: str,
        link: Link,
        target: str | None,
        action: str | None,
        why: str,
        number: str,
        write: WriteResult | None = None,
        request_id: str | None = None,
    ) -> None:
        """Apply the credit to the invoice it is based on (once), or leave it open; then log the row (`action`
        None: nothing changed, so nothing is logged unless the credit is applied now)."""
        ctx = self.ctx
        name = f"#{number}"

        def done(act: str | None, reason: str, rid: str | None = None) -> None:
            if act is not None:
                ctx.record(STREAM, iid, act, reason, target_id=link.target_id, request_id=rid, name=name, write=write)
            ctx.mark(STREAM, iid, "done")

        if target is None or ctx.dry or ctx.ledger.get_meta(APPLIED_META + iid):
            first = target is None and action in ("created", "linked")
            left = "; no invoice it is based on: left as the customer's open credit" if first else ""
            done(action, why + left, request_id)
            return
        based = ctx.links.get("invoice", target)
        if based is None or based.target_type != "invoice" or based.status != "active" or not based.target_id:
            if based is None:
                self._defer(iid, target)  # applied once that invoice is in QuickBooks (apply_deferred)
            else:
                self._undefer(iid)  # in QuickBooks but not open: stays open credit for good
            done(
                action,
                f"{why}; left as the customer's open credit: invoice {target} it is based on is not open "
                "in QuickBooks (not pushed, or voided)",
                request_id,
            )
            return
        inv_id = str(based.target_id)
        key = f"forward:credit_apply:{iid}"
        if key in ctx.leftover and self._settled(iid, link, inv_id, key):
            reason = (
                f"{why}; applied to the invoice it is based on (Coperniq invoice {target}) by a run that stopped "
                "before recording it; recorded now (not applied twice)"
            )
            self._undefer(iid)
            done(action or "updated", reason.lstrip("; "), request_id)
            return
        invoice = ctx.client.invoice(inv_id)
        balance = to_money(invoice.get("balance") or 0)
        inv_name = f"#{invoice.get('number') or target}"
        if invoice.get("remote_was_deleted") or str(invoice.get("status")).upper() in CLOSED or balance <= 0:
            self._undefer(iid)
            done(
                action,
                f"{why}; left as the customer's open credit: invoice {inv_name} it is based on has no "
                "open balance in QuickBooks",
                request_id,
            )
            return
        note = credit_note(ctx.client, str(link.target_id))  # what is left of it (the bookkeeper may have used some)
        remaining = note.get("remaining_credit")
        amount = min(to_money(remaining if remaining is not None else note.get("total_amount") or 0), balance)
        if amount <= 0:
            self._undefer(iid)
            done(action, f"{why}; credit memo {name} has no credit left in QuickBooks to apply", request_id)
            return
        applied_on = str(note.get("transaction_date") or invoice.get("issue_date") or "")[:10] + "T00:00:00Z"

        def finish(res: WriteResult) -> None:
            ctx.ledger.set_meta(APPLIED_META + iid, inv_id)
            self._undefer(iid)
            ctx.end(key)
            lost = "; its answer was lost, and QuickBooks shows it applied (not applied twice)" if res.recovered else ""
            reason = f"{why}; applied {amount} to invoice {inv_name} (open balance {balance}){lost}".lstrip("; ")
            done(action or "updated", reason, res.request_id or request_id)

        def refused(exc: Exception) -> None:
            raise RowFailure(f"{why}; applying it to invoice {inv_name} failed: {exc}; retried next run".lstrip("; "))

        send = partial(apply_credit_note, ctx.client, str(link.target_id), inv_id, amount, applied_on)
        intent = {"kind": "credit_apply", "credit_note": link.target_id, "invoice": inv_id, "amount": str(amount)}
        ctx.writer.plan(PlannedWrite(STREAM, iid, key, intent, send, finish, refused))

    def _settled(self, iid: str, link: Link, inv_id: str, key: str) -> bool:
        """An application an interrupted run announced: QuickBooks says whether it happened (recorded now if it
        did). Its intent goes either way: if it did not happen, it is planned afresh."""
        ctx = self.ctx
        ctx.end(key)
        if applied_to(credit_note(ctx.client, str(link.target_id)), inv_id):
            ctx.ledger.set_meta(APPLIED_META + iid, inv_id)
            return True
        return False

    # --- a credit Coperniq takes back -----------------------------------------------------------------------
    def _taken_back(self, iid: str, link: Link, gone: Gone, status: str) -> None:
        """void_policy for a pushed credit: `leave` logs it once; `void` and `zero_and_note` zero its lines
        (QuickBooks' API has no void of a credit memo; README "Credits"), refused by QuickBooks while it is applied."""
        ctx = self.ctx
        reason = gone.reason.replace("invoice", "credit", 1)
        if link.status == ZEROED:
            ctx.mark(STREAM, iid, "done")
            return
        if ctx.s.void_policy == "leave" or ctx.policy.leaves_alone(link):
            if status != "skipped":
                ctx.skip(
                    STREAM,
                    iid,
                    f"credit pushed to QuickBooks earlier is now {gone.what} in Coperniq; left unchanged in "
                    "QuickBooks (void_policy: leave): review it there",
                    target_id=link.target_id,
                )
            return
        why = f"{reason}; its lines were zeroed in QuickBooks (void_policy: {ctx.s.void_policy})"
        if ctx.dry:
            ctx.record(STREAM, iid, "updated", why, target_id=link.target_id)
            return
        current = credit_note(ctx.client, str(link.target_id))

        def finish(request_id: str | None) -> None:
            ctx.save_link(replace(link, status=ZEROED))
            ctx.record(STREAM, iid, "updated", why, target_id=link.target_id, request_id=request_id)
            ctx.mark(STREAM, iid, "done")

        def refused(exc: Exception) -> None:
            raise RowFailure(
                f"QuickBooks refused to zero credit memo #{current.get('number')}: {exc}; unapply it from its invoice "
                "in QuickBooks first, or, if it was paid back (a refund check linked to it), review that refund there "
                "(or set void_policy: leave); retried next run"
            )

        patch = {"line_items": zero_lines(current), "total_amount": 0}
        ctx.plan_update(STREAM, iid, PATH, str(link.target_id), patch, finish, refused)
