"""Readable logs: a 2,000-project first run (backfill and invoice sync on, as processes piped like Meltano runs
them) writes under 2,000 log lines at the default level: per-record lines and SDK METRIC lines are off by default
(every row is in the integration log), progress comes at an interval. `log_sdk_metrics` brings METRIC lines back."""

from __future__ import annotations

from pathlib import Path

from rel_helpers import TRIGGERS, run_pipe, tap_config, target_config

from sync_ledger import Ledger
from tests.conftest import start_coperniq, start_merge


def test_a_2000_project_first_run_logs_under_2000_lines(tmp_path: Path) -> None:
    cop = start_coperniq(rate_limit_per_second=None, rate_limit_per_day=None)
    merge = start_merge(rate_limit_per_minute=1_000_000)
    try:
        cop.app.seed(projects=2000, seed=3)
        tap_cfg = tap_config(cop, trigger_phases=TRIGGERS, backfill=True, daily_call_limit=0)
        ledger = tmp_path / "ledger.duckdb"
        run = run_pipe(
            "tap-coperniq", tap_cfg, "target-quickbooks-merge", target_config(merge, ledger), tmp_path, timeout=300
        )
        assert run.tap_rc == 0 and run.target_rc == 0, run.target_stderr[-3000:]
        lines = run.tap_stderr.splitlines() + run.target_stderr.splitlines()
        assert len(lines) < 2000, len(lines)
        assert not [ln for ln in lines if "METRIC" in ln]
        assert "Run summary" in run.target_stderr
        with Ledger(ledger, read_only=True) as led:  # the rows are all in the integration log instead
            assert len(led.log_rows(limit=100_000)) > 2000

        again = run_pipe(
            "tap-coperniq",
            {**tap_cfg, "log_sdk_metrics": True},
            "target-quickbooks-merge",
            target_config(merge, ledger),
            tmp_path,
            state=run.last_state,
            timeout=300,
            tag="again",
        )
        assert again.tap_rc == 0 and "METRIC" in again.tap_stderr
    finally:
        cop.server.stop()
        merge.server.stop()
