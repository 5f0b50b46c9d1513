"""`make clean` never deletes the sync ledger: it is the only record of which QuickBooks record is which Coperniq
one, and a lost ledger means every record is matched again (or, where matching is ambiguous, duplicated)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_clean_keeps_the_ledger_and_removes_the_rest(tmp_path: Path) -> None:
    for name in ("Makefile", "requirements-dev.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    meltano = tmp_path / ".meltano"
    (meltano / "extractors" / "tap-coperniq").mkdir(parents=True)
    (meltano / "sync-ledger.duckdb").write_bytes(b"links")
    (meltano / "sync-ledger.duckdb.wal").write_bytes(b"wal")
    (meltano / "meltano.db").write_bytes(b"state")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / "output").mkdir()

    done = subprocess.run(["make", "clean"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in meltano.iterdir()) == ["sync-ledger.duckdb", "sync-ledger.duckdb.wal"]
    assert (meltano / "sync-ledger.duckdb").read_bytes() == b"links"
    assert not (tmp_path / ".venv").exists() and not (tmp_path / "output").exists()
    assert "kept .meltano/sync-ledger.duckdb" in done.stdout


def test_make_clean_without_a_ledger_removes_meltano_entirely(tmp_path: Path) -> None:
    for name in ("Makefile", "requirements-dev.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / ".meltano" / "utilities").mkdir(parents=True)
    done = subprocess.run(["make", "clean"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / ".meltano").exists()
