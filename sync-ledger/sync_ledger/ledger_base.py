"""What every part of the Ledger shares: the handle's state, transactions and the write-behind buffers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from .ledger_core import _CHUNK, _LOG_COLUMNS, LedgerError, _Core, _key


class LedgerBase:
    """Base of the Ledger's parts (links, intents, staging, runs): one handle on one core."""

    path: Path | None  # the DuckDB file (None on PostgreSQL)
    where: str  # the ledger as messages name it: the file, or the URL without secrets, and the company
    read_only: bool
    flush_rows: int
    flush_interval: float
    _closed: bool
    _c: _Core

    def _writable(self) -> None:
        if self._closed:
            raise LedgerError(f"The sync ledger {self.where} is closed")
        if self.read_only:
            raise LedgerError(f"The sync ledger {self.where} was opened read-only")

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One transaction per logical write; nested calls join the outer one. On rollback, mirror
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
                    "UPDATE staging SET status = ?, attempts = ?, last_error = ?, processed_at = ?, waits_on = ? "
                    "WHERE staging_key = ?",
                    [*v, _key(*k)],
                )
            return
        for i in range(0, len(items), _CHUNK):
            part = items[i : i + _CHUNK]
            c.conn.execute(
                "UPDATE staging SET status = u.status, attempts = u.attempts, last_error = u.last_error, "
                "processed_at = u.processed_at, waits_on = u.waits_on FROM (SELECT unnest(?::VARCHAR[]) AS k, "
                "unnest(?::VARCHAR[]) AS status, unnest(?::INTEGER[]) AS attempts, "
                "unnest(?::VARCHAR[]) AS last_error, unnest(?::TIMESTAMP[]) AS processed_at, "
                "unnest(?::VARCHAR[]) AS waits_on) AS u "
                "WHERE staging.staging_key = u.k",
                [
                    [_key(*k) for k, _ in part],
                    [v[0] for _, v in part],
                    [v[1] for _, v in part],
                    [v[2] for _, v in part],
                    [v[3] for _, v in part],
                    [v[4] for _, v in part],
                ],
            )

    def flush(self) -> None:
        """Write buffered log rows and staging statuses now (e.g. before a target emits STATE)."""
        if self.read_only:
            return
        with self._c.lock:
            self._flush_now()

    @contextmanager
    def transaction(self) -> Iterator[Self]:
        """Group several writes (e.g. upsert_link + end_intent) so they commit or roll back together."""
        self._writable()
        with self._c.lock, self._tx():
            yield self
