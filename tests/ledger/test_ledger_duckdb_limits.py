"""The ledger's DuckDB is bounded by environment: memory (SYNC_LEDGER_MEMORY_LIMIT) and threads
(SYNC_LEDGER_THREADS); a bad value fails at open, naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync_ledger import Ledger, LedgerError


def _setting(ledger: Ledger, name: str) -> str:
    return str(ledger._c.conn.execute("SELECT current_setting(?)", [name]).fetchone()[0])


def test_threads_and_memory_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_LEDGER_THREADS", "1")
    monkeypatch.setenv("SYNC_LEDGER_MEMORY_LIMIT", "64MB")
    with Ledger(tmp_path / "l.duckdb") as ledger:
        assert _setting(ledger, "threads") == "1"
        assert _setting(ledger, "memory_limit").replace(" ", "") in {"61.0MiB", "64.0MB", "61.0MB"}


@pytest.mark.parametrize(("name", "value"), [("SYNC_LEDGER_THREADS", "two"), ("SYNC_LEDGER_MEMORY_LIMIT", "lots")])
def test_a_bad_value_fails_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(LedgerError, match=name):
        Ledger(tmp_path / "l.duckdb")
