"""The row guard: one row's step runs, and its failure becomes a failed (or waiting) row while the run goes on."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sync_ledger import ApiError
from sync_ledger.rows import Journal, RowFailure, RowLog, Wait

from .errors import Disconnected, Unreachable
from .merge_client import MergeClient, WriteError
from .settings import Settings


class RowGuard:
    """Call it with (stream, source_id, step[, status]). Also reports progress and notices an unreachable Merge."""

    def __init__(
        self, rows: RowLog, journal: Journal, settings: Settings, client: MergeClient, logger: logging.Logger
    ) -> None:
        self.rows = rows
        self.journal = journal
        self.s = settings
        self.client = client
        self.log = logger
        self._unreachable_since: float | None = None
        self._started = self._progress_at = time.monotonic()
        self.processed = 0

    def __call__(
        self, stream: str, source_id: str, step: Callable[[], None], status: str = "pending", *, count: bool = True
    ) -> None:
        try:
            step()
            self._unreachable_since = None
        except Wait as exc:
            if status != "waiting":  # a row still waiting for the same thing gets no new log line every run
                self.rows.record(stream, source_id, "skipped", str(exc))
            self.journal.mark(stream, source_id, "waiting", str(exc), waits_on=exc.on)
        except (RowFailure, WriteError) as exc:
            if isinstance(exc, WriteError) and exc.disconnected:
                raise Disconnected(exc.detail) from exc
            reason = exc.reason if isinstance(exc, RowFailure) else f"QuickBooks/Merge refused: {exc.detail}"
            self._fail(stream, source_id, "failed", reason, exc.request_id)
        except ApiError as exc:
            if exc.status in (401, 403):
                raise Disconnected(exc.message) from exc
            self._check_reachable(exc)
            self._fail(stream, source_id, "failed", f"Merge API error: {exc.message}", exc.request_id)
        finally:
            if count:
                self._progress(stream)

    def _fail(self, stream: str, source_id: str, status: str, reason: str, request_id: str | None = None) -> None:
        self.rows.record(stream, source_id, status, reason, request_id=request_id)
        self.journal.mark(stream, source_id, status, reason)

    def _progress(self, stream: str) -> None:
        self.processed += 1
        now = time.monotonic()
        if now - self._progress_at >= self.s.progress_interval:
            self._progress_at = now
            elapsed = max(now - self._started, 1e-6)
            calls = sum(self.client.api.calls.values())
            self.log.info(
                "progress: %s, %d records reconciled (%.0f/s), %d API calls (%.0f/min), %d retries",
                stream,
                self.processed,
                self.processed / elapsed,
                calls,
                calls * 60 / elapsed,
                self.client.api.retries,
            )

    def _check_reachable(self, exc: ApiError) -> None:
        """Rows failing because Merge does not answer (no response, or 5xx after the client's retries) fail the
        run once that has lasted `unreachable_timeout` seconds: grinding through every record helps nobody."""
        if exc.status not in (0, 502, 503, 504) and exc.status < 500:
            self._unreachable_since = None
            return
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = now
        elif now - self._unreachable_since >= self.s.unreachable_timeout:
            raise Unreachable(
                f"Merge at {self.s.base_url} has not answered for {now - self._unreachable_since:.0f} s "
                f"(unreachable_timeout): last error {exc.message}. The run stopped; its failed rows "
                "are retried next run."
            ) from exc
