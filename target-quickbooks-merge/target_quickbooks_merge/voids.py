"""Pushed invoices that Coperniq takes back: voided, zeroed or left in QuickBooks, by `void_policy`.

A Coperniq invoice leaves the books when, after it was pushed, its status leaves `invoice_statuses` (DECLINED, or
back to DRAFT) or it is archived (`isArchived`). QuickBooks keeps a voided invoice (amounts zero, "Voided" prepended
to its private note) and cannot un-void it. Merge's common model has no void, so the void goes through passthrough
(`invoice?operation=void` with the current SyncToken, read first). The policies:

  void (default)  void it; the link becomes `voided`, so no later run voids it again or flaps while Merge still
                  shows it open (Merge may show a passthrough void only after its next sync);
  zero_and_note   PATCH its lines to zero with a memo saying why, for bookkeepers who keep no voids; the link becomes
                  `zeroed`, and an invoice Coperniq sends again gets its lines back;
  leave           log it (once per version) and leave it unchanged.

A void is announced by a write-ahead intent like a create (the BatchWriter makes it durable before the call) and
recorded by the link and the intent's clear in one journal batch. A lost answer, or a crash between the void and the
ledger, is settled by reading QuickBooks (a voided invoice shows it), never by voiding again. A voided invoice that
Coperniq sends again (back to SENT) cannot be revived: a new invoice is created under a suffixed number (`CQ-1001-2`)
and the link moves to it.

Deleted Coperniq invoices and payments are not seen by tap-coperniq (README "Voids and deletes"), so only these
status and archive changes are propagated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from sync_ledger import Link, fingerprint
from sync_ledger.rows import RowFailure, Wait
from sync_ledger.writer import PlannedWrite

from .context import QBO, SRC, Context, link_for
from .mapping import invoice_fingerprint, invoice_number
from .merge_client import WriteError, WriteResult
from .qbo_voids import QboVoider, VoidAnswer, VoidRefused, is_voided
from .writes import create_model

#: The integration-log action of a void. The ledger's log has no `voided` action (sync_ledger LOG_ACTIONS,
#: docs/CONTRACTS.md), so a void is logged `updated` (QuickBooks keeps the record, changed) with "voided" in the reason.
VOID_ACTION = "updated"
#: Link statuses: voided in QuickBooks (for good), gone from QuickBooks, zeroed with a note (restorable).
VOIDED, DELETED, ZEROED = "voided", "deleted", "zeroed"
#: QuickBooks keeps 21 characters of a DocNumber.
MAX_DOC_NUMBER = 21
#: Ledger meta: the latest issue of a Coperniq invoice in QuickBooks (2 after one reissue, ...).
ISSUE_META = "forward:invoice_issue:"
ZERO_NOTE = "Zeroed by the Coperniq sync"

#: An invoice of ours by (number, Merge contact id), linked to nothing else (InvoiceSync's natural key).
FindInvoice = Callable[[str, str], dict[str, Any] | None]


def void_intent_key(invoice_id: str) -> str:
    """The write-ahead intent of an invoice's void (left only by a crash or a lost answer)."""
    return f"forward:void:invoice:{invoice_id}"


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

    @classmethod
    def of(cls, invoice: Mapping[str, Any], statuses: Sequence[str]) -> Gone | None:
        status = str(invoice.get("status") or "").upper()
        if status not in statuses:
            return cls(status)
        if invoice.get("isArchived") is True:
            return cls(status, archived=True)
        return None

    @property
    def what(self) -> str:
        return "archived" if self.archived else self.status or "without status"

    @property
    def reason(self) -> str:
        return f"invoice is {self.what} in Coperniq"

    def unpushed(self, statuses: Sequence[str]) -> str:
        """The skip reason of an invoice never pushed."""
        if self.archived:
            return f"{self.reason}; archived invoices are not pushed"
        return f"{self.reason}; invoice_statuses pushes {', '.join(statuses)}"


