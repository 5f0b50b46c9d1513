"""kill -9 of target-quickbooks-merge at several points of a run, then a re-run: QuickBooks ends up with every
customer, job, invoice and payment exactly once.

tap-coperniq | target-quickbooks-merge run as processes (a pipe, as Meltano does). The kill comes from a watcher
on the Merge sandbox's own store (so it lands right after a create reached QuickBooks, typically before the target
committed the id to its ledger: the window the write-ahead intents exist for). The re-run gets the last STATE the
killed target emitted (none: the target only emits STATE after its reconcile), like Meltano would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rel_helpers import (
    assert_forward_complete,
    merge_rows,
    qbo_customers,
    run_pipe,
    tap_config,
    target_config,
)

from sync_ledger import Ledger
from target_quickbooks_merge.report import read_run_summary as run_summary
from tests.conftest import RunningSandbox, start_coperniq, start_merge


@pytest.fixture
def sandboxes(profile: str) -> Iterator[tuple[RunningSandbox, RunningSandbox]]:
    """Pessimistic: Merge ignores the Idempotency-Key and lists passthrough jobs only after its next sync,
    QuickBooks numbers vendors apart and has employees, some Coperniq projects are on Workflows 1.0 ..."""
    cop = start_coperniq(rate_limit_per_day=None, profile=profile)
    cop.app.seed(projects=40, seed=11)
    merge = start_merge(rate_limit_per_minute=1_000_000, profile=profile)
    # Writes take 50 ms and go 4 at a time (below): the watcher (polling every 2 ms) kills the target right after
    # the counted create, while later ones of the same batch are still in flight, whatever the machine's load.
    merge.app.faults.update(write_latency_ms=50)
    yield cop, merge
    cop.server.stop()
    merge.server.stop()


def _customers(m: Any) -> int:
    return sum(1 for c in qbo_customers(m) if not c.get("Job"))


def _jobs(m: Any) -> int:
    return sum(1 for c in qbo_customers(m) if c.get("Job"))


KILL_POINTS: dict[str, tuple[Callable[[Any], int], int]] = {
    "customers": (_customers, 3),  # 3rd customer created (in the first batch of creates)
    "jobs": (_jobs, 6),  # 6th job (passthrough sub-customer)
    "invoices": (lambda m: len(merge_rows(m, "invoices")), 9),
    "payments": (lambda m: len(merge_rows(m, "payments")), 7),
}


#: Extra kill points: early in a pass, when the batch of not-yet-saved links holds records of earlier passes too
#: (a row must never be `done` in the ledger while its link is not).
EXTRA_KILLS = [("invoices", 2), ("payments", 2), ("payments", 14)]


CASES = (
    [(p, n, "optimistic", "duckdb") for p, (_, n) in KILL_POINTS.items()]
    + [(p, n, "optimistic", "duckdb") for p, n in EXTRA_KILLS]
    + [(p, n, "pessimistic", "duckdb") for p, (_, n) in KILL_POINTS.items()]
    # the ledger on PostgreSQL (ledger_url): the same kills, the same guarantees
    + [(p, n, "pessimistic", "postgres") for p, (_, n) in KILL_POINTS.items()]
)


@pytest.mark.parametrize(("point", "at", "profile", "backend"), CASES)
def test_sigkill_target_then_rerun_has_no_duplicates_and_nothing_missing(
    point: str,
    at: int,
    profile: str,
    backend: str,
    sandboxes: tuple[RunningSandbox, RunningSandbox],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    cop, merge = sandboxes
    counter = KILL_POINTS[point][0]
    ledger: Path | str = request.getfixturevalue("pg_url") if backend == "postgres" else tmp_path / "ledger.duckdb"
    tcfg, gcfg = tap_config(cop), target_config(merge, ledger, max_parallel_writes=4)

    state = None
    if profile == "pessimistic" and point in ("invoices", "payments"):
        # invoices go to jobs Merge lists only after its next sync: create the jobs first, then kill among invoices
        warm = run_pipe("tap-coperniq", tcfg, "target-quickbooks-merge", gcfg, tmp_path, tag="warm-up")
        assert warm.target_rc == 0 and not merge_rows(merge, "invoices"), warm.target_stderr[-2000:]
        merge.app.sync()
        state = warm.last_state
    killed = run_pipe(
        "tap-coperniq",
        tcfg,
        "target-quickbooks-merge",
        gcfg,
        tmp_path,
        state=state,
        kill_when=lambda: counter(merge) >= at,
        tag="killed",
    )
    assert killed.killed and killed.target_rc == -9, killed.target_stderr[-2000:]
    assert counter(merge) >= at
    with Ledger(ledger) as led:  # the ledger survives a SIGKILL (DuckDB WAL; PostgreSQL commits)
        intents = [k for k, _ in led.pending_intents("forward:")]
    partial = (len(qbo_customers(merge)), len(merge_rows(merge, "invoices")), len(merge_rows(merge, "payments")))

    rerun = run_pipe(
        "tap-coperniq", tcfg, "target-quickbooks-merge", gcfg, tmp_path, state=killed.last_state, tag="rerun"
    )
    assert rerun.target_rc == 0, rerun.target_stderr[-3000:]
    assert rerun.last_state, "the completed re-run emits STATE"
    if profile == "pessimistic" and point in ("customers", "jobs"):  # invoices go once Merge lists the new jobs
        merge.app.sync()
        after = run_pipe(
            "tap-coperniq", tcfg, "target-quickbooks-merge", gcfg, tmp_path, state=rerun.last_state, tag="after-sync"
        )
        assert after.target_rc == 0, after.target_stderr[-3000:]
        assert all(row["failed"] == 0 for row in run_summary(after.target_stderr).values())
    exp = assert_forward_complete(cop, merge)
    # the kill really was mid-run: the re-run had work left
    assert partial < (
        len(exp["projects"]) + len(exp["accounts"]),
        len(exp["invoice_numbers"]),
        sum(exp["payments_per_invoice"].values()),
    )
    summary = run_summary(rerun.target_stderr)
    assert summary and all(row["failed"] == 0 for row in summary.values()), summary
    print(f"kill at {point}: partial {partial}, leftover intents {intents}, re-run summary {summary}")
