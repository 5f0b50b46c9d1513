"""The Coperniq API budget with the tap's defaults (no phase history): calls counted by the sandbox, never timed.

A key allows 5,000 calls a day, shared with the company's other integrations, so the figures here are the
product's real limit: a first extract costs list pages (plus one call per paid invoice of a project that syncs,
with backfill), a quiet run a handful, and a run that would dip into `daily_call_reserve` stops cleanly and the
next run resumes where it stopped, under both sandbox profiles (with and without rate-limit headers).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
import requests

from sync_ledger.triggers import parse_trigger_phases, resolve_rules, rule_for
from tap_coperniq.budget import unpack_deferred
from tests.conftest import RunningSandbox, start_coperniq
from tests.tap_coperniq.conftest import run_tap

TRIGGERS = [
    {"workflow": "Residential Solar", "phase": "Install"},
    {"workflow": "HVAC Replacement", "phase": "Installation"},
]
PAYMENTS_ROUTE = "GET /v1/invoices/{invoiceId}/payments"
DETAIL_ROUTES = (PAYMENTS_ROUTE, "GET /v1/projects/{projectId}")


def config(sb: RunningSandbox, **overrides: Any) -> dict[str, Any]:
    """The tap's defaults (phase history off, sweeps every 4 h, reserve 1,000) with the triggers set."""
    return {
        "api_key": sb.api_key,
        "api_url": sb.url,
        "max_requests_per_second": 1000,
        "trigger_phases": TRIGGERS,
        **overrides,
    }


def pessimistic(sb: RunningSandbox) -> bool:
    return not sb.app.assumptions.rate_limit_headers


@pytest.fixture(params=["optimistic", "pessimistic"])
def sandbox(request: pytest.FixtureRequest) -> Iterator[RunningSandbox]:
    sb = start_coperniq(profile=request.param, rate_limit_per_second=None, rate_limit_per_day=None)
    sb.app.seed(projects=60, seed=7)
    sb.stats.reset()
    yield sb
    sb.server.stop()


@pytest.fixture(scope="module")
def big() -> Iterator[RunningSandbox]:
    """2,000 seeded projects (the issue's figure), shared by the read-only first-extract tests."""
    sb = start_coperniq(rate_limit_per_second=None, rate_limit_per_day=None)
    sb.app.seed(projects=2000, seed=11)
    yield sb
    sb.server.stop()


def projects_that_sync(sb: RunningSandbox) -> set[int]:
    """Projects at/past their trigger phase (the shared rule, resolved against the sandbox's workflows)."""
    app = sb.app
    workflows = [app.workflow_out(w) for w in app.state.workflows.values()]
    rules, _ = resolve_rules(parse_trigger_phases(TRIGGERS)[0], workflows)
    out = set()
    for pid in app.state.projects:
        project = app.project_out(app.state.projects[pid])
        rule = rule_for(rules, project)
        if rule is not None and rule.project_reached(project):
            out.add(pid)
    return out


def project_of(invoice: dict[str, Any]) -> int | None:
    kind, rid = invoice.get("_record") or (None, None)
    return rid if kind == "project" else None


def paid_invoices_of(sb: RunningSandbox, projects: set[int]) -> set[int]:
    """Paid invoices of these projects, and paid client-level invoices (their client may well be synced)."""
    return {
        iid
        for iid, inv in sb.app.state.invoices.items()
        if Decimal(str(inv["amountPaid"])) > 0
        and (project_of(inv) in projects or (inv.get("_record") or ("",))[0] != "project")
    }


def deferred(state: dict[str, Any]) -> dict[str, str]:
    """The deferred invoices in a tap state, {invoice: project}."""
    return unpack_deferred(state["bookmarks"]["payments"]["deferred_by_project"])


def detail_calls(sb: RunningSandbox) -> int:
    return sum(sb.stats.by_route[r] for r in DETAIL_ROUTES)


def test_first_extract_of_2000_projects_backfill_off_is_list_pages_only(big: RunningSandbox) -> None:
    big.stats.reset()
    run = run_tap(config(big))
    calls = big.stats.total
    projects = len(big.app.state.projects)
    assert len(run.ids("projects")) == projects == 2000
    assert calls / projects <= 0.10, (calls, big.stats.by_route)
    assert detail_calls(big) == 0  # all projects at their trigger are the first run's: they will never sync
    assert "payments" not in run.records
    assert len(run.ids("invoices")) == len(big.app.state.invoices)


