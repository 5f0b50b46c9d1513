"""`coperniq-qbo verify` against both sandbox profiles: the answers differ exactly where the profiles do.

Both sandboxes run in-process on 127.0.0.1; the CLI talks to them over HTTP like it would to the real services.
The Coperniq seed gets one project moved to a later phase after seeding (the pessimistic profile leaves its
updatedAt alone), and the QuickBooks company one job created through passthrough (the pessimistic profile lists
it in Merge only after the next sync).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import COPERNIQ_KEY, RunningSandbox, start_coperniq, start_merge

ROOT = Path(__file__).resolve().parents[2]
PROBE_PREFIX = "coperniq-qbo verify probe"


@pytest.fixture
def profile() -> str:
    return "optimistic"


@pytest.fixture
def linked_account_status() -> str | None:
    return None


@pytest.fixture
def merge_sandbox(profile: str, linked_account_status: str | None) -> Iterator[RunningSandbox]:
    """Overrides the conftest fixture, so `ops_project` wires the CLI to this profile's Merge."""
    extra = {"linked_account_status": linked_account_status} if linked_account_status else {}
    sb = start_merge(profile=profile, **extra)
    parent = sb.app.add_contact("Verify Parent Co")
    resp = requests.post(
        f"{sb.url}/passthrough",
        timeout=10,
        headers={"Authorization": f"Bearer {sb.api_key}", "X-Account-Token": sb.account_token},
        json={
            "method": "POST",
            "path": "/v3/company/{{LINKED_ACCOUNT_ATTR.realmId}}/customer?minorversion=75",
            "request_format": "JSON",
            "headers": {"Content-Type": "application/json"},
            "data": json.dumps(
                {
                    "DisplayName": "Verify Parent Co - Roof",
                    "Job": True,
                    "ParentRef": {"value": parent["remote_id"]},
                    "BillWithParent": True,
                }
            ),
        },
    )
    assert resp.status_code == 200
    yield sb
    sb.server.stop()


@pytest.fixture
def coperniq(profile: str) -> Iterator[RunningSandbox]:
    sb = start_coperniq(profile=profile)
    sb.app.seed(projects=30, seed=7)
    app = sb.app
    for pid in sorted(app.state.projects):  # the first Workflows 2.0 project with a phase still ahead of it
        phases = app.project_out(app.state.projects[pid], detail=True)["phaseInstances"]
        later = [p for p in phases if p["status"] == "NOT_STARTED"]
        if later:
            app.move_project_to_phase(pid, later[-1]["phaseTemplateId"])
            break
    else:  # pragma: no cover - the seed always has such a project
        raise AssertionError("no project to move")
    yield sb
    sb.server.stop()


@pytest.fixture
def project(ops_project: Any, coperniq: RunningSandbox) -> Any:
    ops_project.env.update(TAP_COPERNIQ_API_KEY=coperniq.api_key, TAP_COPERNIQ_API_URL=coperniq.url)
    ops_project.add_secret(COPERNIQ_KEY)
    return ops_project


def _findings(out: str) -> dict[str, dict[str, Any]]:
    return {f["key"]: f for f in json.loads(out)["findings"]}


def _probes(merge: RunningSandbox) -> list[dict[str, Any]]:
    return [row for row in merge.state.contacts.order if str(row.get("name", "")).startswith(PROBE_PREFIX)]


@pytest.mark.parametrize("profile", ["optimistic", "pessimistic"])
def test_verify_answers_follow_the_profile(
    project: Any, merge_sandbox: RunningSandbox, coperniq: RunningSandbox, profile: str
) -> None:
    res = project.call(["verify", "--write-probe", "--format", "json"])
    assert res.code == 0, res.err
    report = json.loads(res.out)
    assert report["can_run"] is True and report["blockers"] == []
    assert 0 < report["calls"]["coperniq"] == coperniq.stats.total <= 25  # the budget, counted by the server too
    by = _findings(res.out)
    outcome = {k: f["outcome"] for k, f in by.items()}
    assert outcome["linked_account"] == "as assumed" and by["linked_account"]["saw"].startswith("COMPLETE")
    assert outcome["passthrough"] == "as assumed" and "CompanyInfo of Sandbox Solar Co" in by["passthrough"]["saw"]
    if profile == "optimistic":
        assert outcome == {
            "linked_account": "as assumed",
            "passthrough": "as assumed",
            "job_visibility": "as assumed",
            "rate_limit_headers": "as assumed",
            "phase_updated_at": "as assumed",
            "idempotency": "as assumed",
        }
        assert "X-RateLimit-Remaining: " in by["rate_limit_headers"]["saw"]
        assert "consistent with bumping (not proven)" in by["phase_updated_at"]["saw"]
        assert "listed in /contacts before Merge's next sync" in by["job_visibility"]["saw"]
        assert by["idempotency"]["product"].startswith("Idempotency-Key honoured")
        assert "Idempotent-Replayed: true" in by["idempotency"]["saw"]
    else:
        assert {
            k: outcome[k] for k in ("job_visibility", "rate_limit_headers", "phase_updated_at", "idempotency")
        } == dict.fromkeys(("job_visibility", "rate_limit_headers", "phase_updated_at", "idempotency"), "differs")
        assert by["rate_limit_headers"]["product"] == "counts its own calls"
        assert by["phase_updated_at"]["product"].startswith("finds phase changes by the project-list sweep")
        assert "after its updatedAt" in by["phase_updated_at"]["saw"]
        assert by["job_visibility"]["product"] == (
            "Merge lists passthrough-created jobs only after its next sync: invoices of new jobs wait a run"
        )
        assert by["idempotency"]["product"].startswith("not honoured: the product looks records up by natural key")
    # one probe customer either way (a refused or replayed re-send), archived again
    probes = _probes(merge_sandbox)
    assert len(probes) == 1 and probes[0]["status"] == "ARCHIVED", probes
    assert "archived the probe customer" in by["idempotency"]["saw"]

    table = project.call(["verify"])  # read-only: no probe, a table for people
    assert table.code == 0, table.err
    assert table.out.splitlines()[0].split(" | ") == [
        "ASSUMPTION".ljust(30),
        "WHAT IT SAW".ljust(48),
        "WHAT THE PRODUCT WILL DO",
    ]
    assert "run with --write-probe" in table.out and "verify: the sync can run." in table.out
    assert ("[differs]" in table.out) is (profile == "pessimistic")
    assert len(_probes(merge_sandbox)) == 1  # nothing written without --write-probe


