"""tap-coperniq against the Coperniq sandbox over HTTP: content, paging, increments, faults, selection."""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

import pytest
from singer_sdk.exceptions import FatalAPIError

from tap_coperniq.tap import TapCoperniq

CONTRACT_STREAMS = {
    "accounts",
    "contacts",
    "workflows",
    "projects",
    "project_phase_instances",
    "invoices",
    "payments",
    "payment_sets",
    "catalog_items",
}


def started_instances(app: Any) -> int:
    return sum(1 for insts in app.state.phase_instances.values() for inst in insts if inst[3] is not None)


def bump(app: Any, project_id: int) -> None:
    """Move a project to a phase other than its current one (a real change that bumps updatedAt)."""
    target = next(i[1] for i in app.state.phase_instances[project_id] if i[2] != "IN_PROGRESS")
    app.move_project_to_phase(project_id, target)


def assert_no_duplicates(run: Any) -> None:
    for stream, rows in run.records.items():
        dupes = [k for k, n in Counter(r["id"] for r in rows).items() if n > 1]
        assert not dupes, f"{stream} emitted ids twice in one run: {dupes[:5]}"


def test_full_sync_matches_sandbox(seeded, tap_runner, make_config) -> None:
    run = tap_runner(make_config(seeded))
    st = seeded.state
    summary = seeded.app.summary()
    assert set(run.records) == CONTRACT_STREAMS
    assert sorted(run.ids("projects")) == sorted(st.projects)
    assert sorted(run.ids("accounts")) == sorted(st.accounts)
    assert sorted(run.ids("contacts")) == sorted(st.contacts)
    assert sorted(run.ids("workflows")) == sorted(st.workflows)
    assert sorted(run.ids("invoices")) == sorted(st.invoices)
    assert sorted(run.ids("catalog_items")) == sorted(st.catalog_items)
    assert len(run.records["payments"]) == summary["payments"] > 0
    assert len(run.records["project_phase_instances"]) == started_instances(seeded.app) > 0
    assert_no_duplicates(run)

    project = next(p for p in run.records["projects"] if p.get("phase"))
    assert {"workflowId", "workflowName", "accountId", "status", "address", "custom", "number"} <= project.keys()
    assert {"instanceId", "templateId", "name", "status"} <= project["phase"].keys()
    # the current phase on the project is one of its emitted phase instances
    instances = {i["id"]: i for i in run.records["project_phase_instances"]}
    current = instances[project["phase"]["instanceId"]]
    assert current["projectId"] == project["id"]
    assert current["templateId"] == project["phase"]["templateId"]
    assert all(i["startedAt"] is not None for i in instances.values())
    workflow_phase_ids = {ph["id"] for w in run.records["workflows"] for ph in w["phases"]}
    assert {i["templateId"] for i in instances.values()} <= workflow_phase_ids

    invoice = run.records["invoices"][0]
    assert invoice["lineItems"] and {"amount", "amountPaid", "record", "account", "uid"} <= invoice.keys()
    assert invoice["balance"] == pytest.approx(invoice["amount"] - invoice["amountPaid"])
    by_invoice = Counter(p["invoiceId"] for p in run.records["payments"])
    assert set(by_invoice) <= set(st.invoices)
    assert sum(by_invoice.values()) == summary["payments"]

    bookmarks = run.state["bookmarks"]
    assert bookmarks["projects"]["replication_key_value"] == max(p["updatedAt"] for p in run.records["projects"])
    assert bookmarks["invoices"]["replication_key_value"] == max(i["updatedAt"] for i in run.records["invoices"])
    assert "progress_markers" not in str(run.state)
    # one detail call per project, nothing else per record
    assert seeded.stats.by_route["GET /v1/projects/{projectId}"] == len(st.projects)


def test_pagination_over_several_pages(seeded, tap_runner, make_config) -> None:
    page_size = 7
    run = tap_runner(make_config(seeded, page_size=page_size))
    n = len(seeded.state.projects)
    assert sorted(run.ids("projects")) == sorted(seeded.state.projects)
    pages = math.ceil(n / page_size) + (1 if n % page_size == 0 else 0)  # a full last page needs one more call
    assert seeded.stats.by_route["GET /v1/projects"] == pages >= 4
    assert all(f"page_size={page_size}" in e["path"] or True for e in seeded.stats.log)
    assert_no_duplicates(run)


