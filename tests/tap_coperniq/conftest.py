"""Fixtures for tap-coperniq tests: a seeded Coperniq sandbox and an in-process tap runner."""

from __future__ import annotations

import contextlib
import io
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tap_coperniq.tap import TapCoperniq

SEED_PROJECTS = 30


@dataclass
class TapRun:
    """Parsed output of one tap run."""

    messages: list[dict[str, Any]]
    records: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    state: dict[str, Any] = field(default_factory=dict)
    tap: TapCoperniq | None = None

    def ids(self, stream: str) -> list[Any]:
        return [r["id"] for r in self.records.get(stream, [])]


def run_tap(
    config: dict[str, Any], state: dict[str, Any] | None = None, catalog: dict[str, Any] | None = None
) -> TapRun:
    """Run TapCoperniq in-process and parse its stdout into records and the final state."""
    tap = TapCoperniq(config=config, state=state, catalog=catalog)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        tap.sync_all()
    messages = [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]
    run = TapRun(messages, tap=tap)
    for msg in messages:
        if msg["type"] == "RECORD":
            run.records[msg["stream"]].append(msg["record"])
        elif msg["type"] == "STATE":
            run.state = msg["value"]
    return run


def tap_config(sandbox: Any, **overrides: Any) -> dict[str, Any]:
    """Config pointing at a sandbox; no client-side throttling unless a test asks for it. The phase history is on
    here (these tests cover every stream); tests/tap_coperniq/test_tap_coperniq_budget.py runs the defaults."""
    return {
        "api_key": sandbox.api_key,
        "api_url": sandbox.url,
        "start_date": "2000-01-01T00:00:00Z",
        "max_requests_per_second": 1000,
        "lookback_window": 0,
        "phase_history": True,
        **overrides,
    }


@pytest.fixture
def seeded(coperniq_sandbox: Any) -> Any:
    """The function-scoped sandbox with the deterministic demo seed, stats reset after seeding."""
    coperniq_sandbox.app.seed(projects=SEED_PROJECTS, seed=7)
    coperniq_sandbox.stats.reset()
    return coperniq_sandbox


@pytest.fixture
def tap_runner() -> Callable[..., TapRun]:
    return run_tap


@pytest.fixture
def make_config() -> Callable[..., dict[str, Any]]:
    return tap_config
