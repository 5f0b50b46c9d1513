"""Source staging: the latest snapshot of each source record and its processing status."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from .ledger_base import LedgerBase
from .ledger_core import _CHUNK, STAGING_STATUSES, _key, _sid, _Staged, _statuses
from .util import fingerprint, utcnow

#: Payloads read per query while iterating (bounded memory whatever the stream's size).
CHUNK = 2000
#: Payloads kept after a staged() read.
PAYLOAD_CACHE = 8192  # at least two chunks' worth of prefetched records
#: A stage() of at most this many records reads their rows by one query instead of loading the stream's mirror.
SMALL_BATCH = 1000


class StagingMixin(LedgerBase):
    """Staging rows: payloads in DuckDB, a mirror of their fingerprints and statuses in memory."""

    def stage(self, source_system: str, stream: str, records: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Bulk upsert the latest snapshot of source records. A changed payload becomes `pending` with attempts
        reset (and wakes the rows waiting on it, key `record_key(stream, id)`); an unchanged one keeps its status
        and costs no write."""
        self._writable()
        c = self._c
        now = utcnow()
        with c.lock:
            batch = [(_sid(record_id), payload) for record_id, payload in records]
            mirror = self._rows_of(source_system, stream, [rid for rid, _ in batch])
            changed: dict[str, _Staged] = {}
            payloads: dict[str, str] = {}
            for rid, payload in batch:
                fp = fingerprint(payload)
                current = changed.get(rid) or mirror.get(rid)
                if current is not None and current.fingerprint == fp:
                    continue
                changed[rid] = _Staged(fp, "pending", 0, None)
                payloads[rid] = json.dumps(payload, separators=(",", ":"), default=str)
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
                c.on_commit.append(lambda: self._staged_changed(source_system, stream, mirror, changed))

    def _rows_of(self, source_system: str, stream: str, record_ids: list[str]) -> dict[str, _Staged]:
        """The staging rows of these records: from the mirror when it is loaded; for a small batch (a run with little
        new input) by one query, so such a run never loads the mirror of a big stream."""
        c = self._c
        mirror = c.staging.get((source_system, stream))
        if mirror is not None or len(record_ids) > SMALL_BATCH:
            return mirror if mirror is not None else self._load_staging(source_system, stream)
        waits = "waits_on" if c.has_waits_on else "NULL"
        rows = c.conn.execute(
            f"SELECT record_id, fingerprint, status, attempts, last_error, {waits} FROM staging "
            "WHERE source_system = ? AND stream = ? AND list_contains(?, record_id)",
            [source_system, stream, record_ids],
        ).fetchall()
        return {r[0]: _Staged(r[1], r[2], r[3], r[4], r[5]) for r in rows}

    def staged(self, source_system: str, stream: str, record_id: str) -> dict[str, Any] | None:
        """The latest payload received for a source record, whatever run it arrived in (an index point read; the
        last PAYLOAD_CACHE payloads read are kept, since one client is looked up by all its projects)."""
        rid = _sid(record_id)
        c = self._c
        with c.lock:
            mirror = c.staging.get((source_system, stream))
            if mirror is not None and rid not in mirror:
                return None
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

    def staged_status(self, source_system: str, stream: str, record_id: str) -> tuple[str, int, str | None] | None:
        """(status, attempts, last_error) of a staged record, or None. Addition to the contract, for targets."""
        rid = _sid(record_id)
        c = self._c
        with c.lock:
            mirror = c.staging.get((source_system, stream))
            if mirror is None:  # nothing of this stream was marked in this process: the table is current
                found = c.conn.execute(
                    "SELECT status, attempts, last_error FROM staging WHERE staging_key = ?",
                    [_key(source_system, stream, rid)],
                ).fetchone()
                return None if found is None else (found[0], found[1], found[2])
            row = mirror.get(rid)
            return None if row is None else (row.status, row.attempts, row.last_error)

    def waiting_on(self, source_system: str, stream: str, record_id: str) -> str | None:
        """The wake key a `waiting` row waits on (None: something outside the ledger, or not waiting)."""
        with self._c.lock:
            row = self._load_staging(source_system, stream).get(_sid(record_id))
            return row.waits_on if row is not None else None

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
        wanted = _statuses(status)
        c = self._c
        with c.lock:
            mirror = c.staging.get((source_system, stream))
            if mirror is None and wanted is not None:  # select in the table: a quiet run loads no mirror
                waits = " OR (status = 'waiting' AND waits_on IS NULL)" if unkeyed_waits and c.has_waits_on else ""
                snapshot = c.conn.execute(
                    "SELECT record_id, status, attempts FROM staging WHERE source_system = ? AND stream = ? "
                    f"AND (list_contains(?, status){waits})",
                    [source_system, stream, sorted(wanted)],
                ).fetchall()
            else:
                snapshot = [
                    (rid, row.status, row.attempts)
                    for rid, row in self._load_staging(source_system, stream).items()
                    if (wanted is None or row.status in wanted)
                    or (unkeyed_waits and row.status == "waiting" and row.waits_on is None)
                ]
        snapshot.sort(key=lambda r: (len(r[0]), r[0]))  # numeric-looking ids in numeric order
        for i in range(0, len(snapshot), CHUNK):
            part = snapshot[i : i + CHUNK]
            with c.lock:
                rows = c.conn.execute(
                    "SELECT record_id, payload_json FROM staging WHERE source_system = ? AND stream = ? "
                    "AND list_contains(?, record_id)",
                    [source_system, stream, [rid for rid, _, _ in part]],
                ).fetchall()
            decoded = {rid: json.loads(text) for rid, text in rows}
            for other, key in prefetch:
                self._warm(source_system, other, {str(k) for p in decoded.values() if (k := key(p)) is not None})
            for rid, st, attempts in part:
                if rid in decoded:
                    yield rid, decoded[rid], st, attempts

    def _warm(self, source_system: str, stream: str, record_ids: set[str]) -> None:
        """Read these records' payloads into the staged() cache in one query (records never staged simply do not
        come back, so the stream's mirror is not needed for this)."""
        c = self._c
        with c.lock:
            wanted = [rid for rid in record_ids if (source_system, stream, rid) not in c.payloads]
            if not wanted:
                return
            rows = c.conn.execute(
                "SELECT record_id, payload_json FROM staging WHERE source_system = ? AND stream = ? "
                "AND list_contains(?, record_id)",
                [source_system, stream, wanted],
            ).fetchall()
            for rid, text in rows:
                c.payloads[(source_system, stream, rid)] = str(text)
            while len(c.payloads) > PAYLOAD_CACHE:
                del c.payloads[next(iter(c.payloads))]

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
            key = waits_on if status == "waiting" else None
            if (status, attempts, last_error, key) == (row.status, row.attempts, row.last_error, row.waits_on):
                return
            self._index_wait(source_system, stream, rid, row.waits_on, key)
            row.status, row.attempts, row.last_error, row.waits_on = status, attempts, last_error, key
            c.mark_buf[(source_system, stream, rid)] = (status, attempts, last_error, utcnow(), key)
            self._buffered()

    def wake(self, source_system: str, keys: Iterable[str]) -> int:
        """Rows `waiting` on one of these keys become `pending` (re-evaluated on the next pass); their count."""
        c = self._c
        woken = 0
        with c.lock:
            waiters = self._load_waiters(source_system)
            for key in keys:
                for stream, rid in list(waiters.get(key, ())):
                    self.mark_staged(source_system, stream, rid, "pending")
                    woken += 1
        return woken

    def wake_all(self, source_system: str, streams: Iterable[str], statuses: Sequence[str]) -> int:
        """Every row of these streams in one of `statuses` becomes `pending` (a setting that decides them changed)."""
        woken = 0
        with self._c.lock:
            for stream in streams:
                rows = self._load_staging(source_system, stream)
                woken += self.requeue(source_system, stream, list(rows), statuses)
        return woken

    def requeue(self, source_system: str, stream: str, record_ids: Iterable[str], statuses: Sequence[str]) -> int:
        """These rows become `pending` if they are in one of `statuses` (something they depend on changed)."""
        woken = 0
        with self._c.lock:
            rows = self._load_staging(source_system, stream)
            for rid in record_ids:
                row = rows.get(_sid(rid))
                if row is not None and row.status in statuses:
                    self.mark_staged(source_system, stream, _sid(rid), "pending")
                    woken += 1
        return woken

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

    def _staged_changed(
        self, source_system: str, stream: str, mirror: dict[str, _Staged], changed: dict[str, _Staged]
    ) -> None:
        """After a stage() commit: the mirror, the payload cache and the rows waiting on these records."""
        c = self._c
        for rid, new in changed.items():
            old = mirror.get(rid)
            if old is not None and old.waits_on is not None:
                self._index_wait(source_system, stream, rid, old.waits_on, None)
            c.payloads.pop((source_system, stream, rid), None)
            mirror[rid] = new
        self.wake(source_system, [record_key(stream, rid) for rid in changed])

    def _load_waiters(self, source_system: str) -> dict[str, set[tuple[str, str]]]:
        c = self._c
        waiters = c.waiters.get(source_system)
        if waiters is None:
            if not c.read_only:
                self._flush_now()  # statuses buffered in this process are in the table below
            waiters = {}
            if c.has_waits_on:
                for stream, rid, key in c.conn.execute(
                    "SELECT stream, record_id, waits_on FROM staging WHERE source_system = ? AND status = 'waiting' "
                    "AND waits_on IS NOT NULL",
                    [source_system],
                ).fetchall():
                    waiters.setdefault(key, set()).add((stream, rid))
            c.waiters[source_system] = waiters
        return waiters

    def _index_wait(self, source_system: str, stream: str, rid: str, old: str | None, new: str | None) -> None:
        waiters = self._c.waiters.get(source_system)
        if waiters is None or old == new:
            return  # not loaded yet: loaded from the table (after a flush) on the first wake
        if old is not None and (held := waiters.get(old)) is not None:
            held.discard((stream, rid))
            if not held:
                del waiters[old]
        if new is not None:
            waiters.setdefault(new, set()).add((stream, rid))

    def _load_staging(self, source_system: str, stream: str) -> dict[str, _Staged]:
        c = self._c
        mirror = c.staging.get((source_system, stream))
        if mirror is None:
            waits = "waits_on" if c.has_waits_on else "NULL"
            rows = c.conn.execute(
                f"SELECT record_id, fingerprint, status, attempts, last_error, {waits} FROM staging "
                "WHERE source_system = ? AND stream = ?",
                [source_system, stream],
            ).fetchall()
            mirror = {r[0]: _Staged(r[1], r[2], r[3], r[4], r[5]) for r in rows}
            c.staging[(source_system, stream)] = mirror
        return mirror


def record_key(stream: str, record_id: str) -> str:
    """The wake key of a staged record: rows waiting on it are re-evaluated when it arrives or changes."""
    return f"record:{stream}:{record_id}"
