"""What every rule of the forward reconcile pass shares: the run's ledger side (links, intents, log) and its errors.

The rules themselves live one module per kind (customers, jobs, invoices, payments); reconcile.py conducts them.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sync_ledger import Ledger, Link
from sync_ledger.rows import Journal, PlanRow, RowLog, written_by_reverse
from sync_ledger.writer import BatchWriter, PlannedWrite

from .errors import ConfigRefused, Disconnected, Unreachable
from .guard import RowGuard
from .links import ECHO_KIND, LINKS_OF, QBO, SRC, LinkMap, Staged
from .merge_client import MergeClient, WriteResult
from .settings import Settings
from .triggers import SNAPSHOT_STREAM

DIRECTION = "forward"
IDEMPOTENCY_NS = uuid.UUID("6f1c2a7e-6a57-4f0e-9d0c-2b8f5f4d9a11")

__all__ = [
    "DIRECTION",
    "QBO",
    "SRC",
    "ConfigRefused",
    "Context",
    "Disconnected",
    "LinkMap",
    "PlanRow",
    "Result",
    "Unreachable",
    "idempotency_key",
    "remote_id_of",
]


@dataclass
class Result:
    """A run's counts per stream and action, its dry-run plan and its warnings."""

    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    plan: list[PlanRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: staged rows the reconcile pass evaluated (what changed, not the ledger's whole history)
    evaluated: int = 0

    @property
    def failed(self) -> int:
        return sum(c["failed"] for c in self.counts.values())


def remote_id_of(model: Mapping[str, Any]) -> str | None:
    """The QuickBooks Id of a Merge model (None until Merge knows it)."""
    return str(model["remote_id"]) if model.get("remote_id") else None


def idempotency_key(kind: str, source_id: str, fp: str) -> str:
    """Same record + same payload -> same key, so Merge replays instead of creating twice."""
    return str(uuid.uuid5(IDEMPOTENCY_NS, f"{kind}:{source_id}:{fp}"))


def link_for(
    source_type: str, source_id: str, target_type: str, model: Mapping[str, Any], fp: str | None, *, origin: str = SRC
) -> Link:
    """The link of a Coperniq record to the QuickBooks record behind a Merge model (its `id`, QBO Id in
    `remote_id`; either may be unknown yet). `origin`: where the record was born (QBO for a matched one)."""
    merge_id = model.get("id")
    return Link(
        SRC,
        source_type,
        source_id,
        QBO,
        target_type,
        str(merge_id) if merge_id else None,
        remote_id_of(model),
        fp,
        origin=origin,
    )


@dataclass(frozen=True)
class MatchPolicy:
    """What matching_strategy means, in one place: for a record QuickBooks already held (a link whose origin is
    QuickBooks), `skip` leaves it alone, `enrich` fills what is empty and keeps its name, `replace` makes it what
    Coperniq says, clearing fields emptied in Coperniq."""

    strategy: str

    def leaves_alone(self, link: Link) -> bool:
        return link.origin == QBO and self.strategy == "skip"

    def keeps_qbo_name(self, link: Link) -> bool:
        return link.origin == QBO and self.strategy != "replace"

    @property
    def clears(self) -> bool:
        return self.strategy == "replace"


def written_note(write: WriteResult) -> str:
    """What the log adds to a create's reason: how it was confirmed, and what Merge warned about."""
    note = "; the answer was lost, found by its natural key (no duplicate)" if write.recovered else ""
    if write.warnings:
        note += "; Merge warned: " + "; ".join(write.warnings)
    return note


#: How a staged row names the record of another stream it is evaluated with (read with it: one query per chunk).
RELATED: dict[str, Callable[[dict[str, Any]], Any]] = {
    "accounts": lambda project: project.get("accountId"),  # a project's client
    "invoices": lambda payment: payment.get("invoiceId"),  # a payment's invoice
    "projects": lambda invoice: (invoice.get("record") or {}).get("id"),  # an invoice's project (tracking.py)
    SNAPSHOT_STREAM: lambda project: project.get("id"),  # the phase a project was first seen in
}


class Context:
    """The run's shared state and its ledger-side verbs (every rule module writes through these)."""

    def __init__(
        self, ledger: Ledger, client: MergeClient, settings: Settings, run_id: str, logger: logging.Logger
    ) -> None:
        self.ledger = ledger
        self.client = client
        self.s = settings
        self.run_id = run_id
        self.policy = MatchPolicy(settings.matching_strategy)
        self.log = logger
        self.dry = settings.dry_run
        self.rows = RowLog(ledger, run_id, DIRECTION, logger, dry=self.dry)
        self.journal = Journal(ledger, SRC, dry=self.dry)
        self.links = LinkMap(ledger, self.journal, dry=self.dry)
        #: write intents left by an interrupted run: checked against QuickBooks before anything is created again
        self.leftover: dict[str, dict[str, Any]] = dict(ledger.pending_intents(f"{DIRECTION}:"))
        self.warnings: list[str] = []
        self.guard = RowGuard(self.rows, self.journal, settings, client, logger)
        self.writer = BatchWriter(
            self.journal,
            lambda stream, sid, fn: self.guard(stream, sid, fn, count=False),
            workers=settings.max_parallel_writes,
            logger=logger,
            end=self.end,
        )
        self._dry_seq = 0

    def todo(self, stream: str, *, prefetch: Sequence[str] = ()) -> Iterator[Staged]:
        """The staged rows this run evaluates: new or changed (pending), failed, and waiting on something outside
        the ledger. A row waiting on a link or record is woken when that changes; a skipped row when it changes
        or a setting that decides it does (see Reconciler). A dry run evaluates everything: it writes nothing,
        so nothing it would link can wake anything. Each chunk's links (and `prefetch`: the records of that
        stream its rows name) are read before its rows are evaluated."""
        for chunk in self.todo_chunks(stream, prefetch=prefetch):
            yield from chunk

    def todo_chunks(self, stream: str, *, prefetch: Sequence[str] = ()) -> Iterator[list[Staged]]:
        related = [(name, RELATED[name]) for name in prefetch]
        if not self.dry:
            self.journal.flush()  # the links of earlier passes are written and the rows waiting on them woken
        if self.dry:
            chunks = self.ledger.iter_staged_chunks(
                SRC, stream, status=("pending", "failed", "skipped", "waiting"), prefetch=related
            )
        else:
            chunks = self.ledger.iter_staged_chunks(
                SRC, stream, status=("pending", "failed"), unkeyed_waits=True, prefetch=related
            )
        for chunk in chunks:
            for source_type, key in LINKS_OF.get(stream, ()):
                self.links.prefetch(source_type, (key(rid, row) for rid, row, _, _ in chunk))
            if stream in ECHO_KIND:
                unlinked = [rid for rid, _, _, _ in chunk if (ECHO_KIND[stream], rid) not in self.links]
                self.links.prefetch_echoes(ECHO_KIND[stream], unlinked)
            if stream == "payments":  # a payment goes on its invoice's job: read those links too
                invoices = (self.ledger.staged(SRC, "invoices", str(row.get("invoiceId"))) for _, row, _, _ in chunk)
                self.links.prefetch("project", (((inv or {}).get("record") or {}).get("id") for inv in invoices))
            yield chunk

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.log.warning("WARNING: %s", message)

    def record(
        self,
        stream: str,
        source_id: str | None,
        action: str,
        reason: str = "",
        *,
        target_id: str | None = None,
        request_id: str | None = None,
        name: str = "",
        write: WriteResult | None = None,
    ) -> None:
        """Count + integration log (+ plan row in a dry run). `write`: the create's answer, whose notes join the
        reason (a lost answer recovered, Merge's warnings)."""
        if write is not None:
            reason += written_note(write)
            request_id = request_id or write.request_id
        self.rows.record(stream, source_id, action, reason, target_id=target_id, request_id=request_id, name=name)

    def mark(self, stream: str, source_id: str, status: str, error: str | None = None) -> None:
        self.journal.mark(stream, source_id, status, error)

    def mark_waiting(self, stream: str, source_id: str, reason: str, wakes_on: str) -> None:
        """The row waits until `wakes_on` changes (a link, a record, a person's decision)."""
        self.journal.mark(stream, source_id, "waiting", reason, waits_on=wakes_on)

    def skip(self, stream: str, source_id: str, reason: str, **log: Any) -> None:
        """Log and mark a row skipped."""
        self.record(stream, source_id, "skipped", reason, **log)
        self.mark(stream, source_id, "skipped", reason)

    def echo(self, stream: str, kind: str, source_id: str, status: str, payload: Mapping[str, Any]) -> bool:
        """A Coperniq record the reverse leg wrote from QuickBooks must not be pushed back (duplicate in QBO): known
        by its link, or by the mark it carries (a reverse run may not have committed the link yet, or died)."""
        if (kind, source_id) in self.links:
            return False
        if not self.links.echo(kind, source_id) and not written_by_reverse(kind, payload):
            return False
        if status != "skipped":
            self.skip(stream, source_id, f"{kind} was created from QuickBooks by the reverse leg: not echoed back")
        return True

    def save_link(self, link: Link) -> None:
        self.links.add(link)
        self.journal.link(link)

    def commit_create(self, link: Link, intent_key: str) -> None:
        """Link + intent clear (batched by the journal): after that the create can never be repeated."""
        self.links.add(link)
        self.leftover.pop(intent_key, None)
        self.journal.link(link, intent_key)

    def end(self, intent_key: str) -> None:
        """Clear an intent together with the next batch of links (never before the link it protects)."""
        self.leftover.pop(intent_key, None)
        self.journal.end(intent_key)

    def plan_update(
        self,
        stream: str,
        source_id: str,
        model: str,
        merge_id: str,
        patch: dict[str, Any],
        finish: Callable[[str | None], None],
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        """PATCH a Merge model with the next batch (in parallel with the other writes); `finish(request_id)` then
        records the row, which stays unmarked until then (a crash before the PATCH leaves it to be redone)."""

        def send() -> str | None:
            return None if self.dry else self.client.update(model, merge_id, patch).request_id

        self.writer.plan(PlannedWrite(stream, source_id, None, {}, send, finish, on_error))

    def wake_on_change(self, meta_key: str, wanted: str | None, streams: Sequence[str], statuses: Sequence[str]) -> int:
        """Rows in `statuses` are evaluated again, once, when what decides them (`wanted`, a fingerprint kept in
        ledger meta `meta_key`) changed since the last run; the number woken (0 when unchanged or in a dry run)."""
        ledger = self.ledger
        if self.dry or ledger.get_meta(meta_key) == wanted:
            return 0
        woken = ledger.wake_all(SRC, streams, statuses)
        ledger.flush()  # the rows are pending before the new value is recorded
        ledger.set_meta(meta_key, wanted)
        return woken

    def fake_id(self, kind: str) -> str:
        self._dry_seq += 1
        return f"dry-run-{kind}-{self._dry_seq}"
