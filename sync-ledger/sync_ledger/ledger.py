"""The sync ledger: id map, integration log, runs, write-ahead intents and source staging in one DuckDB file.

Why DuckDB: one file next to the Meltano project, queryable by the CLI and dbt, no server to run.
Why caches: a DuckDB query from Python costs ~0.3-3 ms, and targets look records up per record for up to 100k
records. DuckDB allows one writing process per file, so this process is the only writer while it holds the
connection and in-memory mirrors of id_map and staging stay exact. Reads hit the mirrors; writes go to DuckDB
first (in a transaction) and to the mirror after commit.

Durability rule: anything whose loss could lose data (links, intents, staged payloads, runs, meta) is written
through. `log()` rows and `mark_staged()` status changes are buffered and flushed in batches (every
`flush_rows` rows, `flush_interval` seconds, before any query that reads them, and on close), because losing
them in a hard crash only means a missing audit line or a record processed again, which targets must tolerate
anyway (idempotency via id_map fingerprints).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from .util import as_utc, fingerprint, utcnow

__all__ = [
    "LOG_ACTIONS",
    "SCHEMA_VERSION",
    "STAGING_STATUSES",
    "Ledger",
    "LedgerError",
    "LedgerLockedError",
    "LedgerNotFoundError",
    "Link",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
LOG_ACTIONS = frozenset({"created", "updated", "linked", "skipped", "failed", "deleted", "planned"})
STAGING_STATUSES = frozenset({"pending", "done", "failed", "skipped"})
_CHUNK = 20_000  # rows per bulk statement: bounds the size of one parameter list

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR
);
CREATE TABLE IF NOT EXISTS id_map (
    link_key VARCHAR PRIMARY KEY,  -- source_system, source_type, source_id, target_system joined by \x1f
    source_system VARCHAR NOT NULL,
    source_type VARCHAR NOT NULL,
    source_id VARCHAR NOT NULL,
    target_system VARCHAR NOT NULL,
    target_type VARCHAR NOT NULL,
    target_id VARCHAR,
    target_remote_id VARCHAR,
    fingerprint VARCHAR,
    origin VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS sync_log_seq;
CREATE TABLE IF NOT EXISTS sync_log (
    seq BIGINT NOT NULL DEFAULT nextval('sync_log_seq'),
    run_id VARCHAR NOT NULL,
    logged_at TIMESTAMP NOT NULL,
    direction VARCHAR NOT NULL,
    stream VARCHAR NOT NULL,
    source_id VARCHAR,
    action VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    target_id VARCHAR,
    request_id VARCHAR
);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    direction VARCHAR NOT NULL,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    dry_run BOOLEAN NOT NULL,
    counts_json VARCHAR,
    status VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS intents (
    key VARCHAR PRIMARY KEY,
    payload_json VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS staging (
    staging_key VARCHAR PRIMARY KEY,  -- source_system, stream, record_id joined by \x1f
    source_system VARCHAR NOT NULL,
    stream VARCHAR NOT NULL,
    record_id VARCHAR NOT NULL,
    payload_json VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,
    received_at TIMESTAMP NOT NULL,
    status VARCHAR NOT NULL,
    attempts INTEGER NOT NULL,
    last_error VARCHAR,
    processed_at TIMESTAMP
);
"""

_LINK_COLUMNS = (
    "source_system, source_type, source_id, target_system, target_type, target_id, target_remote_id, "
    "fingerprint, origin, status, updated_at"
)
_SEP = "\x1f"  # ASCII unit separator: cannot occur in ids, so joined keys are unique
_LOG_COLUMNS = (
    "run_id",
    "logged_at",
    "direction",
    "stream",
    "source_id",
    "action",
    "reason",
    "target_id",
    "request_id",
)


class LedgerError(Exception):
    """Base class for ledger problems an operator has to act on."""


class LedgerLockedError(LedgerError):
    """Another process holds the DuckDB file lock for longer than `lock_timeout`."""


class LedgerNotFoundError(LedgerError, FileNotFoundError):
    """A read-only open of a ledger file that does not exist yet (no sync has run)."""


@dataclass(slots=True)
class Link:
    """One row of id_map: which target record a source record was written to, and what we last wrote."""

    source_system: str
    source_type: str
    source_id: str
    target_system: str
    target_type: str
    target_id: str | None
    target_remote_id: str | None = None
    fingerprint: str | None = None
    origin: str = "coperniq"
    status: str = "active"
    updated_at: datetime | None = None