def test_second_run_emits_only_changes(seeded, tap_runner, make_config) -> None:
    app, st = seeded.app, seeded.state
    config = make_config(seeded)
    first = tap_runner(config)

    # a project moves to its next phase; an invoice gets a payment
    project_id = next(
        pid
        for pid, insts in st.phase_instances.items()
        if any(i[2] == "NOT_STARTED" for i in insts) and any(i[2] == "IN_PROGRESS" for i in insts)
    )
    next_inst = next(i for i in st.phase_instances[project_id] if i[2] == "NOT_STARTED")
    next_name = st.phase_templates[next_inst[1]]["name"]
    app.move_project_to_phase(project_id, next_inst[1])
    invoice_id = next(iid for iid, inv in st.invoices.items() if inv["amountPaid"] < inv["amount"])
    app.add_payment(invoice_id, 1.0)
    seeded.stats.reset()
    # the sandbox clock hands out strictly increasing ms and can run a few ms ahead of the wall clock;
    # the SDK caps the bookmark at the sync start, so a row "from the future" would be re-read next run
    time.sleep(0.05)

    second = tap_runner(config, state=first.state)
    assert second.ids("projects") == [project_id]
    new_phase = [i for i in second.records["project_phase_instances"] if i["id"] == next_inst[0]]
    assert len(new_phase) == 1 and new_phase[0]["name"] == next_name and new_phase[0]["status"] == "IN_PROGRESS"
    assert {i["projectId"] for i in second.records["project_phase_instances"]} == {project_id}
    assert second.ids("invoices") == [invoice_id]
    assert {p["invoiceId"] for p in second.records["payments"]} == {invoice_id}
    assert (
        second.records["invoices"][0]["amountPaid"]
        > first.records["invoices"][first.ids("invoices").index(invoice_id)]["amountPaid"]
    )
    assert second.ids("accounts") == [] and second.ids("contacts") == []
    # phase history is read only for the changed project, payments only for the changed invoice
    assert seeded.stats.by_route["GET /v1/projects/{projectId}"] == 1
    assert seeded.stats.by_route["GET /v1/invoices/{invoiceId}/payments"] == 1
    assert (
        second.state["bookmarks"]["projects"]["replication_key_value"]
        > first.state["bookmarks"]["projects"]["replication_key_value"]
    )

    third = tap_runner(config, state=second.state)
    assert third.ids("projects") == [] and third.ids("invoices") == []


def test_lookback_rereads_overlap_once(seeded, tap_runner, make_config) -> None:
    first = tap_runner(make_config(seeded))
    seeded.stats.reset()
    # a lookback wider than the data's age re-reads everything once (at-least-once), never twice in a run
    second = tap_runner(make_config(seeded, lookback_window=10 * 365 * 86400), state=first.state)
    assert sorted(second.ids("projects")) == sorted(first.ids("projects"))
    assert_no_duplicates(second)
    after = [e["path"] for e in seeded.stats.log if e["path"] == "/v1/projects"]
    assert after, "projects list was not called"


def test_rows_shifting_between_pages_are_not_emitted_twice(seeded, tap_runner, make_config) -> None:
    """An update landing mid-run pushes rows to the next page; the repeated row is dropped."""
    app, st = seeded.app, seeded.state
    config = make_config(seeded, page_size=5)
    first = tap_runner(config)
    ids = sorted(st.projects)
    for pid in ids[10:22]:  # 12 changed projects -> 3 pages
        bump(app, pid)
    time.sleep(0.05)
    original = app.dispatch
    calls = {"n": 0}

    def dispatch(req: Any) -> Any:
        resp = original(req)
        if req.path == "/v1/projects" and req.arg("page") == "1" and calls["n"] == 0:
            calls["n"] += 1
            bump(app, ids[0])
        return resp

    app.dispatch = dispatch  # type: ignore[method-assign]
    second = tap_runner(config, state=first.state)
    app.dispatch = original  # type: ignore[method-assign]
    assert calls["n"] == 1
    assert_no_duplicates(second)
    assert set(ids[10:22]) <= set(second.ids("projects"))
    # the project changed mid-run is caught by the next run (bookmark never passes the sync start)
    third = tap_runner(config, state=second.state)
    assert ids[0] in third.ids("projects")


def test_recovers_from_429_and_5xx(seeded, tap_runner, make_config) -> None:
    seeded.faults.update(
        burst_429=2, retry_after=0.2, error_rate=0.1, error_status=503, seed=11, only_paths=["/v1/projects"]
    )
    config = make_config(seeded, page_size=10)
    catalog = TapCoperniq(config=config).catalog_dict
    for entry in catalog["streams"]:
        for md in entry["metadata"]:
            if md["breadcrumb"] == []:
                md["metadata"]["selected"] = entry["tap_stream_id"] in {"projects", "project_phase_instances"}
    run = tap_runner(config, catalog=catalog)
    statuses = seeded.stats.snapshot()["by_status"]
    assert statuses.get("429") == 2 and statuses.get("503", 0) > 0
    assert sorted(run.ids("projects")) == sorted(seeded.state.projects)
    assert len(run.records["project_phase_instances"]) == started_instances(seeded.app)
    assert_no_duplicates(run)
    usage = run.tap.api_usage
    assert usage.by_status[429] == 2 and usage.total == seeded.stats.total


