"""The two places a ledger can live, for tests that run on both: a DuckDB file and a PostgreSQL database."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import psycopg

BACKENDS = ("duckdb", "postgres")

#: A process that writes to a ledger (argv: place, company or nothing) until it is killed: each link and its intent
#: in one transaction, then a staged row and a log line; prints "locked" once its run has started.
WRITER = textwrap.dedent(
    """
    import sys
    from sync_ledger import Ledger, Link
    with Ledger(sys.argv[1], company=sys.argv[2] if len(sys.argv) > 2 else None) as led:
        run = led.start_run("forward")
        print("locked", flush=True)
        i = 0
        while True:  # killed from outside, mid-write
            with led.transaction():
                led.begin_intent(f"k{i}", {"i": i})
                led.upsert_link(Link("coperniq", "account", str(i), "quickbooks", "customer", f"u{i}"))
                led.end_intent(f"k{i}")
            led.stage("coperniq", "accounts", [(str(i), {"id": i})])
            led.log(run, direction="forward", stream="accounts", source_id=str(i), action="created")
            i += 1
    """
)


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


def start_script(script: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start `python -c script args...` with pipes; wait for its first line (it prints one once it holds what the
    test needs) and return the process and that line."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        raise AssertionError(f"process did not start: {proc.stderr.read()}")
    return proc, line
