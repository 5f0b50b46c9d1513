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
from pathlib import Path
from typing import Any

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
from tests.conftest import standard_target_tests

_server = SandboxServer(MergeApp(api_key="std-merge-key", account_token="std-account-token")).start()
_ledger_dir = tempfile.mkdtemp(prefix="qbm-standard-")

CONFIG: dict[str, Any] = {
    "merge_api_key": "std-merge-key",
    "account_token": "std-account-token",
    "base_url": f"{_server.root_url}/api/accounting/v1",
    "ledger_path": str(Path(_ledger_dir) / "ledger.duckdb"),
    "trigger_phases": [{"workflow": "Residential Solar", "phase": "Install"}],
}

TestTargetQuickbooksMergeStandard = standard_target_tests(
    TargetQuickbooksMerge,
    CONFIG,
    [
        TargetCliPrintsTest,
        TargetCamelcaseTest,
        TargetDuplicateRecords,
        TargetInvalidSchemaTest,
        TargetRecordBeforeSchemaTest,
        TargetSchemaNoProperties,
        TargetSpecialCharsInAttributes,
    ],
    _server,
    "QuickBooks",
)
