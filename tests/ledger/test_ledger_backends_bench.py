"""Smoke test of bench/ledger_backends.py at a tiny size: it runs on both backends and prints both side by side.

It starts its own throwaway PostgreSQL server (sandbox.postgres); no skip when PostgreSQL is missing, as for the
`pg_server` fixture."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ledger_backends_bench_runs_on_both_backends(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ledger_backends.py"), "--links", "300", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    header = next(line for line in proc.stdout.splitlines() if line.startswith("operation"))
    assert "duckdb ops/s" in header and "postgres ops/s" in header
    assert "fsync" in proc.stdout  # the flattering server settings are said with the figures
    figures = json.loads(out.read_text())
    assert set(figures["backends"]) == {"duckdb", "postgres"}
    for res in figures["backends"].values():
        names = [name for name, _, _ in res["ops"]]
        assert any(name.startswith("get_link") for name in names) and "log + finish_run" in names
        assert all(seconds >= 0 for _, _, seconds in res["ops"]) and res["rss_mb"] > 0
