"""A rule's Coperniq write, split so the shared batched writer (sync_ledger.writer) can send it in parallel.

A rule decides on the main thread and returns outcomes at once, or a `Write` for each call it needs: `send` only
talks to Coperniq (on a writer thread), `finish` turns the answer into the link or intent commit and the outcome
(back on the main thread, in plan order). A row's bookkeeping waits for the last of its writes (`PendingRow`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sync_ledger import ApiError
from sync_ledger.rows import Outcome
from target_coperniq.invoice_update import InvoiceUpdateError


class FatalTargetError(Exception):
    """Stop the run: retrying record by record cannot help (bad credentials, wrong URL)."""


@dataclass
class Write:
    """One Coperniq write a rule decided. `intent` (key, payload): a create, made durable with its batch before
    `send`; None: an update (repeating it after a crash writes the same values). `on_error` runs before the error
    becomes the row's failure (an invoice recovered after a crash is linked even when its update fails)."""

    send: Callable[[], Any]
    finish: Callable[[Any], Outcome]
    intent: tuple[str, dict[str, Any]] | None = None
    on_error: Callable[[Exception], None] | None = None


#: What a rule returns for a row: outcomes decided now, and writes whose outcomes come when they are applied.
Decision = Outcome | Write


def failure(rid: str, exc: Exception, retries: int) -> Outcome:
    """The row's failure for an error a rule or its write raised; a fatal one stops the run, an unknown one (a bug)
    propagates."""
    if isinstance(exc, ApiError):
        if exc.status in (401, 403):
            raise FatalTargetError(
                f"Coperniq rejected the API key (HTTP {exc.status}): check the `api_key` setting (and `api_url`)."
            ) from None
        if exc.status == 429:  # after ApiClient's backoff: every further row would wait the same and fail
            raise FatalTargetError(
                f"Coperniq kept answering 429 Too Many Requests after {retries} retries "
                "with backoff: the daily cap of 5,000 calls per API key is probably spent. Run again later; "
                "staged records are kept and retried."
            ) from None
        return Outcome("failed", rid, "failed", exc.message, request_id=exc.request_id)
    if isinstance(exc, InvoiceUpdateError):
        return Outcome("failed", rid, "failed", str(exc))
    if isinstance(exc, LookupError | ValueError | TypeError | ArithmeticError):
        return Outcome("failed", rid, "failed", f"{type(exc).__name__}: {exc}")
    raise exc


class PendingRow:
    """A row whose writes are planned: each applied write fills its outcome in, and the row's bookkeeping (`done`)
    runs once, when the last one is in. A fatal error leaves the row unbooked (pending: redone next run)."""

    def __init__(
        self,
        decided: list[Decision],
        fail: Callable[[Exception], Outcome],
        done: Callable[[list[Outcome]], None],
    ) -> None:
        self._slots: list[Outcome | None] = [d if isinstance(d, Outcome) else None for d in decided]
        self._left = self._slots.count(None)
        self._fail = fail
        self._done = done

    def finish(self, index: int, write: Write, sent: Any) -> None:
        try:
            outcome = write.finish(sent)
        except Exception as exc:  # noqa: BLE001 - mapped like an error of the call; a bug propagates from `fail`
            outcome = self._fail(exc)
        self._put(index, outcome)

    def failed(self, index: int, write: Write, exc: Exception) -> None:
        if write.on_error is not None:
            write.on_error(exc)
        self._put(index, self._fail(exc))

    def _put(self, index: int, outcome: Outcome) -> None:
        self._slots[index] = outcome
        self._left -= 1
        if self._left == 0:
            self._done([o for o in self._slots if o is not None])
