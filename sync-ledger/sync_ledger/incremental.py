"""Incremental reads with a lookback overlap, for both taps: re-read a window before the bookmark, emit once.

A bookmark is only as good as the two clocks behind it. The server's `updated_after`/`modified_after` may be
strict, a write can become visible after rows stamped later (Merge stamps `modified_at` when its sync job runs),
and the SDK caps a bookmark at the tap's start time truncated to the millisecond, while both APIs stamp finer.
So each run re-reads `lookback` seconds before the bookmark, and the state remembers `{id: key value}` of the
rows emitted inside that window: an overlap row with the same key value is dropped, a row that changed again
has a new value and is emitted. Above `max_rows` rows in one window the memory is dropped and the overlap
is re-emitted (at-least-once; the targets are idempotent).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

#: State key holding {id: key value} of rows emitted inside the lookback window of the bookmark.
RECENT_KEY = "recent_ids"
#: Above this many rows in one lookback window, stop remembering them (state stays small).
MAX_RECENT = 5000


def parse_timestamp(value: str) -> datetime:
    """ISO 8601 with `Z` or an offset; naive means UTC."""
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def lookback_start(
    start: datetime | None, *, has_bookmark: bool, lookback: int, start_date: str | None
) -> datetime | None:
    """Lower bound of an incremental read: the bookmark minus `lookback` seconds, never before `start_date`."""
    if start is None or not has_bookmark or lookback <= 0:
        return start
    start -= timedelta(seconds=lookback)
    if start_date:
        start = max(start, parse_timestamp(start_date))
    return start


class OverlapFilter:
    """Drops rows the previous run already emitted with the same key value; remembers what this run emits."""

    def __init__(self, prior: Mapping[str, str] | None, *, lookback: int, max_rows: int = MAX_RECENT) -> None:
        self.prior = dict(prior or {})
        self.lookback = lookback
        self.max_rows = max_rows
        self.skipped = 0
        self._emitted: dict[str, str] = {}
        self._overflow = False

    def is_unchanged(self, row_id: object, value: object) -> bool:
        """True for an overlap row emitted before with this key value (count it, drop it)."""
        if value is not None and self.prior.get(str(row_id)) == str(value):
            self.skipped += 1
            return True
        return False

    def emitted(self, row_id: object, value: object) -> None:
        if value is None or self._overflow or self.lookback <= 0:
            return
        self._emitted[str(row_id)] = str(value)
        if len(self._emitted) >= 2 * self.max_rows:  # bound memory on big runs
            self._emitted = self._window(self._emitted)
            if len(self._emitted) > self.max_rows:  # a bulk update: too many to remember
                self._overflow = True
                self._emitted.clear()

    def remembered(self) -> dict[str, str] | None:
        """What the state keeps: rows within `lookback` of the newest key value, or None (nothing, or too many)."""
        if self.lookback <= 0 or self._overflow:
            return None
        keep = self._window({**self.prior, **self._emitted})
        return keep if keep and len(keep) <= self.max_rows else None

    def _window(self, rows: dict[str, str]) -> dict[str, str]:
        if not rows:
            return {}
        parsed = {k: parse_timestamp(v) for k, v in rows.items()}
        floor = max(parsed.values()) - timedelta(seconds=self.lookback)
        return {k: rows[k] for k, v in parsed.items() if v >= floor}


class LookbackStreamMixin:
    """For a Singer SDK stream (put it before the SDK base): the overlap filter wired into one sync.

    The stream asks `read_from` for its server-side lower bound, calls `keep_row` from its `post_process` and
    calls `remember_overlap` after its records. It uses the SDK stream's `config`, state accessors,
    `replication_key`, `name` and `logger`.
    """

    _overlap: OverlapFilter | None = None

    @property
    def lookback(self) -> int:
        """The `lookback_window` setting in seconds (0: no overlap, nothing remembered)."""
        return int(self.config.get("lookback_window", 300) or 0)  # type: ignore[attr-defined]

    def overlap_filter(self) -> OverlapFilter:
        if self._overlap is None:
            prior = self.stream_state.get(RECENT_KEY)  # type: ignore[attr-defined]
            self._overlap = OverlapFilter(prior, lookback=self.lookback)
        return self._overlap

    def read_from(self, context: object) -> datetime | None:
        """Lower bound of this sync's read: the SDK's starting timestamp minus the lookback when resuming."""
        bookmark = self.get_context_state(context).get("replication_key_value")  # type: ignore[attr-defined]
        start = self.get_starting_timestamp(context)  # type: ignore[attr-defined]
        start_date = self.config.get("start_date")  # type: ignore[attr-defined]
        return lookback_start(start, has_bookmark=bool(bookmark), lookback=self.lookback, start_date=start_date)

    def keep_row(self, row: Mapping[str, object], *, drop_unchanged: bool = True) -> bool:
        """False for an unchanged overlap row; otherwise the row counts as emitted. `drop_unchanged=False` (a
        full re-read) keeps every row and only remembers it."""
        key, value = row.get("id"), row.get(self.replication_key)  # type: ignore[attr-defined]
        overlap = self.overlap_filter()
        if drop_unchanged and overlap.is_unchanged(key, value):
            return False
        overlap.emitted(key, value)
        return True

    def remember_overlap(self) -> None:
        """After the stream's records: store the window's rows in the state and reset for the next sync."""
        overlap, self._overlap = self.overlap_filter(), None
        state = self.stream_state  # type: ignore[attr-defined]
        if (keep := overlap.remembered()) is None:
            state.pop(RECENT_KEY, None)
        else:
            state[RECENT_KEY] = keep
        if overlap.skipped:
            logger, name = self.logger, self.name  # type: ignore[attr-defined]
            logger.info("%s: %d unchanged rows in the lookback window skipped", name, overlap.skipped)