@dataclass(slots=True)
class _Staged:
    """Mirror of one staging row (payload kept as JSON text: compact, and every read returns a fresh dict)."""

    payload_json: str
    fingerprint: str
    status: str
    attempts: int
    last_error: str | None


def _key(*parts: str) -> str:
    """Single-column key for a composite one: DuckDB point updates by a one-column primary key use the index
    (~0.7 ms), while composite-key lookups and ON CONFLICT scan (4-18 ms per row at 100k rows)."""
    return _SEP.join(parts)


def _sid(value: Any) -> str:
    """Ids are text in the ledger; accept ints (Coperniq ids) so a lookup never silently misses on type."""
    return value if isinstance(value, str) else str(value)


def _opt_sid(value: Any) -> str | None:
    return None if value is None else _sid(value)


def _statuses(status: str | Sequence[str] | None) -> frozenset[str] | None:
    if status is None:
        return None
    return frozenset([status] if isinstance(status, str) else status)


class _Core:
    """Process-wide state for one ledger file: the DuckDB connection, mirrors and write buffers.

    Shared by every `Ledger` opened on the same path in this process (DuckDB refuses a second connection with
    a different configuration, and separate mirrors would go stale), guarded by one re-entrant lock because
    singer-sdk drains sinks from several threads.
    """

    def __init__(self, path: Path, conn: duckdb.DuckDBPyConnection, read_only: bool) -> None:
        self.path = path
        self.conn = conn
        self.read_only = read_only
        self.lock = threading.RLock()
        self.refs = 0
        self.tx_depth = 0
        self.on_commit: list[Any] = []
        self.on_rollback: list[Any] = []
        # id_map mirror (loaded on first use)
        self.links_loaded = False
        self.by_source: dict[tuple[str, str, str], dict[str, Link]] = {}
        self.by_target: dict[tuple[str, str, str], Link] = {}
        self.by_remote: dict[tuple[str, str, str], Link] = {}
        # staging mirror, per (source_system, stream), loaded on first use of that stream
        self.staging: dict[tuple[str, str], dict[str, _Staged]] = {}
        # write-behind buffers
        self.log_buf: list[tuple[Any, ...]] = []
        self.mark_buf: dict[tuple[str, str, str], tuple[str, int, str | None, datetime]] = {}
        self.buf_since: float | None = None


_REGISTRY: dict[str, _Core] = {}
_REGISTRY_LOCK = threading.Lock()


