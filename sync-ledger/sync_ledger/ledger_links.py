"""The id map (which target record each source record was written to) and the write-ahead intents."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from .ledger_base import LedgerBase
from .ledger_core import _CHUNK, _LINK_COLUMNS, Link, _key, _opt_sid, _sid, target_hash
from .util import as_utc, utcnow

#: Links kept in memory after a read (per source record); the rest stay in DuckDB, read by index.
LINK_CACHE = 5_000


class LinksMixin(LedgerBase):
    """id_map: read by key (primary key or the target indexes) through a bounded cache; `links_for` reads a whole
    chunk's links in one query. Writes go to DuckDB first and to the cache after commit."""

    def get_link(self, source_system: str, source_type: str, source_id: str) -> Link | None:
        """The link of a source record (if it was written to several target systems, the first by name)."""
        with self._c.lock:
            per_target = self._links_of(source_system, source_type, _sid(source_id))
            return replace(per_target[min(per_target)]) if per_target else None

    def links_for(self, source_system: str, source_type: str, source_ids: Iterable[Any]) -> dict[str, Link]:
        """get_link for many records in one query (a chunk of rows about to be evaluated), kept in the cache.
        Addition to the contract."""
        c = self._c
        with c.lock:
            held: dict[str, dict[str, Link]] = {}
            wanted: list[str] = []
            for sid in dict.fromkeys(_sid(i) for i in source_ids):
                cached = c.link_cache.get((source_system, source_type, sid))
                if cached is None:
                    wanted.append(sid)
                else:
                    held[sid] = cached
            for i in range(0, len(wanted), _CHUNK):
                part = wanted[i : i + _CHUNK]
                found: dict[str, dict[str, Link]] = {sid: {} for sid in part}
                for row in self._chunk_links(source_system, source_type, part):
                    link = _link(row)
                    found[link.source_id][link.target_system] = link
                for sid, per_target in found.items():
                    self._cache(source_system, source_type, sid, per_target)
                held.update(found)
            return {sid: replace(per[min(per)]) for sid, per in held.items() if per}

    def _chunk_links(self, source_system: str, source_type: str, part: list[str]) -> list[Any]:
        """One query for a chunk's links. DuckDB scans id_map by source id fastest; PostgreSQL reads it by primary
        key (a key per target system), because on a table without statistics yet (a first sync) it plans the
        source-id filter as a scan, 48x slower at 100k links (bench/RESULTS.md)."""
        c = self._c
        if c.loc.engine != "postgres":
            return list(
                c.conn.execute(
                    f"SELECT {_LINK_COLUMNS} FROM id_map WHERE source_system = ? AND source_type = ? "
                    "AND source_id IN (SELECT unnest(?::VARCHAR[]))",
                    [source_system, source_type, part],
                ).fetchall()
            )
        systems = sorted(self._target_systems())
        if not systems:
            return []
        keys = [_key(source_system, source_type, sid, t) for sid in part for t in systems]
        return list(
            c.conn.execute(
                f"SELECT {_LINK_COLUMNS} FROM id_map WHERE link_key IN (SELECT unnest(?::VARCHAR[]))", [keys]
            ).fetchall()
        )

    def get_link_by_target(self, target_system: str, target_type: str, target_id: str) -> Link | None:
        """Reverse lookup: which source record a target record came from (echo suppression, reverse leg)."""
        return self._link_where("target_id", target_system, target_type, target_id)

    def get_link_by_remote(self, target_system: str, target_type: str, target_remote_id: str) -> Link | None:
        """Lookup by the provider's own id (QBO Id), for records Merge has not assigned a UUID to yet."""
        return self._link_where("target_remote_id", target_system, target_type, target_remote_id)

    def links_to(self, target_system: str, target_type: str, target_ids: Iterable[Any]) -> dict[str, Link]:
        """get_link_by_target for many target records in one query (a chunk's echo checks). Addition to the
        contract."""
        ids = list(dict.fromkeys(_sid(i) for i in target_ids))
        out: dict[str, Link] = {}
        with self._c.lock:
            for i in range(0, len(ids), _CHUNK):
                part = ids[i : i + _CHUNK]
                by_hash, params = self._by_target("IN (SELECT unnest(?::BIGINT[]))", [target_hash(t) for t in part])
                for row in self._c.conn.execute(
                    f"SELECT {_LINK_COLUMNS} FROM id_map WHERE {by_hash}target_system = ? AND target_type = ? "
                    "AND target_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY updated_at",
                    [*params, target_system, target_type, part],
                ).fetchall():
                    link = _link(row)
                    out[str(link.target_id)] = link  # the latest wins, as in get_link_by_target
        return out

    def is_linked_target(self, target_system: str, target_id: str) -> bool:
        """Is some source record linked to this target record, whatever its type? Addition to the contract."""
        with self._c.lock:
            by_hash, params = self._by_target("= ?", target_hash(_sid(target_id)))
            return (
                self._c.conn.execute(
                    f"SELECT 1 FROM id_map WHERE {by_hash}target_id = ? AND target_system = ? LIMIT 1",
                    [*params, _sid(target_id), target_system],
                ).fetchone()
                is not None
            )

    def _by_target(self, test: str, value: Any) -> tuple[str, list[Any]]:
        """The indexed part of a lookup by target id: `target_hash <test> AND ` and its parameter (nothing on a
        ledger older than version 5 opened read-only, which has no target_hash)."""
        return (f"target_hash {test} AND ", [value]) if self._c.has_target_hash else ("", [])

    def _link_where(self, column: str, target_system: str, target_type: str, value: str) -> Link | None:
        with self._c.lock:
            by_hash, params = self._by_target("= ?", target_hash(_sid(value))) if column == "target_id" else ("", [])
            row = self._c.conn.execute(
                f"SELECT {_LINK_COLUMNS} FROM id_map WHERE {by_hash}{column} = ? AND target_system = ? "
                "AND target_type = ? ORDER BY updated_at DESC LIMIT 1",
                [*params, _sid(value), target_system, target_type],
            ).fetchone()
            return _link(row) if row is not None else None

    def _links_of(self, source_system: str, source_type: str, source_id: str) -> dict[str, Link]:
        """{target_system: Link} of one source record: from the cache, else by primary key."""
        c = self._c
        key = (source_system, source_type, source_id)
        per_target = c.link_cache.pop(key, None)
        if per_target is None:
            systems = self._target_systems()
            per_target = {}
            if systems:
                for row in c.conn.execute(
                    f"SELECT {_LINK_COLUMNS} FROM id_map WHERE link_key IN (SELECT unnest(?::VARCHAR[]))",
                    [[_key(source_system, source_type, source_id, t) for t in sorted(systems)]],
                ).fetchall():
                    link = _link(row)
                    per_target[link.target_system] = link
        self._cache(source_system, source_type, source_id, per_target)
        return per_target

    def _cache(self, source_system: str, source_type: str, source_id: str, per_target: dict[str, Link]) -> None:
        cache = self._c.link_cache
        cache[(source_system, source_type, source_id)] = per_target  # most recent last
        while len(cache) > LINK_CACHE:
            del cache[next(iter(cache))]

    def _target_systems(self) -> set[str]:
        c = self._c
        if c.target_systems is None:
            c.target_systems = {r[0] for r in c.conn.execute("SELECT DISTINCT target_system FROM id_map").fetchall()}
        return c.target_systems

    def upsert_link(self, link: Link) -> None:
        """Insert or replace a link, keyed by (source_system, source_type, source_id, target_system)."""
        self.upsert_links([link])

    def upsert_links(self, links: Iterable[Link]) -> None:
        """Bulk upsert_link in one transaction (initial matching, reconcile, imports). Addition to the contract."""
        self._writable()
        now = utcnow()
        prepared: dict[str, Link] = {}
        for link in links:
            for name in ("source_system", "source_type", "source_id", "target_system", "target_type"):
                if getattr(link, name) in (None, ""):
                    raise ValueError(f"Link.{name} is required")
            new = replace(
                link,
                source_id=_sid(link.source_id),
                target_id=_opt_sid(link.target_id),
                target_remote_id=_opt_sid(link.target_remote_id),
                updated_at=as_utc(now),
            )
            prepared[_key(new.source_system, new.source_type, new.source_id, new.target_system)] = new
        if not prepared:
            return
        c = self._c
        with c.lock, self._tx():
            known = self._existing_keys(list(prepared))
            existing: list[tuple[str, Link]] = []
            fresh: list[tuple[str, Link]] = []
            for key, new in prepared.items():
                (existing if key in known else fresh).append((key, new))
            if fresh:
                rows = [
                    (
                        k,
                        n.source_system,
                        n.source_type,
                        n.source_id,
                        n.target_system,
                        n.target_type,
                        n.target_id,
                        n.target_remote_id,
                        n.fingerprint,
                        n.origin,
                        n.status,
                    )
                    for k, n in fresh
                ]
                hashes = [target_hash(n.target_id) for _, n in fresh]
                if len(rows) == 1:
                    c.conn.execute(
                        f"INSERT INTO id_map (link_key, {_LINK_COLUMNS}, target_hash) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [*rows[0], now, hashes[0]],
                    )
                else:
                    for i in range(0, len(rows), _CHUNK):
                        cols = [list(col) for col in zip(*rows[i : i + _CHUNK], strict=True)]
                        c.conn.execute(
                            f"INSERT INTO id_map (link_key, {_LINK_COLUMNS}, target_hash) SELECT "
                            + ", ".join(["unnest(?::VARCHAR[])"] * 11)
                            + ", ?, unnest(?::BIGINT[])",
                            [*cols, now, hashes[i : i + _CHUNK]],
                        )
            if existing:
                updates = [
                    (n.target_type, n.target_id, n.target_remote_id, n.fingerprint, n.origin, n.status, k)
                    for k, n in existing
                ]
                hashes = [target_hash(n.target_id) for _, n in existing]
                if len(updates) == 1:  # the per-record case: an index point update
                    c.conn.execute(
                        "UPDATE id_map SET target_type = ?, target_id = ?, target_remote_id = ?, fingerprint = ?, "
                        "origin = ?, status = ?, updated_at = ?, target_hash = ? WHERE link_key = ?",
                        [*updates[0][:6], now, hashes[0], updates[0][6]],
                    )
                else:
                    for i in range(0, len(updates), _CHUNK):
                        cols = [list(col) for col in zip(*updates[i : i + _CHUNK], strict=True)]
                        c.conn.execute(
                            "UPDATE id_map SET target_type = u.tt, target_id = u.tid, target_remote_id = u.rid, "
                            "fingerprint = u.fp, origin = u.origin, status = u.status, updated_at = ?, "
                            "target_hash = u.h FROM (SELECT "
                            "unnest(?::VARCHAR[]) AS tt, unnest(?::VARCHAR[]) AS tid, unnest(?::VARCHAR[]) AS rid, "
                            "unnest(?::VARCHAR[]) AS fp, unnest(?::VARCHAR[]) AS origin, "
                            "unnest(?::VARCHAR[]) AS status, unnest(?::VARCHAR[]) AS k, unnest(?::BIGINT[]) AS h) AS u "
                            "WHERE id_map.link_key = u.k",
                            [now, *cols, hashes[i : i + _CHUNK]],
                        )
            committed = list(prepared.values())
            c.on_commit.append(lambda: self._cache_links(committed))

    def links(
        self, source_system: str | None = None, source_type: str | None = None, *, limit: int | None = None
    ) -> list[Link]:
        """All links (or the first `limit`), optionally for one source system/type, in a stable order."""
        where = " AND ".join(
            f"{col} = ?" for col, v in (("source_system", source_system), ("source_type", source_type)) if v
        )
        params = [v for v in (source_system, source_type) if v]
        with self._c.lock:
            rows = self._c.conn.execute(
                f"SELECT {_LINK_COLUMNS} FROM id_map {'WHERE ' + where if where else ''} "
                "ORDER BY source_system, source_type, source_id, target_system"
                + (f" LIMIT {int(limit)}" if limit is not None else ""),
                params,
            ).fetchall()
        return [_link(row) for row in rows]

    def linked_ids_not_in(
        self, source_system: str, source_type: str, present: Iterable[Any], *, skip_status: Sequence[str] = ()
    ) -> tuple[int, list[str]]:
        """(How many records of this type are linked, the linked source ids not in `present`), links in one of
        `skip_status` left out of both; in SQL: a sweep of the source's whole list (its ids only) finds what was
        deleted there without reading the links."""
        ids = sorted({_sid(v) for v in present})
        where = "source_system = ? AND source_type = ? AND NOT (status IN (SELECT unnest(?::VARCHAR[])))"
        with self._c.lock:
            self._flush_if_writable()
            conn = self._c.conn
            row = conn.execute(
                f"SELECT count(DISTINCT source_id) FROM id_map WHERE {where}",
                [source_system, source_type, list(skip_status)],
            ).fetchone()
            missing = conn.execute(
                f"SELECT DISTINCT source_id FROM id_map WHERE {where} "
                "AND source_id NOT IN (SELECT x FROM unnest(?::VARCHAR[]) AS t(x)) ORDER BY source_id",
                [source_system, source_type, list(skip_status), ids],
            ).fetchall()
        return int(row[0] if row else 0), [r[0] for r in missing]

    def _existing_keys(self, keys: list[str]) -> set[str]:
        """Which of these link keys id_map holds (a point query for one, a join for a batch)."""
        c = self._c
        if len(keys) == 1:
            return set(keys) if c.conn.execute("SELECT 1 FROM id_map WHERE link_key = ?", keys).fetchone() else set()
        found: set[str] = set()
        for i in range(0, len(keys), _CHUNK):
            found.update(
                r[0]
                for r in c.conn.execute(
                    "SELECT link_key FROM id_map WHERE link_key IN (SELECT unnest(?::VARCHAR[]))",
                    [keys[i : i + _CHUNK]],
                ).fetchall()
            )
        return found

    def _cache_links(self, links: Iterable[Link]) -> None:
        """After a commit: the cached entries of these records (records not cached are read when asked for)."""
        c = self._c
        for link in links:
            if c.target_systems is not None:
                c.target_systems.add(link.target_system)
            per_target = c.link_cache.get((link.source_system, link.source_type, link.source_id))
            if per_target is not None:
                per_target[link.target_system] = link


