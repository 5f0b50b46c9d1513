"""singer-sdk standard target tests for target-quickbooks-merge, against a live Merge sandbox.

The SDK's generic streams (test_camelcase, ...) are not Coperniq streams: the target must accept them without
writing anything to QuickBooks, and must still enforce the Singer protocol (schema before records).
Two standard tests are left out on purpose: `record_missing_key_property` (a record without `id` is a failed row
in the integration log, retried next run, not an aborted run: tested in test_qbm_safety) and
`multiple_state_messages` (STATE is emitted once, after the reconcile pass has written everything, never per
checkpoint: see test_qbm_sync_e2e and test_rel_kill9). get_target_test_class needs the config when the class is defined,
hence a module-level sandbox.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.testing import get_target_test_class
from singer_sdk.testing.suites import SingerTestSuite
from singer_sdk.testing.target_tests import (
    TargetCamelcaseTest,
    TargetCliPrintsTest,
    TargetDuplicateRecords,
    TargetInvalidSchemaTest,
    TargetRecordBeforeSchemaTest,
    TargetSchemaNoProperties,
    TargetSpecialCharsInAttributes,
)

from sandbox._server import SandboxServer
from sandbox.merge import MergeApp
from target_quickbooks_merge.target import TargetQuickbooksMerge

_server = SandboxServer(MergeApp(api_key="std-merge-key", account_token="std-account-token")).start()
_ledger_dir = tempfile.mkdtemp(prefix="qbm-standard-")

CONFIG: dict[str, Any] = {
    "merge_api_key": "std-merge-key",
    "account_token": "std-account-token",
    "base_url": f"{_server.root_url}/api/accounting/v1",
    "ledger_path": str(Path(_ledger_dir) / "ledger.duckdb"),
    "trigger_phases": [{"workflow": "Residential Solar", "phase": "Install"}],
}

SUITE = SingerTestSuite(kind="target", tests=[
    TargetCliPrintsTest,
    TargetCamelcaseTest,
    TargetDuplicateRecords,
    TargetInvalidSchemaTest,
    TargetRecordBeforeSchemaTest,
    TargetSchemaNoProperties,
    TargetSpecialCharsInAttributes,
])

_Base = get_target_test_class(target_class=TargetQuickbooksMerge, config=CONFIG, custom_suites=[SUITE],
                              include_target_tests=False)


class TestTargetQuickbooksMergeStandard(_Base):  # type: ignore[misc, valid-type]
    """The standard suite; afterwards the sandbox must hold nothing the generic streams could have created."""

    @pytest.fixture(scope="class")
    @classmethod
    def resource(cls) -> Iterator[SandboxServer]:
        yield _server
        writes = [e for e in _server.app.stats.log if e["method"] in ("POST", "PATCH")]
        _server.stop()
        assert writes == [], f"generic Singer streams must not write to QuickBooks: {writes[:3]}"
