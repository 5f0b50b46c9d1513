"""tap-coperniq under both Coperniq sandbox profiles: 429s without Retry-After or rate-limit headers, and
archived projects that GET /projects/{id} hides unless asked. Every test runs against the default profile too."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tap_coperniq.client import CoperniqStopError, CoperniqStream
from tap_coperniq.retries import RetrySchedule
from tap_coperniq.tap import TapCoperniq
from tests.conftest import RunningSandbox, start_coperniq

BIN = Path(sys.executable).parent


@pytest.fixture(params=["optimistic", "pessimistic"])
def sandbox(request: pytest.FixtureRequest) -> Iterator[RunningSandbox]:
    """A seeded sandbox per profile (no Workflows 1.0 share: these tests are about other switches)."""
    sb = start_coperniq(profile=request.param, workflows_v1_share=0.0)
    sb.app.seed(projects=12, seed=7)
    sb.stats.reset()
    yield sb
    sb.server.stop()


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waits of 10-50 ms instead of 1-60 s for 429s without Retry-After, so a burst costs milliseconds."""
    monkeypatch.setattr(CoperniqStream, "rate_limit_waits", (0.01, 0.05))


def select_streams(config: dict[str, Any], names: set[str]) -> dict[str, Any]:
    catalog = TapCoperniq(config=config).catalog_dict
    for entry in catalog["streams"]:
        for md in entry["metadata"]:
            if md["breadcrumb"] == []:
                md["metadata"]["selected"] = entry["tap_stream_id"] in names
    return catalog


def pessimistic(sb: RunningSandbox) -> bool:
    return not sb.app.assumptions.rate_limit_headers


# --- 429 without Retry-After ---------------------------------------------------------------------------------


def test_429_burst_longer_than_the_try_limit_is_ridden_out(
    sandbox, tap_runner, make_config, fast_backoff, caplog: pytest.LogCaptureFixture
) -> None:
    """12 429s in a row (more than the 8 tries a server error gets) are waited out within max_rate_limit_wait."""
    sandbox.faults.update(burst_429=12, retry_after=0.01, only_paths=["/v1/projects"])
    config = make_config(sandbox, max_rate_limit_wait=30)
    with caplog.at_level(logging.INFO):
        run = tap_runner(config, catalog=select_streams(config, {"projects"}))
    assert sorted(run.ids("projects")) == sorted(sandbox.state.projects)
    usage = run.tap.api_usage
    assert usage.by_status[429] == 12 and usage.total == sandbox.stats.total
    [line] = [r.getMessage() for r in caplog.records if "Coperniq API usage after stream 'projects'" in r.getMessage()]
    if pessimistic(sandbox):
        assert f"remaining: not reported by Coperniq; {usage.total} calls made this run" in line
        assert "unknown" not in line
    else:
        assert "X-RateLimit-Remaining" in line and "not reported" not in line


def test_spent_rate_limit_budget_stops_with_one_clear_error(sandbox, tap_runner, make_config, fast_backoff) -> None:
    sandbox.faults.update(burst_429=10_000, retry_after=0.01, only_paths=["/v1/accounts"])
    with pytest.raises(CoperniqStopError) as excinfo:
        tap_runner(make_config(sandbox, max_rate_limit_wait=0.3))
    message = str(excinfo.value)
    assert "kept answering 429" in message and "daily cap of 5,000 calls" in message
    assert "max_rate_limit_wait" in message and "\n" not in message
    assert ("with no Retry-After" in message) == pessimistic(sandbox)
    answered = sandbox.stats.by_status[429]
    assert 5 <= answered < 100, answered  # retried for the budget, then stopped (not 8 tries, not forever)


def test_schedule_with_default_settings_is_bounded_by_the_budget() -> None:
    """No sleeping: the waits the default schedule hands out for header-less 429s, until it gives up."""
    schedule = RetrySchedule()
    waits = []
    while (wait := schedule.next_wait(429, None)) is not None:
        waits.append(wait)
    assert sum(waits) == pytest.approx(300.0) and len(waits) > 8
    assert waits[0] < 1.2 and max(waits) <= 66.0 and schedule.rate_limit_exhausted
    errors = RetrySchedule()
    assert sum(errors.next_wait(503, None) is not None for _ in range(20)) == 7  # 8 tries for server errors
    zero = RetrySchedule(max_rate_limit_wait=5)  # `Retry-After: 0` forever still ends
    assert sum(zero.next_wait(429, 0.0) is not None for _ in range(100)) == 5 and zero.rate_limit_exhausted


def test_cli_spent_daily_cap_is_one_line_without_traceback(sandbox, tmp_path: Path) -> None:
    """The daily cap spent, as a process, no traceback. With headers the day-long Retry-After is the quota stop:
    exit 0, one WARNING line, state saved for the next run. Without (pessimistic) a 429 cannot be told from an
    outage: it retries for max_rate_limit_wait, then exits 1 with one ERROR line."""
    sandbox.app.set_rate_limits(None, 2)
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "api_key": sandbox.api_key,
                "api_url": sandbox.url,
                "max_requests_per_second": 1000,
                "max_rate_limit_wait": 2,
            }
        )
    )
    proc = subprocess.run(
        [str(BIN / "tap-coperniq"), "--config", str(config)], capture_output=True, text=True, timeout=120, check=False
    )
    assert "Traceback" not in proc.stderr
    if pessimistic(sandbox):
        assert proc.returncode == 1, proc.stderr[-2000:]
        [line] = [
            ln for ln in proc.stderr.splitlines() if "kept answering 429 Too Many Requests with no Retry-After" in ln
        ]
        assert "| ERROR" in line and "daily cap of 5,000 calls" in line
        return
    assert proc.returncode == 0, proc.stderr[-2000:]
    [line] = [ln for ln in proc.stderr.splitlines() if "Coperniq daily quota reached: 0 calls left" in ln]
    assert "| WARNING" in line and "Retry-After" in line
    assert sandbox.stats.by_status[429] == 1  # a day-long Retry-After is not retried, and nothing after it is sent
    states = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith('{"type":"STATE"')]
    bookmarks = states[-1]["value"]["bookmarks"]
    assert bookmarks["accounts"].get("replication_key_value")  # finished before the stop: kept
    assert not bookmarks.get("invoices", {}).get("replication_key_value")  # not reached: read next run


# --- archived projects -----------------------------------------------------------------------------------------


def test_archived_project_keeps_its_phase_history(sandbox, tap_runner, make_config) -> None:
    app = sandbox.app
    archived = app.add_project("Archived Solar", isActive=False, phase="Install")
    sandbox.stats.reset()
    config = make_config(sandbox)
    run = tap_runner(config, catalog=select_streams(config, {"projects", "project_phase_instances"}))
    assert archived["id"] in run.ids("projects")
    phases = [i for i in run.records["project_phase_instances"] if i["projectId"] == archived["id"]]
    started = [i for i in app.state.phase_instances[archived["id"]] if i[3] is not None]
    assert len(phases) == len(started) >= 5 and {p["name"] for p in phases} >= {"Sale", "Install"}
    assert sandbox.stats.by_status.get(404, 0) == 0
    assert sandbox.stats.by_route["GET /v1/projects/{projectId}"] == len(app.state.projects)
