"""The ledger's storage: the DuckDB schema, the process-wide connection and caches, and opening a file.

See sync_ledger.ledger for why the ledger keeps caches and write-behind buffers.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

log = logging.getLogger(__name__)

#: 2: staging.waits_on and status `waiting` (a row re-evaluated when what it waits on changes, not every run).
#: 3: id_map indexes on target_id and target_remote_id (links are read by query, not held whole in memory).
SCHEMA_VERSION = 3
LOG_ACTIONS = frozenset({"created", "updated", "linked", "skipped", "failed", "deleted", "planned"})
STAGING_STATUSES = frozenset({"pending", "done", "failed", "skipped", "waiting"})
#: DuckDB memory limit of the ledger connection (env SYNC_LEDGER_MEMORY_LIMIT overrides it).
DEFAULT_MEMORY_LIMIT = "96MB"
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
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX IF NOT EXISTS id_map_target ON id_map (target_id);
CREATE INDEX IF NOT EXISTS id_map_remote ON id_map (target_remote_id);
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
"""

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


class LedgerError(Exception):
    """Base class for ledger problems an operator has to act on."""


class LedgerLockedError(LedgerError):
    """Another process holds the DuckDB file lock for longer than `lock_timeout`."""


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
    """Process-wide state for one ledger file: the DuckDB connection, caches and write buffers.

    Shared by every `Ledger` opened on the same path in this process (DuckDB refuses a second connection with
    a different configuration, and separate caches would go stale), guarded by one re-entrant lock because
    singer-sdk drains sinks from several threads.
    """

    def __init__(self, path: Path, conn: duckdb.DuckDBPyConnection, read_only: bool) -> None:
        self.path = path
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
        # write-behind buffers
        self.log_buf: list[tuple[Any, ...]] = []
        self.mark_buf: dict[tuple[str, str, str], tuple[str, int, str | None, datetime, str | None]] = {}
        self.buf_since: float | None = None


_REGISTRY: dict[str, _Core] = {}
_REGISTRY_LOCK = threading.Lock()


def _open_core(path: Path, *, lock_timeout: float, read_only: bool) -> _Core:
    """Connect, waiting on another process's file lock up to lock_timeout, then create/check the schema."""
    if read_only and not path.exists():
        raise LedgerNotFoundError(
            f"No sync ledger at {path} yet: run a sync first, or set `ledger_path` to the file the targets use."
        )
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + max(0.0, lock_timeout)
    delay = 0.05
    warned = False
    while True:
        try:
            conn = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LedgerLockedError(
                    f"The sync ledger {path} is locked by another process: another pipeline (e.g. the other "
                    f"sync leg, or a `coperniq-qbo` command) is running and using it. Waited {lock_timeout:g} s "
                    f"(lock_timeout). Wait for it to finish and try again, or set `ledger_path` if this should "
                    f"be a separate ledger. DuckDB: {exc}"
                ) from None
            if not warned:
                log.warning("Sync ledger %s is in use by another process; waiting up to %g s", path, lock_timeout)
                warned = True
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)
    try:
        # DuckDB's buffer pool takes up to 80% of RAM by default, and a first sync writes more than the ledger's
        # working set (a chunk's rows, links and the indexes): bound it, big scans spill to a temp file instead of
        # growing the process.
        limit = os.environ.get("SYNC_LEDGER_MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT)
        if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", limit, re.IGNORECASE):
            raise LedgerError(f"SYNC_LEDGER_MEMORY_LIMIT must look like 256MB or 1GB, got {limit!r}")
        conn.execute(f"SET memory_limit = '{limit}'")
        threads = os.environ.get("SYNC_LEDGER_THREADS")  # DuckDB's own default: one per core
        if threads:
            if not threads.isdigit() or int(threads) < 1:
                raise LedgerError(f"SYNC_LEDGER_THREADS must be a positive integer, got {threads!r}")
            conn.execute(f"SET threads = {int(threads)}")
        _ensure_schema(conn, path, read_only)
    except BaseException:
        conn.close()
        raise
    core = _Core(path, conn, read_only)
    core.has_waits_on = has_waits_on(conn)
    return core


def _ensure_schema(conn: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> None:
    """Create the tables on first use and record schema_version, so later versions can migrate in place."""
    if not read_only:
        conn.begin()
        try:
            conn.execute(_SCHEMA)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT DO NOTHING",
                [str(SCHEMA_VERSION)],
            )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except duckdb.CatalogException:
        row = None
    if row is None:
        raise LedgerError(f"{path} is not a sync ledger (no schema_version in table meta)")
    if int(row[0]) < SCHEMA_VERSION and not read_only:
        _migrate(conn, int(row[0]))
        row = (str(SCHEMA_VERSION),)
    columns = {
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'id_map'"
        ).fetchall()
    }
    if "link_key" not in columns:
        raise LedgerError(f"{path} was created by a pre-release sync-ledger (no id_map.link_key); delete it")
    if int(row[0]) > SCHEMA_VERSION:
        raise LedgerError(
            f"The sync ledger {path} has schema version {row[0]}, newer than this sync-ledger "
            f"(version {SCHEMA_VERSION}); upgrade the plugins."
        )


def _migrate(conn: duckdb.DuckDBPyConnection, version: int) -> None:
    """Bring an older ledger up to SCHEMA_VERSION in place, one version at a time, in one transaction."""
    conn.begin()
    try:
        if version < 2:
            conn.execute("ALTER TABLE staging ADD COLUMN IF NOT EXISTS waits_on VARCHAR")
        # 3: the id_map indexes are in _SCHEMA (CREATE INDEX IF NOT EXISTS), created before this runs
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def has_waits_on(conn: duckdb.DuckDBPyConnection) -> bool:
    """A ledger opened read-only may still be at version 1 (no staging.waits_on)."""
    return bool(
        conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'staging' AND column_name = 'waits_on'"
        ).fetchone()[0]  # type: ignore[index]
    )