class Ledger:
    """The sync ledger on one DuckDB file; use as a context manager (or call close()) so buffers get flushed."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lock_timeout: float = 120.0,
        read_only: bool = False,
        flush_rows: int = 1000,
        flush_interval: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.flush_rows = flush_rows
        self.flush_interval = flush_interval
        self._closed = False
        key = str(self.path.resolve())
        with _REGISTRY_LOCK:
            core = _REGISTRY.get(key)
            if core is None:
                core = _open_core(self.path, lock_timeout=lock_timeout, read_only=read_only)
                _REGISTRY[key] = core
            elif core.read_only and not read_only:
                raise LedgerError(
                    f"The sync ledger {self.path} is already open read-only in this process; "
                    "close that Ledger before opening it for writing."
                )
            core.refs += 1
        self._key = key
        self._c = core

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush buffered rows; the DuckDB connection (and file lock) is released when the last handle closes."""
        if self._closed:
            return
        self._closed = True
        with _REGISTRY_LOCK:
            core = self._c
            with core.lock:
                core.refs -= 1
                if not core.read_only:
                    self._flush_now()
                if core.refs <= 0:
                    core.conn.close()
                    _REGISTRY.pop(self._key, None)

    def flush(self) -> None:
        """Write buffered log rows and staging statuses now (e.g. before a target emits STATE)."""
        if self.read_only:
            return
        with self._c.lock:
            self._flush_now()

    @contextmanager
    def transaction(self) -> Iterator[Ledger]:
        """Group several writes (e.g. upsert_link + end_intent) so they commit or roll back together."""
        self._writable()
        with self._c.lock, self._tx():
            yield self

    # ------------------------------------------------------------------ runs and the integration log

    def start_run(self, direction: str, *, dry_run: bool = False) -> str:
        """Register a run; the id sorts by time so operators can read it. A run of this direction still `running`
        was killed (the ledger admits one writer, so it cannot be running now): it is marked `interrupted`."""
        self._writable()
        now = utcnow()
        run_id = f"{now:%Y%m%dT%H%M%S}Z-{direction}-{secrets.token_hex(3)}"
        with self._c.lock, self._tx():
            self._c.conn.execute(
                "UPDATE runs SET status = 'interrupted' WHERE status = 'running' AND direction = ?", [direction]
            )
            self._c.conn.execute(
                "INSERT INTO runs (run_id, direction, started_at, finished_at, dry_run, counts_json, status) "
                "VALUES (?, ?, ?, NULL, ?, NULL, 'running')",
                [run_id, direction, now, dry_run],
            )
        return run_id

    def refuse_run(self, direction: str, reason: str, *, dry_run: bool = False) -> str:
        """A run that stopped before reading anything (bad configuration, disconnected account): recorded with
        status `refused` and its reason as a log row, so `runs` and `status` tell the truth."""
        run_id = self.start_run(direction, dry_run=dry_run)
        self.log(run_id, direction=direction, stream="run", source_id=None, action="failed", reason=reason)
        self.finish_run(run_id, "refused")
        return run_id

    def last_run(self, *, direction: str | None = None, successful: bool = False) -> dict[str, Any] | None:
        """The newest run (of a direction), or the newest successful one: finished `success` or `partial`, not a
        dry run."""
        runs = self.runs(limit=1, direction=direction, successful=successful)
        return runs[0] if runs else None

    def finish_run(self, run_id: str, status: str = "success") -> dict[str, dict[str, int]]:
        """Close a run with its per-stream/action counts, computed from sync_log so they match the log exactly."""
        self._writable()
        with self._c.lock, self._tx():
            self._flush_buffers()
            rows = self._c.conn.execute(
                "SELECT stream, action, count(*) FROM sync_log WHERE run_id = ? GROUP BY ALL ORDER BY ALL",
                [run_id],
            ).fetchall()
            counts: dict[str, dict[str, int]] = {}
            for stream, action, n in rows:
                counts.setdefault(stream, {})[action] = int(n)
            updated = self._c.conn.execute(
                "UPDATE runs SET finished_at = ?, status = CASE WHEN dry_run AND ? = 'success' THEN 'dry-run' "
                "ELSE ? END, counts_json = ? WHERE run_id = ? RETURNING run_id",
                [utcnow(), status, status, json.dumps(counts, sort_keys=True), run_id],
            ).fetchall()
            if not updated:
                raise KeyError(f"unknown run_id {run_id!r}")
        return counts

    def log(
        self,
        run_id: str,
        *,
        direction: str,
        stream: str,
        source_id: str | None,
        action: str,
        reason: str = "",
        target_id: str | None = None,
        request_id: str | None = None,
    ) -> None:
        """Append one integration-log line (buffered; see module docstring)."""
        self._writable()
        if action not in LOG_ACTIONS:
            raise ValueError(f"log action must be one of {sorted(LOG_ACTIONS)}, got {action!r}")
        row = (
            run_id,
            utcnow(),
            direction,
            stream,
            _opt_sid(source_id),
            action,
            reason or "",
            _opt_sid(target_id),
            request_id,
        )
        with self._c.lock:
            self._c.log_buf.append(row)
            self._buffered()

    def log_rows(
        self,
        *,
        run_id: str | None = None,
        action: str | None = None,
        stream: str | None = None,
        failed_only: bool = False,
        limit: int = 100,
        direction: str | None = None,
    ) -> list[dict[str, Any]]:
        """Integration-log lines, newest first, optionally filtered (in SQL, so `limit` counts matching rows)."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("run_id", run_id), ("action", action), ("stream", stream), ("direction", direction)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if failed_only:
            where.append("action = 'failed'")
        sql = f"SELECT {', '.join(_LOG_COLUMNS)} FROM sync_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY logged_at DESC, seq DESC LIMIT ?"
        params.append(int(limit))
        with self._c.lock:
            self._flush_if_writable()
            rows = self._c.conn.execute(sql, params).fetchall()
        out = []
        for row in rows:
            d = dict(zip(_LOG_COLUMNS, row, strict=True))
            d["logged_at"] = as_utc(d["logged_at"])
            out.append(d)
        return out

    def runs(self, limit: int = 20, *, direction: str | None = None, successful: bool = False) -> list[dict[str, Any]]:
        """Recent runs, newest first (of one direction; only successful ones, see last_run); `counts` is
        counts_json parsed."""
        where, params = ["1 = 1"], []
        if direction:
            where.append("direction = ?")
            params.append(direction)
        if successful:
            where.append("status IN ('success', 'partial') AND NOT dry_run")
        with self._c.lock:
            self._flush_if_writable()
            cur = self._c.conn.execute(
                "SELECT run_id, direction, started_at, finished_at, dry_run, counts_json, status FROM runs "
                f"WHERE {' AND '.join(where)} ORDER BY started_at DESC, run_id DESC LIMIT ?",
                [*params, int(limit)],
            )
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        out = []
        for row in rows:
            d = dict(zip(names, row, strict=True))
            d["started_at"] = as_utc(d["started_at"])
            d["finished_at"] = as_utc(d["finished_at"])
            d["counts"] = json.loads(d["counts_json"]) if d["counts_json"] else {}
            out.append(d)
        return out

    # ------------------------------------------------------------------ id map

    def get_link(self, source_system: str, source_type: str, source_id: str) -> Link | None:
        """The link of a source record (if it was written to several target systems, the first by name)."""
        with self._c.lock:
            self._load_links()
            found = self._c.by_source.get((source_system, source_type, _sid(source_id)))
            if not found:
                return None
            return replace(found[min(found)])

    def get_link_by_target(self, target_system: str, target_type: str, target_id: str) -> Link | None:
        """Reverse lookup: which source record a target record came from (echo suppression, reverse leg)."""
        with self._c.lock:
            self._load_links()
            found = self._c.by_target.get((target_system, target_type, _sid(target_id)))
            return replace(found) if found else None

    def get_link_by_remote(self, target_system: str, target_type: str, target_remote_id: str) -> Link | None:
        """Lookup by the provider's own id (QBO Id), for records Merge has not assigned a UUID to yet."""
        with self._c.lock:
            self._load_links()
            found = self._c.by_remote.get((target_system, target_type, _sid(target_remote_id)))
            return replace(found) if found else None

    def upsert_link(self, link: Link) -> None:
        """Insert or replace a link, keyed by (source_system, source_type, source_id, target_system)."""
        self.upsert_links([link])

    def upsert_links(self, links: Iterable[Link]) -> None:
        """Bulk upsert_link in one transaction (initial matching, reconcile, imports). Addition to the contract."""
        self._writable()
        now = utcnow()
        prepared: dict[str, Link] = {}
        for link in links:
            for name in ("source_system", "source_type", "source_id", "target_system", "target_type"):
                if getattr(link, name) in (None, ""):
                    raise ValueError(f"Link.{name} is required")
            new = replace(
                link,
                source_id=_sid(link.source_id),
                target_id=_opt_sid(link.target_id),
                target_remote_id=_opt_sid(link.target_remote_id),
                updated_at=as_utc(now),
            )
            prepared[_key(new.source_system, new.source_type, new.source_id, new.target_system)] = new
        if not prepared:
            return
        c = self._c
        with c.lock, self._tx():
            self._load_links()
            existing: list[tuple[str, Link]] = []
            fresh: list[tuple[str, Link]] = []
            for key, new in prepared.items():
                known = c.by_source.get((new.source_system, new.source_type, new.source_id), {})
                (existing if new.target_system in known else fresh).append((key, new))
            if fresh:
                rows = [
                    (
                        k,
                        n.source_system,
                        n.source_type,
                        n.source_id,
                        n.target_system,
                        n.target_type,
                        n.target_id,
                        n.target_remote_id,
                        n.fingerprint,
                        n.origin,
                        n.status,
                    )
                    for k, n in fresh
                ]
                if len(rows) == 1:
                    c.conn.execute(
                        f"INSERT INTO id_map (link_key, {_LINK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [*rows[0], now],
                    )
                else:
                    for i in range(0, len(rows), _CHUNK):
                        cols = [list(col) for col in zip(*rows[i : i + _CHUNK], strict=True)]
                        c.conn.execute(
                            f"INSERT INTO id_map (link_key, {_LINK_COLUMNS}) SELECT "
                            + ", ".join(["unnest(?::VARCHAR[])"] * 11)
                            + ", ?",
                            [*cols, now],
                        )
            if existing:
                updates = [
                    (n.target_type, n.target_id, n.target_remote_id, n.fingerprint, n.origin, n.status, k)
                    for k, n in existing
                ]
                if len(updates) == 1:  # the per-record case: an index point update
                    c.conn.execute(
                        "UPDATE id_map SET target_type = ?, target_id = ?, target_remote_id = ?, fingerprint = ?, "
                        "origin = ?, status = ?, updated_at = ? WHERE link_key = ?",
                        [*updates[0][:6], now, updates[0][6]],
                    )
                else:
                    for i in range(0, len(updates), _CHUNK):
                        cols = [list(col) for col in zip(*updates[i : i + _CHUNK], strict=True)]
                        c.conn.execute(
                            "UPDATE id_map SET target_type = u.tt, target_id = u.tid, target_remote_id = u.rid, "
                            "fingerprint = u.fp, origin = u.origin, status = u.status, updated_at = ? FROM (SELECT "
                            "unnest(?::VARCHAR[]) AS tt, unnest(?::VARCHAR[]) AS tid, unnest(?::VARCHAR[]) AS rid, "
                            "unnest(?::VARCHAR[]) AS fp, unnest(?::VARCHAR[]) AS origin, "
                            "unnest(?::VARCHAR[]) AS status, unnest(?::VARCHAR[]) AS k) AS u "
                            "WHERE id_map.link_key = u.k",
                            [now, *cols],
                        )
            committed = list(prepared.values())
            c.on_commit.append(lambda: self._index_links(committed))

    def links(self, source_system: str | None = None, source_type: str | None = None) -> list[Link]:
        """All links, optionally for one source system/type, in a stable order."""
        with self._c.lock:
            self._load_links()
            out = [
                replace(link)
                for (ss, st, _), per_target in self._c.by_source.items()
                if (source_system is None or ss == source_system) and (source_type is None or st == source_type)
                for link in per_target.values()
            ]
        out.sort(key=lambda x: (x.source_system, x.source_type, x.source_id, x.target_system))
        return out

    # ------------------------------------------------------------------ write-ahead intents

    def begin_intent(self, key: str, payload: dict[str, Any]) -> None:
        """Record "about to write X" before an API create, so a crash between the API call and upsert_link
        is detectable next run (look the record up remotely before creating it again)."""
        self.begin_intents([(key, payload)])

    def begin_intents(self, intents: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """begin_intent for a whole batch of planned creates in one commit (a DuckDB commit costs ~3-5 ms; one per
        create dominated big runs). Every intent is durable before any of the batch's API calls is sent."""
        self._writable()
        now = utcnow()
        rows = [(key, json.dumps(payload, default=str), now) for key, payload in intents]
        if not rows:
            return
        with self._c.lock, self._tx():
            # UPDATE the keys that exist, INSERT the rest (DuckDB may refuse a DELETE + re-INSERT of one primary key
            # in one transaction); list parameters, because executemany runs one statement per row.
            existing = {
                r[0]
                for r in self._c.conn.execute(
                    "SELECT key FROM intents WHERE list_contains(?, key)", [[key for key, _, _ in rows]]
                ).fetchall()
            }
            if existing:
                self._c.conn.executemany(
                    "UPDATE intents SET payload_json = ?, created_at = ? WHERE key = ?",
                    [[p, at, key] for key, p, at in rows if key in existing],
                )
            fresh = {key: p for key, p, _ in rows if key not in existing}
            if fresh:
                self._c.conn.execute(
                    "INSERT INTO intents (key, payload_json, created_at) "
                    "SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), ?",
                    [list(fresh), list(fresh.values()), now],
                )

    def end_intent(self, key: str) -> None:
        """Clear an intent once its outcome is in id_map (unknown keys are fine: ending is idempotent)."""
        self.end_intents([key])

    def end_intents(self, keys: Iterable[str]) -> None:
        """end_intent for many keys in one statement."""
        self._writable()
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return
        with self._c.lock, self._tx():
            self._c.conn.execute("DELETE FROM intents WHERE list_contains(?, key)", [wanted])

    def pending_intents(self, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
        """Intents left over by a crashed run, oldest first."""
        with self._c.lock:
            rows = self._c.conn.execute(
                "SELECT key, payload_json FROM intents WHERE starts_with(key, ?) ORDER BY created_at, key",
                [prefix],
            ).fetchall()
        return [(key, json.loads(payload)) for key, payload in rows]

    # ------------------------------------------------------------------ staging

    def stage(self, source_system: str, stream: str, records: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Bulk upsert the latest snapshot of source records. A changed payload becomes `pending` with attempts
        reset; an unchanged one keeps its status and costs no write."""
        self._writable()
        c = self._c
        now = utcnow()
        with c.lock:
            mirror = self._load_staging(source_system, stream)
            changed: dict[str, _Staged] = {}
            for record_id, payload in records:
                rid = _sid(record_id)
                payload_json = json.dumps(payload, separators=(",", ":"), default=str)
                fp = fingerprint(payload)
                current = changed.get(rid) or mirror.get(rid)
                if current is not None and current.fingerprint == fp:
                    continue
                changed[rid] = _Staged(payload_json, fp, "pending", 0, None)
            if not changed:
                return
            new_ids = [rid for rid in changed if rid not in mirror]
            old_ids = [rid for rid in changed if rid in mirror]
            with self._tx():
                if any((source_system, stream, rid) in c.mark_buf for rid in old_ids):
                    self._flush_buffers()  # a buffered status must not land after (and over) the reset below
                for i in range(0, len(new_ids), _CHUNK):
                    part = new_ids[i : i + _CHUNK]
                    c.conn.execute(
                        "INSERT INTO staging (staging_key, source_system, stream, record_id, payload_json, "
                        "fingerprint, received_at, status, attempts, last_error, processed_at) "
                        "SELECT ? || unnest(?::VARCHAR[]), ?, ?, unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), "
                        "unnest(?::VARCHAR[]), ?, 'pending', 0, NULL, NULL",
                        [
                            _key(source_system, stream, ""),
                            part,
                            source_system,
                            stream,
                            part,
                            [changed[r].payload_json for r in part],
                            [changed[r].fingerprint for r in part],
                            now,
                        ],
                    )
                if len(old_ids) == 1:  # the common per-record case: an index point update
                    rid = old_ids[0]
                    c.conn.execute(
                        "UPDATE staging SET payload_json = ?, fingerprint = ?, received_at = ?, status = 'pending', "
                        "attempts = 0, last_error = NULL, processed_at = NULL WHERE staging_key = ?",
                        [changed[rid].payload_json, changed[rid].fingerprint, now, _key(source_system, stream, rid)],
                    )
                else:
                    for i in range(0, len(old_ids), _CHUNK):
                        part = old_ids[i : i + _CHUNK]
                        c.conn.execute(
                            "UPDATE staging SET payload_json = u.payload_json, fingerprint = u.fingerprint, "
                            "received_at = ?, status = 'pending', attempts = 0, last_error = NULL, "
                            "processed_at = NULL FROM (SELECT ? || unnest(?::VARCHAR[]) AS k, "
                            "unnest(?::VARCHAR[]) AS payload_json, unnest(?::VARCHAR[]) AS fingerprint) AS u "
                            "WHERE staging.staging_key = u.k",
                            [
                                now,
                                _key(source_system, stream, ""),
                                part,
                                [changed[r].payload_json for r in part],
                                [changed[r].fingerprint for r in part],
                            ],
                        )
                c.on_commit.append(lambda: mirror.update(changed))

    def staged(self, source_system: str, stream: str, record_id: str) -> dict[str, Any] | None:
        """The latest payload received for a source record, whatever run it arrived in."""
        with self._c.lock:
            row = self._load_staging(source_system, stream).get(_sid(record_id))
            return None if row is None else json.loads(row.payload_json)

    def staged_status(self, source_system: str, stream: str, record_id: str) -> tuple[str, int, str | None] | None:
        """(status, attempts, last_error) of a staged record, or None. Addition to the contract, for targets."""
        with self._c.lock:
            row = self._load_staging(source_system, stream).get(_sid(record_id))
            return None if row is None else (row.status, row.attempts, row.last_error)

    def iter_staged(
        self, source_system: str, stream: str, *, status: str | Sequence[str] | None = None
    ) -> Iterator[tuple[str, dict[str, Any], str, int]]:
        """(id, payload, status, attempts) for staged records, in id order. Iterates a snapshot, so callers
        may mark_staged() while iterating."""
        wanted = _statuses(status)
        with self._c.lock:
            mirror = self._load_staging(source_system, stream)
            snapshot = [
                (rid, row.payload_json, row.status, row.attempts)
                for rid, row in mirror.items()
                if wanted is None or row.status in wanted
            ]
        snapshot.sort(key=lambda r: (len(r[0]), r[0]))  # numeric-looking ids in numeric order
        for rid, payload_json, st, attempts in snapshot:
            yield rid, json.loads(payload_json), st, attempts

    def mark_staged(
        self, source_system: str, stream: str, record_id: str, status: str, error: str | None = None
    ) -> None:
        """Set a staged record's processing status; `failed` increments attempts and keeps the error."""
        self._writable()
        if status not in STAGING_STATUSES:
            raise ValueError(f"staging status must be one of {sorted(STAGING_STATUSES)}, got {status!r}")
        rid = _sid(record_id)
        c = self._c
        with c.lock:
            row = self._load_staging(source_system, stream).get(rid)
            if row is None:
                raise KeyError(f"{source_system}/{stream}/{rid} was never staged")
            attempts = row.attempts + 1 if status == "failed" else row.attempts
            if status == "done":
                last_error = None
            elif error is not None:
                last_error = error
            else:
                last_error = row.last_error
            if (status, attempts, last_error) == (row.status, row.attempts, row.last_error):
                return
            row.status, row.attempts, row.last_error = status, attempts, last_error
            c.mark_buf[(source_system, stream, rid)] = (status, attempts, last_error, utcnow())
            self._buffered()

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        with self._c.lock:
            row = self._c.conn.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str | None) -> None:
        """Set (or, with None, delete) a small key/value setting such as the "disconnected" flag."""
        self._writable()
        with self._c.lock, self._tx():
            if value is None:
                self._c.conn.execute("DELETE FROM meta WHERE key = ?", [key])
            else:
                self._c.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, value])

    # ------------------------------------------------------------------ internals

    def _writable(self) -> None:
        if self._closed:
            raise LedgerError(f"The sync ledger {self.path} is closed")
        if self.read_only:
            raise LedgerError(f"The sync ledger {self.path} was opened read-only")

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One DuckDB transaction per logical write; nested calls join the outer one. On rollback, mirror
        updates registered with on_commit are dropped and flushed buffers are restored."""
        c = self._c
        if c.tx_depth:
            c.tx_depth += 1
            try:
                yield
            finally:
                c.tx_depth -= 1
            return
        c.conn.begin()
        c.tx_depth = 1
        try:
            yield
            c.conn.commit()
        except BaseException:
            c.tx_depth = 0
            c.on_commit.clear()
            c.conn.rollback()
            for undo in c.on_rollback:
                undo()
            c.on_rollback.clear()
            raise
        c.tx_depth = 0
        c.on_rollback.clear()
        callbacks, c.on_commit = c.on_commit, []
        for callback in callbacks:
            callback()

    def _buffered(self) -> None:
        """Flush when the buffers are big or old enough (called with the lock held)."""
        c = self._c
        now = time.monotonic()
        if c.buf_since is None:
            c.buf_since = now
        if len(c.log_buf) + len(c.mark_buf) >= self.flush_rows or now - c.buf_since >= self.flush_interval:
            self._flush_now()

    def _flush_if_writable(self) -> None:
        if not self._c.read_only:
            self._flush_now()

    def _flush_now(self) -> None:
        """Flush the buffers in their own transaction (or the caller's, if one is open)."""
        c = self._c
        if c.log_buf or c.mark_buf:
            with self._tx():
                self._flush_buffers()

    def _flush_buffers(self) -> None:
        """Write buffered rows inside the current transaction; on rollback they go back into the buffers."""
        c = self._c
        logs, marks = c.log_buf, c.mark_buf
        if not logs and not marks:
            c.buf_since = None
            return
        c.log_buf, c.mark_buf, c.buf_since = [], {}, None

        def restore() -> None:
            c.log_buf[:0] = logs
            for k, v in marks.items():
                c.mark_buf.setdefault(k, v)
            c.buf_since = c.buf_since or time.monotonic()

        c.on_rollback.append(restore)
        for i in range(0, len(logs), _CHUNK):
            cols = [list(col) for col in zip(*logs[i : i + _CHUNK], strict=True)]
            c.conn.execute(
                f"INSERT INTO sync_log ({', '.join(_LOG_COLUMNS)}) SELECT unnest(?::VARCHAR[]), "
                "unnest(?::TIMESTAMP[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), "
                "unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[])",
                cols,
            )
        items = list(marks.items())
        if len(items) <= 32:  # a join scans all of staging; a few index point updates are cheaper
            for k, v in items:
                c.conn.execute(
                    "UPDATE staging SET status = ?, attempts = ?, last_error = ?, processed_at = ? "
                    "WHERE staging_key = ?",
                    [*v, _key(*k)],
                )
            return
        for i in range(0, len(items), _CHUNK):
            part = items[i : i + _CHUNK]
            c.conn.execute(
                "UPDATE staging SET status = u.status, attempts = u.attempts, last_error = u.last_error, "
                "processed_at = u.processed_at FROM (SELECT unnest(?::VARCHAR[]) AS k, "
                "unnest(?::VARCHAR[]) AS status, unnest(?::INTEGER[]) AS attempts, "
                "unnest(?::VARCHAR[]) AS last_error, unnest(?::TIMESTAMP[]) AS processed_at) AS u "
                "WHERE staging.staging_key = u.k",
                [
                    [_key(*k) for k, _ in part],
                    [v[0] for _, v in part],
                    [v[1] for _, v in part],
                    [v[2] for _, v in part],
                    [v[3] for _, v in part],
                ],
            )

    def _load_links(self) -> None:
        c = self._c
        if c.links_loaded:
            return
        for row in c.conn.execute(f"SELECT {_LINK_COLUMNS} FROM id_map").fetchall():
            link = Link(*row)
            link.updated_at = as_utc(link.updated_at)
            self._index_link(link)
        c.links_loaded = True

    def _index_links(self, links: Iterable[Link]) -> None:
        for link in links:
            self._index_link(link)

    def _index_link(self, link: Link) -> None:
        """Put a committed link into the mirror, dropping index entries of the row it replaces."""
        c = self._c
        per_target = c.by_source.setdefault((link.source_system, link.source_type, link.source_id), {})
        old = per_target.get(link.target_system)
        if old is not None:
            for index, attr in ((c.by_target, "target_id"), (c.by_remote, "target_remote_id")):
                key = (old.target_system, old.target_type, getattr(old, attr))
                if key[2] is not None and index.get(key) is old:
                    del index[key]
        per_target[link.target_system] = link
        if link.target_id is not None:
            c.by_target[(link.target_system, link.target_type, link.target_id)] = link
        if link.target_remote_id is not None:
            c.by_remote[(link.target_system, link.target_type, link.target_remote_id)] = link

    def _load_staging(self, source_system: str, stream: str) -> dict[str, _Staged]:
        c = self._c
        mirror = c.staging.get((source_system, stream))
        if mirror is None:
            rows = c.conn.execute(
                "SELECT record_id, payload_json, fingerprint, status, attempts, last_error FROM staging "
                "WHERE source_system = ? AND stream = ?",
                [source_system, stream],
            ).fetchall()
            mirror = {r[0]: _Staged(r[1], r[2], r[3], r[4], r[5]) for r in rows}
            c.staging[(source_system, stream)] = mirror
        return mirror


def _open_core(path: Path, *, lock_timeout: float, read_only: bool) -> _Core:
    """Connect, waiting on another process's file lock up to lock_timeout, then create/check the schema."""
    if read_only and not path.exists():
        raise LedgerNotFoundError(
            f"No sync ledger at {path} yet: run a sync first, or set `ledger_path` to the file the targets use."
        )
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + max(0.0, lock_timeout)
    delay = 0.05
    warned = False
    while True:
        try:
            conn = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LedgerLockedError(
                    f"The sync ledger {path} is locked by another process: another pipeline (e.g. the other "
                    f"sync leg, or a `coperniq-qbo` command) is running and using it. Waited {lock_timeout:g} s "
                    f"(lock_timeout). Wait for it to finish and try again, or set `ledger_path` if this should "
                    f"be a separate ledger. DuckDB: {exc}"
                ) from None
            if not warned:
                log.warning("Sync ledger %s is in use by another process; waiting up to %g s", path, lock_timeout)
                warned = True
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)
    try:
        _ensure_schema(conn, path, read_only)
    except BaseException:
        conn.close()
        raise
    return _Core(path, conn, read_only)


