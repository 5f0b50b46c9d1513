"""target-coperniq: QuickBooks (through Merge) invoices and payments back into Coperniq, for synced jobs only."""

from __future__ import annotations

import sys
from functools import cached_property
from typing import Any

from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from sync_ledger.alerts import ALERT_PROPERTIES, AlertSettings
from sync_ledger.util import quiet_sdk_metrics
from target_coperniq.context import DEFAULT_PARALLEL_WRITES, MAX_PARALLEL_WRITES
from target_coperniq.reconcile import DEFAULT_LEDGER_PATH, DEFAULT_LINE_ITEM_NAME, Reconciler
from target_coperniq.sinks import StagingSink

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override


class TargetCoperniq(Target):
    """Reverse leg of the Coperniq <-> QuickBooks sync."""

    name = "target-coperniq"
    default_sink_class = StagingSink

    config_jsonschema = th.PropertiesList(
        th.Property(
            "api_key",
            th.StringType,
            required=True,
            secret=True,
            title="Coperniq API key",
            description="Sent as the x-api-key header.",
        ),
        th.Property(
            "api_url",
            th.StringType,
            default="https://api.coperniq.io/v1",
            description="Coperniq API base URL including /v1.",
        ),
        th.Property(
            "ledger_path",
            th.StringType,
            default=DEFAULT_LEDGER_PATH,
            description="Sync ledger (DuckDB) shared with target-quickbooks-merge.",
        ),
        th.Property(
            "ledger_url",
            th.StringType,
            secret=True,
            description="postgresql://user:password@host:5432/db: the ledger on PostgreSQL instead of ledger_path "
            "(the same value as target-quickbooks-merge's). A secret: never printed.",
        ),
        th.Property(
            "company",
            th.StringType,
            description="The tenant in a ledger shared by many companies (the same value as "
            "target-quickbooks-merge's); a run reads and writes only its company's rows. Unset: the default one.",
        ),
        th.Property(
            "dry_run",
            th.BooleanType,
            default=False,
            description="Log what would be written (action `planned`) and write nothing to Coperniq.",
        ),
        th.Property(
            "max_requests_per_second",
            th.NumberType,
            default=10,
            description="Client-side ceiling on Coperniq requests (Coperniq allows 100/s, 5,000/day).",
        ),
        th.Property(
            "max_parallel_writes",
            th.IntegerType(minimum=1, maximum=MAX_PARALLEL_WRITES),
            default=DEFAULT_PARALLEL_WRITES,
            description=f"Coperniq creates and updates in flight at once (1-{MAX_PARALLEL_WRITES}). Decisions stay "
            "sequential; a batch's calls are sent in parallel because a write's latency, not the rate limit, bounds "
            "a sequential run. max_requests_per_second still caps the rate; 1 = strictly sequential.",
        ),
        th.Property(
            "default_catalog_item",
            th.IntegerType,
            description="Coperniq catalog item id for QuickBooks lines without an item. Unset: a catalog "
            "item named `default_catalog_item_name` is found or created.",
        ),
        th.Property(
            "default_catalog_item_name",
            th.StringType,
            default=DEFAULT_LINE_ITEM_NAME,
            description="Catalog item name used when `default_catalog_item` is not set.",
        ),
        th.Property(
            "create_catalog_items",
            th.BooleanType,
            default=True,
            description="Create a Coperniq catalog item when no item has the QuickBooks item's name. "
            "Off: such invoices fail (and are retried) until the item exists.",
        ),
        th.Property(
            "void_policy",
            th.StringType,
            default="mark",
            allowed_values=["mark", "delete", "ignore"],
            description="What a QuickBooks void/delete does to the Coperniq invoice the reverse leg "
            "created: mark (status DECLINED + description prefix), delete, or ignore.",
        ),
        th.Property(
            "payment_method",
            th.StringType,
            default="CHECK",
            allowed_values=["CASH", "ACH", "CREDIT_CARD", "KLARNA", "AFFIRM", "CHECK"],
            description="Coperniq paymentMethod for payments from QuickBooks (Merge exposes the method "
            "only as a reference).",
        ),
        th.Property(
            "max_attempts",
            th.IntegerType,
            default=5,
            description="Runs that retry a failed record before it is left for an operator.",
        ),
        th.Property(
            "log_sdk_metrics",
            th.BooleanType,
            default=False,
            title="Log SDK metrics",
            description="Also log the Singer SDK's METRIC lines (one per request and batch); off by default.",
        ),
    ).to_dict()
    config_jsonschema["properties"].update(ALERT_PROPERTIES)  # alert_webhook_url (secret), alert_on, ..._threshold

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        quiet_sdk_metrics(self)
        errors: list[str] = []
        AlertSettings.from_config(self.config, errors)  # fail fast, naming the setting (the reconciler uses them)
        if errors:
            raise ConfigValidationError("Config validation failed", errors=errors)
        self._state_seen = False
        # one sink at a time: ledger decisions are sequential; the reconciler's batched writer sends in parallel
        self.max_parallelism = 1

    @cached_property
    def reconciler(self) -> Reconciler:
        return Reconciler(self.config, self.logger)

    @override
    def process_endofpipe(self) -> None:
        """Stage and reconcile everything (then give up on what still waits) before the SDK emits STATE."""
        try:
            for sink in list(self.reconciler.sinks):
                self.drain_one(sink)
            self.reconciler.reconcile(final=True)
            super().process_endofpipe()
        except BaseException as exc:
            stopped = isinstance(exc, Exception)  # not on Ctrl-C / SIGTERM: no webhook wait on the way out
            self.reconciler.finish("failed", reason=f"{type(exc).__name__}: {exc}" if stopped else None, alert=stopped)
            raise
        # No STATE from the tap at all: it failed or was stopped before finishing a stream; not a successful sync.
        self.reconciler.finish("success" if self._state_seen else "no-input")

    @override
    def _process_state_message(self, message_dict: dict) -> None:
        self._state_seen = True
        super()._process_state_message(message_dict)


if __name__ == "__main__":
    TargetCoperniq.cli()
