"""Staging rows' processing status: what each staged record's last evaluation decided, and the waits that wake it.

Statuses live in DuckDB; this process keeps a bounded cache of the rows it touched (ROW_CACHE), and buffers status
changes (mark_buf) until a flush. A cached row is exact (every change of this process goes through it); a row
read again after it left the cache is its table row with its buffered change, if any, laid over it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from .ledger_base import LedgerBase
from .ledger_core import _CHUNK, STAGING_STATUSES, _key, _sid, _Staged
from .util import utcnow

#: Staging rows kept in memory after a read (two chunks of a pass, with room for what they look up).
ROW_CACHE = 5_000
_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")  # requeue_children's parent_field


class RowsMixin(LedgerBase):
    """mark_staged and its readers; wake, requeue and heal move `waiting`/`skipped` rows back to `pending`."""

    def mark_staged(
        self,
        source_system: str,
        stream: str,
        record_id: str,
        status: str,
        error: str | None = None,
        *,
        waits_on: str | None = None,
    ) -> None:
        """Set a staged record's processing status; `failed` increments attempts and keeps the error.
        `waiting` takes `waits_on`, the key whose change wakes the row (see wake); None: tried every run."""
        self._writable()
        if status not in STAGING_STATUSES:
            raise ValueError(f"staging status must be one of {sorted(STAGING_STATUSES)}, got {status!r}")
        rid = _sid(record_id)
        c = self._c
        with c.lock:
            row = self._row(source_system, stream, rid)
            if row is None:
                raise KeyError(f"{source_system}/{stream}/{rid} was never staged")
            attempts = row.attempts + 1 if status == "failed" else row.attempts
            if status == "done":
                last_error = None
            elif error is not None:
                last_error = error
            else:
                last_error = row.last_error
            key = waits_on if status == "waiting" else None
            if (status, attempts, last_error, key) == (row.status, row.attempts, row.last_error, row.waits_on):
                return
            row.status, row.attempts, row.last_error, row.waits_on = status, attempts, last_error, key
            c.mark_buf[(source_system, stream, rid)] = (status, attempts, last_error, utcnow(), key)
            self._buffered()

    def staged_status(self, source_system: str, stream: str, record_id: str) -> tuple[str, int, str | None] | None:
        """(status, attempts, last_error) of a staged record, or None. Addition to the contract, for targets."""
        with self._c.lock:
            row = self._row(source_system, stream, _sid(record_id))
            return None if row is None else (row.status, row.attempts, row.last_error)

    def waiting_on(self, source_system: str, stream: str, record_id: str) -> str | None:
        """The wake key a `waiting` row waits on (None: something outside the ledger, or not waiting)."""
        with self._c.lock:
            row = self._row(source_system, stream, _sid(record_id))
            return row.waits_on if row is not None else None

    def wake(self, source_system: str, keys: Iterable[str]) -> int:
        """Rows `waiting` on one of these keys become `pending` (re-evaluated on the next pass); their count.
        One UPDATE in SQL (after the buffered statuses are written), so no index of the waiting rows is held."""
        wanted = sorted(set(keys))
        c = self._c
        if not wanted or not c.has_waits_on:
            return 0
        self._writable()
        with c.lock:
            self._flush_now()  # a row marked waiting in this process is in the table the UPDATE reads
            with self._tx():
                woken = c.conn.execute(
                    "UPDATE staging SET status = 'pending', processed_at = ?, waits_on = NULL "
                    "WHERE source_system = ? AND status = 'waiting' AND waits_on IN (SELECT unnest(?::VARCHAR[])) "
                    "RETURNING stream, record_id",
                    [utcnow(), source_system, wanted],
                ).fetchall()
            for stream, rid in woken:
                c.rows.pop((source_system, stream, rid), None)  # read again (as pending) when next asked
        return len(woken)

    def wake_all(self, source_system: str, streams: Iterable[str], statuses: Sequence[str]) -> int:
        """Every row of these streams in one of `statuses` becomes `pending` (a setting that decides them changed)."""
        return sum(self._requeue(source_system, stream, None, statuses) for stream in streams)

    def requeue(self, source_system: str, stream: str, record_ids: Iterable[str], statuses: Sequence[str]) -> int:
        """These rows become `pending` if they are in one of `statuses` (something they depend on changed)."""
        return self._requeue(source_system, stream, [_sid(r) for r in record_ids], statuses)

    def requeue_children(
        self,
        source_system: str,
        stream: str,
        parent_field: str,
        parent_stream: str,
        since: datetime | None,
        statuses: Sequence[str],
    ) -> int:
        """Rows of `stream` in one of `statuses` whose payload names (at the dotted `parent_field`) a row of
        `parent_stream` received changed after `since` (None: ever) become `pending`: what they were decided by
        lives in their parent's payload. Found in SQL (the field read by the engine's JSON functions), so neither
        stream is read into memory; no changed parent costs one indexed probe."""
        if not _FIELD_PATH.fullmatch(parent_field):
            raise ValueError(f"not a dotted field name: {parent_field!r}")
        c = self._c
        after = (since or datetime(1970, 1, 1, tzinfo=UTC)).astimezone(UTC).replace(tzinfo=None)  # naive UTC column
        with c.lock:
            self._flush_now()
            changed = (
                "SELECT p.record_id FROM staging p WHERE p.source_system = ? AND p.stream = ? AND p.received_at > ?"
            )
            if c.conn.execute(changed + " LIMIT 1", [source_system, parent_stream, after]).fetchone() is None:
                return 0
            parts = parent_field.split(".")
            field = (
                "(s.payload_json::json #>> '{" + ",".join(parts) + "}')"
                if c.loc.engine == "postgres"
                else "json_extract_string(s.payload_json, '$." + parent_field + "')"
            )
            ids = [
                r[0]
                for r in c.conn.execute(
                    "SELECT s.record_id FROM staging s WHERE s.source_system = ? AND s.stream = ? "
                    f"AND s.status IN (SELECT unnest(?::VARCHAR[])) AND {field} IN ({changed})",
                    [source_system, stream, list(statuses), source_system, parent_stream, after],
                ).fetchall()
            ]
        return self._requeue(source_system, stream, ids, statuses)

    def heal_waits(self, source_system: str) -> int:
        """Wake the `waiting` rows whose key is satisfied (its link exists, or its record was received after the
        row started waiting) but whose wake was lost: a crash between a link's commit and the buffered status of
        the rows it woke, or a row marked waiting behind a link still queued. One query; run at a run's start."""
        c = self._c
        with c.lock:
            self._flush_if_writable()
            if not c.has_waits_on:
                return 0
            found = c.conn.execute(
                "SELECT s.stream, s.record_id FROM staging s WHERE s.source_system = ? AND s.status = 'waiting' "
                "AND s.waits_on IS NOT NULL AND (EXISTS (SELECT 1 FROM id_map m WHERE m.source_system = ? AND "
                "'link:' || m.source_type || ':' || m.source_id = s.waits_on) "
                "OR EXISTS (SELECT 1 FROM staging r WHERE r.source_system = ? AND "
                "'record:' || r.stream || ':' || r.record_id = s.waits_on AND r.received_at >= s.processed_at))",
                [source_system, source_system, source_system],
            ).fetchall()
            for stream, rid in found:
                self.mark_staged(source_system, stream, rid, "pending")
        return len(found)

    # ------------------------------------------------------------------ the row cache

    def _row(self, source_system: str, stream: str, rid: str) -> _Staged | None:
        """One staging row's status (cached; else read by primary key, with its buffered change laid over)."""
        c = self._c
        key = (source_system, stream, rid)
        row = c.rows.get(key)
        if row is None:
            waits = "waits_on" if c.has_waits_on else "NULL"
            found = c.conn.execute(
                f"SELECT fingerprint, status, attempts, last_error, {waits} FROM staging WHERE staging_key = ?",
                [_key(source_system, stream, rid)],
            ).fetchone()
            if found is None:
                return None
            row = self._cache_row(key, _Staged(*found))
        return row

    def _rows_of(self, source_system: str, stream: str, record_ids: list[str]) -> dict[str, _Staged]:
        """The staging rows of these records (those staged), cached ones first, the rest in one query per chunk."""
        c = self._c
        out: dict[str, _Staged] = {}
        missing: list[str] = []
        for rid in record_ids:
            row = c.rows.get((source_system, stream, rid))
            if row is not None:
                out[rid] = row
            else:
                missing.append(rid)
        waits = "waits_on" if c.has_waits_on else "NULL"
        for i in range(0, len(missing), _CHUNK):
            for r in c.conn.execute(
                f"SELECT record_id, fingerprint, status, attempts, last_error, {waits} FROM staging "
                "WHERE staging_key IN (SELECT unnest(?::VARCHAR[]))",
                [[_key(source_system, stream, rid) for rid in missing[i : i + _CHUNK]]],
            ).fetchall():
                out[r[0]] = self._cache_row((source_system, stream, r[0]), _Staged(*r[1:]))
        return out

    def _cache_row(self, key: tuple[str, str, str], row: _Staged) -> _Staged:
        """Keep a row read from the table (its buffered status change wins), evicting the oldest ones."""
        c = self._c
        buffered = c.mark_buf.get(key)
        if buffered is not None:
            row.status, row.attempts, row.last_error, _, row.waits_on = buffered
        c.rows[key] = row
        while len(c.rows) > ROW_CACHE:
            del c.rows[next(iter(c.rows))]
        return row

    def _requeue(self, source_system: str, stream: str, record_ids: list[str] | None, statuses: Sequence[str]) -> int:
        """Rows (all of the stream's, or these) in one of `statuses` become `pending`, in SQL: a setting change can
        requeue a whole stream without reading it into memory."""
        self._writable()
        c = self._c
        with c.lock:
            self._flush_now()  # buffered statuses are in the table the UPDATE reads
            if record_ids is not None and not record_ids:
                return 0
            ids = "" if record_ids is None else "AND staging_key IN (SELECT unnest(?::VARCHAR[])) "
            params: list[Any] = [utcnow(), source_system, stream, list(statuses)]
            if record_ids is not None:
                params.append([_key(source_system, stream, rid) for rid in record_ids])
            with self._tx():
                woken = [
                    r[0]
                    for r in c.conn.execute(
                        "UPDATE staging SET status = 'pending', processed_at = ?, "
                        + ("waits_on = NULL " if c.has_waits_on else "")
                        + "WHERE source_system = ? AND stream = ? AND status IN (SELECT unnest(?::VARCHAR[])) "
                        + ids
                        + "RETURNING record_id",
                        params,
                    ).fetchall()
                ]
            for rid in woken:
                c.rows.pop((source_system, stream, rid), None)
        return len(woken)
