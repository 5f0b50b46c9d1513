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
    with "pessimistic" to run both sandboxes on that profile (default: the `*_sandbox` fixtures, optimistic); a
    "-postgres" suffix puts the ledger on PostgreSQL (ledger_url, a fresh database)."""
    from sandbox.seed import seed_coperniq

    profile, _, backend = str(getattr(request, "param", "optimistic")).partition("-")
    if profile == "optimistic":
        coperniq, merge, started = (
            request.getfixturevalue("coperniq_sandbox"),
            request.getfixturevalue("merge_sandbox"),
            False,
        )
    else:
        coperniq, merge, started = start_coperniq(profile=profile), start_merge(profile=profile), True
    seed_coperniq(coperniq.app, projects=16, seed=7)
    ledger = str(request.getfixturevalue("pg_url")) if backend == "postgres" else tmp_path / "ledger.duckdb"
    yield Pipeline(coperniq, merge, ledger, config={"trigger_phases": BOTH_TRIGGERS, "backfill": True})
    if started:
        coperniq.server.stop()
        merge.server.stop()