def _link(row: Sequence[Any]) -> Link:
    link = Link(*row)
    link.updated_at = as_utc(link.updated_at)
    return link


class IntentsMixin(LedgerBase):
    """Write-ahead intents: "about to create X", durable before the API call."""

    def begin_intent(self, key: str, payload: dict[str, Any]) -> None:
        """Record "about to write X" before an API create, so a crash between the API call and upsert_link
        is detectable next run (look the record up remotely before creating it again)."""
        self.begin_intents([(key, payload)])

    def begin_intents(self, intents: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """begin_intent for a whole batch of planned creates in one commit (a DuckDB commit costs ~3-5 ms; one per
        create dominated big runs). Every intent is durable before any of the batch's API calls is sent."""
        self._writable()
        now = utcnow()
        rows = [(key, json.dumps(payload, default=str), now) for key, payload in intents]
        if not rows:
            return
        with self._c.lock, self._tx():
            # UPDATE the keys that exist, INSERT the rest (DuckDB may refuse a DELETE + re-INSERT of one primary key
            # in one transaction); list parameters, because executemany runs one statement per row.
            existing = {
                r[0]
                for r in self._c.conn.execute(
                    "SELECT key FROM intents WHERE key IN (SELECT unnest(?::VARCHAR[]))", [[key for key, _, _ in rows]]
                ).fetchall()
            }
            if existing:
                self._c.conn.executemany(
                    "UPDATE intents SET payload_json = ?, created_at = ? WHERE key = ?",
                    [[p, at, key] for key, p, at in rows if key in existing],
                )
            fresh = {key: p for key, p, _ in rows if key not in existing}
            if fresh:
                self._c.conn.execute(
                    "INSERT INTO intents (key, payload_json, created_at) "
                    "SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), ?",
                    [list(fresh), list(fresh.values()), now],
                )

    def end_intent(self, key: str) -> None:
        """Clear an intent once its outcome is in id_map (unknown keys are fine: ending is idempotent)."""
        self.end_intents([key])

    def end_intents(self, keys: Iterable[str]) -> None:
        """end_intent for many keys in one statement."""
        self._writable()
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return
        with self._c.lock, self._tx():
            self._c.conn.execute("DELETE FROM intents WHERE key IN (SELECT unnest(?::VARCHAR[]))", [wanted])

    def pending_intents(self, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
        """Intents left over by a crashed run, oldest first."""
        with self._c.lock:
            rows = self._c.conn.execute(
                "SELECT key, payload_json FROM intents WHERE starts_with(key, ?) ORDER BY created_at, key",
                [prefix],
            ).fetchall()
        return [(key, json.loads(payload)) for key, payload in rows]
