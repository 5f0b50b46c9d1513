"""The row pipeline both targets share: one outcome protocol, one integration-log writer, one journal.

Every staged source record (a *row*) ends each run in one of these outcomes, logged with a reason:

  created / updated / linked   written (or matched) in the other system: the row is ``done``;
  skipped                      deliberately not written (an echo, a setting, a status), logged once per version;
                               re-evaluated only when the record changes or a setting that decides it does;
  waiting                      depends on something not synced yet (its project, customer or invoice): kept as
                               ``waiting`` with the reason and the key of what it waits on (``link_key``,
                               ``record_key``), and re-evaluated when that changes (``Ledger.wake``); a wait on
                               something outside the ledger (no key) is re-evaluated every run;
  failed                       refused or broken: kept as ``failed`` with the reason, retried on later runs;
  review                       a match the sync must not guess: ``waiting`` in the review queue (ledger_review)
                               until a person decides (``coperniq-qbo link/new/dismiss``).

A person's actions on rows (``coperniq-qbo retry/dismiss/link``) are applied at a run's start
(``apply_operator_actions``) and logged as ``operator`` lines of that run.

So a run's cost follows what changed, not how much history the ledger holds.

The **journal** writes links, intent clears and row statuses to the ledger in batches, under two ordering rules
that make a crash at any point recoverable (docs/CONTRACTS.md, "write journal"):

1. An intent is durable *before* its API call (``begin``), so a re-run looks the record up before creating it again.
2. A row's status is written only *after* the links queued before it, and an intent is cleared only *together with*
   the link it protects: a row is never ``done`` while its link is not, and an intent never disappears while its
   record is unlinked.

Rows waiting on a link wake when the journal writes it (one UPDATE per batch); a run's passes flush the journal
before reading their rows, so a row woken by an earlier pass is evaluated in the same run.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .ledger import Ledger, Link
from .ledger_review import ALL_FAILED
from .ledger_staging import record_key

__all__ = [
    "Journal",
    "Outcome",
    "PlanRow",
    "RowFailure",
    "RowLog",
    "Wait",
    "apply_operator_actions",
    "echo_link",
    "link_key",
    "overall",
    "record_key",
]

#: Links are written in batches of this size, or after this many seconds (a DuckDB commit costs ~5 ms).
LINK_BATCH = 200
LINK_BATCH_SECONDS = 2.0
#: What a dry run logs instead of a write.
WRITE_ACTIONS = frozenset({"created", "updated", "linked", "deleted"})


class Wait(Exception):
    """The row depends on something not synced or not visible yet. `on`: the wake key of what it waits on
    (link_key / record_key); None when that is outside the ledger (re-evaluated every run)."""

    def __init__(self, reason: str, *, on: str | None = None) -> None:
        super().__init__(reason)
        self.on = on


def link_key(source_type: str, source_id: object) -> str:
    """The wake key of a source record's link: rows waiting on it are re-evaluated once it is linked."""
    return f"link:{source_type}:{source_id}"


class RowFailure(Exception):
    """A row that cannot be synced as it stands (bad data, a missing mapping, the other system refused it)."""

    def __init__(self, reason: str, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request_id = request_id


@dataclass
class PlanRow:
    """One line of a dry run's plan."""

    stream: str
    source_id: str
    action: str
    name: str
    reason: str


@dataclass
class Outcome:
    """What happened to one row (or one part of it, such as one invoice application of a payment)."""

    kind: str  # done | skipped | wait | failed
    source_id: str
    action: str | None = None  # integration-log action; None: nothing to log (already up to date)
    reason: str = ""
    target_id: str | None = None
    request_id: str | None = None


def overall(outcomes: Iterable[Outcome]) -> str:
    """The row's status from its parts' outcomes: any failure fails it, then any wait, then done, else skipped."""
    kinds = {o.kind for o in outcomes}
    return next((k for k in ("failed", "wait", "done") if k in kinds), "skipped")


#: What the reverse leg writes into each Coperniq record it creates: the forward leg knows such records by their
#: content too, not only by their link, which the reverse leg commits just after the create (and never, if it dies
#: in between) while a forward run of the same company may be reading Coperniq at that moment.
REVERSE_MARKER_PREFIX = "qbo-merge:"  # invoice description: "... [qbo-merge:<Merge invoice id>]"
REVERSE_PAYMENT_NOTE = "Synced from QuickBooks payment"  # payment notes: "Synced from QuickBooks payment <number>"


def written_by_reverse(kind: str, payload: Mapping[str, Any]) -> bool:
    """Does this Coperniq invoice or payment carry the reverse leg's mark?"""
    if kind == "invoice":
        return f"[{REVERSE_MARKER_PREFIX}" in str(payload.get("description") or "")
    if kind == "payment":
        return str(payload.get("notes") or "").startswith(REVERSE_PAYMENT_NOTE)
    return False


def echo_link(
    ledger: Ledger, system: str, kind: str, record_id: str, *, other: str, remote_id: str | None = None
) -> Link | None:
    """The link that says this record of `system` was *written* by the leg coming from `other`: syncing it back
    would duplicate it there. Looked up by id, then by the provider's own id (a record the other leg created
    before it had an id of the unified API)."""
    link = ledger.get_link_by_target(system, kind, record_id)
    if link is None and remote_id:
        link = ledger.get_link_by_remote(system, kind, str(remote_id))
    return link if written_from(link, other) else None


def written_from(link: Link | None, other: str) -> bool:
    """Does this link (found by its target) say the record was written by the leg coming from `other`?"""
    return link is not None and link.source_system == other


@dataclass
class RowLog:
    """Counts, integration-log lines and (dry run) the plan. One line per row only at DEBUG: the integration log
    has them all; a failure is an event worth a WARNING line."""

    ledger: Ledger
    run_id: str
    direction: str
    logger: logging.Logger
    dry: bool = False
    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    plan: list[PlanRow] = field(default_factory=list)

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
    ) -> None:
        self.counts[stream][action] += 1
        logged = action
        if self.dry and action in WRITE_ACTIONS:
            self.plan.append(PlanRow(stream, str(source_id), action, name, reason))
            logged = "planned"
            reason = f"would be {action}: {reason}" if reason else f"would be {action}"
        elif self.dry and action in {"skipped", "failed", "review"}:
            self.plan.append(PlanRow(stream, str(source_id), action, name, reason))
        level = logging.WARNING if action == "failed" else logging.DEBUG
        self.logger.log(
            level,
            "%s %s %s%s%s",
            stream,
            source_id,
            logged,
            f" -> {target_id}" if target_id else "",
            f": {reason}" if reason else "",
        )
        self.ledger.log(
            self.run_id,
            direction=self.direction,
            stream=stream,
            source_id=source_id,
            action=logged,
            reason=reason,
            target_id=target_id,
            request_id=request_id,
        )

    def outcome(self, stream: str, outcome: Outcome, action: str | None = None) -> None:
        """Log one Outcome (its own action unless `action` overrides it)."""
        self.record(
            stream,
            outcome.source_id,
            action or str(outcome.action),
            outcome.reason,
            target_id=outcome.target_id,
            request_id=outcome.request_id,
        )


