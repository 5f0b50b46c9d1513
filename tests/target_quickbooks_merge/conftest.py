"""Fixtures for target-quickbooks-merge: seeded Coperniq + empty Merge sandbox wired into an in-process pipe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import start_coperniq, start_merge
from tests.target_quickbooks_merge.qbm_helpers import BOTH_TRIGGERS, Pipeline


@pytest.fixture
def pipeline(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pipeline]:
    """16 seeded projects (3 workflows), both install phases as triggers, backfill on. Parametrize it indirectly
    with "pessimistic" to run both sandboxes on that profile (default: the `*_sandbox` fixtures, optimistic)."""
    from sandbox.seed import seed_coperniq

    profile = getattr(request, "param", "optimistic")
    if profile == "optimistic":
        coperniq, merge, started = (
            request.getfixturevalue("coperniq_sandbox"),
            request.getfixturevalue("merge_sandbox"),
            False,
        )
    else:
        coperniq, merge, started = start_coperniq(profile=profile), start_merge(profile=profile), True
    seed_coperniq(coperniq.app, projects=16, seed=7)
    yield Pipeline(
        coperniq, merge, tmp_path / "ledger.duckdb", config={"trigger_phases": BOTH_TRIGGERS, "backfill": True}
    )
    if started:
        coperniq.server.stop()
        merge.server.stop()
