"""Fixtures for target-quickbooks-merge: seeded Coperniq + empty Merge sandbox wired into an in-process pipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.target_quickbooks_merge.qbm_helpers import BOTH_TRIGGERS, Pipeline


@pytest.fixture
def pipeline(coperniq_sandbox: Any, merge_sandbox: Any, tmp_path: Path) -> Pipeline:
    """16 seeded projects (3 workflows), both install phases as triggers, backfill on."""
    from sandbox.seed import seed_coperniq

    seed_coperniq(coperniq_sandbox.app, projects=16, seed=7)
    return Pipeline(coperniq_sandbox, merge_sandbox, tmp_path / "ledger.duckdb",
                    config={"trigger_phases": BOTH_TRIGGERS, "backfill": True})
