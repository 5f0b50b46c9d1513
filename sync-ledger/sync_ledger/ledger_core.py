"""The ledger's storage: the schema (the same on DuckDB and PostgreSQL), the process-wide connection and caches.

See sync_ledger.ledger for why the ledger keeps caches and write-behind buffers.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .ledger_db import (
    Connection,
    Location,
    MemoryLimit,
    connect_duckdb,
    connect_postgres,
    in_transaction,
    schema_lock,
)

log = logging.getLogger(__name__)

#: 2: staging.waits_on and status `waiting` (a row re-evaluated when what it waits on changes, not every run).
#: 3: id_map indexes on target_id and target_remote_id (links are read by query, not held whole in memory).
#: 4: review_queue, row_actions, row_decisions (what a person decides about a row: ledger_review.py).
#: 5: id_map.target_hash indexed instead of target_id (an index of 64-bit keys: about half the memory of one of
#:    Merge's 36-character ids, which DuckDB holds in memory whole; bench/RESULTS.md).
SCHEMA_VERSION = 5
#: `review`: the row waits in the review queue for a person; `operator`: a person's action on a row (coperniq-qbo).
LOG_ACTIONS = frozenset(
    {"created", "updated", "linked", "skipped", "failed", "deleted", "planned", "review", "operator"}
)
STAGING_STATUSES = frozenset({"pending", "done", "failed", "skipped", "waiting"})
_CHUNK = 20_000  # rows per bulk statement: bounds the size of one parameter list

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR
);
CREATE TABLE IF NOT EXISTS id_map (
    link_key VARCHAR PRIMARY KEY,  -- source_system, source_type, source_id, target_system joined by \x1f
    source_system VARCHAR NOT NULL,
    source_type VARCHAR NOT NULL,
    source_id VARCHAR NOT NULL,
    target_system VARCHAR NOT NULL,
    target_type VARCHAR NOT NULL,
    target_id VARCHAR,
    target_remote_id VARCHAR,
    fingerprint VARCHAR,
    origin VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    target_hash BIGINT  -- target_hash(target_id): what the target-id lookups go through (indexed, _INDEXES)
);
CREATE SEQUENCE IF NOT EXISTS sync_log_seq;
CREATE TABLE IF NOT EXISTS sync_log (
    seq BIGINT NOT NULL DEFAULT nextval('sync_log_seq'),
    run_id VARCHAR NOT NULL,
    logged_at TIMESTAMP NOT NULL,
    direction VARCHAR NOT NULL,
    stream VARCHAR NOT NULL,
    source_id VARCHAR,
    action VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    target_id VARCHAR,
    request_id VARCHAR
);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    direction VARCHAR NOT NULL,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    dry_run BOOLEAN NOT NULL,
    counts_json VARCHAR,
    status VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS intents (
    key VARCHAR PRIMARY KEY,
    payload_json VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS staging (
    staging_key VARCHAR PRIMARY KEY,  -- source_system, stream, record_id joined by \x1f
    source_system VARCHAR NOT NULL,
    stream VARCHAR NOT NULL,
    record_id VARCHAR NOT NULL,
    payload_json VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,
    received_at TIMESTAMP NOT NULL,
    status VARCHAR NOT NULL,
    attempts INTEGER NOT NULL,
    last_error VARCHAR,
    processed_at TIMESTAMP,
    waits_on VARCHAR  -- status waiting: the key whose change wakes the row (NULL: re-evaluated every run)
);
CREATE TABLE IF NOT EXISTS review_queue (
    row_key VARCHAR PRIMARY KEY,  -- source_system, stream, record_id joined by \x1f (as staging_key)
    source_system VARCHAR NOT NULL,
    stream VARCHAR NOT NULL,
    record_id VARCHAR NOT NULL,
    name VARCHAR,
    reason VARCHAR NOT NULL,
    candidates_json VARCHAR NOT NULL,
    status VARCHAR NOT NULL,  -- open, decided (a decision waits for the next run), resolved, dismissed
    run_id VARCHAR,
    queued_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS row_actions_seq;
CREATE TABLE IF NOT EXISTS row_actions (
    seq BIGINT NOT NULL DEFAULT nextval('row_actions_seq'),
    source_system VARCHAR NOT NULL,
    stream VARCHAR NOT NULL,
    record_id VARCHAR NOT NULL,  -- '*' with action retry: every failed row of the source system
    action VARCHAR NOT NULL,
    target_id VARCHAR,
    reason VARCHAR,
    actor VARCHAR NOT NULL,
    requested_at TIMESTAMP NOT NULL,
    applied_at TIMESTAMP,
    applied_run VARCHAR
);
CREATE TABLE IF NOT EXISTS row_decisions (
    row_key VARCHAR PRIMARY KEY,
    source_system VARCHAR NOT NULL,
    stream VARCHAR NOT NULL,
    record_id VARCHAR NOT NULL,
    decision VARCHAR NOT NULL,  -- link (target_id), new, dismiss
    target_id VARCHAR,
    reason VARCHAR,
    actor VARCHAR NOT NULL,
    decided_at TIMESTAMP NOT NULL
);
"""

