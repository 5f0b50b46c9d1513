"""Source staging: the latest snapshot of each source record and its processing status."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .ledger_base import LedgerBase
from .ledger_core import _CHUNK, STAGING_STATUSES, _key, _sid, _Staged, _statuses
from .util import fingerprint, utcnow


class StagingMixin(LedgerBase):
    """Staging rows: payloads in DuckDB, a mirror of their fingerprints and statuses in memory."""

    def stage(self, source_system: str, stream: str, records: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Bulk upsert the latest snapshot of source records. A changed payload becomes `pending` with attempts
        reset; an unchanged one keeps its status and costs no write."""
        self._writable()
        c = self._c
        now = utcnow()
        with c.lock:
            mirror = self._load_staging(source_system, stream)
            changed: dict[str, _Staged] = {}
            for record_id, payload in records:
                rid = _sid(record_id)
                payload_json = json.dumps(payload, separators=(",", ":"), default=str)
                fp = fingerprint(payload)
                current = changed.get(rid) or mirror.get(rid)
                if current is not None and current.fingerprint == fp:
                    continue
                changed[rid] = _Staged(payload_json, fp, "pending", 0, None)
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
                            [changed[r].payload_json for r in part],
                            [changed[r].fingerprint for r in part],
                            now,
                        ],
                    )
                if len(old_ids) == 1:  # the common per-record case: an index point update
                    rid = old_ids[0]
                    c.conn.execute(
                        "UPDATE staging SET payload_json = ?, fingerprint = ?, received_at = ?, status = 'pending', "
                        "attempts = 0, last_error = NULL, processed_at = NULL WHERE staging_key = ?",
                        [changed[rid].payload_json, changed[rid].fingerprint, now, _key(source_system, stream, rid)],
                    )
                else:
                    for i in range(0, len(old_ids), _CHUNK):
                        part = old_ids[i : i + _CHUNK]
                        c.conn.execute(
                            "UPDATE staging SET payload_json = u.payload_json, fingerprint = u.fingerprint, "
                            "received_at = ?, status = 'pending', attempts = 0, last_error = NULL, "
                            "processed_at = NULL FROM (SELECT ? || unnest(?::VARCHAR[]) AS k, "
                            "unnest(?::VARCHAR[]) AS payload_json, unnest(?::VARCHAR[]) AS fingerprint) AS u "
                            "WHERE staging.staging_key = u.k",
                            [
                                now,
                                _key(source_system, stream, ""),
                                part,
                                [changed[r].payload_json for r in part],
                                [changed[r].fingerprint for r in part],
                            ],
                        )
                c.on_commit.append(lambda: mirror.update(changed))

    def staged(self, source_system: str, stream: str, record_id: str) -> dict[str, Any] | None:
        """The latest payload received for a source record, whatever run it arrived in."""
        with self._c.lock:
            row = self._load_staging(source_system, stream).get(_sid(record_id))
            return None if row is None else json.loads(row.payload_json)

    def staged_status(self, source_system: str, stream: str, record_id: str) -> tuple[str, int, str | None] | None:
        """(status, attempts, last_error) of a staged record, or None. Addition to the contract, for targets."""
        with self._c.lock:
            row = self._load_staging(source_system, stream).get(_sid(record_id))
            return None if row is None else (row.status, row.attempts, row.last_error)

    def iter_staged(
        self, source_system: str, stream: str, *, status: str | Sequence[str] | None = None
    ) -> Iterator[tuple[str, dict[str, Any], str, int]]:
        """(id, payload, status, attempts) for staged records, in id order. Iterates a snapshot, so callers
        may mark_staged() while iterating."""
        wanted = _statuses(status)
        with self._c.lock:
            mirror = self._load_staging(source_system, stream)
            snapshot = [
                (rid, row.payload_json, row.status, row.attempts)
                for rid, row in mirror.items()
                if wanted is None or row.status in wanted
            ]
        snapshot.sort(key=lambda r: (len(r[0]), r[0]))  # numeric-looking ids in numeric order
        for rid, payload_json, st, attempts in snapshot:
            yield rid, json.loads(payload_json), st, attempts

    def mark_staged(
        self, source_system: str, stream: str, record_id: str, status: str, error: str | None = None
    ) -> None:
        """Set a staged record's processing status; `failed` increments attempts and keeps the error."""
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
            if (status, attempts, last_error) == (row.status, row.attempts, row.last_error):
                return
            row.status, row.attempts, row.last_error = status, attempts, last_error
            c.mark_buf[(source_system, stream, rid)] = (status, attempts, last_error, utcnow())
            self._buffered()

    def _load_staging(self, source_system: str, stream: str) -> dict[str, _Staged]:
        c = self._c
        mirror = c.staging.get((source_system, stream))
        if mirror is None:
            rows = c.conn.execute(
                "SELECT record_id, payload_json, fingerprint, status, attempts, last_error FROM staging "
                "WHERE source_system = ? AND stream = ?",
                [source_system, stream],
            ).fetchall()
            mirror = {r[0]: _Staged(r[1], r[2], r[3], r[4], r[5]) for r in rows}
            c.staging[(source_system, stream)] = mirror
        return mirror
