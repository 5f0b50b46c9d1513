"""Triggers read from the project list, end to end (tap-coperniq -> target-quickbooks-merge), backfill off.

The trigger is the current phase at or past the workflow's trigger phase (no phase history: the tap's default);
"after the sync was enabled" is decided from the target's own first-run snapshot. Under the pessimistic profile a
phase change does not bump `updatedAt`, so the tap sweeps the whole project list every run here
(`phase_sweep_interval: 0`), except in the test of the sweep itself.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import requests

from tests.reliability.rel_helpers import assert_forward_complete
from tests.target_quickbooks_merge.qbm_helpers import Pipeline, log_rows, qbo_jobs, qbo_top_customers

PROFILES = ["optimistic", "pessimistic"]


def setup(pipe: Pipeline, **tap: Any) -> None:
    pipe.config["backfill"] = False
    pipe.tap_config = {"phase_sweep_interval": 0, **tap}


def current(pipe: Pipeline, pid: int) -> tuple[str, str]:
    app = pipe.coperniq.app
    out = app.project_out(app.state.projects[pid])
    return out["workflowName"], (out.get("phase") or out.get("stage") or {}).get("name")


def find(pipe: Pipeline, workflow: str, phases: set[str]) -> int:
    """An active project of `workflow` currently in one of `phases` (Workflows 1.0 ones count by stage)."""
    st = pipe.coperniq.app.state
    return next(
        pid
        for pid in sorted(st.projects)
        if current(pipe, pid)[0] == workflow
        and current(pipe, pid)[1] in phases
        and st.projects[pid].get("isActive", True) is not False
    )


def job_for(pipe: Pipeline, pid: int) -> list[dict[str, Any]]:
    title = pipe.coperniq.app.state.projects[pid]["title"]
    return [j for j in qbo_jobs(pipe.merge) if j["DisplayName"].startswith(title)]


def linked(pipe: Pipeline) -> set[str]:
    with pipe.ledger() as ledger:
        return {link.source_id for link in ledger.links("coperniq", "project")}


def patch(pipe: Pipeline, pid: int, body: dict[str, Any]) -> None:
    """PATCH /projects/{id} over HTTP, as a Coperniq user or integration would."""
    resp = requests.patch(
        f"{pipe.coperniq.url}/projects/{pid}", json=body, headers={"x-api-key": pipe.coperniq.api_key}, timeout=10
    )
    resp.raise_for_status()


def reason(pipe: Pipeline, pid: int) -> str:
    rows = [r for r in log_rows(pipe, stream="projects") if r["source_id"] == str(pid)]
    return rows[0]["reason"] if rows else ""  # newest first


@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_projects_at_their_trigger_on_the_first_run_never_sync_without_backfill(pipeline: Pipeline) -> None:
    setup(pipeline)
    first = pipeline.run()
    assert first.writes == 0 and not qbo_top_customers(pipeline.merge)
    past = find(pipeline, "Residential Solar", {"Install", "Inspection", "PTO"})
    assert "when the sync was enabled" in reason(pipeline, past)
    patch(pipeline, past, {"title": "Renamed after enabling"})  # an ordinary edit later: not a new arrival
    assert pipeline.run().writes == 0
    assert "when the sync was enabled" in reason(pipeline, past)


@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_entered_and_jumped_over_both_trigger_and_moving_back_keeps_the_job(pipeline: Pipeline) -> None:
    setup(pipeline)
    pipeline.run()
    app = pipeline.coperniq.app
    entered = find(pipeline, "Residential Solar", {"Sale", "Site Survey"})
    jumped = find(pipeline, "HVAC Replacement", {"Sale", "Site Visit"})
    app.move_project_to_phase(entered, "Install")
    app.move_project_to_phase(jumped, "Closeout")  # straight past Installation
    second = pipeline.run()
    assert second.counts["projects"]["created"] == 2
    assert len(job_for(pipeline, entered)) == len(job_for(pipeline, jumped)) == 1
    assert linked(pipeline) == {str(entered), str(jumped)}

    app.move_project_to_phase(entered, "Sale")  # moved back: stays synced, nothing deleted or re-created
    third = pipeline.run()
    assert third.writes == 0 and len(job_for(pipeline, entered)) == 1
    app.move_project_to_phase(entered, "Install")
    assert pipeline.run().writes == 0 and len(job_for(pipeline, entered)) == 1


@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_a_project_that_changes_workflow_triggers_by_its_new_workflow(pipeline: Pipeline) -> None:
    setup(pipeline)
    pipeline.run()
    app, st = pipeline.coperniq.app, pipeline.coperniq.app.state
    # At its first-run place past the Residential Solar trigger, then moved to HVAC: it starts over there.
    mover = find(pipeline, "Residential Solar", {"Inspection", "PTO"})
    hvac = next(w["id"] for w in st.workflows.values() if w["name"] == "HVAC Replacement")
    patch(pipeline, mover, {"workflowId": hvac})
    assert pipeline.run().writes == 0  # HVAC's first phase: not reached
    assert "has not reached trigger phase 'Installation'" in reason(pipeline, mover)
    app.move_project_to_phase(mover, "Installation")
    third = pipeline.run()
    assert third.counts["projects"]["created"] == 1 and len(job_for(pipeline, mover)) == 1


@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_an_archived_project_at_its_trigger_is_not_synced(pipeline: Pipeline) -> None:
    setup(pipeline)
    pipeline.run()
    archived = pipeline.coperniq.app.add_project(
        "Archived Install", workflow="Residential Solar", phase="Install", isActive=False
    )
    run = pipeline.run()
    assert run.writes == 0
    assert "archived in Coperniq" in reason(pipeline, archived["id"])


def test_a_phase_change_without_an_updated_at_bump_is_caught_by_the_next_sweep(pipeline: Pipeline) -> None:
    app = pipeline.coperniq.app
    app.assumptions = replace(app.assumptions, phase_change_bumps_updated_at=False)
    setup(pipeline, phase_sweep_interval=3600)
    pipeline.run()
    pid = find(pipeline, "Residential Solar", {"Sale", "Site Survey", "Design"})
    app.move_project_to_phase(pid, "Install")
    assert pipeline.run().writes == 0  # updated_after does not show it, no sweep due yet
    assert pipeline.tap_state is not None
    pipeline.tap_state["bookmarks"]["projects"]["last_sweep_at"] = "2000-01-01T00:00:00+00:00"  # an hour on
    swept = pipeline.run()
    assert swept.counts["projects"]["created"] == 1 and len(job_for(pipeline, pid)) == 1


@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_a_first_sync_spread_over_several_quota_days_ends_complete_without_duplicates(pipeline: Pipeline) -> None:
    """The tap may spend only a few calls a "day": each run stops cleanly mid-list (exit 0, STATE), the target
    syncs what arrived, and the next day's run resumes. In the end QuickBooks holds everything exactly once."""
    app = pipeline.coperniq.app
    pipeline.config["invoice_sync"] = True
    pipeline.config["default_item"] = "Services"
    if app.assumptions.rate_limit_headers:
        app.set_rate_limits(None, 1000)  # headers report a daily window: the tap stops at the reserve
        pipeline.tap_config = {"daily_call_reserve": 992, "daily_call_limit": 0, "page_size": 5}
    else:
        pipeline.tap_config = {"daily_call_reserve": 2, "daily_call_limit": 10, "page_size": 5}  # own count
    pipeline.tap_config["trigger_phases"] = pipeline.config["trigger_phases"]
    pipeline.tap_config["backfill"] = True
    days = 0
    while days < 40:
        days += 1
        pipeline.run()
        assert pipeline.tap_state is not None
        bookmarks = pipeline.tap_state["bookmarks"]
        stopped = any(
            isinstance(v, dict) and (v.get("resume") or v.get("queued")) for v in bookmarks.values()
        ) or not bookmarks.get("invoices", {}).get("replication_key_value")
        if not stopped:
            break
        app.limiter.reset()  # the next day
        pipeline.tap_state["bookmarks"]["_coperniq_api"]["calls"] = {}
    assert 3 <= days < 40
    if pipeline.merge.app.assumptions.passthrough_visible_after_sync:
        pipeline.merge.app.sync()
        pipeline.run()
    assert_forward_complete(pipeline.coperniq, pipeline.merge)