#: Created after the migrations (an older id_map gets target_hash first).
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS id_map_target_hash ON id_map (target_hash)",
    "CREATE INDEX IF NOT EXISTS id_map_remote ON id_map (target_remote_id)",
)

_LINK_COLUMNS = (
    "source_system, source_type, source_id, target_system, target_type, target_id, target_remote_id, "
    "fingerprint, origin, status, updated_at"
)
_SEP = "\x1f"  # ASCII unit separator: cannot occur in ids, so joined keys are unique
_LOG_COLUMNS = (
    "run_id",
    "logged_at",
    "direction",
    "stream",
    "source_id",
    "action",
    "reason",
    "target_id",
    "request_id",
)


def target_hash(target_id: str | None) -> int | None:
    """The signed 64-bit key id_map indexes a target id by (the same on both engines and in every process)."""
    if target_id is None:
        return None
    return int.from_bytes(hashlib.blake2b(target_id.encode(), digest_size=8).digest(), "big", signed=True)


class LedgerError(Exception):
    """Base class for ledger problems an operator has to act on."""


class LedgerLockedError(LedgerError):
    """Another process holds the DuckDB file lock for longer than `lock_timeout`, or (PostgreSQL) another run of
    the same company and direction is running."""


class LedgerNotFoundError(LedgerError, FileNotFoundError):
    """A read-only open of a ledger file that does not exist yet (no sync has run)."""


@dataclass(slots=True)
class Link:
    """One row of id_map: which target record a source record was written to, and what we last wrote."""

    source_system: str
    source_type: str
    source_id: str
    target_system: str
    target_type: str
    target_id: str | None
    target_remote_id: str | None = None
    fingerprint: str | None = None
    origin: str = "coperniq"
    status: str = "active"
    updated_at: datetime | None = None


@dataclass(slots=True)
class _Staged:
    """One staging row as cached: its fingerprint and status, not its payload (read in chunks when needed)."""

    fingerprint: str
    status: str
    attempts: int
    last_error: str | None
    waits_on: str | None = None


def _key(*parts: str) -> str:
    """Single-column key for a composite one: DuckDB point updates by a one-column primary key use the index
    (~0.7 ms), while composite-key lookups and ON CONFLICT scan (4-18 ms per row at 100k rows)."""
    return _SEP.join(parts)


def _sid(value: Any) -> str:
    """Ids are text in the ledger; accept ints (Coperniq ids) so a lookup never silently misses on type."""
    return value if isinstance(value, str) else str(value)


def _opt_sid(value: Any) -> str | None:
    return None if value is None else _sid(value)


def _statuses(status: str | Sequence[str] | None) -> frozenset[str] | None:
    if status is None:
        return None
    return frozenset([status] if isinstance(status, str) else status)


class _Core:
    """Process-wide state for one ledger (file or database, and company): the connection, caches and buffers.

    Shared by every `Ledger` opened on the same place in this process (DuckDB refuses a second connection with
    a different configuration, and separate caches would go stale), guarded by one re-entrant lock because
    singer-sdk drains sinks from several threads.
    """

    def __init__(self, loc: Location, conn: Connection, read_only: bool) -> None:
        self.loc = loc
        self.conn = conn
        self.read_only = read_only
        self.lock = threading.RLock()
        self.refs = 0
        self.tx_depth = 0
        self.on_commit: list[Any] = []
        self.on_rollback: list[Any] = []
        # recently read links per (source_system, source_type, source_id): {target_system: Link}, {} = none
        self.link_cache: dict[tuple[str, str, str], dict[str, Link]] = {}
        self.target_systems: set[str] | None = None  # the target systems id_map holds links to
        # recently read or marked staging rows (statuses, not payloads), bounded: see ledger_rows
        self.rows: dict[tuple[str, str, str], _Staged] = {}
        # recently read payloads, so a record looked up by many others (a client's projects) is read once
        self.payloads: dict[tuple[str, str, str], str] = {}
        self.has_waits_on = True  # False for a version-1 ledger opened read-only
        self.has_target_hash = True  # False for a ledger older than version 5 opened read-only
        self.has_review: bool | None = None  # read-only: whether the ledger has the review tables (version 4)
        self.run_locks: set[str] = set()  # directions whose run lock this connection holds (PostgreSQL)
        # write-behind buffers
        self.log_buf: list[tuple[Any, ...]] = []
        self.mark_buf: dict[tuple[str, str, str], tuple[str, int, str | None, datetime, str | None]] = {}
        self.buf_since: float | None = None
        self.memory: MemoryLimit | None = None  # DuckDB: its limit, grown with the indexes (check it per chunk)


_REGISTRY: dict[str, _Core] = {}
_REGISTRY_LOCK = threading.Lock()


