"""The batched writer: writes are decided one by one, made durable together, and sent in parallel.

Why batches: one ledger commit makes a whole batch's create intents durable before any of its API calls is sent
(rule 1 of the journal, sync_ledger.rows), instead of a commit per record; then up to `workers` calls run at once,
with the HTTP client's token bucket as the only brake. Results are applied on the calling thread in plan order, so
the rules that decide a row never run concurrently. Updates go the same way without an intent (a PATCH repeated
after a crash writes the same values again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .rows import Journal

#: Creates are planned in batches of this size, then sent.
WRITE_BATCH = 50

#: Runs one row's step (the caller's guard turns its failure into a failed row; see Reconciler._guard).
Guard = Callable[[str, str, Callable[[], None]], None]


def definitely_not_created(exc: BaseException) -> bool:
    """A 4xx refusal means the create did not happen; a 5xx, a timeout or a 409/429 may hide one that did, and so
    may a 4xx answering a retry of an attempt that got a 5xx or no answer (the error's `ambiguous`)."""
    status = getattr(exc, "status", None)
    return (
        isinstance(status, int)
        and 400 <= status < 500
        and status not in (408, 409, 429)
        and not getattr(exc, "ambiguous", True)
    )


@dataclass
class PlannedWrite:
    """A create decided on the main thread; only `send` (the HTTP call) runs on a worker thread."""

    stream: str
    source_id: str
    intent_key: str | None  # None: an update, nothing to recover after a crash
    intent: dict[str, Any]
    send: Callable[[], Any]
    finish: Callable[[Any], None]
    on_error: Callable[[Exception], None] | None = None  # default: the row fails with the error


class BatchWriter:
    """Plans creates and sends them in batches (see module docstring). Close it at the end of the run."""

    def __init__(
        self,
        journal: Journal,
        guard: Guard,
        *,
        workers: int,
        logger: logging.Logger,
        end: Callable[[str], None] | None = None,
        batch: int = WRITE_BATCH,
    ) -> None:
        self.journal = journal
        self.guard = guard
        self.end = end or journal.end  # clears the intent of a create that was refused
        self.workers = 1 if journal.dry else max(1, workers)
        self.batch = batch
        self.logger = logger
        self._planned: list[PlannedWrite] = []
        self._pool: ThreadPoolExecutor | None = None

    def plan(self, write: PlannedWrite, *, durable_now: bool = False) -> None:
        """Queue a create for the next batch (sent when `batch` are planned, or at flush_all). `durable_now`: a
        create planned again under a new name rewrites its intent at once, so a crash before the next batch can
        never leave the old name (held by an unrelated record) to be "recovered"."""
        if write.intent_key is not None:
            self.journal.keep(write.intent_key)
            if durable_now:
                self.journal.begin([(write.intent_key, write.intent)])
        self._planned.append(write)
        if len(self._planned) >= self.batch:
            self.flush()

    def flush_all(self) -> None:
        """Send everything planned, including creates planned again while a batch was applied."""
        while self._planned:
            self.flush()

    def flush(self) -> None:
        """Send the planned creates: their intents in one commit, then the calls, then the results in plan order."""
        batch, self._planned = self._planned, []
        if not batch:
            return
        self.journal.begin((p.intent_key, p.intent) for p in batch if p.intent_key is not None)
        results = self._send(batch)
        stopped: Exception | None = None
        for p, (sent, exc) in zip(batch, results, strict=True):
            if stopped is not None and exc is not None:
                continue  # the run stops: only the creates that went through are still applied (links saved)
            try:
                self.guard(p.stream, p.source_id, _applier(self.end, p, sent, exc))
            except Exception as error:  # noqa: BLE001 - a disconnect or a bug: stop after applying what was created
                if stopped is None:
                    stopped = error
                else:
                    self.logger.error("Also while applying a batch: %s", error)
        if stopped is not None:
            raise stopped

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _send(self, batch: list[PlannedWrite]) -> list[tuple[Any, Exception | None]]:
        if self.workers > 1 and len(batch) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="write")
            return list(self._pool.map(_attempt, batch))
        return [_attempt(p) for p in batch]


def _attempt(p: PlannedWrite) -> tuple[Any, Exception | None]:
    try:
        return p.send(), None
    except Exception as exc:  # noqa: BLE001 - re-raised on the main thread, inside the guard
        return None, exc


def _applier(end: Callable[[str], None], p: PlannedWrite, sent: Any, exc: Exception | None) -> Callable[[], None]:
    def apply() -> None:
        if exc is None:
            p.finish(sent)
            return
        if p.intent_key is not None and definitely_not_created(exc):
            end(p.intent_key)  # refused: nothing to recover next run (kept after a 5xx or a timeout)
        if p.on_error is not None:
            p.on_error(exc)
        else:
            raise exc

    return apply
