"""The id map (which target record each source record was written to) and the write-ahead intents."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from .ledger_base import LedgerBase
from .ledger_core import _CHUNK, _LINK_COLUMNS, Link, _key, _opt_sid, _sid
from .util import as_utc, utcnow


class LinksMixin(LedgerBase):
    """id_map: reads hit the mirror, writes go to DuckDB first and to the mirror after commit."""

    def get_link(self, source_system: str, source_type: str, source_id: str) -> Link | None:
        """The link of a source record (if it was written to several target systems, the first by name)."""
        with self._c.lock:
            self._load_links()
            found = self._c.by_source.get((source_system, source_type, _sid(source_id)))
            if not found:
                return None
            return replace(found[min(found)])

    def get_link_by_target(self, target_system: str, target_type: str, target_id: str) -> Link | None:
        """Reverse lookup: which source record a target record came from (echo suppression, reverse leg)."""
        with self._c.lock:
            self._load_links()
            found = self._c.by_target.get((target_system, target_type, _sid(target_id)))
            return replace(found) if found else None

    def get_link_by_remote(self, target_system: str, target_type: str, target_remote_id: str) -> Link | None:
        """Lookup by the provider's own id (QBO Id), for records Merge has not assigned a UUID to yet."""
        with self._c.lock:
            self._load_links()
            found = self._c.by_remote.get((target_system, target_type, _sid(target_remote_id)))
            return replace(found) if found else None

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
            self._load_links()
            existing: list[tuple[str, Link]] = []
            fresh: list[tuple[str, Link]] = []
            for key, new in prepared.items():
                known = c.by_source.get((new.source_system, new.source_type, new.source_id), {})
                (existing if new.target_system in known else fresh).append((key, new))
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
                if len(rows) == 1:
                    c.conn.execute(
                        f"INSERT INTO id_map (link_key, {_LINK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [*rows[0], now],
                    )
                else:
                    for i in range(0, len(rows), _CHUNK):
                        cols = [list(col) for col in zip(*rows[i : i + _CHUNK], strict=True)]
                        c.conn.execute(
                            f"INSERT INTO id_map (link_key, {_LINK_COLUMNS}) SELECT "
                            + ", ".join(["unnest(?::VARCHAR[])"] * 11)
                            + ", ?",
                            [*cols, now],
                        )
            if existing:
                updates = [
                    (n.target_type, n.target_id, n.target_remote_id, n.fingerprint, n.origin, n.status, k)
                    for k, n in existing
                ]
                if len(updates) == 1:  # the per-record case: an index point update
                    c.conn.execute(
                        "UPDATE id_map SET target_type = ?, target_id = ?, target_remote_id = ?, fingerprint = ?, "
                        "origin = ?, status = ?, updated_at = ? WHERE link_key = ?",
                        [*updates[0][:6], now, updates[0][6]],
                    )
                else:
                    for i in range(0, len(updates), _CHUNK):
                        cols = [list(col) for col in zip(*updates[i : i + _CHUNK], strict=True)]
                        c.conn.execute(
                            "UPDATE id_map SET target_type = u.tt, target_id = u.tid, target_remote_id = u.rid, "
                            "fingerprint = u.fp, origin = u.origin, status = u.status, updated_at = ? FROM (SELECT "
                            "unnest(?::VARCHAR[]) AS tt, unnest(?::VARCHAR[]) AS tid, unnest(?::VARCHAR[]) AS rid, "
                            "unnest(?::VARCHAR[]) AS fp, unnest(?::VARCHAR[]) AS origin, "
                            "unnest(?::VARCHAR[]) AS status, unnest(?::VARCHAR[]) AS k) AS u "
                            "WHERE id_map.link_key = u.k",
                            [now, *cols],
                        )
            committed = list(prepared.values())
            c.on_commit.append(lambda: self._index_links(committed))

    def links(self, source_system: str | None = None, source_type: str | None = None) -> list[Link]:
        """All links, optionally for one source system/type, in a stable order."""
        with self._c.lock:
            self._load_links()
            out = [
                replace(link)
                for (ss, st, _), per_target in self._c.by_source.items()
                if (source_system is None or ss == source_system) and (source_type is None or st == source_type)
                for link in per_target.values()
            ]
        out.sort(key=lambda x: (x.source_system, x.source_type, x.source_id, x.target_system))
        return out

    def _load_links(self) -> None:
        c = self._c
        if c.links_loaded:
            return
        for row in c.conn.execute(f"SELECT {_LINK_COLUMNS} FROM id_map").fetchall():
            link = Link(*row)
            link.updated_at = as_utc(link.updated_at)
            self._index_link(link)
        c.links_loaded = True

    def _index_links(self, links: Iterable[Link]) -> None:
        for link in links:
            self._index_link(link)

    def _index_link(self, link: Link) -> None:
        """Put a committed link into the mirror, dropping index entries of the row it replaces."""
        c = self._c
        per_target = c.by_source.setdefault((link.source_system, link.source_type, link.source_id), {})
        old = per_target.get(link.target_system)
        if old is not None:
            for index, attr in ((c.by_target, "target_id"), (c.by_remote, "target_remote_id")):
                key = (old.target_system, old.target_type, getattr(old, attr))
                if key[2] is not None and index.get(key) is old:
                    del index[key]
        per_target[link.target_system] = link
        if link.target_id is not None:
            c.by_target[(link.target_system, link.target_type, link.target_id)] = link
        if link.target_remote_id is not None:
            c.by_remote[(link.target_system, link.target_type, link.target_remote_id)] = link


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
                    "SELECT key FROM intents WHERE list_contains(?, key)", [[key for key, _, _ in rows]]
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
            self._c.conn.execute("DELETE FROM intents WHERE list_contains(?, key)", [wanted])

    def pending_intents(self, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
        """Intents left over by a crashed run, oldest first."""
        with self._c.lock:
            rows = self._c.conn.execute(
                "SELECT key, payload_json FROM intents WHERE starts_with(key, ?) ORDER BY created_at, key",
                [prefix],
            ).fetchall()
        return [(key, json.loads(payload)) for key, payload in rows]
