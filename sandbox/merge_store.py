"""In-memory tables for the Merge sandbox: append-only rows, indexes and cursor pagination.

Rows are never removed (Merge soft-deletes with `remote_was_deleted`), so a row's position in its table
is stable and doubles as the pagination cursor. That keeps list calls O(page) even with 100k+ rows.
"""

from __future__ import annotations

import base64
import bisect
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

Row = dict[str, Any]


class _StrictClock:
    """Wall-clock microseconds that never repeat or go back (one per process, shared by every app)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_us = 0

    def next_us(self) -> int:
        with self._lock:
            t = time.time_ns() // 1000
            self._last_us = t if t > self._last_us else self._last_us + 1
            return self._last_us


_clock = _StrictClock()


def now_us() -> int:
    """Strictly increasing wall-clock microseconds: created_at order == insertion order, no ties."""
    return _clock.next_us()


def iso(us: int) -> str:
    """Merge timestamp format: ISO-8601 UTC with microseconds and a trailing Z."""
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_dt(value: str) -> datetime:
    """Parse a client datetime (date, naive = UTC, `Z` or offset). Raises ValueError."""
    text = value.strip().replace(" ", "+") if "T" in value else value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def dt_us(value: str) -> int:
    dt = parse_dt(value)
    return int(dt.timestamp()) * 1_000_000 + dt.microsecond


def encode_cursor(kind: str, pos: int) -> str:
    """Opaque DRF-like cursor: base64 of `p=<pos>` (forward) or `r=<pos>` (reverse)."""
    return base64.b64encode(f"{kind}={pos}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[str, int]:
    """Returns (kind, pos); raises ValueError on a cursor we did not mint."""
    try:
        kind, _, pos = base64.b64decode(cursor.encode(), validate=False).decode().partition("=")
        if kind not in ("p", "r"):
            raise ValueError
        return kind, int(pos)
    except Exception as exc:
        raise ValueError("Invalid cursor") from exc


class Table:
    """One Merge common model: rows by id, by position, by remote_id, and a modified_at index.

    The remote-id index is keyed by (QBO entity, Id): QuickBooks may number customers and vendors separately,
    so one remote_id can belong to two contacts (a row's entity is its `_entity`, else `default_entity`).
    """

    def __init__(self, name: str, default_entity: str = "") -> None:
        self.name = name
        self.default_entity = default_entity
        self.by_id: dict[str, Row] = {}
        self.order: list[Row] = []
        self.created: list[int] = []  # _created_us by position (ascending)
        self.by_remote: dict[str, dict[str, str]] = {}  # remote_id -> {entity: row id}, insertion order
        self._mod_index: list[tuple[int, int]] = []  # sorted (modified_us, pos)

    def __len__(self) -> int:
        return len(self.order)

    def get(self, id_: str | None) -> Row | None:
        return self.by_id.get(id_) if id_ else None

    def row(self, id_: str) -> Row:
        """The row with this Merge id, for ids the data itself holds (references, registries): KeyError if none."""
        return self.by_id[id_]

    def by_remote_id(self, remote_id: str | None, entity: str | None = None) -> Row | None:
        """The row of this QBO entity with this Id; without `entity`, the default entity's row, else the first."""
        held = self.by_remote.get(str(remote_id)) if remote_id is not None else None
        if not held:
            return None
        if entity is not None:
            return self.by_id.get(held.get(entity, ""))
        row_id = held.get(self.default_entity) or next(iter(held.values()))
        return self.by_id.get(row_id)

    def all_by_remote_id(self, remote_id: str | None) -> list[Row]:
        """Every row with this remote_id (more than one only when QBO entities share an Id)."""
        held = self.by_remote.get(str(remote_id), {}) if remote_id is not None else {}
        return [self.by_id[i] for i in held.values()]

    def insert(self, row: Row, ts: int | None = None) -> Row:
        ts = ts or now_us()
        row["_pos"] = len(self.order)
        row["_created_us"] = row["_mod_us"] = ts
        row["created_at"] = row["modified_at"] = iso(ts)
        self.by_id[row["id"]] = row
        self.order.append(row)
        self.created.append(ts)
        if row.get("remote_id") is not None:
            entity = row.get("_entity") or self.default_entity
            self.by_remote.setdefault(str(row["remote_id"]), {})[entity] = row["id"]
        self._mod_index.append((ts, row["_pos"]))  # ts is the newest timestamp: stays sorted
        return row

    def touch(self, row: Row, ts: int | None = None) -> None:
        """Bump modified_at (a common-model field changed)."""
        ts = ts or now_us()
        old = (row["_mod_us"], row["_pos"])
        i = bisect.bisect_left(self._mod_index, old)
        if i < len(self._mod_index) and self._mod_index[i] == old:
            del self._mod_index[i]
        row["_mod_us"] = ts
        row["modified_at"] = iso(ts)
        bisect.insort(self._mod_index, (ts, row["_pos"]))

    def page(
        self,
        *,
        cursor: str | None,
        page_size: int,
        predicate: Callable[[Row], bool],
        created_after: int | None = None,
        modified_after: int | None = None,
        candidates: Iterable[int] | None = None,
    ) -> tuple[list[Row], str | None, str | None]:
        """One page ordered by created_at. `predicate` must re-check every filter (indexes only narrow).

        Returns (rows, next_cursor, previous_cursor).
        """
        kind, pos = decode_cursor(cursor) if cursor else ("p", -1)
        positions = self._positions(created_after, modified_after, candidates)
        if kind == "p":
            found, more = self._scan(positions, pos, forward=True, want=page_size, predicate=predicate)
            nxt = encode_cursor("p", found[-1]["_pos"]) if more and found else None
            prev = encode_cursor("r", found[0]["_pos"] if found else pos + 1) if cursor else None
            return found, nxt, prev
        found, more = self._scan(positions, pos, forward=False, want=page_size, predicate=predicate)
        found.reverse()
        nxt = encode_cursor("p", found[-1]["_pos"] if found else pos - 1)
        prev = encode_cursor("r", found[0]["_pos"]) if more and found else None
        return found, nxt, prev

    def _positions(
        self, created_after: int | None, modified_after: int | None, candidates: Iterable[int] | None
    ) -> list[int] | range:
        """Narrow the scan: explicit candidates, few recently-modified rows, or a created_at range."""
        n = len(self.order)
        if candidates is not None:
            return sorted(set(candidates))
        start = bisect.bisect_right(self.created, created_after) if created_after is not None else 0
        if modified_after is not None:
            i = bisect.bisect_right(self._mod_index, (modified_after, n + 1))
            recent = len(self._mod_index) - i
            if recent * 8 < n - start:
                return sorted(p for _, p in self._mod_index[i:] if p >= start)
        return range(start, n)

    def _scan(
        self, positions: list[int] | range, pos: int, *, forward: bool, want: int, predicate: Callable[[Row], bool]
    ) -> tuple[list[Row], bool]:
        """Collect `want` matching rows after (or before) `pos`; also report whether more exist."""
        if isinstance(positions, range):
            it: Iterator[int] = (
                iter(range(max(pos + 1, positions.start), positions.stop))
                if forward
                else iter(range(min(pos - 1, positions.stop - 1), positions.start - 1, -1))
            )
        elif forward:
            it = iter(positions[bisect.bisect_right(positions, pos) :])
        else:
            it = reversed(positions[: bisect.bisect_left(positions, pos)])
        found: list[Row] = []
        for p in it:
            row = self.order[p]
            if predicate(row):
                if len(found) == want:
                    return found, True
                found.append(row)
        return found, False
