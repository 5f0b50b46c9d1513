"""TapCoperniq: the Singer tap entry point and its settings."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any
from functools import cached_property

from singer_sdk import Tap
from singer_sdk import typing as th
from sync_ledger import ISO_8601_PATTERN

from tap_coperniq.client import DEFAULT_API_URL, MAX_PAGE_SIZE, ApiUsage, CoperniqStopError
from tap_coperniq.retries import DEFAULT_MAX_RATE_LIMIT_WAIT
from tap_coperniq.streams import STREAM_TYPES

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if TYPE_CHECKING:
    from tap_coperniq.client import CoperniqStream


class TapCoperniq(Tap):
    """Extracts accounts, contacts, workflows, projects (+ phase history), invoices (+ payments), catalog."""

    name = "tap-coperniq"

    config_jsonschema = th.PropertiesList(
        th.Property(
            "api_key", th.StringType, required=True, secret=True, title="API key",
            description="Coperniq API key, sent as the x-api-key header.",
        ),
        th.Property(
            "api_url", th.StringType, default=DEFAULT_API_URL, title="API URL",
            description="Coperniq API base URL including /v1 (the dev environment points at the sandbox).",
        ),
        th.Property(
            "start_date", th.DateTimeType, title="Start date",
            description="Earliest updatedAt to extract on the first run (ISO 8601).",
        ),
        th.Property(
            "page_size", th.IntegerType, default=MAX_PAGE_SIZE, title="Page size",
            description="Records per page; Coperniq allows at most 100.",
        ),
        th.Property(
            "max_requests_per_second", th.NumberType, default=10, title="Max requests per second",
            description="Client-side request rate ceiling shared by all streams (Coperniq allows 100/s, 5,000/day).",
        ),
        th.Property(
            "lookback_window", th.IntegerType, default=300, title="Lookback window (seconds)",
            description="Seconds re-read before the bookmark each run, because updated_after may be strict "
            "and late writes happen; records are never emitted twice within one run.",
        ),
        th.Property(
            "include_archived", th.BooleanType, default=True, title="Include archived",
            description="Ask for archived accounts and projects too (include_archived=true), also when "
            "reading one project's phase history.",
        ),
        th.Property(
            "max_rate_limit_wait", th.NumberType, default=DEFAULT_MAX_RATE_LIMIT_WAIT,
            title="Max rate-limit wait (seconds)",
            description="Total seconds one request keeps retrying while Coperniq answers 429 (the Retry-After "
            "it sends, or without one exponential backoff from 1 s to 60 s per wait); then the run stops with "
            "one message, because the 5,000/day cap is probably spent. 0 = stop at the first 429.",
        ),
    ).to_dict()
    config_jsonschema["properties"]["start_date"]["pattern"] = ISO_8601_PATTERN

    @cached_property
    def api_usage(self) -> ApiUsage:
        """One rate limiter and one call counter for the whole run (the cap is per API key)."""
        return ApiUsage(self.config.get("max_requests_per_second", 10))

    @override
    def discover_streams(self) -> list[CoperniqStream]:
        return [stream_type(tap=self) for stream_type in STREAM_TYPES]

    @classmethod
    @override
    def invoke(cls, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """A CoperniqStopError (bad key, spent cap) ends the CLI with its one-line message, not a traceback."""
        try:
            super().invoke(*args, **kwargs)
        except CoperniqStopError as exc:
            cls.logger.error("%s", exc)  # noqa: TRY400 - the traceback is noise; the message says what to do
            raise SystemExit(1) from None


if __name__ == "__main__":
    TapCoperniq.cli()
