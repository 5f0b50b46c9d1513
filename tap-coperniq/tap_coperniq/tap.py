"""TapCoperniq: the Singer tap entry point and its settings."""

from __future__ import annotations

import sys
from functools import cached_property
from typing import TYPE_CHECKING, Any

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from sync_ledger import ISO_8601_PATTERN
from sync_ledger.triggers import parse_trigger_phases
from sync_ledger.util import quiet_sdk_metrics
from tap_coperniq.budget import (
    DEFAULT_DAILY_CALL_LIMIT,
    DEFAULT_DAILY_CALL_RESERVE,
    DEFAULT_PHASE_SWEEP_INTERVAL,
    QUOTA_STATE_KEY,
    PaymentPlanner,
    QuotaGovernor,
)
from tap_coperniq.client import DEFAULT_API_URL
from tap_coperniq.incremental import DEFAULT_CLOCK_SKEW_ALLOWANCE
from tap_coperniq.pagination import MAX_PAGE_SIZE
from tap_coperniq.retries import DEFAULT_MAX_RATE_LIMIT_WAIT
from tap_coperniq.retrying import CoperniqStopError
from tap_coperniq.streams import STREAM_TYPES
from tap_coperniq.usage import ApiUsage

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if TYPE_CHECKING:
    from singer_sdk import Stream
    from singer_sdk.helpers._state import StateWriter

    from tap_coperniq.client import CoperniqStream


