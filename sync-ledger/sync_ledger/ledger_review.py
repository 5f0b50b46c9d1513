"""What a person decides about a row: the review queue, the actions an operator requests, the decisions in force.

Why three tables: a target puts a row it must not guess about in `review_queue` (with its candidates); a person
asks for an action (`coperniq-qbo link/new/retry/dismiss/undismiss`), which is appended to `row_actions` and
never touches a row a running target may be caching; the target's next run applies the pending actions at its
start (`apply_row_actions`: rows requeued, decisions recorded in `row_decisions`) and reads a row's decision when
it evaluates it. So an action is safe under a running pipeline: it waits for the next run of its leg.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .ledger_base import LedgerBase
from .ledger_core import _columns, _key, _sid
from .util import as_utc, utcnow

#: What a person can ask for a row. link/new: how a queued customer is matched; dismiss/undismiss: leave a
#: known-bad row alone (or not any more); retry: evaluate it (or, record id '*', every failed row) again.
ROW_ACTIONS = ("link", "new", "retry", "dismiss", "undismiss")
ALL_FAILED = "*"
#: review_queue.status
REVIEW_STATUSES = ("open", "decided", "resolved", "dismissed")
_QUEUE_COLUMNS = (
    "source_system",
    "stream",
    "record_id",
    "name",
    "reason",
    "candidates_json",
    "status",
    "run_id",
    "queued_at",
    "updated_at",
)
_ACTION_COLUMNS = (
    "seq",
    "source_system",
    "stream",
    "record_id",
    "action",
    "target_id",
    "reason",
    "actor",
    "requested_at",
    "applied_at",
    "applied_run",
)


def review_key(stream: str, record_id: object) -> str:
    """The wake key of a row waiting in the review queue: a decision about it wakes it."""
    return f"review:{stream}:{record_id}"


@dataclass(frozen=True, slots=True)
class Decision:
    """The decision in force for a row: `link` (to `target_id`), `new` (create its own record) or `dismiss`."""

    decision: str
    target_id: str | None
    actor: str
    reason: str | None = None


@dataclass(slots=True)
class Applied:
    """What apply_row_actions did, for the run's log and summary."""

    rows: list[tuple[str, str, str, str]] = field(default_factory=list)  # (stream, record_id, action, text)


