"""One void of a pushed record, whatever its kind (an invoice, voids.py; a payment, payment_voids.py): announced,
sent, recorded and recovered one way for both.

A void is announced by a write-ahead intent (`forward:void:<kind>:<Coperniq id>`) that the BatchWriter makes durable
with its batch before the call, like a create; QboVoider (qbo_voids.py) sends it exactly once whatever becomes of
the answers; the link's new status (`voided`, or `deleted` when QuickBooks no longer has the record) and the
intent's clear commit in one journal batch. An intent a crash or a lost answer left is settled by reading QuickBooks,
never by voiding again. The rules that decide *whether* to void (`void_policy`) stay with each kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from sync_ledger import Link
from sync_ledger.rows import RowFailure, Wait
from sync_ledger.writer import PlannedWrite

from .context import Context
from .qbo_voids import QboVoider, VoidAnswer, VoidRefused, is_voided

#: The integration-log action of a void. The ledger's log has no `voided` action (sync_ledger LOG_ACTIONS,
#: docs/CONTRACTS.md), so a void is logged `updated` (QuickBooks keeps the record, changed) with "voided" in the reason.
VOID_ACTION = "updated"
#: Link statuses: voided in QuickBooks (for good), gone from QuickBooks, voided there to be created again with what
#: Coperniq says now (payment_changes.py).
VOIDED, DELETED, REPLACED = "voided", "deleted", "replaced"
#: Link status of an invoice (or credit memo) zeroed with a note (restorable: voids.py).
ZEROED = "zeroed"


def _no_note(_: Any) -> str:
    return ""


@dataclass(frozen=True)
class VoidKind:
    """A kind of record a void applies to: its ledger type, its integration-log stream, its QuickBooks entity, what
    the log adds after "voided in QuickBooks", whether the log names it by its DocNumber, the link status a void
    leaves, and the verb of its intent key (a void that replaces the record has an intent of its own)."""

    kind: str
    stream: str
    entity: str
    voided_note: str = ""
    numbered: bool = False
    settles_as: str = VOIDED
    verb: str = "void"

    def intent_key(self, source_id: str) -> str:
        """The write-ahead intent of a void (left only by a crash or a lost answer)."""
        return f"forward:{self.verb}:{self.kind}:{source_id}"

    def name_of(self, record: dict[str, Any], qbo_id: str) -> str:
        return f"#{record.get('DocNumber') or qbo_id}" if self.numbered else ""


INVOICE = VoidKind("invoice", "invoices", "Invoice", numbered=True)
PAYMENT = VoidKind("payment", "payments", "Payment", voided_note=" (its invoice's balance is open again)")
#: A payment voided to be created again with a new amount (payment_changes.py): whatever QuickBooks answered, the
#: link becomes `replaced`, which PaymentSync creates again.
PAYMENT_REPLACED = VoidKind(
    "payment", "payments", "Payment", voided_note=", to be created again", settles_as=REPLACED, verb="replace"
)


class VoidWrites:
    """Plans, records and recovers the voids of one kind. `answer_note(answer)`: what a recorded void adds (an
    invoice: the payments that became credit); `refused_note(exc)`: what a refused void's failed row adds."""

    def __init__(
        self,
        ctx: Context,
        kind: VoidKind,
        *,
        answer_note: Callable[[VoidAnswer], str] = _no_note,
        refused_note: Callable[[VoidRefused], str] = _no_note,
    ) -> None:
        self.ctx = ctx
        self.kind = kind
        self.answer_note = answer_note
        self.refused_note = refused_note
        self.qbo = QboVoider(ctx.client, ctx.client.api.backoff)

    def plan(self, sid: str, link: Link, why: str, name: str = "", then: Callable[[Link], None] | None = None) -> None:
        """Void the linked record with the next batch (a dry run only logs the plan); `why`: what Coperniq says;
        `then(link)`: what follows the recorded void (default: the row is done)."""
        ctx, kind = self.ctx, self.kind
        if ctx.dry:
            reason = f"{why}; would be voided in QuickBooks"
            ctx.record(kind.stream, sid, VOID_ACTION, reason, target_id=link.target_id, name=name)
            return
        qbo_id = self.qbo_id(link)
        key = kind.intent_key(sid)

        def finish(answer: VoidAnswer) -> None:
            settled = self.commit(sid, link, answer, why, name)
            if then is None:
                ctx.mark(kind.stream, sid, "done")
            else:
                then(settled)

        def refused(exc: Exception) -> None:
            if not isinstance(exc, VoidRefused):
                raise exc
            label = f"{kind.kind} {name}" if name else kind.kind
            reason = f"QuickBooks refused to void {label} (QBO Id {exc.qbo_id}): {exc.detail}"
            raise RowFailure(reason + self.refused_note(exc), exc.request_id) from exc

        intent = {"kind": f"{kind.kind}_void", "merge_id": link.target_id, "qbo_id": qbo_id}
        send = partial(self.qbo.void, kind.entity, qbo_id)
        ctx.writer.plan(PlannedWrite(kind.stream, sid, key, intent, send, finish, refused))

    def commit(self, sid: str, link: Link, answer: VoidAnswer, why: str, name: str) -> Link:
        """Record a void QuickBooks shows: the link's new status and the intent's clear go in one journal batch."""
        ctx, kind = self.ctx, self.kind
        status = kind.settles_as if kind.settles_as != VOIDED else DELETED if answer.deleted else VOIDED
        settled = replace(link, status=status, target_remote_id=answer.qbo_id)
        ctx.commit_create(settled, kind.intent_key(sid))

        def log(action: str, reason: str, request_id: str | None = None) -> None:
            ctx.record(kind.stream, sid, action, reason, target_id=link.target_id, request_id=request_id, name=name)

        if answer.deleted:
            log(
                "skipped",
                f"{why}; QuickBooks no longer has {kind.kind} {answer.qbo_id} (deleted there): nothing to void",
            )
        elif not (answer.sent or answer.lost or answer.recovered):
            log("skipped", f"{why}; already voided in QuickBooks (nothing sent)")
        else:
            notes = kind.voided_note
            if answer.lost:
                notes += "; its answer was lost, and QuickBooks shows it voided (not voided twice)"
            elif answer.recovered:
                notes += " by a run that stopped before recording it; recorded now (not voided twice)"
            reason = f"{why}; voided in QuickBooks{notes}{self.answer_note(answer)}"
            log(VOID_ACTION, reason, answer.request_id)
        return settled

    def gone_there(self, sid: str, link: Link, why: str) -> bool:
        """Whether QuickBooks shows the linked record voided or deleted already (one passthrough read): if so it is
        recorded as such (logged `skipped`, nothing sent) and the row is done."""
        ctx, kind = self.ctx, self.kind
        if ctx.dry:
            return False
        qbo_id = self.qbo_id(link)
        current = ctx.client.qbo_transaction(kind.entity, qbo_id)
        if current is not None and not is_voided(current):
            return False
        answer = VoidAnswer(qbo_id, current or {}, deleted=current is None)
        self.commit(sid, link, answer, why, kind.name_of(current or {}, qbo_id))
        ctx.mark(kind.stream, sid, "done")
        return True

    def settled(self, sid: str, link: Link, why: str) -> Link:
        """A void left unrecorded by a crash or a lost answer (its intent is still there): QuickBooks says whether it
        happened. Recorded once if it did; otherwise the intent goes and the row is decided afresh."""
        ctx, kind = self.ctx, self.kind
        key = kind.intent_key(sid)
        if key not in ctx.leftover or ctx.dry:
            return link
        if link.status != "active":
            ctx.end(key)
            return link
        qbo_id = self.qbo_id(link)
        current = ctx.client.qbo_transaction(kind.entity, qbo_id)
        if current is not None and is_voided(current):
            answer = VoidAnswer(qbo_id, current, recovered=True)
            return self.commit(sid, link, answer, why, kind.name_of(current, qbo_id))
        ctx.end(key)
        return link

    def qbo_id(self, link: Link) -> str:
        """The QuickBooks Id of a linked record (from Merge when the link has none yet)."""
        if link.target_remote_id:
            return link.target_remote_id
        model = self.ctx.client.api.get(f"/{self.kind.stream}/{link.target_id}") or {}
        if not model.get("remote_id"):
            raise Wait(
                f"Merge does not know the QuickBooks Id of {self.kind.kind} {link.target_id} yet; retried next run"
            )
        return str(model["remote_id"])
