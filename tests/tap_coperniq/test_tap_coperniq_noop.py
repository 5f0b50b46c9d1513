"""What a run costs when little or nothing changed: the workflows read once, the lookback window anchored at the
previous read's start (a quiet re-run reads one page per list), a small state (deferred invoices packed)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from sync_ledger.incremental import parse_timestamp
from tap_coperniq.budget import PaymentPlanner, pack_deferred, unpack_deferred
from tap_coperniq.incremental import DEFAULT_CLOCK_SKEW_ALLOWANCE, coperniq_time_of
from tap_coperniq.tap import TapCoperniq
from tests.conftest import RunningSandbox, start_coperniq
from tests.tap_coperniq.conftest import run_tap

TRIGGERS = [
    {"workflow": "Residential Solar", "phase": "Install"},
    {"workflow": "HVAC Replacement", "phase": "Installation"},
]
LIST_ROUTES = ("GET /v1/accounts", "GET /v1/contacts", "GET /v1/projects", "GET /v1/invoices")


def config(sb: RunningSandbox, **overrides: Any) -> dict[str, Any]:
    """The tap's defaults (lookback 300 s, sweeps every 4 h) with the triggers set, small pages."""
    return {
        "api_key": sb.api_key,
        "api_url": sb.url,
        "max_requests_per_second": 1000,
        "trigger_phases": TRIGGERS,
        "page_size": 5,
        **overrides,
    }


@pytest.fixture(params=["optimistic", "pessimistic"])
def sandbox(request: pytest.FixtureRequest) -> Iterator[RunningSandbox]:
    sb = start_coperniq(profile=request.param, rate_limit_per_second=None, rate_limit_per_day=None)
    sb.app.seed(projects=60, seed=7)
    sb.stats.reset()
    yield sb
    sb.server.stop()


def updated_after_params(sb: RunningSandbox) -> dict[str, set[str | None]]:
    """Wrap the sandbox's dispatch: the `updated_after` each list route was asked for."""
    seen: dict[str, set[str | None]] = {}
    original = sb.app.dispatch

    def dispatch(req: Any) -> Any:
        seen.setdefault(req.path, set()).add(req.arg("updated_after"))
        return original(req)

    sb.app.dispatch = dispatch
    return seen


