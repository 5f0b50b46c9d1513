"""The lookback window anchored at the previous read's start (Coperniq's `Date` header) when `Date` runs ahead of
the clock that stamps `updatedAt` (sandbox switch `date_header_skew_s`, pessimistic 60 s; ASSUMPTION 15).

The sandbox clock is frozen in the past, so neither this machine's clock (which caps the read's start) nor real
time plays a part: the `Date` header is the frozen clock plus the skew. A row that becomes visible late is one
inserted now with an `updatedAt` from before the previous read began (the lag the lookback window is for).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests

from sync_ledger.incremental import parse_timestamp
from tests.conftest import RunningSandbox, start_coperniq
from tests.tap_coperniq.conftest import run_tap

LOOKBACK = 300  # the tap's default lookback_window
LAG = LOOKBACK - 10  # a row listed this long after its updatedAt: within the window, past what the skew leaves
FROZEN_AT = "2026-03-02T12:00:00Z"  # after every seeded row, before this machine's clock
LIST_ROUTES = ("GET /v1/accounts", "GET /v1/contacts", "GET /v1/projects", "GET /v1/invoices")


def config(sb: RunningSandbox, **overrides: Any) -> dict[str, Any]:
    """The tap's defaults (lookback 300 s, clock skew allowance 120 s), small pages, no triggers."""
    return {"api_key": sb.api_key, "api_url": sb.url, "max_requests_per_second": 1000, "page_size": 5, **overrides}


@pytest.fixture(params=["optimistic", "pessimistic"])
def sandbox(request: pytest.FixtureRequest) -> Iterator[RunningSandbox]:
    sb = start_coperniq(profile=request.param, rate_limit_per_second=None, rate_limit_per_day=None)
    sb.app.state.clock.set(FROZEN_AT)
    sb.app.seed(projects=40, seed=7)
    sb.stats.reset()
    yield sb
    sb.server.stop()


def test_the_date_header_is_the_sandbox_clock_plus_the_skew(sandbox: RunningSandbox) -> None:
    skew = sandbox.app.assumptions.date_header_skew_s
    response = requests.get(f"{sandbox.url}/projects", headers={"x-api-key": sandbox.api_key}, timeout=10)
    assert len(response.raw.headers.getlist("Date")) == 1  # the app's, instead of http.server's own
    served = parsedate_to_datetime(response.headers["Date"])
    assert served == sandbox.app.state.clock.now().replace(microsecond=0) + timedelta(seconds=skew)


def test_a_late_row_stamped_before_the_previous_read_is_read_under_the_skew(sandbox: RunningSandbox) -> None:
    app, clock = sandbox.app, sandbox.app.state.clock
    first = run_tap(config(sandbox))
    read_started = parse_timestamp(first.state["bookmarks"]["projects"]["read_started_at"])
    true_start = parse_timestamp(FROZEN_AT)  # the read began then on the clock that stamps updatedAt
    skew = timedelta(seconds=app.assumptions.date_header_skew_s)
    assert true_start + skew - timedelta(seconds=2) <= read_started <= true_start + skew  # the Date header's word

    clock.advance(5)  # the row shows up in lists after that read began ...
    late = app.add_project("Late Project", at=clock.now() - timedelta(seconds=LAG))  # ... stamped LAG before
    assert parse_timestamp(late["updatedAt"]) < true_start
    clock.advance(5)
    second = run_tap(config(sandbox), state=first.state)
    assert second.ids("projects") == [late["id"]]
    assert late["accountId"] in second.ids("accounts")

    clock.advance(600)  # a quiet spell: one (empty or overlap-only) page per list, nothing emitted again
    sandbox.stats.reset()
    third = run_tap(config(sandbox), state=second.state)
    assert all(sandbox.stats.by_route[route] == 1 for route in LIST_ROUTES), sandbox.stats.by_route
    assert not third.ids("projects") and not third.ids("accounts") and not third.ids("invoices")


def test_a_quiet_rerun_after_a_bulk_update_reads_one_page_per_list(sandbox: RunningSandbox) -> None:
    """The point of anchoring at the read's start: 12 projects updated together long ago fill the bookmark's
    window (3 pages of 5); with the skew allowance the window of the run after still holds none of them."""
    for i in range(12):
        sandbox.app.add_project(f"Bulk {i}", at=f"2026-01-01T00:00:{i:02d}Z")
    first = run_tap(config(sandbox))
    bookmark = parse_timestamp(first.state["bookmarks"]["projects"]["replication_key_value"])
    assert bookmark == datetime(2026, 1, 1, 0, 0, 11, tzinfo=UTC)
    sandbox.app.state.clock.advance(900)  # the next scheduled run
    sandbox.stats.reset()
    second = run_tap(config(sandbox), state=first.state)
    assert all(sandbox.stats.by_route[route] == 1 for route in LIST_ROUTES), sandbox.stats.by_route
    assert not second.ids("projects") and not second.ids("invoices")


def test_without_the_allowance_the_skew_hides_the_late_row(sandbox: RunningSandbox) -> None:
    """Why `clock_skew_allowance` exists (and that the switch bites): anchored at the `Date` header alone, the
    window of the run after begins `skew` too late, and a row listed `LAG` after its stamp is missed exactly when
    the skew is more than what the lookback leaves of the lag."""
    app, clock = sandbox.app, sandbox.app.state.clock
    first = run_tap(config(sandbox, clock_skew_allowance=0))
    clock.advance(5)
    late = app.add_project("Late Project", at=clock.now() - timedelta(seconds=LAG))
    clock.advance(5)
    second = run_tap(config(sandbox, clock_skew_allowance=0), state=first.state)
    missed = app.assumptions.date_header_skew_s > LOOKBACK - LAG
    assert second.ids("projects") == ([] if missed else [late["id"]])