def test_first_extract_with_backfill_reads_payments_only_of_paid_invoices_of_projects_that_sync(
    big: RunningSandbox,
) -> None:
    big.stats.reset()
    run = run_tap(config(big, backfill=True))
    wanted = paid_invoices_of(big, projects_that_sync(big))
    assert big.stats.by_route[PAYMENTS_ROUTE] == len(wanted) > 0
    assert big.stats.by_route["GET /v1/projects/{projectId}"] == 0
    list_pages = big.stats.total - big.stats.by_route[PAYMENTS_ROUTE]
    assert list_pages <= 0.10 * len(big.app.state.projects), big.stats.by_route
    assert {p["invoiceId"] for p in run.records["payments"]} == wanted
    assert len(run.records["payments"]) == sum(len(big.app.state.payments[i]) for i in wanted)


def test_a_quiet_run_fifteen_minutes_later_costs_a_handful_of_calls(sandbox: RunningSandbox) -> None:
    first = run_tap(config(sandbox, backfill=True))
    sandbox.stats.reset()
    run_tap(config(sandbox, backfill=True), state=first.state)
    assert sandbox.stats.total <= 10, sandbox.stats.by_route
    assert detail_calls(sandbox) == 0


def test_payments_of_a_project_that_reaches_its_trigger_later_are_read_then(sandbox: RunningSandbox) -> None:
    app, st = sandbox.app, sandbox.app.state
    reached = projects_that_sync(sandbox)
    waiting = next(pid for pid in sorted(st.projects) if pid not in reached and st.projects[pid].get("isActive", True))
    invoice_id = app.add_invoice(waiting)["id"]
    app.add_payment(invoice_id, 10.0)  # a deposit before the install
    first = run_tap(config(sandbox))
    assert invoice_id not in {p["invoiceId"] for p in first.records.get("payments", [])}
    assert deferred(first.state).get(str(invoice_id)) == str(waiting)

    workflow = st.workflows[st.projects[waiting]["workflowId"]]
    trigger = next(t["phase"] for t in TRIGGERS if t["workflow"] == workflow["name"])
    app.move_project_to_phase(waiting, trigger)
    sandbox.stats.reset()
    # Pessimistic: the move does not bump updatedAt, so it is the next sweep that sees it (here: at once).
    second = run_tap(config(sandbox, phase_sweep_interval=0 if pessimistic(sandbox) else 14400), state=first.state)
    assert {p["invoiceId"] for p in second.records["payments"]} == {invoice_id}
    assert sandbox.stats.by_route[PAYMENTS_ROUTE] == 1
    assert str(invoice_id) not in deferred(second.state)


def test_an_invoice_a_refund_left_showing_nothing_paid_is_read_and_a_new_unpaid_one_is_not(
    sandbox: RunningSandbox,
) -> None:
    """A refund may take the payment out of amountPaid (pessimistic) and still list it, REFUNDED: the invoice's
    payments are read, or its empty set would look like a delete. An invoice created since the last run with
    nothing paid costs no call (nothing of it can have been pushed)."""
    app = sandbox.app
    project = min(projects_that_sync(sandbox))
    refunded = app.add_invoice(project)["id"]
    pay = app.add_payment(refunded, 10.0)
    first = run_tap(config(sandbox))
    app.set_payment_status(refunded, pay["id"], "REFUNDED")
    fresh = app.add_invoice(project)["id"]
    sandbox.stats.reset()
    second = run_tap(config(sandbox), state=first.state)
    assert sandbox.stats.by_route[PAYMENTS_ROUTE] == 1  # the refunded invoice's, not the new one's
    [payment] = [p for p in second.records["payments"] if p["invoiceId"] == refunded]
    assert payment["status"] == "REFUNDED"
    sets = {r["invoiceId"]: r for r in second.records["payment_sets"]}
    assert sets[str(refunded)]["paymentIds"] == [str(pay["id"])] and sets[str(refunded)]["listed"]
    assert sets[str(fresh)] == {**sets[str(fresh)], "paymentIds": [], "listed": False}
    shown = app.state.invoices[refunded]["amountPaid"]
    assert shown == (10.0 if app.assumptions.taken_back_payment_stays_in_amount_paid else 0.0)


