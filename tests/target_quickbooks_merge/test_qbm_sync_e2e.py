"""tap-coperniq -> target-quickbooks-merge in-process against both sandboxes: what QuickBooks holds afterwards."""

from __future__ import annotations

from typing import Any

import pytest

from tests.reliability.rel_helpers import expected_forward
from tests.target_quickbooks_merge.qbm_helpers import (
    Pipeline,
    assert_no_duplicate_names,
    log_rows,
    merge_rows,
    qbo_jobs,
    qbo_top_customers,
    staged_records,
)


def _triggered(pipe: Pipeline) -> dict[str, dict[str, Any]]:
    """Projects at or past their workflow's trigger phase, from the Coperniq sandbox's own state (staged copies)."""
    projects = staged_records(pipe, "projects")
    return {str(pid): projects[str(pid)] for pid in expected_forward(pipe.coperniq)["projects"]}


@pytest.mark.parametrize("pipeline", ["optimistic", "pessimistic", "pessimistic-postgres"], indirect=True)
def test_triggered_projects_become_customers_and_jobs_once(pipeline: Pipeline) -> None:
    first = pipeline.run()
    if pipeline.merge.app.assumptions.passthrough_visible_after_sync:  # pessimistic: Merge lists new jobs later
        with pipeline.ledger() as ledger:
            assert first.counts["projects"]["created"] and not any(
                link.target_id for link in ledger.links("coperniq", "project")
            )
        pipeline.merge.app.sync()
        assert pipeline.run().writes == 0  # only resolves the jobs' Merge ids
    triggered = _triggered(pipeline)
    assert triggered, "seed should have projects past their trigger phase"
    assert any(p["workflowName"] == "HVAC Replacement" for p in triggered.values()), "multi-workflow triggers"
    assert any(p["workflowName"] == "Residential Solar" for p in triggered.values())

    jobs = qbo_jobs(pipeline.merge)
    customers = qbo_top_customers(pipeline.merge)
    assert len(jobs) == len(triggered)
    assert len(customers) == len({p["accountId"] for p in triggered.values()})
    by_id = {c["Id"]: c for c in customers}
    for job in jobs:  # every job hangs under one of our customers and bills with it
        assert job["ParentRef"]["value"] in by_id and job["BillWithParent"] is True
        assert ":" not in job["DisplayName"]
    assert_no_duplicate_names(pipeline.merge)
    # jobs are visible as Merge Contacts (resolved ids in the ledger); a job Merge listed only after its next
    # sync keeps its QuickBooks Id until something (an invoice, an update) needs its Merge id
    deferred = pipeline.merge.app.assumptions.passthrough_visible_after_sync
    with pipeline.ledger() as ledger:
        job_links = ledger.links("coperniq", "project")
        assert len(job_links) == len(triggered)
        assert all(link.target_remote_id if deferred else link.target_id for link in job_links)

    skipped = log_rows(pipeline, stream="projects", action="skipped")
    not_triggered = set(staged_records(pipeline, "projects")) - set(triggered)
    assert {r["source_id"] for r in skipped} == not_triggered
    assert all("trigger phase" in r["reason"] or "no trigger phase" in r["reason"] for r in skipped)
    assert first.counts["projects"]["created"] == len(triggered)
    assert first.states, "STATE emitted after the reconcile"

    # Re-run: nothing changed -> zero writes, no new rows in QuickBooks.
    second = pipeline.run()
    assert second.writes == 0
    assert len(qbo_jobs(pipeline.merge)) == len(triggered)
    assert len(qbo_top_customers(pipeline.merge)) == len(customers)
    assert second.counts["projects"]["created"] == 0
    assert not any("has reached phase" in w for w in second.target.result.warnings)  # synced earlier = entered
    assert not log_rows(pipeline, action="failed")


def test_later_changes_to_synced_client_and_project_update_them(pipeline: Pipeline) -> None:
    pipeline.run()
    triggered = _triggered(pipeline)
    pid, project = next(iter(triggered.items()))
    app = pipeline.coperniq.app
    app.update_record("accounts", project["accountId"], {"primaryEmail": "new-billing@example.com"}) if hasattr(
        app, "update_record"
    ) else _patch(pipeline, f"/accounts/{project['accountId']}", {"primaryEmail": "new-billing@example.com"})
    _patch(pipeline, f"/projects/{pid}", {"title": "Renamed Project"})
    run = pipeline.run()
    assert run.counts["accounts"]["updated"] == 1
    assert run.counts["projects"]["updated"] == 1
    with pipeline.ledger() as ledger:
        cust = ledger.get_link("coperniq", "account", str(project["accountId"]))
        job = ledger.get_link("coperniq", "project", pid)
    contacts = {r["id"]: r for r in merge_rows(pipeline.merge, "contacts")}
    assert contacts[cust.target_id]["email_address"] == "new-billing@example.com"
    assert contacts[job.target_id]["name"].startswith("Renamed Project")
    assert len(qbo_jobs(pipeline.merge)) == len(triggered)  # updated, not duplicated


def _patch(pipe: Pipeline, path: str, body: dict[str, Any]) -> None:
    import requests

    resp = requests.patch(
        f"{pipe.coperniq.url}{path}", json=body, headers={"x-api-key": pipe.coperniq.api_key}, timeout=10
    )
    assert resp.status_code < 300, resp.text
