"""Source staging: the latest snapshot of each source record and its processing status."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from .ledger_core import _CHUNK, _key, _sid, _Staged, _statuses
from .ledger_rows import RowsMixin
from .util import fingerprint, utcnow

#: Payloads read per query while iterating (bounded memory whatever the stream's size).
CHUNK = 500
#: Payloads kept after a staged() read.
PAYLOAD_CACHE = 2048  # two chunks' prefetched records: up to two per row (a project's account and phase snapshot)


class StagingMixin(RowsMixin):
    """Staging rows: payloads, fingerprints and statuses in DuckDB; in memory only the rows and payloads a pass
    touches (bounded caches), so memory does not grow with the ledger's history."""

    def stage(self, source_system: str, stream: str, records: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Bulk upsert the latest snapshot of source records. A changed payload becomes `pending` with attempts
        reset (and wakes the rows waiting on it, key `record_key(stream, id)`); an unchanged one keeps its status
        and costs no write."""
        self._writable()
        c = self._c
        now = utcnow()
        with c.lock:
            if c.memory is not None:
                c.memory.check()  # the indexes grow as a first sync stages
            batch = [(_sid(record_id), payload) for record_id, payload in records]
            current = self._rows_of(source_system, stream, [rid for rid, _ in batch])
            changed: dict[str, _Staged] = {}
            payloads: dict[str, str] = {}
            for rid, payload in batch:
                fp = fingerprint(payload)
                known = changed.get(rid) or current.get(rid)
                if known is not None and known.fingerprint == fp:
                    continue
                changed[rid] = _Staged(fp, "pending", 0, None)
                payloads[rid] = json.dumps(payload, separators=(",", ":"), default=str)
            if not changed:
                return
            new_ids = [rid for rid in changed if rid not in current]
            old_ids = [rid for rid in changed if rid in current]
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
                            [payloads[r] for r in part],
                            [changed[r].fingerprint for r in part],
                            now,
                        ],
                    )
                if len(old_ids) == 1:  # the common per-record case: an index point update
                    rid = old_ids[0]
                    c.conn.execute(
                        "UPDATE staging SET payload_json = ?, fingerprint = ?, received_at = ?, status = 'pending', "
                        "attempts = 0, last_error = NULL, processed_at = NULL, waits_on = NULL WHERE staging_key = ?",
                        [payloads[rid], changed[rid].fingerprint, now, _key(source_system, stream, rid)],
                    )
                else:
                    for i in range(0, len(old_ids), _CHUNK):
                        part = old_ids[i : i + _CHUNK]
                        c.conn.execute(
                            "UPDATE staging SET payload_json = u.payload_json, fingerprint = u.fingerprint, "
                            "received_at = ?, status = 'pending', attempts = 0, last_error = NULL, "
                            "processed_at = NULL, waits_on = NULL FROM (SELECT ? || unnest(?::VARCHAR[]) AS k, "
                            "unnest(?::VARCHAR[]) AS payload_json, unnest(?::VARCHAR[]) AS fingerprint) AS u "
                            "WHERE staging.staging_key = u.k",
                            [
                                now,
                                _key(source_system, stream, ""),
                                part,
                                [payloads[r] for r in part],
                                [changed[r].fingerprint for r in part],
                            ],
                        )
                c.on_commit.append(lambda: self._staged_changed(source_system, stream, changed))

    def staged(self, source_system: str, stream: str, record_id: str) -> dict[str, Any] | None:
        """The latest payload received for a source record, whatever run it arrived in (an index point read; the
        last PAYLOAD_CACHE payloads read are kept, since one client is looked up by all its projects)."""
        rid = _sid(record_id)
        c = self._c
        with c.lock:
            key = (source_system, stream, rid)
            text = c.payloads.pop(key, None)
            if text is None:
                row = c.conn.execute(
                    "SELECT payload_json FROM staging WHERE staging_key = ?", [_key(source_system, stream, rid)]
                ).fetchone()
                if row is None:
                    return None
                text = str(row[0])
            c.payloads[key] = text  # most recent last
            if len(c.payloads) > PAYLOAD_CACHE:
                del c.payloads[next(iter(c.payloads))]
        return dict(json.loads(text))

    def staged_many(self, source_system: str, stream: str, record_ids: Iterable[Any]) -> dict[str, dict[str, Any]]:
        """staged() for many records in one query (those never staged are absent). Addition to the contract."""
        ids = list(dict.fromkeys(_sid(r) for r in record_ids))
        c = self._c
        out: dict[str, dict[str, Any]] = {}
        with c.lock:
            for i in range(0, len(ids), CHUNK):
                for rid, text in c.conn.execute(
                    "SELECT record_id, payload_json FROM staging WHERE staging_key IN (SELECT unnest(?::VARCHAR[]))",
                    [[_key(source_system, stream, rid) for rid in ids[i : i + CHUNK]]],
                ).fetchall():
                    out[rid] = json.loads(text)
        return out

    def iter_staged(
        self,
        source_system: str,
        stream: str,
        *,
        status: str | Sequence[str] | None = None,
        unkeyed_waits: bool = False,
        prefetch: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]] = (),
    ) -> Iterator[tuple[str, dict[str, Any], str, int]]:
        """(id, payload, status, attempts) for staged records, in id order. Iterates a snapshot, so callers
        may mark_staged() while iterating; payloads are read CHUNK at a time. `unkeyed_waits`: also the rows
        `waiting` on no key (something outside the ledger, such as the other system's sync), which no wake
        reaches, so they are tried every run. `prefetch`: (stream, key of a payload) pairs whose records the
        caller will look up with staged(): read with each chunk, in one query instead of one per row."""
        for chunk in self.iter_staged_chunks(
            source_system, stream, status=status, unkeyed_waits=unkeyed_waits, prefetch=prefetch
        ):
            yield from chunk

    def iter_staged_chunks(
        self,
        source_system: str,
        stream: str,
        *,
        status: str | Sequence[str] | None = None,
        unkeyed_waits: bool = False,
        prefetch: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]] = (),
    ) -> Iterator[list[tuple[str, dict[str, Any], str, int]]]:
        """iter_staged, a chunk (up to CHUNK rows) at a time: what the caller needs for a chunk's rows (their
        links, with links_for) is read in one query before they are evaluated. Addition to the contract.
        Pages through the table in id order (no list of the whole stream is held): a row is yielded once; a row
        that comes to match ahead of the position (woken by an earlier one) is yielded in the same pass."""
        wanted = _statuses(status)
        c = self._c
        where = ""
        filters: list[Any] = []
        if wanted is not None:
            waits = " OR (status = 'waiting' AND waits_on IS NULL)" if unkeyed_waits and c.has_waits_on else ""
            where = f"AND (status IN (SELECT unnest(?::VARCHAR[])){waits})"
            filters.append(sorted(wanted))
        if not c.read_only:  # a row a person dismissed is left alone, even after it changes (ledger_review)
            where += (
                " AND staging_key NOT IN (SELECT row_key FROM row_decisions WHERE source_system = ? "
                "AND decision = 'dismiss')"
            )
            filters.append(source_system)
        after = ""  # numeric-looking ids in numeric order: by length, then by value
        while True:
            with c.lock:
                self._flush_if_writable()  # buffered statuses are in the table the page reads
                ids = [
                    r[0]
                    for r in c.conn.execute(
                        f"SELECT record_id FROM staging WHERE source_system = ? AND stream = ? {where} "
                        "AND (length(record_id) > ? OR (length(record_id) = ? AND record_id > ?)) "
                        "ORDER BY length(record_id), record_id LIMIT ?",
                        [source_system, stream, *filters, len(after), len(after), after, CHUNK],
                    ).fetchall()
                ]
                if not ids:
                    return
                if c.memory is not None:
                    c.memory.check()
                after = ids[-1]
                waits = "waits_on" if c.has_waits_on else "NULL"
                rows = c.conn.execute(
                    f"SELECT record_id, payload_json, fingerprint, status, attempts, last_error, {waits} "
                    "FROM staging WHERE staging_key IN (SELECT unnest(?::VARCHAR[]))",
                    [[_key(source_system, stream, rid) for rid in ids]],
                ).fetchall()
                for r in rows:  # the statuses the caller is about to mark
                    if (source_system, stream, r[0]) not in c.rows:
                        self._cache_row((source_system, stream, r[0]), _Staged(*r[2:]))
            decoded = {r[0]: (json.loads(r[1]), r[3], r[4]) for r in rows}
            for other, key in prefetch:
                self._warm(source_system, other, {str(k) for p, _, _ in decoded.values() if (k := key(p)) is not None})
            yield [(rid, *decoded[rid]) for rid in ids if rid in decoded]

    def _warm(self, source_system: str, stream: str, record_ids: set[str]) -> None:
        """Read these records' payloads into the staged() cache in one query (records never staged simply do not
        come back)."""
        c = self._c
        with c.lock:
            wanted = [rid for rid in record_ids if (source_system, stream, rid) not in c.payloads]
            if not wanted:
                return
            rows = c.conn.execute(
                "SELECT record_id, payload_json FROM staging WHERE staging_key IN (SELECT unnest(?::VARCHAR[]))",
                [[_key(source_system, stream, rid) for rid in wanted]],
            ).fetchall()
            for rid, text in rows:
                c.payloads[(source_system, stream, rid)] = str(text)
            while len(c.payloads) > PAYLOAD_CACHE:
                del c.payloads[next(iter(c.payloads))]

    def _staged_changed(self, source_system: str, stream: str, changed: dict[str, _Staged]) -> None:
        """After a stage() commit: the row and payload caches and the rows waiting on these records."""
        c = self._c
        for rid, new in changed.items():
            c.payloads.pop((source_system, stream, rid), None)
            c.mark_buf.pop((source_system, stream, rid), None)  # flushed before the reset, or never written
            self._cache_row((source_system, stream, rid), new)
        self.wake(source_system, [record_key(stream, rid) for rid in changed])


def record_key(stream: str, record_id: str) -> str:
    """The wake key of a staged record: rows waiting on it are re-evaluated when it arrives or changes."""
    return f"record:{stream}:{record_id}"
