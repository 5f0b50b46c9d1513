"""The sync ledger: id map, integration log, runs, write-ahead intents and source staging, in a DuckDB file or a
PostgreSQL database (ledger_db.py), one schema per company.

Why DuckDB by default: one file next to the Meltano project, queryable by the CLI and dbt, no server to run. Why
PostgreSQL in production: a worker with an empty disk, and both legs of a company at once (docs/DEPLOY.md).
Why chunked reads and caches: a query from Python costs ~0.2-3 ms, and targets look records up per record
for up to 100k records, yet holding id_map and staging whole in memory makes a run's memory grow with the ledger's
history. So targets read a chunk's rows, links and echo checks in one query each (iter_staged_chunks, links_for,
links_to), and what a pass touches is kept in bounded caches. The caches stay exact because only this process
writes what it caches: DuckDB admits one writing process per file; on PostgreSQL the run lock admits one run per
company and direction, the other leg writes its own source system's links and staging rows, and other companies
live in other schemas. Writes go to the database first (in a transaction) and to the caches after commit.

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
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

from .ledger_core import (
    _CHUNK,
    _LOG_COLUMNS,
    _REGISTRY,
    _REGISTRY_LOCK,
    LOG_ACTIONS,
    SCHEMA_VERSION,
    STAGING_STATUSES,
    LedgerError,
    LedgerLockedError,
    LedgerNotFoundError,
    Link,
    _open_core,
    _opt_sid,
)
from .ledger_db import locate, release_run_lock, try_run_lock
from .ledger_links import IntentsMixin, LinksMixin
from .ledger_review import ReviewMixin
from .ledger_staging import StagingMixin
from .util import as_utc, utcnow

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


class Ledger(LinksMixin, IntentsMixin, StagingMixin, ReviewMixin):
    """The sync ledger on one DuckDB file; use as a context manager (or call close()) so buffers get flushed."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        company: str | None = None,
        lock_timeout: float = 120.0,
        read_only: bool = False,
        flush_rows: int = 1000,
        flush_interval: float = 1.0,
    ) -> None:
        """`path`: a DuckDB file, or a `postgresql://` URL (ledger_url). `company`: the tenant (its own schema;
        None: the default one). A handle reads and writes its company only."""
        loc = locate(path, company)
        self.location = loc
        self.path = loc.path
        self.where = loc.display if loc.company is None else f"{loc.display} (company {loc.company})"
        self.read_only = read_only
        self.flush_rows = flush_rows
        self.flush_interval = flush_interval
        self._closed = False
        key = loc.key
        with _REGISTRY_LOCK:
            core = _REGISTRY.get(key)
            if core is None:
                core = _open_core(loc, lock_timeout=lock_timeout, read_only=read_only)
                _REGISTRY[key] = core
            elif core.read_only and not read_only:
                raise LedgerError(
                    f"The sync ledger {self.where} is already open read-only in this process; "
                    "close that Ledger before opening it for writing."
                )
            core.refs += 1
        self._key = key
        self._c = core

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
                    core.conn.close()  # PostgreSQL: the server drops this session's run locks with it
                    _REGISTRY.pop(self._key, None)

    def start_run(self, direction: str, *, dry_run: bool = False) -> str:
        """Register a run; the id sorts by time so operators can read it. Only one run per direction (and company)
        at a time: DuckDB's file lock admits one writer; on PostgreSQL a run lock, refused at once (naming the run
        that holds it) rather than waited on. So a run of this direction still `running` was killed: it is marked
        `interrupted`."""
        self._writable()
        c = self._c
        now = utcnow()
        run_id = f"{now:%Y%m%dT%H%M%S}Z-{direction}-{secrets.token_hex(3)}"
        with c.lock:
            if direction not in c.run_locks:
                if not try_run_lock(c.conn, c.loc, direction):
                    raise LedgerLockedError(self._held_by(direction))
                c.run_locks.add(direction)
            with self._tx():
                c.conn.execute(
                    "UPDATE runs SET status = 'interrupted' WHERE status = 'running' AND direction = ?", [direction]
                )
                c.conn.execute(
                    "INSERT INTO runs (run_id, direction, started_at, finished_at, dry_run, counts_json, status) "
                    "VALUES (?, ?, ?, NULL, ?, NULL, 'running')",
                    [run_id, direction, now, dry_run],
                )
        return run_id

    def _held_by(self, direction: str) -> str:
        row = self._c.conn.execute(
            "SELECT run_id, started_at FROM runs WHERE direction = ? AND status = 'running' "
            "ORDER BY started_at DESC LIMIT 1",
            [direction],
        ).fetchone()
        holder = f"run {row[0]} (started {as_utc(row[1]):%Y-%m-%d %H:%M:%S} UTC)" if row else "a run that is starting"
        return (
            f"Another {direction} run of this company is in progress in the sync ledger {self.where}: {holder}. "
            "Two runs of one direction must not overlap, so this one stops without syncing; it runs on the next "
            "schedule, or once that run ends."
        )

    def _release_run(self, direction: str) -> None:
        c = self._c
        if direction in c.run_locks:
            c.run_locks.discard(direction)
            release_run_lock(c.conn, c.loc, direction)

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
                "SELECT stream, action, count(*) FROM sync_log WHERE run_id = ? GROUP BY stream, action "
                "ORDER BY stream, action",
                [run_id],
            ).fetchall()
            counts: dict[str, dict[str, int]] = {}
            for stream, action, n in rows:
                counts.setdefault(stream, {})[action] = int(n)
            updated = self._c.conn.execute(
                "UPDATE runs SET finished_at = ?, status = CASE WHEN dry_run AND ?::VARCHAR = 'success' "
                "THEN 'dry-run' "
                "ELSE ? END, counts_json = ? WHERE run_id = ? RETURNING direction",
                [utcnow(), status, status, json.dumps(counts, sort_keys=True), run_id],
            ).fetchall()
            if not updated:
                raise KeyError(f"unknown run_id {run_id!r}")
            self._c.on_commit.append(partial(self._release_run, str(updated[0][0])))
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
        search: str | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Integration-log lines, newest first, optionally filtered (in SQL, so `limit` counts matching rows).
        `search`: a source or target id (exact), or text in the reason (which names the record), any case;
        `offset`: for paging."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("run_id", run_id), ("action", action), ("stream", stream), ("direction", direction)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if failed_only:
            where.append("action = 'failed'")
        if search:
            where.append("(source_id = ? OR target_id = ? OR lower(reason) LIKE ? ESCAPE '\\')")
            pattern = "%" + _like_literal(search.lower()) + "%"
            params += [search, search, pattern]
        sql = f"SELECT {', '.join(_LOG_COLUMNS)} FROM sync_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY logged_at DESC, seq DESC LIMIT ? OFFSET ?"
        params += [int(limit), max(int(offset), 0)]
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

    def get_meta(self, key: str) -> str | None:
        with self._c.lock:
            row = self._c.conn.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return None if row is None else row[0]

    def meta_with_prefix(self, prefix: str) -> dict[str, str]:
        """Every meta key that starts with `prefix`, with its value: for small sets kept one key each (e.g. the
        credits waiting for their invoice to reach QuickBooks). Addition to the contract."""
        pattern = _like_literal(prefix) + "%"
        with self._c.lock:
            rows = self._c.conn.execute(
                "SELECT key, value FROM meta WHERE key LIKE ? ESCAPE '\\' ORDER BY key", [pattern]
            ).fetchall()
        return {str(k): str(v) for k, v in rows}

    def set_meta(self, key: str, value: str | None) -> None:
        """Set (or, with None, delete) a small key/value setting such as the "disconnected" flag."""
        self._writable()
        with self._c.lock, self._tx():
            if value is None:
                self._c.conn.execute("DELETE FROM meta WHERE key = ?", [key])
            else:
                self._c.conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [key, value],
                )

    def get_metas(self, keys: Iterable[str]) -> dict[str, str]:
        """get_meta for many keys in one query (those not set are absent). Addition to the contract."""
        wanted = list(dict.fromkeys(keys))
        out: dict[str, str] = {}
        with self._c.lock:
            for i in range(0, len(wanted), _CHUNK):
                rows = self._c.conn.execute(
                    "SELECT key, value FROM meta WHERE key IN (SELECT unnest(?::VARCHAR[]))", [wanted[i : i + _CHUNK]]
                ).fetchall()
                out.update((str(k), str(v)) for k, v in rows)
        return out

    def set_metas(self, values: Mapping[str, str | None]) -> None:
        """set_meta for many keys in one transaction, a statement per kind of change (a run's worth of small
        per-record sets; one statement per row costs ~1 ms each on DuckDB). Addition to the contract."""
        if not values:
            return
        self._writable()
        c = self._c
        with c.lock, self._tx():
            known = set(self.get_metas(values))
            gone = [k for k, v in values.items() if v is None and k in known]
            changed = [(k, v) for k, v in values.items() if v is not None and k in known]
            fresh = [(k, v) for k, v in values.items() if v is not None and k not in known]
            for i in range(0, len(gone), _CHUNK):
                c.conn.execute("DELETE FROM meta WHERE key IN (SELECT unnest(?::VARCHAR[]))", [gone[i : i + _CHUNK]])
            for i in range(0, len(changed), _CHUNK):
                ks, vs = (list(col) for col in zip(*changed[i : i + _CHUNK], strict=True))
                c.conn.execute(
                    "UPDATE meta SET value = u.v FROM (SELECT unnest(?::VARCHAR[]) AS k, unnest(?::VARCHAR[]) AS v) "
                    "AS u WHERE meta.key = u.k",
                    [ks, vs],
                )
            for i in range(0, len(fresh), _CHUNK):
                ks, vs = (list(col) for col in zip(*fresh[i : i + _CHUNK], strict=True))
                c.conn.execute(
                    "INSERT INTO meta (key, value) SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[])", [ks, vs]
                )


def _like_literal(text: str) -> str:
    """`text` as a LIKE pattern that matches only itself (with `ESCAPE '\\'`): its `%`, `_` and `\\` escaped."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


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
            log.debug("could not flush ledger %s at exit", core.loc.display, exc_info=True)