@pytest.mark.parametrize(
    "overrides",
    [{}, {"backfill": True}, {"phase_history": True, "lookback_window": 0}, {"page_size": 2}],
    ids=["defaults", "backfill", "phase-history", "page-size-2"],
)
def test_a_run_reads_the_workflows_once(sandbox: RunningSandbox, overrides: dict[str, Any]) -> None:
    """One GET /workflows per run, first run and re-run alike (with 3 workflows and pages of 2 it is two pages,
    the list's two pages, still one read)."""
    cfg = config(sandbox, **overrides)
    pages = -(-(len(sandbox.state.workflows) + 1) // cfg["page_size"])  # a full last page needs one more call
    first = run_tap(cfg)
    assert sandbox.stats.by_route["GET /v1/workflows"] == pages
    sandbox.stats.reset()
    second = run_tap(cfg, state=first.state)
    assert sandbox.stats.by_route["GET /v1/workflows"] == pages
    assert sorted(second.ids("workflows")) == sorted(sandbox.state.workflows)


def test_a_quiet_rerun_reads_one_page_per_list(sandbox: RunningSandbox) -> None:
    """A bulk update long ago (12 projects within a minute) fills the bookmark's lookback window with pages of rows.
    The run after the first reads from the first run's start less the lookback: one empty page per list."""
    for i in range(12):
        sandbox.app.add_project(f"Bulk {i}", at=f"2026-01-01T00:00:{i:02d}Z")  # after every seeded row, long ago
    first = run_tap(config(sandbox))
    projects_state = first.state["bookmarks"]["projects"]
    bookmark = parse_timestamp(projects_state["replication_key_value"])
    window = [
        p
        for p in sandbox.state.projects.values()
        if parse_timestamp(p["updatedAt"]) >= bookmark - timedelta(seconds=300)
    ]
    assert len(window) > 5  # more than one page (5 rows) inside the bookmark's window
    read_started = parse_timestamp(projects_state["read_started_at"])
    assert abs(read_started - datetime.now(UTC)) < timedelta(minutes=5)
    assert "recent_ids" not in projects_state  # none of them can be read again with the same updatedAt

    sandbox.stats.reset()
    asked = updated_after_params(sandbox)
    second = run_tap(config(sandbox), state=first.state)
    assert all(sandbox.stats.by_route[route] == 1 for route in LIST_ROUTES), sandbox.stats.by_route
    assert not second.ids("projects") and not second.ids("invoices")
    (after,) = asked["/v1/projects"]
    window_start = read_started - timedelta(seconds=300 + DEFAULT_CLOCK_SKEW_ALLOWANCE, milliseconds=1)
    assert after is not None and parse_timestamp(after) >= window_start

    # A state from before (no read start): the window is the bookmark's again, the whole of it re-read.
    old = copy.deepcopy(first.state)
    for name in ("accounts", "contacts", "projects", "invoices"):
        old["bookmarks"][name].pop("read_started_at", None)
    sandbox.stats.reset()
    run_tap(config(sandbox), state=old)
    assert sandbox.stats.by_route["GET /v1/projects"] == len(window) // 5 + 1


def test_a_row_that_becomes_visible_late_is_read_by_the_next_run(sandbox: RunningSandbox) -> None:
    """Stamped before the previous read started but listed only after it (the lag the lookback is for)."""
    first = run_tap(config(sandbox))
    read_started = parse_timestamp(first.state["bookmarks"]["projects"]["read_started_at"])
    late = sandbox.app.add_project("Late Project", at=read_started - timedelta(seconds=120))
    assert parse_timestamp(late["updatedAt"]) < read_started
    second = run_tap(config(sandbox), state=first.state)
    assert second.ids("projects") == [late["id"]]
    assert late["accountId"] in second.ids("accounts")


@pytest.mark.parametrize("state_format", ["packed", "legacy"])
def test_deferred_invoices_are_packed_and_an_old_state_is_read(sandbox: RunningSandbox, state_format: str) -> None:
    """`payments.deferred_by_project` is one string; a state with the old `deferred` dict is read and rewritten."""
    app, st = sandbox.app, sandbox.state
    first = run_tap(config(sandbox))
    payments = first.state["bookmarks"]["payments"]
    assert "deferred" not in payments and isinstance(payments["deferred_by_project"], str)
    deferred = unpack_deferred(payments["deferred_by_project"])
    assert deferred, "the seed has paid invoices of projects before their trigger"
    triggers = {t["workflow"]: t["phase"] for t in TRIGGERS}
    invoice_id, project_id, trigger = next(
        (i, p, triggers[name])
        for i, p in sorted(deferred.items())
        if (name := st.workflows[st.projects[int(p)]["workflowId"]]["name"]) in triggers
        and st.projects[int(p)].get("isActive", True)
    )
    state = copy.deepcopy(first.state)
    if state_format == "legacy":
        state["bookmarks"]["payments"] = {"deferred": deferred, "queued": []}

    app.move_project_to_phase(int(project_id), trigger)
    sandbox.stats.reset()
    second = run_tap(config(sandbox, phase_sweep_interval=0), state=state)
    assert int(invoice_id) in {p["invoiceId"] for p in second.records["payments"]}
    after = second.state["bookmarks"]["payments"]
    assert "deferred" not in after
    left = unpack_deferred(after["deferred_by_project"])
    assert invoice_id not in left
    assert left == {i: p for i, p in deferred.items() if p != project_id}


def test_pack_deferred_round_trips_any_id() -> None:
    by_project = {"12": {"3", "10", "2"}, "a:b;c": {"x,y", "100%"}, "7": set()}
    packed = pack_deferred(by_project)
    assert packed.startswith("12:2,3,10;")  # numeric ids in numeric order, empty projects left out
    assert unpack_deferred(packed) == {"2": "12", "3": "12", "10": "12", "x,y": "a:b;c", "100%": "a:b;c"}
    assert unpack_deferred("") == {}


def test_coperniq_time_of_a_response() -> None:
    response = requests.Response()
    response.elapsed = timedelta(seconds=2)
    assert coperniq_time_of(response) is None  # no Date header: the window stays the bookmark's
    response.headers["Date"] = "Tue, 01 Dec 2020 10:00:00 GMT"
    assert coperniq_time_of(response) == datetime(2020, 12, 1, 9, 59, 57, tzinfo=UTC)
    response.headers["Date"] = "not a date"
    assert coperniq_time_of(response) is None
    response.headers["Date"] = "Tue, 01 Dec 2099 10:00:00 GMT"  # a server clock far ahead: never after ours
    started = coperniq_time_of(response)
    assert started is not None and started <= datetime.now(UTC)


def test_an_old_deferred_beside_the_packed_one_is_a_leftover() -> None:
    """A state merged into an older one (Meltano merges partial states) may hold both: the packed one is current."""
    state: dict[str, Any] = {"deferred_by_project": "5:1", "deferred": {"2": "6"}, "queued": []}
    planner = PaymentPlanner({}, state, first_run=False)
    assert planner.deferred == {"1": "5"}
    planner.store()
    assert state == {"deferred_by_project": "5:1", "queued": []}


def test_a_read_resumed_after_a_quota_stop_keeps_the_stopped_read_start(sandbox: RunningSandbox) -> None:
    """The stopped read saw its pages at its start; the pages after were read later: the window of the run after
    the resumed one starts before the first of them."""
    first = run_tap(config(sandbox))
    for i in range(30):
        sandbox.app.add_project(f"Changed {i}")  # six pages of news for the next read
    cfg = config(sandbox, daily_call_limit=6, daily_call_reserve=2)  # 4 calls a day for this tap
    catalog = TapCoperniq(config=cfg).catalog_dict
    for entry in catalog["streams"]:
        for md in entry["metadata"]:
            if md["breadcrumb"] == []:
                md["metadata"]["selected"] = entry["tap_stream_id"] == "projects"
    state = copy.deepcopy(first.state)
    state["bookmarks"]["_coperniq_api"]["calls"] = {}
    stopped = run_tap(cfg, state=state, catalog=catalog)
    assert stopped.tap.quota_governor.stopped
    resume = stopped.state["bookmarks"]["projects"]["resume"]
    assert resume["read_started_at"] and resume["page"] > 1
    state = copy.deepcopy(stopped.state)
    state["bookmarks"]["_coperniq_api"]["calls"] = {}  # a new day
    resumed = run_tap(cfg, state=state, catalog=catalog)
    assert not resumed.tap.quota_governor.stopped
    projects = resumed.state["bookmarks"]["projects"]
    assert "resume" not in projects and projects["read_started_at"] == resume["read_started_at"]
    emitted = stopped.ids("projects") + resumed.ids("projects")
    assert len(emitted) == len(set(emitted)) == 30