class ReviewMixin(LedgerBase):
    """queue_review / review_items (targets and the CLI), request_row_action (the CLI), apply_row_actions and
    decision (targets)."""

    # ------------------------------------------------------------------ the queue (written by targets)

    def queue_review(
        self,
        source_system: str,
        stream: str,
        record_id: str,
        *,
        reason: str,
        candidates: Sequence[dict[str, Any]],
        name: str | None = None,
        run_id: str | None = None,
    ) -> bool:
        """Put a row in the review queue (or refresh its entry); True when it is new or its candidates changed
        (worth a log line). A row decided or dismissed by a person keeps that status."""
        self._writable()
        rid = _sid(record_id)
        text = json.dumps(list(candidates), sort_keys=True, default=str)
        now = utcnow()
        c = self._c
        with c.lock, self._tx():
            row = c.conn.execute(
                "SELECT candidates_json, reason, status FROM review_queue WHERE row_key = ?",
                [_key(source_system, stream, rid)],
            ).fetchone()
            if row is not None and (row[0], row[1]) == (text, reason) and row[2] == "open":
                return False
            c.conn.execute(
                "INSERT INTO review_queue (row_key, source_system, stream, record_id, name, reason, candidates_json, "
                "status, run_id, queued_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?) "
                "ON CONFLICT (row_key) DO UPDATE SET name = excluded.name, reason = excluded.reason, "
                "candidates_json = excluded.candidates_json, status = 'open', run_id = excluded.run_id, "
                "updated_at = excluded.updated_at",
                [_key(source_system, stream, rid), source_system, stream, rid, name, reason, text, run_id, now, now],
            )
        return True

    def resolve_review(self, source_system: str, stream: str, record_id: str) -> None:
        """The row was linked or created as decided: its entry is resolved and the decision used up."""
        self._writable()
        key = _key(source_system, stream, _sid(record_id))
        c = self._c
        with c.lock, self._tx():
            c.conn.execute(
                "UPDATE review_queue SET status = 'resolved', updated_at = ? "
                "WHERE row_key = ? AND status <> 'resolved'",
                [utcnow(), key],
            )
            c.conn.execute("DELETE FROM row_decisions WHERE row_key = ? AND decision IN ('link', 'new')", [key])

    def review_items(
        self, *, status: str | Sequence[str] | None = ("open", "decided"), source_system: str | None = None
    ) -> list[dict[str, Any]]:
        """Queue entries (oldest first) with their candidates and the decision in force, if any."""
        c = self._c
        with c.lock:
            if not self._has_review_tables():
                return []
            self._flush_if_writable()
            where: list[str] = ["1 = 1"]
            params: list[Any] = []
            if status is not None:
                wanted = [status] if isinstance(status, str) else list(status)
                where.append("q.status IN (SELECT unnest(?::VARCHAR[]))")
                params.append(wanted)
            if source_system is not None:
                where.append("q.source_system = ?")
                params.append(source_system)
            cols = ", ".join(f"q.{col}" for col in _QUEUE_COLUMNS)
            rows = c.conn.execute(
                f"SELECT {cols}, d.decision, d.target_id, d.actor, d.decided_at FROM review_queue q "
                "LEFT JOIN row_decisions d ON d.row_key = q.row_key "
                f"WHERE {' AND '.join(where)} ORDER BY q.queued_at, q.row_key",
                params,
            ).fetchall()
        out = []
        for r in rows:
            item = dict(zip(_QUEUE_COLUMNS, r[: len(_QUEUE_COLUMNS)], strict=True))
            item["candidates"] = json.loads(item.pop("candidates_json") or "[]")
            for k in ("queued_at", "updated_at"):
                item[k] = as_utc(item[k])
            decision, target, actor, at = r[len(_QUEUE_COLUMNS) :]
            item["decision"] = (
                {"decision": decision, "target_id": target, "actor": actor, "decided_at": as_utc(at)}
                if decision
                else None
            )
            out.append(item)
        return out

    # ------------------------------------------------------------------ actions (requested by a person)

    def request_row_action(
        self,
        source_system: str,
        stream: str,
        record_id: str,
        action: str,
        *,
        actor: str,
        target_id: str | None = None,
        reason: str | None = None,
    ) -> int:
        """Append an action for the next run of the row's leg to apply; its sequence number."""
        self._writable()
        if action not in ROW_ACTIONS:
            raise ValueError(f"row action must be one of {', '.join(ROW_ACTIONS)}, got {action!r}")
        if action == "link" and not target_id:
            raise ValueError("link needs the QuickBooks record to link to")
        c = self._c
        with c.lock, self._tx():
            row = c.conn.execute(
                "INSERT INTO row_actions (source_system, stream, record_id, action, target_id, reason, actor, "
                "requested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
                [source_system, stream, _sid(record_id), action, target_id, reason, actor, utcnow()],
            ).fetchone()
        assert row is not None
        return int(row[0])

    def row_actions(self, *, pending: bool | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Requested actions, newest first (pending: only those no run has applied yet)."""
        c = self._c
        with c.lock:
            if not self._has_review_tables():
                return []
            where = "" if pending is None else f"WHERE applied_at IS {'' if pending else 'NOT '}NULL "
            rows = c.conn.execute(
                f"SELECT {', '.join(_ACTION_COLUMNS)} FROM row_actions {where}ORDER BY seq DESC LIMIT ?", [limit]
            ).fetchall()
        return [dict(zip(_ACTION_COLUMNS, r, strict=True)) for r in rows]

    # ------------------------------------------------------------------ applied by a target's run

    def apply_row_actions(self, source_system: str, run_id: str) -> Applied:
        """At a run's start: the source system's pending actions, oldest first, become decisions and requeued
        rows, in one transaction; each is marked applied by this run."""
        self._writable()
        c = self._c
        applied = Applied()
        with c.lock:
            self._flush_now()
            with self._tx():
                actions = c.conn.execute(
                    "SELECT seq, stream, record_id, action, target_id, reason, actor FROM row_actions "
                    "WHERE source_system = ? AND applied_at IS NULL ORDER BY seq",
                    [source_system],
                ).fetchall()
                for seq, stream, rid, action, target, reason, actor in actions:
                    text = self._apply_one(source_system, stream, rid, action, target, reason, actor)
                    applied.rows.append((stream, rid, action, text))
                    c.conn.execute(
                        "UPDATE row_actions SET applied_at = ?, applied_run = ? WHERE seq = ?", [utcnow(), run_id, seq]
                    )
        return applied

    def _apply_one(
        self,
        system: str,
        stream: str,
        rid: str,
        action: str,
        target: str | None,
        reason: str | None,
        actor: str,
    ) -> str:
        conn = self._c.conn
        by = f"by {actor}" + (f": {reason}" if reason else "")
        if action == "retry" and rid == ALL_FAILED:
            for s, r in conn.execute(
                "SELECT stream, record_id FROM staging WHERE source_system = ? AND status = 'failed'", [system]
            ).fetchall():
                self._requeue_row(system, s, r)
            return f"every failed row retried ({by})"
        key = _key(system, stream, rid)
        now = utcnow()
        if action in ("link", "new", "dismiss"):
            conn.execute("DELETE FROM row_decisions WHERE row_key = ?", [key])
            conn.execute(
                "INSERT INTO row_decisions (row_key, source_system, stream, record_id, decision, target_id, reason, "
                "actor, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [key, system, stream, rid, action, target, reason, actor, now],
            )
            status = "dismissed" if action == "dismiss" else "decided"
            conn.execute("UPDATE review_queue SET status = ?, updated_at = ? WHERE row_key = ?", [status, now, key])
        elif action == "undismiss":  # a queued row is queued again (and logged) when it is evaluated
            conn.execute("DELETE FROM row_decisions WHERE row_key = ? AND decision = 'dismiss'", [key])
        if action == "dismiss":
            conn.execute(
                "UPDATE staging SET status = 'skipped', last_error = ?, processed_at = ?, waits_on = NULL "
                "WHERE staging_key = ?",
                [f"dismissed {by}", now, key],
            )
            self._c.rows.pop((system, stream, rid), None)
            return f"dismissed {by}"
        self._requeue_row(system, stream, rid)
        return {
            "link": f"to be linked to QuickBooks {target} ({by})",
            "new": f"to get a QuickBooks record of its own ({by})",
            "retry": f"retried ({by})",
            "undismiss": f"no longer dismissed ({by})",
        }[action]

    def _requeue_row(self, system: str, stream: str, rid: str) -> None:
        """The row is evaluated again on this run, with a fresh attempt count."""
        self._c.conn.execute(
            "UPDATE staging SET status = 'pending', attempts = 0, waits_on = NULL, processed_at = ? "
            "WHERE staging_key = ?",
            [utcnow(), _key(system, stream, rid)],
        )
        self._c.rows.pop((system, stream, rid), None)

    def decision(self, source_system: str, stream: str, record_id: str) -> Decision | None:
        """The decision in force for a row (link/new until used up, dismiss until undismissed), or None."""
        c = self._c
        with c.lock:
            if not self._has_review_tables():
                return None
            row = c.conn.execute(
                "SELECT decision, target_id, actor, reason FROM row_decisions WHERE row_key = ?",
                [_key(source_system, stream, _sid(record_id))],
            ).fetchone()
        return Decision(*row) if row else None

    def decided(self, source_system: str, stream: str, decisions: Sequence[str] = ("link", "new")) -> set[str]:
        """The record ids of a stream with one of these decisions in force (a few: read whole, once per pass)."""
        c = self._c
        with c.lock:
            if not self._has_review_tables():
                return set()
            return {
                r[0]
                for r in c.conn.execute(
                    "SELECT record_id FROM row_decisions WHERE source_system = ? AND stream = ? "
                    "AND decision IN (SELECT unnest(?::VARCHAR[]))",
                    [source_system, stream, list(decisions)],
                ).fetchall()
            }

    def _has_review_tables(self) -> bool:
        """A ledger opened read-only may be older than version 4 (no review tables yet)."""
        c = self._c
        if not c.read_only:
            return True
        if c.has_review is None:
            c.has_review = bool(_columns(c.conn, "row_decisions"))
        return c.has_review
