"""30 % injected 5xx plus 429 bursts on both sandboxes: the forward run still completes with everything synced,
exactly once, and a re-run with nothing changed writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from rel_helpers import assert_forward_complete, run_pipe, tap_config, target_config, writes

from target_quickbooks_merge.report import read_run_summary as run_summary
from tests.conftest import start_coperniq, start_merge


@pytest.mark.parametrize("profile", ["optimistic", "pessimistic"])
def test_forward_run_completes_under_30pct_5xx_and_429_bursts(tmp_path: Path, profile: str) -> None:
    """Pessimistic: no idempotency replay, jobs listed after Merge's next sync, 429s without Retry-After on
    Coperniq ..., so the run is followed by Merge's sync and a second run (faults still on)."""
    cop = start_coperniq(rate_limit_per_day=None, profile=profile)
    merge = start_merge(rate_limit_per_minute=1_000_000, profile=profile)
    try:
        cop.app.seed(projects=8, seed=3)
        for sb, status in ((cop, 503), (merge, 500)):
            sb.faults.update(error_rate=0.3, error_status=status, burst_429=3, retry_after=1, seed=99)
        ledger = tmp_path / "ledger.duckdb"
        run = run_pipe(
            "tap-coperniq",
            tap_config(cop),
            "target-quickbooks-merge",
            target_config(merge, ledger),
            tmp_path,
            timeout=150,
        )
        assert run.tap_rc == 0, run.tap_stderr[-3000:]
        assert run.target_rc == 0, run.target_stderr[-3000:]
        if profile == "pessimistic":
            merge.app.sync()
            run = run_pipe(
                "tap-coperniq",
                tap_config(cop),
                "target-quickbooks-merge",
                target_config(merge, ledger),
                tmp_path,
                state=run.last_state,
                tag="after-sync",
                timeout=150,
            )
            assert run.tap_rc == 0 and run.target_rc == 0, run.target_stderr[-3000:]
        # the faults really happened, on both sides, and were retried
        for sb in (cop, merge):
            assert sb.stats.by_status[429] >= 3 and sum(n for s, n in sb.stats.by_status.items() if s >= 500) >= 5
        summary = run_summary(run.target_stderr)
        assert all(row["failed"] == 0 for row in summary.values()), summary
        exp = assert_forward_complete(cop, merge)
        assert exp["projects"] and exp["invoice_numbers"] and exp["payments_per_invoice"]

        # faults still on, nothing changed: a re-run costs no write
        before = writes(merge)
        again = run_pipe(
            "tap-coperniq",
            tap_config(cop),
            "target-quickbooks-merge",
            target_config(merge, ledger),
            tmp_path,
            state=run.last_state,
            tag="again",
            timeout=150,
        )
        assert again.target_rc == 0, again.target_stderr[-3000:]
        assert writes(merge) == before
        assert_forward_complete(cop, merge)
    finally:
        cop.server.stop()
        merge.server.stop()