def test_daily_cap_exhausted_fails_with_clear_message(seeded, tap_runner, make_config) -> None:
    """Built outside a tap (no quota governor), a stream still stops at a day-long Retry-After with one message;
    inside the tap the same 429 is the clean quota stop (test_tap_coperniq_budget.py)."""
    seeded.app.set_rate_limits(None, 3)
    tap = TapCoperniq(config=make_config(seeded))
    tap.__dict__["quota_governor"] = None  # what a stream outside this tap sees
    with pytest.raises(FatalAPIError, match="daily request cap"):
        tap.sync_all()
    assert seeded.stats.by_status[429] == 1  # no pointless retries against a day-long Retry-After


def test_a_spent_daily_cap_inside_the_tap_is_a_clean_stop(seeded, tap_runner, make_config) -> None:
    seeded.app.set_rate_limits(None, 3)
    run = tap_runner(make_config(seeded, daily_call_reserve=0))
    assert run.tap.quota_governor.stopped
    assert seeded.stats.by_status[429] == 1
    assert [name for name, v in run.state["bookmarks"].items() if isinstance(v, dict) and "resume" in v]


def test_bad_credentials_fail_fast_naming_the_setting(seeded, tap_runner, make_config) -> None:
    secret = "not-the-key-5f2a9c"
    with pytest.raises(FatalAPIError) as excinfo:
        tap_runner(make_config(seeded, api_key=secret))
    message = str(excinfo.value)
    assert "api_key" in message and "api_url" in message and secret not in message
    assert seeded.stats.total == 1 and seeded.stats.by_status[401] == 1


def test_catalog_selection_limits_streams_and_calls(seeded, tap_runner, make_config) -> None:
    config = make_config(seeded)
    catalog = TapCoperniq(config=config).catalog_dict
    for entry in catalog["streams"]:
        for md in entry["metadata"]:
            if md["breadcrumb"] == []:
                md["metadata"]["selected"] = entry["tap_stream_id"] in {"projects", "invoices"}
    run = tap_runner(config, catalog=catalog)
    assert set(run.records) == {"projects", "invoices"}
    routes = seeded.stats.by_route
    assert routes["GET /v1/projects/{projectId}"] == 0 and routes["GET /v1/invoices/{invoiceId}/payments"] == 0
    assert routes["GET /v1/accounts"] == 0 and routes["GET /v1/workflows"] == 0

    # selecting only the child still walks the parent, without emitting it
    for entry in catalog["streams"]:
        for md in entry["metadata"]:
            if md["breadcrumb"] == []:
                md["metadata"]["selected"] = entry["tap_stream_id"] == "project_phase_instances"
    run = tap_runner(config, catalog=catalog)
    assert set(run.records) == {"project_phase_instances"}


def test_client_side_rate_limit_avoids_429(seeded, tap_runner, make_config) -> None:
    seeded.app.set_rate_limits(10, None)
    config = make_config(seeded, max_requests_per_second=4)
    catalog = TapCoperniq(config=config).catalog_dict
    for entry in catalog["streams"]:
        for md in entry["metadata"]:
            if md["breadcrumb"] == []:
                md["metadata"]["selected"] = entry["tap_stream_id"] in {"accounts", "workflows", "projects"}
    run = tap_runner({**config, "page_size": 5}, catalog=catalog)
    assert seeded.stats.total >= 9
    assert seeded.stats.by_status.get(429, 0) == 0
    assert sorted(run.ids("projects")) == sorted(seeded.state.projects)


def test_overlap_rows_already_emitted_are_skipped(seeded, tap_runner, make_config) -> None:
    """The state remembers rows inside the lookback window, so the overlap costs no re-emits or detail calls."""
    app, st = seeded.app, seeded.state
    config = make_config(seeded, lookback_window=10 * 365 * 86400)  # every seeded row is inside the window
    first = tap_runner(config)
    remembered = first.state["bookmarks"]["projects"]["recent_ids"]
    assert set(remembered) == {str(i) for i in st.projects}
    changed = sorted(st.projects)[3]
    bump(app, changed)
    time.sleep(0.05)
    seeded.stats.reset()
    second = tap_runner(config, state=first.state)
    assert second.ids("projects") == [changed]
    assert seeded.stats.by_route["GET /v1/projects/{projectId}"] == 1
    assert second.ids("invoices") == [] and seeded.stats.by_route["GET /v1/invoices/{invoiceId}/payments"] == 0
    assert second.state["bookmarks"]["projects"]["recent_ids"][str(changed)] == st.projects[changed]["updatedAt"]