class TapCoperniq(Tap):
    """Extracts accounts, contacts, workflows, projects (+ phase history), invoices (+ payments), catalog."""

    name = "tap-coperniq"

    config_jsonschema = th.PropertiesList(
        th.Property(
            "api_key",
            th.StringType,
            required=True,
            secret=True,
            title="API key",
            description="Coperniq API key, sent as the x-api-key header.",
        ),
        th.Property(
            "api_url",
            th.StringType,
            default=DEFAULT_API_URL,
            title="API URL",
            description="Coperniq API base URL including /v1 (the dev environment points at the sandbox).",
        ),
        th.Property(
            "start_date",
            th.DateTimeType,
            title="Start date",
            description="Earliest updatedAt to extract on the first run (ISO 8601).",
        ),
        th.Property(
            "page_size",
            th.IntegerType,
            default=MAX_PAGE_SIZE,
            title="Page size",
            description="Records per page; Coperniq allows at most 100.",
        ),
        th.Property(
            "max_requests_per_second",
            th.NumberType,
            default=10,
            title="Max requests per second",
            description="Client-side request rate ceiling shared by all streams (Coperniq allows 100/s, 5,000/day).",
        ),
        th.Property(
            "lookback_window",
            th.IntegerType,
            default=300,
            title="Lookback window (seconds)",
            description="Seconds re-read before the bookmark each run, because updated_after may be strict "
            "and late writes happen; records are never emitted twice within one run.",
        ),
        th.Property(
            "clock_skew_allowance",
            th.IntegerType,
            default=DEFAULT_CLOCK_SKEW_ALLOWANCE,
            title="Clock skew allowance (seconds)",
            description="Seconds Coperniq's Date header may run ahead of the clock that stamps updatedAt. The "
            "lookback window anchored at the previous read's start (taken from Date) begins this much earlier; "
            "the one anchored at the bookmark does not need it. 0 = the two clocks are one.",
        ),
        th.Property(
            "include_archived",
            th.BooleanType,
            default=True,
            title="Include archived",
            description="Ask for archived accounts and projects too (include_archived=true), also when "
            "reading one project's phase history.",
        ),
        th.Property(
            "max_rate_limit_wait",
            th.NumberType,
            default=DEFAULT_MAX_RATE_LIMIT_WAIT,
            title="Max rate-limit wait (seconds)",
            description="Total seconds one request keeps retrying while Coperniq answers 429 (the Retry-After "
            "it sends, or without one exponential backoff from 1 s to 60 s per wait); then the run stops with "
            "one message, because the 5,000/day cap is probably spent. 0 = stop at the first 429.",
        ),
        th.Property(
            "trigger_phases",
            th.ArrayType(
                th.ObjectType(
                    th.Property("workflow", th.CustomType({"type": ["string", "integer"]})),
                    th.Property("phase", th.CustomType({"type": ["string", "integer"]})),
                )
            ),
            title="Trigger phases",
            description="The target's trigger_phases (one value in meltano.yml feeds both): payments are read "
            "only for projects that reached their trigger phase. Unset: payments of every paid invoice are read.",
        ),
        th.Property(
            "backfill",
            th.BooleanType,
            default=False,
            title="Backfill",
            description="The target's backfill. Off: projects already at/past their trigger phase on the first "
            "run never sync, so their payments are not read.",
        ),
        th.Property(
            "phase_sweep_interval",
            th.IntegerType,
            default=DEFAULT_PHASE_SWEEP_INTERVAL,
            title="Phase sweep interval (seconds)",
            description="How often the whole project list is re-read (list pages only), because a phase change "
            "may not bump updatedAt. 0 = every run.",
        ),
        th.Property(
            "invoice_sweep_interval",
            th.IntegerType,
            title="Invoice sweep interval (seconds)",
            description="How often the whole invoice list is read to see deleted invoices (Coperniq's list has no "
            "tombstones): one call per 100 invoices. Unset: never (deletes are not seen); 0 = every run.",
        ),
        th.Property(
            "phase_history",
            th.BooleanType,
            default=False,
            title="Phase history",
            description="Also read the phase history (GET /projects/{id}) of projects that reached their trigger "
            "phase, for the exact time they entered it. One call per such project.",
        ),
        th.Property(
            "daily_call_reserve",
            th.IntegerType,
            default=DEFAULT_DAILY_CALL_RESERVE,
            title="Daily call reserve",
            description="Coperniq calls per day left for the company's other integrations: when only this many "
            "remain, the tap stops cleanly (exit 0) and the next run resumes.",
        ),
        th.Property(
            "daily_call_limit",
            th.IntegerType,
            default=DEFAULT_DAILY_CALL_LIMIT,
            title="Daily call limit",
            description="The key's daily cap, used only when Coperniq sends no X-RateLimit-Remaining: the tap then "
            "counts its own calls of the last 24 h (in the state). 0 = do not count.",
        ),
        th.Property(
            "log_sdk_metrics",
            th.BooleanType,
            default=False,
            title="Log SDK metrics",
            description="Also log the Singer SDK's METRIC lines (one per request and batch); off by default.",
        ),
    ).to_dict()
    config_jsonschema["properties"]["start_date"]["pattern"] = ISO_8601_PATTERN

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        quiet_sdk_metrics(self)

    @cached_property
    def api_usage(self) -> ApiUsage:
        """One rate limiter and one call counter for the whole run (the cap is per API key)."""
        return ApiUsage(self.config.get("max_requests_per_second", 10))

    @cached_property
    def quota_governor(self) -> QuotaGovernor:
        """One per run; its hourly call counts live in the state (under bookmarks, where the SDK keeps them)."""
        limit = self.config.get("daily_call_limit", DEFAULT_DAILY_CALL_LIMIT)
        counts = self.state.setdefault("bookmarks", {}).setdefault(QUOTA_STATE_KEY, {}).setdefault("calls", {})
        return QuotaGovernor(
            reserve=int(self.config.get("daily_call_reserve", DEFAULT_DAILY_CALL_RESERVE)),
            daily_limit=int(limit) if limit else 0,
            counts=counts,
            logger=self.logger,
        )

    @cached_property
    def payment_planner(self) -> PaymentPlanner | None:
        """Chooses the payment reads; None when the payments stream is not selected (nothing to plan)."""
        payments = self.streams.get("payments")
        if payments is None or not payments.selected:
            return None
        bookmarks = self.state.setdefault("bookmarks", {})
        projects_state = bookmarks.get("projects") or {}
        planner = PaymentPlanner(
            self.config, bookmarks.setdefault("payments", {}), first_run=not projects_state.get("replication_key_value")
        )
        workflows = self.streams.get("workflows")
        if planner.filtering and (workflows is None or not workflows.selected):
            self.logger.warning(
                "trigger_phases is set but the workflows stream is not selected: without the "
                "phase order the tap reads the payments of every paid invoice"
            )
            planner.specs = []
        return planner

    @property
    @override
    def state_writer(self) -> StateWriter:
        """Streams write every STATE message through this: the planner's deferred invoices (kept packed, out of
        the state between stores) go into the state first, so each message holds them as they are."""
        planner = self.__dict__.get("payment_planner")  # only once created: this is no place to create it
        if isinstance(planner, PaymentPlanner):
            planner.store()
        return super().state_writer

    @property
    @override
    def streams(self) -> dict[str, Stream]:
        """Discovery order, not the SDK's alphabetical one: workflows before projects (the trigger's phase order),
        projects before invoices before payments (which payments are worth a call).

        The SDK's `load_streams` (which sorts by name) is final, so the mapping it caches is reordered in place, once.
        """
        streams = super().streams
        order: dict[type[Stream], int] = {stream_type: i for i, stream_type in enumerate(STREAM_TYPES)}
        ordered = sorted(streams.items(), key=lambda item: order.get(type(item[1]), len(order)))
        if list(streams) != [name for name, _ in ordered]:
            streams.clear()
            streams.update(ordered)
        return streams

    @override
    def discover_streams(self) -> list[CoperniqStream]:
        _, errors = parse_trigger_phases(self.config.get("trigger_phases"))
        if errors:
            raise ConfigValidationError("Invalid tap-coperniq settings", errors=errors)
        return [stream_type(tap=self) for stream_type in STREAM_TYPES]

    @classmethod
    @override
    def invoke(cls, *args: Any, **kwargs: Any) -> None:
        """A CoperniqStopError (bad key, spent cap) ends the CLI with its one-line message, not a traceback."""
        try:
            super().invoke(*args, **kwargs)
        except CoperniqStopError as exc:
            cls.logger.error("%s", exc)  # not .exception(): the traceback is noise, the message says what to do
            raise SystemExit(1) from None


if __name__ == "__main__":
    TapCoperniq.cli()