class Journal:
    """Links, intent clears and row statuses of one source system, batched under the ordering rules above.
    A dry run writes nothing (intents, links and statuses alike)."""

    def __init__(
        self,
        ledger: Ledger,
        source_system: str,
        *,
        dry: bool = False,
        batch: int = LINK_BATCH,
        seconds: float = LINK_BATCH_SECONDS,
    ) -> None:
        self.ledger = ledger
        self.source_system = source_system
        self.dry = dry
        self.batch = batch
        self.seconds = seconds
        self._links: dict[tuple[str, str, str], Link] = {}
        self._ends: list[str] = []
        self._marks: list[tuple[str, str, str, str | None, str | None]] = []
        self._saved_at = time.monotonic()

    def begin(self, intents: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Make intents durable now (rule 1: before the API calls they announce)."""
        if not self.dry:
            self.ledger.begin_intents(intents)

    def link(self, link: Link, intent_key: str | None = None) -> None:
        """Queue a link, and the clear of the intent that announced its create; rows waiting on it wake when it is
        written (flush)."""
        if self.dry:
            return
        self._links[(link.source_type, link.source_id, link.target_system)] = link
        if intent_key:
            self._ends.append(intent_key)
        if len(self._links) >= self.batch or time.monotonic() - self._saved_at > self.seconds:
            self.flush()

    def end(self, intent_key: str) -> None:
        """Clear an intent with the next batch (nothing was created, or its link is already queued)."""
        if not self.dry:
            self._ends.append(intent_key)

    def keep(self, intent_key: str) -> None:
        """Take back a queued clear: the create is planned again (under a new name) and its intent is rewritten."""
        while intent_key in self._ends:
            self._ends.remove(intent_key)

    def mark(
        self, stream: str, source_id: str, status: str, error: str | None = None, *, waits_on: str | None = None
    ) -> None:
        """A row's status (rule 2: written after the links queued before it)."""
        if self.dry:
            return
        if self._links or self._ends:
            self._marks.append((stream, source_id, status, error, waits_on))
        else:
            self.ledger.mark_staged(self.source_system, stream, source_id, status, error, waits_on=waits_on)

    def flush(self) -> None:
        """Write queued links and intent clears in one transaction, then the statuses queued behind them, then wake
        the rows waiting on those links (one UPDATE; a crash before it is healed by heal_waits at the next start)."""
        links = list(self._links.values())
        if links or self._ends:
            with self.ledger.transaction():
                if links:
                    self.ledger.upsert_links(links)
                self.ledger.end_intents(self._ends)
        self._links.clear()
        self._ends.clear()
        for stream, source_id, status, error, waits_on in self._marks:
            self.ledger.mark_staged(self.source_system, stream, source_id, status, error, waits_on=waits_on)
        self._marks.clear()
        if links:
            self.ledger.wake(self.source_system, [link_key(link.source_type, link.source_id) for link in links])
        self._saved_at = time.monotonic()


def apply_operator_actions(ledger: Ledger, source_system: str, rows: RowLog) -> int:
    """The actions people asked for since the last run (retry, dismiss, link, ...), applied before anything is
    evaluated and logged as `operator` lines of this run; their count."""
    applied = ledger.apply_row_actions(source_system, rows.run_id).rows
    for stream, rid, action, text in applied:
        rows.record(
            "run" if rid == ALL_FAILED else stream, None if rid == ALL_FAILED else rid, "operator", f"{action}: {text}"
        )
    if applied:
        rows.logger.info("%d operator action(s) from coperniq-qbo applied before this run", len(applied))
    return len(applied)