def test_a_phase_change_without_an_updated_at_bump_is_read_by_the_next_sweep(sandbox: RunningSandbox) -> None:
    app, st = sandbox.app, sandbox.app.state
    app.assumptions = replace(app.assumptions, phase_change_bumps_updated_at=False)
    first = run_tap(config(sandbox, phase_sweep_interval=3600))
    pid = next(p for p in sorted(st.projects) if p not in projects_that_sync(sandbox))
    workflow = st.workflows[st.projects[pid]["workflowId"]]
    app.move_project_to_phase(pid, workflow["_phases"][-1])  # jumps past the trigger, updatedAt unchanged
    quiet = run_tap(config(sandbox, phase_sweep_interval=3600), state=first.state)
    assert pid not in quiet.ids("projects")  # updated_after cannot see it
    state = copy.deepcopy(quiet.state)
    state["bookmarks"]["projects"]["last_sweep_at"] = "2000-01-01T00:00:00+00:00"  # the interval has passed
    sandbox.stats.reset()
    sweep = run_tap(config(sandbox, phase_sweep_interval=3600), state=state)
    moved = [p for p in sweep.records["projects"] if p["id"] == pid]
    assert moved and moved[0]["phase"]["templateId"] == workflow["_phases"][-1]
    assert len(sweep.ids("projects")) == len(st.projects)  # a sweep re-emits the whole list ...
    pages = -(-len(st.projects) // 100)
    assert sandbox.stats.by_route["GET /v1/projects"] == pages  # ... for list pages only
    assert sweep.state["bookmarks"]["projects"]["last_sweep_at"] > "2000"


def test_quota_reached_mid_run_stops_cleanly_and_the_next_run_resumes(sandbox: RunningSandbox) -> None:
    """A reserve that leaves room for a few calls: the run stops mid-list with STATE, the next resumes there,
    and together they emit every record exactly once. Without headers the tap counts its own calls (state)."""
    app = sandbox.app
    if pessimistic(sandbox):
        limits: dict[str, Any] = {"daily_call_limit": 12, "daily_call_reserve": 2}
    else:
        app.set_rate_limits(None, 12)
        limits = {"daily_call_reserve": 2, "daily_call_limit": 0}
    cfg = config(sandbox, page_size=10, backfill=True, lookback_window=0, **limits)
    runs, state = [], None
    for _ in range(30):
        run = run_tap(cfg, state=state)
        runs.append(run)
        state = copy.deepcopy(run.state)
        if not run.tap.quota_governor.stopped:
            break
        app.limiter.reset()  # a new day: the sandbox forgets the calls ...
        state["bookmarks"]["_coperniq_api"]["calls"] = {}  # ... and so does the tap's own 24 h count
    assert len(runs) >= 3  # it really stopped, more than once
    emitted: dict[str, list[Any]] = {}
    for run in runs:
        for stream, rows in run.records.items():
            emitted.setdefault(stream, []).extend(r["id"] for r in rows)
    st = app.state
    for stream, expected in (("accounts", st.accounts), ("projects", st.projects), ("invoices", st.invoices)):
        assert sorted(emitted[stream]) == sorted(expected), stream  # all of them, none twice
    # Every payment of a project that syncs; a run resumed after the projects stream finished does not know the
    # projects of the invoices it reads, so it also reads some that will not sync (costs, never loses).
    wanted = paid_invoices_of(sandbox, projects_that_sync(sandbox))
    assert wanted <= {p["invoiceId"] for p in runs_records(runs, "payments")}
    ids = [p["id"] for p in runs_records(runs, "payments")]
    assert len(ids) == len(set(ids))
    for run in runs:  # each run's payment lists are sent, also by a run the quota stopped (they cost no call)
        listed = {s["invoiceId"]: s["paymentIds"] for s in run.records.get("payment_sets", []) if s["listed"]}
        for pay in run.records.get("payments", []):
            assert str(pay["id"]) in listed[str(pay["invoiceId"])], pay
    assert any(r.tap.quota_governor.stopped and r.records.get("payment_sets") for r in runs)


def runs_records(runs: list[Any], stream: str) -> list[dict[str, Any]]:
    return [r for run in runs for r in run.records.get(stream, [])]


def test_the_invoice_sweep_lists_every_invoice_once_an_interval_and_costs_list_pages_only(
    sandbox: RunningSandbox,
) -> None:
    first = run_tap(config(sandbox, invoice_sweep_interval=3600))
    assert "invoice_sweeps" not in first.records  # the interval starts when the setting is first seen
    quiet = run_tap(config(sandbox, invoice_sweep_interval=3600), state=first.state)
    assert "invoice_sweeps" not in quiet.records
    state = copy.deepcopy(quiet.state)
    state["bookmarks"]["invoice_sweeps"]["last_sweep_at"] = "2000-01-01T00:00:00+00:00"  # the interval has passed
    invoices = sandbox.app.state.invoices
    gone = min(invoices)
    headers = {"x-api-key": sandbox.api_key}  # deleted in Coperniq: a sweep is the only way to see it
    requests.delete(f"{sandbox.url}/invoices/{gone}", headers=headers, timeout=10).raise_for_status()
    sandbox.stats.reset()
    sweep = run_tap(config(sandbox, invoice_sweep_interval=3600), state=state)
    [record] = sweep.records["invoice_sweeps"]
    assert record["invoiceIds"] == sorted(str(i) for i in invoices) and str(gone) not in record["invoiceIds"]
    assert record["count"] == len(invoices)
    unpaid = sorted(str(i) for i, inv in invoices.items() if inv["amountPaid"] == 0)
    assert unpaid and record["unpaidIds"] == unpaid  # what payment_deletes.py needs (a deleted last payment)
    pages = -(-len(invoices) // 100)
    assert sandbox.stats.by_route["GET /v1/invoices"] == pages + 1  # the sweep's pages, the incremental read's one
    assert sweep.state["bookmarks"]["invoice_sweeps"]["last_sweep_at"] > "2000"
    assert "invoice_sweeps" not in run_tap(config(sandbox), state=sweep.state).records  # unset: never


def test_a_quota_stop_mid_sweep_sends_no_sweep_and_the_next_run_sweeps_again(sandbox: RunningSandbox) -> None:
    """A sweep the daily quota stops after a few of its pages says nothing (a partial list would read as deletes)
    and keeps its last time, so the next run sweeps again, whole."""
    app = sandbox.app
    first = run_tap(config(sandbox, invoice_sweep_interval=0, page_size=5))  # 0: a sweep every run
    [whole] = first.records["invoice_sweeps"]
    swept_at = first.state["bookmarks"]["invoice_sweeps"]["last_sweep_at"]
    sandbox.stats.reset()
    quiet = run_tap(config(sandbox, page_size=5), state=copy.deepcopy(first.state))  # the same run, no sweep
    before_sweep = sandbox.stats.total
    assert "invoice_sweeps" not in quiet.records
    pages = -(-len(app.state.invoices) // 5)
    # the run's own reads and a few of the sweep's pages (the tap keeps a reserve of 2 by its own count; a small
    # header limit like this one is not taken for a daily one, so there the sandbox's 429 stops it)
    allowed = before_sweep + 3
    assert pages > 10
    if pessimistic(sandbox):
        limits: dict[str, Any] = {"daily_call_limit": allowed, "daily_call_reserve": 2}
    else:
        app.set_rate_limits(None, allowed)
        limits = {"daily_call_reserve": 2, "daily_call_limit": 0}
    app.limiter.reset()
    state = copy.deepcopy(first.state)
    state["bookmarks"]["_coperniq_api"]["calls"] = {}
    stopped = run_tap(config(sandbox, invoice_sweep_interval=0, page_size=5, **limits), state=state)
    assert stopped.tap.quota_governor.stopped
    assert "invoice_sweeps" not in stopped.records
    assert stopped.state["bookmarks"]["invoice_sweeps"]["last_sweep_at"] == swept_at
    app.set_rate_limits(None, None)
    app.limiter.reset()
    again = run_tap(config(sandbox, invoice_sweep_interval=0, page_size=5), state=copy.deepcopy(stopped.state))
    [record] = again.records["invoice_sweeps"]
    assert record["invoiceIds"] == whole["invoiceIds"]
