"""singer-sdk standard target tests for target-coperniq, against a live Coperniq sandbox.

The SDK's generic streams (test_camelcase, ...) are not Merge streams: the target must accept them without
writing anything to Coperniq, and must still enforce the Singer protocol (schema before records, key
properties: a Merge record always has an `id`, so one without is a broken upstream and aborts the run).
`multiple_state_messages` is left out on purpose: STATE is emitted once, after the reconcile pass has written
everything, never per checkpoint (see test_reverse_round_trip). get_target_test_class needs the config when the
class is defined, hence a module-level sandbox.
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
    TargetRecordMissingKeyProperty,
    TargetSchemaNoProperties,
    TargetSpecialCharsInAttributes,
)

from sandbox._server import SandboxServer
from sandbox.coperniq import CoperniqApp
from target_coperniq.target import TargetCoperniq
from tests.conftest import standard_target_tests

_server = SandboxServer(CoperniqApp(api_key="std-coperniq-key")).start()
_ledger_dir = tempfile.mkdtemp(prefix="tcop-standard-")

CONFIG: dict[str, Any] = {
    "api_key": "std-coperniq-key",
    "api_url": f"{_server.root_url}/v1",
    "ledger_path": str(Path(_ledger_dir) / "ledger.duckdb"),
}

TestTargetCoperniqStandard = standard_target_tests(
    TargetCoperniq,
    CONFIG,
    [
        TargetCliPrintsTest,
        TargetCamelcaseTest,
        TargetDuplicateRecords,
        TargetInvalidSchemaTest,
        TargetRecordBeforeSchemaTest,
        TargetRecordMissingKeyProperty,
        TargetSchemaNoProperties,
        TargetSpecialCharsInAttributes,
    ],
    _server,
    "Coperniq",
)
