"""Pushed invoices that Coperniq takes back: voided, zeroed or left in QuickBooks, by `void_policy`.

A Coperniq invoice leaves the books when, after it was pushed, its status leaves `invoice_statuses` (DECLINED, or
back to DRAFT), it is archived (`isArchived`), or it is deleted (missing from two invoice sweeps:
invoice_deletes.py). QuickBooks keeps a voided invoice (amounts zero, "Voided" prepended to its private note) and
cannot un-void it. Merge's common model has no void, so the void goes through passthrough (`invoice?operation=void`
with the current SyncToken, read first). The policies:

  void (default)  void it; the link becomes `voided`, so no later run voids it again or flaps while Merge still
                  shows it open (Merge may show a passthrough void only after its next sync);
  zero_and_note   PATCH its lines to zero with a memo saying why, for bookkeepers who keep no voids; the link becomes
                  `zeroed`, and an invoice Coperniq sends again gets its lines back;
  leave           log it (once per version) and leave it unchanged.

A void is announced, sent, recorded and recovered by void_writes.py, the one path payments' voids take too (a lost
answer, or a crash between the void and the ledger, is settled by reading QuickBooks, never by voiding again). A
voided invoice that Coperniq sends again (back to SENT) cannot be revived: a new invoice is created under a suffixed
number (`CQ-1001-2`) and the link moves to it.

Deleted Coperniq payments are not seen by tap-coperniq (README "Voids and deletes"); their statuses are
(payment_voids.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sync_ledger import Link, fingerprint
from sync_ledger.rows import RowFailure

from .context import QBO, SRC, Context, link_for
from .invoice_deletes import deleted_at
from .mapping import invoice_fingerprint, invoice_number
from .merge_client import WriteError, WriteResult
from .qbo_voids import VoidAnswer, VoidRefused
from .void_writes import DELETED, INVOICE, VOIDED, ZEROED, VoidWrites
from .writes import create_model

#: QuickBooks keeps 21 characters of a DocNumber.
MAX_DOC_NUMBER = 21
#: Ledger meta: the latest issue of a Coperniq invoice in QuickBooks (2 after one reissue, ...).
ISSUE_META = "forward:invoice_issue:"
ZERO_NOTE = "Zeroed by the Coperniq sync"

#: An invoice of ours by (number, Merge contact id), linked to nothing else (InvoiceSync's natural key).
FindInvoice = Callable[[str, str], dict[str, Any] | None]


def reissue_number(number: str, issue: int) -> str:
    """The DocNumber of a Coperniq invoice's `issue`-th QuickBooks invoice: the number is cut, never the suffix."""
    suffix = f"-{issue}"
    return number[: MAX_DOC_NUMBER - len(suffix)] + suffix


def zero_line(line: Mapping[str, Any]) -> dict[str, Any]:
    """A Merge invoice line at zero (unit price and amount), keeping its item, quantity and tax code."""
    out: dict[str, Any] = {
        "description": line.get("description"),
        "quantity": line.get("quantity"),
        "unit_price": 0,
        "total_amount": 0,
        "item": line.get("item"),
    }
    for key in ("account", "tax_rate"):
        if line.get(key):
            out[key] = line[key]
    return out


@dataclass(frozen=True)
class Gone:
    """Why a Coperniq invoice does not belong in QuickBooks now: a status `invoice_statuses` does not push, or it is
    archived."""

    status: str
    archived: bool = False
    deleted: bool = False  # missing from two invoice sweeps (invoice_deletes.py)

    @classmethod
    def of(cls, invoice: Mapping[str, Any], statuses: Sequence[str]) -> Gone | None:
        status = str(invoice.get("status") or "").upper()
        if deleted_at(invoice) is not None:
            return cls(status, deleted=True)
        if status not in statuses:
            return cls(status)
        if invoice.get("isArchived") is True:
            return cls(status, archived=True)
        return None

    @property
    def what(self) -> str:
        return "deleted" if self.deleted else "archived" if self.archived else self.status or "without status"

    @property
    def reason(self) -> str:
        return f"invoice is {self.what} in Coperniq"

    def unpushed(self, statuses: Sequence[str]) -> str:
        """The skip reason of an invoice never pushed."""
        if self.deleted:
            return self.reason
        if self.archived:
            return f"{self.reason}; archived invoices are not pushed"
        return f"{self.reason}; invoice_statuses pushes {', '.join(statuses)}"


