"""The two places a ledger can live, for tests that run on both: a DuckDB file and a PostgreSQL database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import psycopg

BACKENDS = ("duckdb", "postgres")


def raw_sql(place: Path | str, sql: str, *, schema: str | None = None) -> list[tuple[Any, ...]]:
    """Run SQL on the ledger's storage directly, outside the Ledger API (what the CLI, dbt or a person sees).
    `schema`: a company's schema (default: the default company's)."""
    if isinstance(place, str) and place.startswith("postgresql://"):
        with psycopg.connect(place, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema or "public"}"')
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []
    con = duckdb.connect(str(place))  # same process: DuckDB hands out the shared instance
    try:
        if schema:
            con.execute(f"SET search_path = '{schema}'")
        return con.execute(sql).fetchall()
    finally:
        con.close()
