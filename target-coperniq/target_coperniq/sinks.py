"""One sink class for every stream: it only stages records in the ledger; the Reconciler writes to Coperniq."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Protocol, cast

from singer_sdk.sinks import BatchSink

from sync_ledger import to_jsonable

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if TYPE_CHECKING:
    from collections.abc import Sequence

    from singer_sdk import Target

    from target_coperniq.reconcile import Reconciler

#: Streams whose records the reconciler reads; anything else from the tap is ignored (not even staged).
STAGED_STREAMS = frozenset({"invoices", "payments", "items", "contacts"})


class ReconcilingTarget(Protocol):
    """What a sink needs of TargetCoperniq (the target module imports the sinks, not the other way round)."""

    reconciler: Reconciler


class StagingSink(BatchSink):
    """Stages a batch, then reconciles: every drain leaves the ledger consistent before STATE can be emitted."""

    max_size = 500

    def __init__(self, target: Target, stream_name: str, schema: dict, key_properties: Sequence[str] | None) -> None:
        super().__init__(target, stream_name, schema, key_properties)
        self.reconciler = cast("ReconcilingTarget", target).reconciler
        self.reconciler.sinks.append(self)

    @override
    def preprocess_record(self, record: dict, context: dict) -> dict:
        return cast("dict", to_jsonable(record))

    @override
    def process_batch(self, context: dict) -> None:
        records = context.get("records", [])
        if self.stream_name not in STAGED_STREAMS:
            self.logger.debug("Ignoring %d %s records (not used by the reverse leg)", len(records), self.stream_name)
            return
        staged = self.reconciler.stage(self.stream_name, records)
        self.logger.info("Staged %d %s records", staged, self.stream_name)
        self.reconciler.reconcile()
