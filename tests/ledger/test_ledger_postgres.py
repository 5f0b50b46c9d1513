"""The ledger on PostgreSQL (ledger_url), where DuckDB's one-writer file lock no longer orders runs: one run per
company and direction at a time, the other direction at once, companies that never see each other, a kill -9
that leaves every transaction whole, and no password in any message. Real processes on a real server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from urllib.parse import urlsplit

import psycopg
import pytest

from sync_ledger import Ledger, LedgerError, LedgerLockedError, LedgerNotFoundError, Link
from sync_ledger.ledger_db import schema_for

from .places import WRITER, raw_sql, start_script

RUNNER = textwrap.dedent(
    """
    import sys
    from sync_ledger import Ledger, Link
    url, company, direction = sys.argv[1], sys.argv[2] or None, sys.argv[3]
    with Ledger(url, company=company) as led:
        run = led.start_run(direction)
        led.upsert_link(Link(direction, "record", run, "other", "record", "t-" + run))
        print(run, flush=True)
        if sys.stdin.readline().strip() == "finish":
            led.finish_run(run)
    """
)


def _end(proc: subprocess.Popen[str], how: str = "finish") -> None:
    proc.stdin.write(how + "\n")  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]
    assert proc.wait(timeout=60) == 0, proc.stderr.read()  # type: ignore[union-attr]


def test_one_run_per_company_and_direction_the_other_direction_at_once(pg_url: str) -> None:
    forward, run_id = start_script(RUNNER, pg_url, "acme", "forward")
    try:
        with Ledger(pg_url, company="acme") as led, pytest.raises(LedgerLockedError) as info:
            led.start_run("forward")
        message = str(info.value)
        assert run_id in message and "forward" in message and "acme" in message  # names the run holding it
        reverse, reverse_run = start_script(RUNNER, pg_url, "acme", "reverse")  # the other leg runs alongside
        other, other_run = start_script(RUNNER, pg_url, "globex", "forward")  # and so does another company
        _end(reverse)
        _end(other)
    finally:
        _end(forward)
    with Ledger(pg_url, company="acme") as led:
        assert {(r["run_id"], r["status"]) for r in led.runs()} == {(run_id, "success"), (reverse_run, "success")}
        again = led.start_run("forward")  # free once the holder finished
        led.finish_run(again)
    with Ledger(pg_url, company="globex") as led:
        assert [r["run_id"] for r in led.runs()] == [other_run]


def test_a_killed_run_frees_its_lock_and_is_marked_interrupted(pg_url: str) -> None:
    holder, run_id = start_script(RUNNER, pg_url, "", "forward")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with Ledger(pg_url) as led:
        # the server drops a dead client's session, and its lock with it (no stale lock file to clean up)
        for _ in range(100):
            try:
                run = led.start_run("forward")
                break
            except LedgerLockedError:
                time.sleep(0.1)
        else:
            raise AssertionError("the killed run's lock was never released")
        statuses = {r["run_id"]: r["status"] for r in led.runs()}
        assert statuses == {run_id: "interrupted", run: "running"}
        led.finish_run(run)


def test_kill_9_mid_write_leaves_every_transaction_whole(pg_url: str) -> None:
    writer, _ = start_script(WRITER, pg_url, "acme")
    for _ in range(600):  # until some writes are committed (no fixed sleep)
        if raw_sql(pg_url, "SELECT count(*) FROM id_map", schema="company_acme")[0][0] >= 20:
            break
        time.sleep(0.05)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    with Ledger(pg_url, company="acme", lock_timeout=10) as led:
        ids = sorted(int(link.source_id) for link in led.links())
        assert len(ids) >= 20
        assert led.pending_intents() == []  # intent and link in one transaction: both or neither
        assert ids == list(range(len(ids)))
        staged = sorted(int(r[0]) for r in led.iter_staged("coperniq", "accounts"))
        assert staged == list(range(len(staged))) and len(staged) in (len(ids), len(ids) - 1)
        run = led.start_run("forward")  # the dead run's lock went with its session
        led.upsert_link(Link("coperniq", "account", "after", "quickbooks", "customer", "x"))
        led.finish_run(run)


def test_companies_never_see_each_other(pg_url: str) -> None:
    """Everything a handle reads or writes is its company's: links, reverse lookups, log, runs, intents, staging,
    meta. A company is a schema, so even a forgotten WHERE cannot leak."""
    with Ledger(pg_url, company="acme") as a, Ledger(pg_url, company="globex") as b:
        a.upsert_link(Link("coperniq", "account", "1", "quickbooks", "customer", "qa-1"))
        b.upsert_link(Link("coperniq", "account", "1", "quickbooks", "customer", "qb-1"))
        run = a.start_run("forward")
        a.log(run, direction="forward", stream="accounts", source_id="1", action="created")
        a.finish_run(run)
        a.begin_intent("forward:customer:1", {"name": "Acme"})
        a.stage("coperniq", "accounts", [("1", {"id": 1})])
        a.set_meta("disconnected", "2026-12-01T00:00:00Z")

        assert b.get_link("coperniq", "account", "1").target_id == "qb-1"  # type: ignore[union-attr]
        assert b.get_link_by_target("quickbooks", "customer", "qa-1") is None
        assert b.links_to("quickbooks", "customer", ["qa-1"]) == {}
        assert not b.is_linked_target("quickbooks", "qa-1")
        assert b.runs() == [] and b.log_rows() == []
        assert b.pending_intents() == []
        assert b.staged("coperniq", "accounts", "1") is None
        assert b.get_meta("disconnected") is None
        b.end_intents(["forward:customer:1"])  # touching the same key from B does nothing to A
        b.set_meta("disconnected", None)
    with Ledger(pg_url, company="acme", read_only=True) as a:
        assert a.pending_intents() == [("forward:customer:1", {"name": "Acme"})]
        assert a.get_meta("disconnected") == "2026-12-01T00:00:00Z"
        assert a.get_meta("company") == "acme"
    assert raw_sql(pg_url, "SELECT target_id FROM id_map", schema="company_acme") == [("qa-1",)]
    with pytest.raises(LedgerNotFoundError, match="initech"):
        Ledger(pg_url, company="initech", read_only=True)  # a read never creates a company


def test_company_keys_map_to_distinct_schemas() -> None:
    assert schema_for(None, "postgres") == "public" and schema_for(None, "duckdb") == "main"
    assert schema_for("acme", "postgres") == "company_acme"
    names = {schema_for(key, "postgres") for key in ("Acme", "acme", "a-b", "a_b", "a b", "ü", "x" * 200)}
    assert len(names) == 7 and all(len(n) <= 63 for n in names)


def test_connections_have_timeouts_and_utc(pg_url: str) -> None:
    with Ledger(pg_url, lock_timeout=7) as led:
        conn = led._c.conn
        assert conn.execute("SHOW lock_timeout").fetchone()[0] == "7s"
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0] == "5min"
        assert conn.execute("SHOW TimeZone").fetchone()[0] == "UTC"
        app = conn.execute("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()").fetchone()
        assert app[0] == "sync-ledger"


def test_the_password_is_never_in_a_message(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    password = parts.password
    assert password
    wrong = pg_url.replace(f":{password}@", ":not-the-password-xyz@")
    with pytest.raises(LedgerError) as info:
        Ledger(wrong)
    text = str(info.value)
    assert "not-the-password-xyz" not in text and password not in text
    assert f"{parts.hostname}:{parts.port}" in text and "password authentication failed" in text
    nowhere = f"postgresql://sync:{password}@127.0.0.1:1/db"
    with pytest.raises(LedgerError) as info:
        Ledger(nowhere)
    assert password not in str(info.value) and "127.0.0.1:1" in str(info.value)
    with Ledger(pg_url) as led:
        assert password not in led.where and password not in repr(led.location.display)


def test_two_first_runs_create_one_company_schema(pg_url: str) -> None:
    """Forward and reverse starting at once on a new company: one creates the tables, the other waits for it."""
    script = textwrap.dedent(
        """
        import sys
        from sync_ledger import Ledger
        with Ledger(sys.argv[1], company="newco") as led:
            led.set_meta(sys.argv[2], "1")
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, pg_url, f"p{i}"], stderr=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    for proc in procs:
        assert proc.wait(timeout=60) == 0, proc.stderr.read()  # type: ignore[union-attr]
    with psycopg.connect(pg_url) as conn:
        keys = conn.execute("SELECT key FROM company_newco.meta WHERE key LIKE 'p_' ORDER BY key").fetchall()
    assert [k[0] for k in keys] == ["p0", "p1", "p2", "p3"]


def test_a_database_holding_meltanos_tables_is_refused_for_the_default_company(pg_url: str) -> None:
    """Meltano's system database has a `runs` table of its own: the default company's ledger must not adopt it."""
    raw_sql(pg_url, "CREATE TABLE runs (id SERIAL PRIMARY KEY, job_name VARCHAR, state VARCHAR)")
    with pytest.raises(LedgerError, match="Meltano's system database"):
        Ledger(pg_url)
    with Ledger(pg_url, company="acme") as led:  # a schema of its own is fine
        led.finish_run(led.start_run("forward"))
