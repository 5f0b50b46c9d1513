"""Where the ledger lives: a DuckDB file (one box) or a PostgreSQL database (containers, many workers, many
companies), behind one small connection interface, so the ledger's SQL and guarantees are the same on both.

The SQL is written once, in the subset both engines accept (`?` placeholders, `unnest(?::VARCHAR[])` lists,
`INSERT ... ON CONFLICT`); the PostgreSQL connection turns `?` into psycopg's `%s`. A company is a schema: every
statement of a handle runs in its company's schema (search_path), so no call can reach another company's rows.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import duckdb

from .util import is_postgres_url

log = logging.getLogger(__name__)

#: DuckDB memory limit the ledger connection starts with; it grows with the ledger's indexes (MemoryLimit). Env
#: SYNC_LEDGER_MEMORY_LIMIT sets a fixed one instead.
DEFAULT_MEMORY_LIMIT = "80MB"
MB = 1 << 20
#: Room beside the indexes for what a chunk's queries pin: 100,000 projects ran with 49 MB of it, stopped with 33 MB
#: ("failed to pin block", bench/RESULTS.md).
MEMORY_HEADROOM = 48 * MB
#: ART bytes per indexed key, for the estimate at open: 31 MB over the ~970,000 keys of a 100,000-project ledger
#: while id_map indexed its 36-character target ids; about 10 MB less since it indexes their 64-bit hashes (schema 5,
#: bench/RESULTS.md). DuckDB's own count replaces the estimate as the indexes load (MemoryLimit.check).
ART_BYTES_PER_KEY = 24
_MEMORY_STEP = 16 * MB
#: Seconds to wait for a PostgreSQL connection unless the URL says `connect_timeout`.
CONNECT_TIMEOUT = 10
#: A transaction left idle this long is ended by the server (a hung worker never holds rows forever).
IDLE_IN_TRANSACTION_TIMEOUT_MS = 300_000
#: Schema of the default company (no `company` set): the database's usual one on each engine.
DEFAULT_SCHEMA = {"duckdb": "main", "postgres": "public"}
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class Connection(Protocol):
    """What the ledger needs of a database connection: DuckDB's own API, which the PostgreSQL one imitates."""

    def execute(self, query: Any, parameters: Any = ..., /) -> Any: ...
    def executemany(self, query: Any, parameters: Any = ..., /) -> Any: ...
    def begin(self) -> Any: ...
    def commit(self) -> Any: ...
    def rollback(self) -> Any: ...
    def close(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class Location:
    """A ledger's place: engine, DuckDB path or PostgreSQL URL, and the company's schema.

    `display` is what messages and logs show: the URL without its password or query (which may carry one).
    """

    engine: str  # "duckdb" | "postgres"
    path: Path | None
    url: str | None
    company: str | None
    schema: str
    display: str

    @property
    def key(self) -> str:
        """One process-wide connection per (place, company)."""
        where = str(self.path.resolve()) if self.path is not None else self.display
        return f"{self.engine}\x1f{where}\x1f{self.schema}"


def locate(where: str | os.PathLike[str], company: str | None = None) -> Location:
    """Parse a ledger_url / ledger_path value: a postgresql:// URL, else a DuckDB file path."""
    company = (company or "").strip() or None
    if is_postgres_url(where):
        url = str(where)
        return Location("postgres", None, url, company, schema_for(company, "postgres"), redact_url(url))
    text = str(where)
    if text.lower().startswith("duckdb://"):
        text = text[len("duckdb://") :]
    path = Path(os.path.expandvars(text))
    return Location("duckdb", path, None, company, schema_for(company, "duckdb"), str(path))


def schema_for(company: str | None, engine: str) -> str:
    """The schema a company's tables live in: `company_<name>` (lower case, [a-z0-9_]; a short hash of the key is
    added when it had to be changed, so two different keys never share a schema)."""
    if company is None:
        return DEFAULT_SCHEMA[engine]
    slug = re.sub(r"[^a-z0-9_]+", "_", company.lower()).strip("_")
    name = f"company_{slug}"[:50]
    if slug != company or not slug:
        name = f"{name}_{hashlib.sha256(company.encode()).hexdigest()[:8]}"
    assert _SCHEMA_NAME.fullmatch(name), name
    return name


def redact_url(url: str) -> str:
    """postgresql://user:secret@host:5432/db?password=x -> postgresql://user@host:5432/db (never a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


# ---------------------------------------------------------------------------------------------------- DuckDB


def connect_duckdb(loc: Location, *, lock_timeout: float, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Connect, waiting on another process's file lock up to lock_timeout, with a bounded memory budget."""
    from .ledger_core import LedgerError, LedgerLockedError, LedgerNotFoundError

    assert loc.path is not None
    path = loc.path
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
        if loc.schema != DEFAULT_SCHEMA["duckdb"]:
            if not read_only:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {loc.schema}")
            elif not _has_schema(conn, loc.schema):
                raise LedgerNotFoundError(f"No company {loc.company!r} in the sync ledger {path} yet")
            conn.execute(f"SET search_path = '{loc.schema}'")
    except BaseException:
        conn.close()
        raise
    return conn


def _has_schema(conn: Connection, schema: str) -> bool:
    row = conn.execute("SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?", [schema]).fetchone()
    return bool(row and row[0])


# ---------------------------------------------------------------------------------------------------- PostgreSQL


_IN_LIST = "IN (SELECT unnest(?::VARCHAR[]))"
_IN_BIGINTS = "IN (SELECT unnest(?::BIGINT[]))"


@lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """The ledger's SQL for psycopg: `?` placeholders as `%s` (the SQL has no `?` or `%` of its own), and a list
    parameter as `= ANY(array)`, which PostgreSQL answers with an index scan, where `IN (SELECT unnest(...))` may be
    planned as a nested loop over the list (48x slower for links_for at 100k links before this, bench/RESULTS.md)."""
    return (
        sql.replace("%", "%%")
        .replace(_IN_LIST, "= ANY(?::VARCHAR[])")
        .replace(_IN_BIGINTS, "= ANY(?::BIGINT[])")
        .replace("?", "%s")
    )


class MemoryLimit:
    """DuckDB's memory limit, kept at least the ledger's ART indexes plus MEMORY_HEADROOM.

    Why: DuckDB keeps an index in memory while it is used and cannot evict it, and the indexes grow with the ledger
    (about 31 MB per 100,000 projects), so a fixed limit low enough for a small ledger stops a big one with "Out of
    Memory Error: failed to pin block". Set at open from the tables' row counts, then checked against DuckDB's own
    accounting (`duckdb_memory()`) as rows are staged and read; it only grows. SYNC_LEDGER_MEMORY_LIMIT: fixed."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.fixed = bool(os.environ.get("SYNC_LEDGER_MEMORY_LIMIT"))
        self.bytes = _parse_size(DEFAULT_MEMORY_LIMIT)

    def fit_estimate(self) -> None:
        """At open: the indexes this ledger will hold once they are loaded (its keys, by row count)."""
        if self.fixed:
            return
        keys = 0
        for table, indexes in (("staging", 1), ("id_map", 3), ("intents", 1)):
            row = self._conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            keys += int(row[0] if row else 0) * indexes
        self._fit(keys * ART_BYTES_PER_KEY)

    def check(self) -> None:
        """The indexes as DuckDB counts them now (one cheap query, per chunk of rows)."""
        if self.fixed:
            return
        row = self._conn.execute(
            "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() WHERE tag = 'ART_INDEX'"
        ).fetchone()
        self._fit(int(row[0] if row else 0))

    def _fit(self, index_bytes: int) -> None:
        wanted = index_bytes + MEMORY_HEADROOM
        if wanted <= self.bytes:
            return
        self.bytes = -(-wanted // _MEMORY_STEP) * _MEMORY_STEP
        self._conn.execute(f"SET memory_limit = '{self.bytes // MB}MiB'")
        log.info(
            "sync ledger: DuckDB memory limit raised to %d MB (indexes %d MB)", self.bytes // MB, index_bytes // MB
        )


def _parse_size(text: str) -> int:
    """Bytes of a size like DEFAULT_MEMORY_LIMIT's ("80MB"; K/M/G/T, binary)."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT])i?B", text.strip(), re.IGNORECASE)
    if found is None:
        raise ValueError(f"not a size: {text!r}")
    return int(float(found[1]) * (1 << (10 * "KMGT".index(found[2].upper()) + 10)))


class PostgresConnection:
    """A psycopg connection in autocommit mode that speaks the DuckDB connection API the ledger uses: explicit
    BEGIN/COMMIT around logical writes, no implicit transaction left open between them."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Any = None, /) -> Any:
        return self._conn.execute(sql if params is None else _pg_sql(sql), params)

    def executemany(self, sql: str, params: Any = (), /) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(_pg_sql(sql), params)

    def begin(self) -> None:
        self._conn.execute("BEGIN")

    def commit(self) -> None:
        self._conn.execute("COMMIT")

    def rollback(self) -> None:
        if not self._conn.closed:
            self._conn.execute("ROLLBACK")

    def close(self) -> None:
        self._conn.close()


def connect_postgres(loc: Location, *, lock_timeout: float, read_only: bool) -> PostgresConnection:
    """Connect with a timeout, in UTC, inside the company's schema (created on first write)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from .ledger_core import LedgerError, LedgerNotFoundError

    assert loc.url is not None
    try:
        params = conninfo_to_dict(loc.url)
    except psycopg.ProgrammingError:
        raise LedgerError(f"ledger_url is not a valid PostgreSQL URL: {loc.display}") from None
    params.setdefault("connect_timeout", CONNECT_TIMEOUT)
    params.setdefault("application_name", "sync-ledger")
    # Row locks the ledger waits on are another run's short transactions: wait as long as lock_timeout says.
    options = [
        "-c TimeZone=UTC",
        f"-c lock_timeout={max(1, int(lock_timeout * 1000))}",
        f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS}",
    ]
    if read_only:
        options.append("-c default_transaction_read_only=on")
    params["options"] = " ".join([str(params.get("options") or ""), *options]).strip()
    try:
        raw = psycopg.connect(make_conninfo("", **params), autocommit=True)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise LedgerError(f"Cannot connect to the sync ledger {loc.display}: {reason}") from None
    conn = PostgresConnection(raw)
    try:
        if not _has_schema(conn, loc.schema):
            if read_only:
                what = f"company {loc.company!r}" if loc.company else "sync ledger"
                raise LedgerNotFoundError(f"No {what} in {loc.display} yet: run a sync first.")
            with in_transaction(conn):  # two first runs of one company must not both create its schema
                schema_lock(conn, loc)
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{loc.schema}"')
        conn.execute(f'SET search_path TO "{loc.schema}"')
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def in_transaction(conn: Connection) -> Iterator[None]:
    """One transaction on a bare connection (schema creation and migrations, before the Ledger's own _tx exists)."""
    conn.begin()
    try:
        yield
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def schema_lock(conn: Connection, loc: Location) -> None:
    """Inside a transaction: serialize creating/migrating one company's tables across processes (PostgreSQL
    refuses two concurrent CREATE TABLE IF NOT EXISTS of one name; DuckDB has one writer anyway)."""
    if loc.engine == "postgres":
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('sync-ledger schema'), hashtext(?))", [loc.schema])


def try_run_lock(conn: Connection, loc: Location, direction: str) -> bool:
    """PostgreSQL: one run per company and direction at a time, held by this session until released or the
    process dies (the server drops a dead client's locks). DuckDB: its file lock already admits one writer."""
    if loc.engine != "postgres":
        return True
    row = conn.execute("SELECT pg_try_advisory_lock(hashtext(?), hashtext(?))", [loc.schema, direction]).fetchone()
    return bool(row and row[0])


def release_run_lock(conn: Connection, loc: Location, direction: str) -> None:
    if loc.engine == "postgres":
        conn.execute("SELECT pg_advisory_unlock(hashtext(?), hashtext(?))", [loc.schema, direction])
