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


def _mib(ledger: Ledger) -> float:
    """DuckDB's memory_limit in MiB (it shows e.g. '76.2 MiB' or '112.0 MiB')."""
    value, unit = _setting(ledger, "memory_limit").split()
    return float(value) * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[unit]


def test_the_memory_limit_grows_with_the_indexes_and_never_below_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sync_ledger import ledger_db

    monkeypatch.delenv("SYNC_LEDGER_MEMORY_LIMIT", raising=False)
    path = tmp_path / "l.duckdb"
    with Ledger(path) as ledger:
        start = _mib(ledger)
        assert 76 <= start <= 80  # DEFAULT_MEMORY_LIMIT, 80 MB: a small ledger's indexes need no more
        ledger.stage("coperniq", "projects", [(str(i), {"id": i}) for i in range(50)])
        assert _mib(ledger) == start
        monkeypatch.setattr(ledger_db, "MEMORY_HEADROOM", 200 * ledger_db.MB)  # as if the indexes had grown
        ledger.stage("coperniq", "projects", [("51", {"id": 51})])
        assert _mib(ledger) == 208  # indexes + headroom, rounded up to 16 MiB
    monkeypatch.setattr(ledger_db, "MEMORY_HEADROOM", 48 * ledger_db.MB)
    monkeypatch.setattr(ledger_db, "ART_BYTES_PER_KEY", 2 * ledger_db.MB)  # 51 staged keys: "102 MiB" of index
    with Ledger(path) as ledger:
        assert _mib(ledger) == 160  # set at open from the row counts, before any index is loaded
    monkeypatch.setenv("SYNC_LEDGER_MEMORY_LIMIT", "64MB")  # fixed: never grown
    with Ledger(path) as ledger:
        ledger.stage("coperniq", "projects", [("52", {"id": 52})])
        assert _mib(ledger) < 64
