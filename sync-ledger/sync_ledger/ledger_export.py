"""Export one company's sync ledger to a DuckDB file: a snapshot the reconciliation's dbt models can read.

Why: dbt-duckdb reads the ledger by ATTACHing a DuckDB file (transform/macros/attach_ledger.sql). A ledger on
PostgreSQL could only be attached through DuckDB's postgres extension, which DuckDB downloads on first use, and
deployments (and CI) here are offline. So `transform/reconcile.py` copies the company's tables into a DuckDB file
first, with the schema of a DuckDB ledger (ledger_core._SCHEMA), and points dbt at it. Works from either engine.

The copy is one consistent snapshot of the source (one read transaction; REPEATABLE READ on PostgreSQL, so a sync
running meanwhile is seen before or after, never half-way), read and written in bounded chunks (a server-side
cursor on PostgreSQL, fetchmany on DuckDB; column lists into `INSERT ... SELECT unnest(?::TYPE[])`), and lands in a
temp file next to `dest` that replaces it by rename: a reader sees the old file or the new one, never a partial one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from .ledger import Ledger
from .ledger_core import _SCHEMA, _columns
from .ledger_db import Connection

#: The ledger's tables and the column each is copied in order of (its key; sync_log's sequence).
TABLES: dict[str, str] = {
    "meta": "key",
    "id_map": "link_key",
    "sync_log": "seq",
    "runs": "run_id",
    "intents": "key",
    "staging": "staging_key",
    "review_queue": "row_key",
    "row_actions": "seq",
    "row_decisions": "row_key",
}
#: Rows per chunk read from the source and written to the copy (staging rows carry whole payloads).
CHUNK_ROWS = 10_000
_CURSOR = "sync_ledger_export"


def export_to_duckdb(place: str, company: str | None, dest: Path, *, chunk_rows: int = CHUNK_ROWS) -> Path:
    """Copy `company`'s ledger at `place` (DuckDB file or postgresql:// URL) into a fresh DuckDB file `dest`,
    replacing it atomically; return `dest`. Raises LedgerNotFoundError when that ledger (or company) does not exist.
    The copy's meta rows, schema_version included, are the source's."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
    try:
        with Ledger(place, company=company, read_only=True) as ledger:
            c = ledger._c
            with c.lock:
                if not c.read_only:  # a writable handle of this process shares the connection: its buffered rows
                    ledger._flush_now()
                out = duckdb.connect(str(tmp))
                try:
                    _copy(c.conn, c.loc.engine, out, chunk_rows)
                    out.execute("CHECKPOINT")
                finally:
                    out.close()
        with contextlib.suppress(FileNotFoundError):  # a stale WAL of the old file must not replay into the new one
            os.unlink(f"{dest}.wal")
        os.replace(tmp, dest)
    finally:
        for leftover in (tmp, Path(f"{tmp}.wal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return dest


def _copy(src: Connection, engine: str, out: duckdb.DuckDBPyConnection, chunk_rows: int) -> None:
    """All tables in one read transaction of the source and one write transaction of the copy."""
    if engine == "postgres":
        src.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    else:
        src.begin()
    try:
        row = src.execute("SELECT max(seq) FROM sync_log").fetchone()
        # the copy's sequence continues after the copied rows (DuckDB has no setval): created before _SCHEMA's
        out.execute(f"CREATE SEQUENCE sync_log_seq START WITH {int(row[0] or 0) + 1 if row else 1}")
        out.begin()
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                out.execute(statement)
        for table, order in TABLES.items():
            _copy_table(src, engine, out, table, order, chunk_rows)
        out.commit()
    finally:
        src.rollback()  # read only: nothing to commit


def _copy_table(
    src: Connection, engine: str, out: duckdb.DuckDBPyConnection, table: str, order: str, chunk_rows: int
) -> None:
    typed = out.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    present = _columns(src, table)  # an older ledger (read-only, not migrated) may lack a newer column
    names = [name for name, _ in typed if name in present]
    types = [kind for name, kind in typed if name in present]
    insert = (
        f"INSERT INTO {table} ({', '.join(names)}) SELECT "
        + ", ".join(f"unnest(?::{kind}[])" for kind in types)  # unnests of one SELECT zip, row by row
    )
    for rows in _chunks(src, engine, f"SELECT {', '.join(names)} FROM {table} ORDER BY {order}", chunk_rows):
        out.execute(insert, [list(col) for col in zip(*rows, strict=True)])


def _chunks(src: Connection, engine: str, sql: str, chunk_rows: int) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of `sql`, `chunk_rows` at a time. psycopg's execute would hold the whole result in memory, so on
    PostgreSQL a server-side cursor of the open transaction hands them over chunk by chunk."""
    if engine == "postgres":
        src.execute(f"DECLARE {_CURSOR} NO SCROLL CURSOR FOR {sql}")  # on failure, the rollback drops it
        while rows := src.execute(f"FETCH FORWARD {int(chunk_rows)} FROM {_CURSOR}").fetchall():
            yield rows
        src.execute(f"CLOSE {_CURSOR}")
        return
    cur = src.execute(sql)
    while rows := cur.fetchmany(chunk_rows):
        yield rows