@pytest.mark.parametrize("linked_account_status", ["RELINK_NEEDED", "INCOMPLETE"])
def test_verify_refuses_a_linked_account_that_is_not_complete(
    project: Any, merge_sandbox: RunningSandbox, linked_account_status: str
) -> None:
    res = project.call(["verify", "--write-probe", "--format", "json"])
    assert res.code == 1
    by = _findings(res.out)
    assert by["linked_account"]["outcome"] == "blocks"
    assert by["linked_account"]["saw"].startswith(linked_account_status)
    assert by["idempotency"]["outcome"] == "not checked"  # no write against an account that cannot write
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("coperniq-qbo verify: the sync cannot run: ")
    assert f"linked account is {linked_account_status}" in lines[0]
    assert _probes(merge_sandbox) == []


@pytest.mark.parametrize("linked_account_status", ["IDLE"])
def test_verify_reports_idle_without_blocking(project: Any, linked_account_status: str) -> None:
    res = project.call(["verify", "--format", "json"])
    assert res.code == 0, res.err
    assert _findings(res.out)["linked_account"]["outcome"] == "differs"


def test_verify_passthrough_refused_by_the_plan(project: Any, merge_sandbox: RunningSandbox) -> None:
    merge_sandbox.faults.update(error_rate=1.0, error_status=403, only_paths=["/passthrough"])
    res = project.call(["verify", "--format", "json"])
    assert res.code == 1
    by = _findings(res.out)
    assert by["passthrough"]["outcome"] == "blocks" and "HTTP 403" in by["passthrough"]["saw"]
    assert by["passthrough"]["product"] == "passthrough not on this Merge plan: jobs (sub-customers) cannot be created"
    assert by["job_visibility"]["outcome"] == "not checked"
    assert "passthrough is not on this Merge plan" in res.err


def test_verify_never_prints_secrets(project: Any, merge_sandbox: RunningSandbox) -> None:
    res = project.run(["verify", "--write-probe"])  # as a process: `run` asserts no configured secret shows
    assert res.code == 0, res.err
    assert "Calls used: Coperniq" in res.out
    # a rejected key ends up in error text paths: it must be masked there too
    wrong = "wrong-coperniq-key-5f1e2d"
    project.add_secret(wrong)
    bad = project.call(["verify", "--coperniq-api-key", wrong])
    assert bad.code == 1
    assert "Coperniq rejects the API key (HTTP 401)" in bad.err
    token = merge_sandbox.account_token
    project.env["COPERNIQ_QBO_ACCOUNT_TOKEN"] = token + "-revoked"
    project.add_secret(token + "-revoked")
    gone = project.call(["verify"])
    assert gone.code == 1 and "Merge rejects the API key or account token (HTTP 401)" in gone.err
    for text in (res.out, res.err, bad.out, bad.err, gone.out, gone.err):
        assert merge_sandbox.api_key not in text and COPERNIQ_KEY not in text


def test_verify_without_coperniq_key(ops_project: Any) -> None:
    res = ops_project.call(["verify"])
    assert res.code == 1
    assert "no Coperniq API key: set TAP_COPERNIQ_API_KEY" in res.err


@pytest.mark.meltano
@pytest.mark.timeout(180)
def test_meltano_invoke_verify(ops_project: Any, coperniq: RunningSandbox) -> None:
    """The utility's coperniq_api_key (dev config) reaches the CLI as COPERNIQ_QBO_COPERNIQ_API_KEY."""
    meltano = shutil.which("meltano") or str(ROOT / ".venv" / "bin" / "meltano")
    if not Path(meltano).exists():
        pytest.skip("meltano is not installed")
    env = {k: v for k, v in ops_project.env.items() if k != "MELTANO_PROJECT_ROOT"}
    env.update(
        MELTANO_ENVIRONMENT="dev",
        MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
        COPERNIQ_QBO_ENV_FILE=str(ops_project.env_file),
        COPERNIQ_QBO_COPERNIQ_API_URL=coperniq.url,
    )
    ops_project.add_secret(COPERNIQ_KEY)
    proc = subprocess.run(
        [meltano, "invoke", "coperniq-qbo:verify"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    ops_project.assert_clean(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "verify: the sync can run." in proc.stdout and coperniq.stats.total > 0