def _open_core(loc: Location, *, lock_timeout: float, read_only: bool) -> _Core:
    """Connect (DuckDB file or PostgreSQL, in the company's schema), then create/check the schema."""
    if loc.engine == "postgres":
        conn: Connection = connect_postgres(loc, lock_timeout=lock_timeout, read_only=read_only)
    else:
        conn = connect_duckdb(loc, lock_timeout=lock_timeout, read_only=read_only)
    try:
        _ensure_schema(conn, loc, read_only)
        core = _Core(loc, conn, read_only)
        core.has_waits_on = has_waits_on(conn)
        core.has_target_hash = has_target_hash(conn)
        if loc.engine != "postgres":
            core.memory = MemoryLimit(conn)
            if not read_only:  # (an old read-only ledger may lack a table; its indexes are checked as it is read)
                core.memory.fit_estimate()
    except BaseException:
        conn.close()
        raise
    return core


def _columns(conn: Connection, table: str) -> set[str]:
    """The columns of one of this company's tables (information_schema lists every schema's)."""
    return {
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = ?",
            [table],
        ).fetchall()
    }


def _ensure_schema(conn: Connection, loc: Location, read_only: bool) -> None:
    """Create the tables on first use and record schema_version; migrate an older ledger in place (versioned,
    one transaction, the same code on both engines)."""
    where = loc.display
    if not read_only:
        with in_transaction(conn):
            schema_lock(conn, loc)
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT DO NOTHING",
                [str(SCHEMA_VERSION)],
            )
            if loc.company is not None:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('company', ?) ON CONFLICT DO NOTHING", [loc.company]
                )
    row = (
        conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if _columns(conn, "meta")
        else None
    )
    if row is None:
        if read_only and not _columns(conn, "meta") and (loc.engine == "postgres" or _has_companies(conn)):
            # a database (or a DuckDB file holding other companies) where this company has not synced yet
            raise LedgerNotFoundError(f"No sync ledger in {where} yet: run a sync first.")
        raise LedgerError(f"{where} is not a sync ledger (no schema_version in table meta)")
    if int(row[0]) < SCHEMA_VERSION and not read_only:
        _migrate(conn, loc, int(row[0]))
        row = (str(SCHEMA_VERSION),)
    if not read_only:
        with in_transaction(conn):
            schema_lock(conn, loc)
            for statement in _INDEXES:
                conn.execute(statement)
    if "counts_json" not in _columns(conn, "runs"):
        raise LedgerError(
            f"{where}: table `runs` there is not the sync ledger's (Meltano's system database has one of that name): "
            "give the ledger a database of its own, or set `company` (a schema of its own)"
        )
    if "link_key" not in _columns(conn, "id_map"):
        raise LedgerError(f"{where} was created by a pre-release sync-ledger (no id_map.link_key); delete it")
    if int(row[0]) > SCHEMA_VERSION:
        raise LedgerError(
            f"The sync ledger {where} has schema version {row[0]}, newer than this sync-ledger "
            f"(version {SCHEMA_VERSION}); upgrade the plugins."
        )


def _migrate(conn: Connection, loc: Location, version: int) -> None:
    """Bring an older ledger up to SCHEMA_VERSION in place, one version at a time, in one transaction."""
    with in_transaction(conn):
        schema_lock(conn, loc)
        if version < 2:
            conn.execute("ALTER TABLE staging ADD COLUMN IF NOT EXISTS waits_on VARCHAR")
        # 3: the id_map indexes (_INDEXES), 4: the review tables are in _SCHEMA (IF NOT EXISTS)
        if version < 5:
            _add_target_hash(conn)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])


def _add_target_hash(conn: Connection) -> None:
    """Version 5: id_map.target_hash, filled for every link, and the target_id index dropped (DuckDB alters no
    table that has an index, so both are dropped first; _INDEXES creates them again)."""
    conn.execute("DROP INDEX IF EXISTS id_map_target")
    conn.execute("DROP INDEX IF EXISTS id_map_remote")
    conn.execute("ALTER TABLE id_map ADD COLUMN IF NOT EXISTS target_hash BIGINT")
    rows = conn.execute("SELECT link_key, target_id FROM id_map WHERE target_id IS NOT NULL").fetchall()
    for i in range(0, len(rows), _CHUNK):
        part = rows[i : i + _CHUNK]
        conn.execute(
            "UPDATE id_map SET target_hash = u.h FROM (SELECT unnest(?::VARCHAR[]) AS k, unnest(?::BIGINT[]) AS h) "
            "AS u WHERE id_map.link_key = u.k",
            [[k for k, _ in part], [target_hash(t) for _, t in part]],
        )


def has_target_hash(conn: Connection) -> bool:
    """A ledger opened read-only may be older than version 5 (no id_map.target_hash)."""
    return "target_hash" in _columns(conn, "id_map")


def _has_companies(conn: Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema LIKE 'company!_%' ESCAPE '!' "
        "AND table_name = 'meta'"
    ).fetchone()
    return bool(row and row[0])


def has_waits_on(conn: Connection) -> bool:
    """A ledger opened read-only may still be at version 1 (no staging.waits_on)."""
    return "waits_on" in _columns(conn, "staging")
