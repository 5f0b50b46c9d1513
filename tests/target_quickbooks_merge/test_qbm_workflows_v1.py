"""Workflows 1.0 projects carry a `stage` instead of a `phase` (and no phase history): they trigger when their
stage, by name, is the trigger phase or a later one of the workflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from tests.target_quickbooks_merge.qbm_helpers import BOTH_TRIGGERS, Pipeline, log_rows, qbo_jobs


def test_a_workflows_1_project_triggers_on_its_stage(coperniq_sandbox: Any, merge_sandbox: Any, tmp_path: Path) -> None:
    from sandbox.seed import seed_coperniq

    app = coperniq_sandbox.app
    seed_coperniq(app, projects=2, seed=3)
    waiting = app.add_project("Stage Sale Residence", workflow="Residential Solar", workflows_v1=True)
    entered = app.add_project("Stage Install Residence", workflow="Residential Solar", workflows_v1=True)
    app.move_project_to_phase(entered["id"], "Install")
    past = app.add_project("Stage PTO Residence", workflow="Residential Solar", workflows_v1=True)
    app.move_project_to_phase(past["id"], "PTO")  # went past Install: a 1.0 project has no history to show it
    project = requests.get(
        f"{coperniq_sandbox.url}/projects/{entered['id']}", timeout=10, headers={"x-api-key": coperniq_sandbox.api_key}
    ).json()
    assert project.get("phase") is None and project["stage"]["name"] == "Install"  # what the tap will see

    pipe = Pipeline(
        coperniq_sandbox,
        merge_sandbox,
        tmp_path / "ledger.duckdb",
        config={"trigger_phases": BOTH_TRIGGERS, "backfill": True},
    )
    pipe.run()
    assert any(j["DisplayName"].startswith("Stage Install Residence") for j in qbo_jobs(merge_sandbox.app))
    assert any(j["DisplayName"].startswith("Stage PTO Residence") for j in qbo_jobs(merge_sandbox.app))
    assert not any(j["DisplayName"].startswith("Stage Sale Residence") for j in qbo_jobs(merge_sandbox.app))
    [skipped] = [r for r in log_rows(pipe, stream="projects", action="skipped") if r["source_id"] == str(waiting["id"])]
    assert "has not reached trigger phase 'Install'" in skipped["reason"]
