"""The Run summary table the target logs, read back the way the bench and the reliability tests read it."""

from __future__ import annotations

from collections import Counter

from target_quickbooks_merge.report import read_run_summary, summary_table


def test_read_run_summary_round_trips_the_logged_table() -> None:
    counts = {"projects": Counter(linked=2, failed=1), "accounts": Counter(created=3)}
    log = (
        "2024-01-01 00:00:00,000 INFO Run summary r1 (forward: Coperniq -> QuickBooks):\n"
        + summary_table(counts)
        + "\n2024-01-01 00:00:00,001 INFO Merge API calls: none; retries: 0\n"
    )
    assert read_run_summary(log) == {
        "accounts": {"created": 3, "updated": 0, "linked": 0, "skipped": 0, "failed": 0},
        "projects": {"created": 0, "updated": 0, "linked": 2, "skipped": 0, "failed": 1},
    }


def test_read_run_summary_without_a_summary_is_empty() -> None:
    assert read_run_summary("no summary here") == {}
    assert read_run_summary("... Run summary") == {}
