"""The throwaway PostgreSQL server (sandbox/postgres.py) the PostgreSQL-ledger tests run on.

Why test the harness: a fixture that silently accepts any password or shares one database between tests would
make every ledger test built on it prove less than it claims.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from sandbox.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]


def test_accepts_the_password_and_refuses_a_wrong_one(pg_server: PostgresServer) -> None:
    with psycopg.connect(pg_server.url(), connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("sync",)
        assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)
    wrong = pg_server.url().replace(pg_server.password, "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)


def test_listens_on_loopback_with_durability_off(pg_server: PostgresServer) -> None:
    settings = {
        name: pg_server.execute(f"SHOW {name}")[0][0]
        for name in ("listen_addresses", "fsync", "synchronous_commit", "full_page_writes", "max_connections")
    }
    assert settings == {
        "listen_addresses": "127.0.0.1",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "200",
    }
    assert urlsplit(pg_server.url()).hostname == "127.0.0.1"


def test_pg_url_databases_are_separate(pg_server: PostgresServer) -> None:
    first, second = pg_server.create_database("sep_first"), pg_server.create_database("sep_second")
    try:
        assert first != second
        with psycopg.connect(first, autocommit=True) as conn:
            conn.execute("CREATE TABLE only_here (id int)")
            conn.execute("INSERT INTO only_here VALUES (1)")
        with psycopg.connect(second) as conn:
            assert conn.execute("SELECT to_regclass('only_here')").fetchone() == (None,)
        with psycopg.connect(first) as conn:
            assert conn.execute("SELECT count(*) FROM only_here").fetchone() == (1,)
    finally:
        for name in ("sep_first", "sep_second"):
            pg_server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_pg_url_is_a_fresh_database(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        dbname = conn.execute("SELECT current_database()").fetchone()
        assert dbname is not None and dbname[0].startswith("test_")
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
        conn.execute("CREATE TABLE mine (id int)")


def test_pg_url_again_does_not_see_the_other_tests_table(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('mine')").fetchone() == (None,)


def test_create_database_rejects_unsafe_names(pg_server: PostgresServer) -> None:
    for name in ("Upper", "a;DROP DATABASE postgres", "1abc", "", "x" * 64):
        with pytest.raises(ValueError, match="unsafe database name"):
            pg_server.create_database(name)


def test_module_cli_prints_a_url_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.postgres"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=lambda: lines.put(proc.stdout.readline() if proc.stdout else ""), daemon=True).start()
    try:
        url = lines.get(timeout=60).strip()
        assert url.startswith("postgresql://sync:") and url.endswith("/postgres"), url
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
        assert row is not None
        temp_dir = Path(row[0]).parent
        assert temp_dir.is_dir()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        assert not temp_dir.exists()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