def _ensure_schema(conn: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> None:
    """Create the tables on first use and record schema_version, so later versions can migrate in place."""
    if not read_only:
        conn.begin()
        try:
            conn.execute(_SCHEMA)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT DO NOTHING",
                [str(SCHEMA_VERSION)],
            )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except duckdb.CatalogException:
        row = None
    if row is None:
        raise LedgerError(f"{path} is not a sync ledger (no schema_version in table meta)")
    columns = {
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'id_map'"
        ).fetchall()
    }
    if "link_key" not in columns:
        raise LedgerError(f"{path} was created by a pre-release sync-ledger (no id_map.link_key); delete it")
    if int(row[0]) > SCHEMA_VERSION:
        raise LedgerError(
            f"The sync ledger {path} has schema version {row[0]}, newer than this sync-ledger "
            f"(version {SCHEMA_VERSION}); upgrade the plugins."
        )


@atexit.register
def _close_all() -> None:
    """Flush buffers of ledgers a caller forgot to close, so a clean exit never drops log rows."""
    with _REGISTRY_LOCK:
        cores = list(_REGISTRY.values())
    for core in cores:
        try:
            if not core.read_only:
                handle = object.__new__(Ledger)
                handle._c, handle.read_only, handle._closed = core, False, False
                with core.lock:
                    handle.flush()
            core.conn.close()
        except Exception:
            log.debug("could not flush ledger %s at exit", core.path, exc_info=True)
