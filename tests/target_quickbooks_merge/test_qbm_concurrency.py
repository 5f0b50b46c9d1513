"""Parallel writes against QuickBooks' concurrency limit (ASSUMPTION in target-quickbooks-merge/README.md: about 10
requests per company at once, a 429 beyond that, relayed by Merge).

The Merge sandbox's fault `max_concurrent` answers a request over the limit at once with 429 (+ Retry-After), the
way Merge relays QuickBooks' throttle; the pessimistic profile starts with 3. With 8 writes in flight and 3 served,
the forward leg must still end complete and exactly once (a 429 is never processed, so retrying it cannot
duplicate); without a limit the sandbox must see writes overlap. Both sandbox profiles; the assertions count
rows and 429s, never time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import start_coperniq, start_merge
from tests.reliability.rel_helpers import assert_forward_complete
from tests.target_quickbooks_merge.qbm_helpers import BOTH_TRIGGERS, Pipeline, Run, log_rows

PROJECTS = 50
PARALLEL = 8
LIMIT = 3


@pytest.fixture(params=["optimistic", "pessimistic"])
def busy(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pipeline]:
    """50 projects, invoices on, writes taking 50 ms and sent 8 at a time; no Merge rate limit in the way (the
    only 429s are the concurrency limit's)."""
    from sandbox.seed import seed_coperniq

    coperniq = start_coperniq(profile=request.param, rate_limit_per_day=None)
    merge = start_merge(profile=request.param, rate_limit_per_minute=1_000_000)
    seed_coperniq(coperniq.app, projects=PROJECTS, seed=7)
    merge.faults.update(write_latency_ms=50)
    config = {
        "trigger_phases": BOTH_TRIGGERS,
        "backfill": True,
        "invoice_sync": True,
        "default_item": "Services",
        "max_parallel_writes": PARALLEL,
    }
    yield Pipeline(coperniq, merge, tmp_path / "ledger.duckdb", config=config)
    coperniq.server.stop()
    merge.server.stop()


def set_max_concurrent(pipe: Pipeline, value: int) -> None:
    """Through the admin endpoint, as a demo or another process would."""
    root = pipe.merge.server.root_url
    assert requests.post(f"{root}/__admin/faults", json={"max_concurrent": value}, timeout=10).status_code == 200


def sync_fully(pipe: Pipeline) -> list[Run]:
    """One run; where Merge lists a passthrough job only after its next sync (pessimistic), that sync and a
    second run for the invoices and payments that waited on the jobs."""
    runs = [pipe.run()]
    if pipe.merge.app.assumptions.passthrough_visible_after_sync:
        pipe.merge.app.sync()
        runs.append(pipe.run())
    return runs


def assert_complete(pipe: Pipeline, runs: list[Run]) -> None:
    assert [r.target.result.failed for r in runs] == [0] * len(runs), [r.target.result.counts for r in runs]
    assert not log_rows(pipe, action="failed")
    with pipe.ledger() as ledger:
        assert ledger.pending_intents("forward:") == []
    exp = assert_forward_complete(pipe.coperniq, pipe.merge)  # every customer, job, invoice, payment exactly once
    assert len(exp["projects"]) >= 15 and exp["invoice_numbers"] and exp["payments_per_invoice"], exp.keys()


def test_writes_over_the_concurrency_limit_are_retried_and_land_exactly_once(
    busy: Pipeline, request: pytest.FixtureRequest
) -> None:
    app = busy.merge.app
    if request.node.callspec.params["busy"] == "pessimistic":
        assert app.faults.max_concurrent == LIMIT  # the profile's
    else:
        assert not app.faults.max_concurrent
        set_max_concurrent(busy, LIMIT)
    runs = sync_fully(busy)
    assert_complete(busy, runs)
    stats = requests.get(f"{busy.merge.server.root_url}/__admin/stats", timeout=10).json()
    assert stats["concurrency_429"] > 0, stats  # the limit was really hit ...
    assert stats["by_status"]["429"] == stats["concurrency_429"]  # ... and was the only 429
    assert stats["max_in_flight_per_key"] == LIMIT  # never more than the limit served at once
    assert busy.run().writes == 0  # nothing changed: a re-run writes nothing
    assert_forward_complete(busy.coperniq, busy.merge)


def test_without_a_limit_writes_really_overlap(busy: Pipeline) -> None:
    set_max_concurrent(busy, 0)
    runs = sync_fully(busy)
    assert_complete(busy, runs)
    stats = busy.merge.stats
    assert stats.concurrency_429 == 0 and stats.by_status[429] == 0
    assert 1 < stats.max_in_flight_per_key <= PARALLEL, stats.max_in_flight_per_key
    assert busy.run().writes == 0