class InvoiceVoids:
    """The `void_policy` rules for pushed invoices (module docstring); InvoiceSync hands it every linked invoice
    that left (`left`) or came back (`reinstated`)."""

    def __init__(self, ctx: Context, find: FindInvoice) -> None:
        self.ctx = ctx
        self.find = find
        self.writes = VoidWrites(ctx, INVOICE, answer_note=self._credit_note, refused_note=self._refused_note)

    def gone(self, invoice: Mapping[str, Any]) -> Gone | None:
        """Why this invoice does not belong in QuickBooks now (None: it does)."""
        return Gone.of(invoice, self.ctx.s.invoice_statuses)

    # --- an invoice Coperniq took back ----------------------------------------------------------------------
    def left(self, iid: str, inv: Mapping[str, Any], link: Link, gone: Gone, status: str) -> None:
        """A pushed invoice that is declined, back to draft or archived in Coperniq: voided, zeroed or left."""
        ctx = self.ctx
        link = self.writes.settled(iid, link, gone.reason)
        policy = self._policy(link)
        if link.status in (VOIDED, DELETED) or (link.status == ZEROED and policy != "void"):
            ctx.mark("invoices", iid, "done")  # done before: QuickBooks has nothing more to change
            return
        name = f"#{invoice_number(inv, ctx.s.invoice_number_prefix)}"
        if policy == "leave":
            if status != "skipped":  # once per version of the record
                why = (
                    "matching_strategy skip leaves a matched invoice alone"
                    if ctx.policy.leaves_alone(link)
                    else "void_policy: leave"
                )
                ctx.skip(
                    "invoices",
                    iid,
                    f"invoice pushed to QuickBooks earlier is now {gone.what} in Coperniq; left unchanged in "
                    f"QuickBooks ({why}): review it there",
                    target_id=link.target_id,
                    name=name,
                )
            return
        if policy == "zero_and_note":
            self._zero(iid, link, gone, name)
        else:
            self.writes.plan(iid, link, gone.reason, name)

    def _policy(self, link: Link) -> str:
        return "leave" if self.ctx.policy.leaves_alone(link) else self.ctx.s.void_policy

    def _zero(self, iid: str, link: Link, gone: Gone, name: str) -> None:
        ctx = self.ctx
        if ctx.dry:
            ctx.record(
                "invoices",
                iid,
                "updated",
                f"{gone.reason}; its lines would be zeroed in QuickBooks with a note (void_policy: zero_and_note)",
                target_id=link.target_id,
                name=name,
            )
            return
        current = ctx.client.invoice(str(link.target_id))
        if str(current.get("status") or "").upper() == "VOID":
            ctx.save_link(replace(link, status=VOIDED))
            ctx.record(
                "invoices", iid, "skipped", f"{gone.reason}; already voided in QuickBooks", target_id=link.target_id
            )
            ctx.mark("invoices", iid, "done")
            return
        memo = current.get("memo")
        patch = {
            "line_items": [zero_line(line) for line in current.get("line_items") or [] if isinstance(line, dict)],
            "memo": f"{ZERO_NOTE}: {gone.reason}" + (f". {memo}" if memo else ""),
        }

        def finish(request_id: str | None) -> None:
            ctx.save_link(replace(link, status=ZEROED))
            ctx.record(
                "invoices",
                iid,
                "updated",
                f"{gone.reason}; its lines were zeroed in QuickBooks with a note (void_policy: zero_and_note)",
                target_id=link.target_id,
                request_id=request_id,
                name=name,
            )
            ctx.mark("invoices", iid, "done")

        def refused(exc: Exception) -> None:
            paid = [str(p) for p in current.get("payments") or [] if p]
            if isinstance(exc, WriteError) and paid and not exc.disconnected:
                raise RowFailure(
                    f"QuickBooks refused to zero invoice {name}: {exc.detail}; applied to it: "
                    f"{self._payments_text(paid, by_merge_id=True)}: void or unapply it in QuickBooks first (or set "
                    "void_policy: leave); retried next run",
                    exc.request_id,
                ) from exc
            raise exc

        ctx.plan_update("invoices", iid, "invoices", str(link.target_id), patch, finish, refused)

    # --- an invoice Coperniq sends again ----------------------------------------------------------------------
    def reinstated(self, iid: str, inv: Mapping[str, Any], link: Link, desired: dict[str, Any], contact: str) -> bool:
        """A pushed invoice back in `invoice_statuses` after it was voided or zeroed in QuickBooks: True when handled
        here (a voided one gets a new invoice, a zeroed one its lines back), False for an ordinary update."""
        status = str(inv.get("status") or "").upper()
        link = self.writes.settled(iid, link, f"invoice was taken back in Coperniq (it is {status} now)")
        if link.status in (VOIDED, DELETED):
            self._reissue(iid, link, desired, contact, status)
            return True
        if link.status == ZEROED:
            self._restore(iid, link, desired, status)
            return True
        return False

    def _reissue(self, iid: str, link: Link, desired: dict[str, Any], contact: str, status: str) -> None:
        """QuickBooks cannot un-void: the invoice is issued again under the next suffixed number (the choice, README
        "Voids and deletes"), under the create's intent, so a crash or a lost answer never makes two."""
        ctx = self.ctx
        key = f"forward:invoice:{iid}"
        intent = ctx.leftover.get(key) or {}
        if intent.get("issue") and intent.get("number"):  # a reissue an interrupted run announced
            issue, number = int(intent["issue"]), str(intent["number"])
        else:
            issue = self._issues(iid) + 1
            number = reissue_number(str(desired["number"]), issue)
        fp = invoice_fingerprint(desired)
        why = (
            f"invoice is {status} in Coperniq again and the QuickBooks invoice it was pushed as is {link.status} "
            "there (QuickBooks cannot un-void)"
        )
        if intent.get("issue") and not ctx.dry and (found := self.find(number, contact)) is not None:
            ctx.commit_create(link_for("invoice", iid, "invoice", found, fp), key)
            self._issued(iid, issue)
            ctx.record(
                "invoices",
                iid,
                "linked",
                f"recovered invoice #{number} created by an interrupted run (no duplicate created); {why}",
                target_id=str(found.get("id")),
                name=f"#{number}",
            )
            ctx.mark("invoices", iid, "done")
            return

        def created(new: Link, res: WriteResult) -> None:
            ctx.save_link(replace(new, fingerprint=fp))  # what later changes compare, as for every invoice
            self._issued(iid, issue)
            reason = f"invoice #{number}: {why}"
            ctx.record("invoices", iid, "created", reason, target_id=new.target_id, name=f"#{number}", write=res)
            ctx.mark("invoices", iid, "done")

        body = {**desired, "number": number}
        # the key's fingerprint has the number: Merge must not replay the first create (the voided invoice)
        create_model(
            ctx,
            "invoice",
            iid,
            body,
            fingerprint(body),
            {"number": number, "issue": issue, "replaces": link.target_id},
            created,
            lambda: self.find(number, contact),
        )

    def _restore(self, iid: str, link: Link, desired: dict[str, Any], status: str) -> None:
        ctx = self.ctx
        patch = {k: v for k, v in desired.items() if k != "number"}
        patch.setdefault("memo", None)  # the zero note goes with the zero lines
        fp = invoice_fingerprint(desired)

        def finish(request_id: str | None) -> None:
            ctx.save_link(replace(link, status="active", fingerprint=fp))
            ctx.record(
                "invoices",
                iid,
                "updated",
                f"invoice is {status} in Coperniq again: its lines and amounts are back in QuickBooks (they were "
                "zeroed, void_policy: zero_and_note)",
                target_id=link.target_id,
                request_id=request_id,
                name=f"#{desired['number']}",
            )
            ctx.mark("invoices", iid, "done")

        ctx.plan_update("invoices", iid, "invoices", str(link.target_id), patch, finish)

    # --- helpers --------------------------------------------------------------------------------------------
    def _issues(self, iid: str) -> int:
        return int(self.ctx.ledger.get_meta(ISSUE_META + iid) or 1)

    def _issued(self, iid: str, issue: int) -> None:
        if not self.ctx.dry:
            self.ctx.ledger.set_meta(ISSUE_META + iid, str(issue))

    def _credit_note(self, answer: VoidAnswer) -> str:
        """What a recorded void adds: the payments QuickBooks kept as the customer's unapplied credit."""
        if not answer.payments:
            return ""
        return f"; {self._payments_text(answer.payments)} stays in QuickBooks as the customer's unapplied credit"

    def _refused_note(self, exc: VoidRefused) -> str:
        """What a refused void's failed row adds: the payments QuickBooks will not void the invoice with."""
        if not exc.payments:
            return ""
        return (
            f"; applied to it: {self._payments_text(exc.payments)}: void or unapply it in QuickBooks first (or set "
            "void_policy: leave); retried next run"
        )

    def _payments_text(self, ids: Sequence[str], *, by_merge_id: bool = False) -> str:
        """QuickBooks payments by their QuickBooks Id, with the Coperniq payment each one was pushed from."""
        parts = []
        for pid in ids:
            ledger = self.ctx.ledger
            found = ledger.get_link_by_target(QBO, "payment", pid) if by_merge_id else None
            found = found or ledger.get_link_by_remote(QBO, "payment", pid)
            qbo_id = (found.target_remote_id if found else None) or pid
            ours = f" (Coperniq payment {found.source_id})" if found and found.source_system == SRC else ""
            parts.append(f"QuickBooks payment {qbo_id}{ours}")
        return ", ".join(parts)