class InvoiceVoids:
    """The `void_policy` rules for pushed invoices (module docstring); InvoiceSync hands it every linked invoice
    that left (`left`) or came back (`reinstated`)."""

    def __init__(self, ctx: Context, find: FindInvoice) -> None:
        self.ctx = ctx
        self.find = find
        self.qbo = QboVoider(ctx.client, ctx.client.api.backoff)

    def gone(self, invoice: Mapping[str, Any]) -> Gone | None:
        """Why this invoice does not belong in QuickBooks now (None: it does)."""
        return Gone.of(invoice, self.ctx.s.invoice_statuses)

    # --- an invoice Coperniq took back ----------------------------------------------------------------------
    def left(self, iid: str, inv: Mapping[str, Any], link: Link, gone: Gone, status: str) -> None:
        """A pushed invoice that is declined, back to draft or archived in Coperniq: voided, zeroed or left."""
        ctx = self.ctx
        link = self._settled(iid, link, gone.reason)
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
            self._void(iid, link, gone, name)

    def _policy(self, link: Link) -> str:
        return "leave" if self.ctx.policy.leaves_alone(link) else self.ctx.s.void_policy

    def _void(self, iid: str, link: Link, gone: Gone, name: str) -> None:
        ctx = self.ctx
        if ctx.dry:
            reason = f"{gone.reason}; would be voided in QuickBooks"
            ctx.record("invoices", iid, VOID_ACTION, reason, target_id=link.target_id, name=name)
            return
        qbo_id = self._qbo_id(link)
        key = void_intent_key(iid)

        def finish(answer: VoidAnswer) -> None:
            self._commit(iid, link, answer, key, gone.reason, name)
            ctx.mark("invoices", iid, "done")

        def refused(exc: Exception) -> None:
            explained = self._explained(exc, name)
            if explained is exc:
                raise exc
            raise explained from exc

        intent = {"kind": "invoice_void", "merge_id": link.target_id, "qbo_id": qbo_id}
        ctx.writer.plan(
            PlannedWrite("invoices", iid, key, intent, partial(self.qbo.void, "Invoice", qbo_id), finish, refused)
        )

    def _commit(self, iid: str, link: Link, answer: VoidAnswer, key: str, why: str, name: str) -> Link:
        """Record a void QuickBooks shows: the link's new status and the intent's clear go in one journal batch."""
        ctx = self.ctx
        settled = replace(link, status=DELETED if answer.deleted else VOIDED, target_remote_id=answer.qbo_id)
        ctx.commit_create(settled, key)
        if answer.deleted:
            reason = f"{why}; QuickBooks no longer has invoice {answer.qbo_id} (deleted there): nothing to void"
            ctx.record("invoices", iid, "skipped", reason, target_id=link.target_id, name=name)
        elif not (answer.sent or answer.lost or answer.recovered):
            reason = f"{why}; already voided in QuickBooks (nothing sent)"
            ctx.record("invoices", iid, "skipped", reason, target_id=link.target_id, name=name)
        else:
            notes = ""
            if answer.lost:
                notes = "; its answer was lost, and QuickBooks shows it voided (not voided twice)"
            elif answer.recovered:
                notes = " by a run that stopped before recording it; recorded now (not voided twice)"
            if answer.payments:
                notes += (
                    f"; {self._payments_text(answer.payments)} stays in QuickBooks as the customer's unapplied credit"
                )
            ctx.record(
                "invoices",
                iid,
                VOID_ACTION,
                f"{why}; voided in QuickBooks{notes}",
                target_id=link.target_id,
                request_id=answer.request_id,
                name=name,
            )
        return settled

    def _settled(self, iid: str, link: Link, why: str) -> Link:
        """A void left unrecorded by a crash or a lost answer (its intent is still there): QuickBooks says whether it
        happened. Recorded once if it did; otherwise the intent goes and the row is decided afresh."""
        ctx = self.ctx
        key = void_intent_key(iid)
        if key not in ctx.leftover or ctx.dry:
            return link
        if link.status != "active":
            ctx.end(key)
            return link
        qbo_id = self._qbo_id(link)
        current = ctx.client.qbo_transaction("Invoice", qbo_id)
        if current is not None and is_voided(current):
            answer = VoidAnswer(qbo_id, current, recovered=True)
            return self._commit(iid, link, answer, key, why, f"#{current.get('DocNumber') or qbo_id}")
        ctx.end(key)
        return link

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
        link = self._settled(iid, link, f"invoice was taken back in Coperniq (it is {status} now)")
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
    def _qbo_id(self, link: Link) -> str:
        """The QuickBooks Id of a linked invoice (from Merge when the link has none yet)."""
        if link.target_remote_id:
            return link.target_remote_id
        remote = self.ctx.client.invoice(str(link.target_id)).get("remote_id")
        if not remote:
            raise Wait(f"Merge does not know the QuickBooks Id of invoice {link.target_id} yet; retried next run")
        return str(remote)

    def _issues(self, iid: str) -> int:
        return int(self.ctx.ledger.get_meta(ISSUE_META + iid) or 1)

    def _issued(self, iid: str, issue: int) -> None:
        if not self.ctx.dry:
            self.ctx.ledger.set_meta(ISSUE_META + iid, str(issue))

    def _explained(self, exc: Exception, name: str) -> Exception:
        """A refused void as the failed row's reason, naming the payments QuickBooks will not void it with."""
        if not isinstance(exc, VoidRefused):
            return exc
        reason = f"QuickBooks refused to void invoice {name} (QBO Id {exc.qbo_id}): {exc.detail}"
        if exc.payments:
            reason += (
                f"; applied to it: {self._payments_text(exc.payments)}: void or unapply it in QuickBooks first (or "
                "set void_policy: leave); retried next run"
            )
        return RowFailure(reason, exc.request_id)

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
