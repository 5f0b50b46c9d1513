"""tap-quickbooks-merge: QuickBooks Online (through Merge's unified Accounting API) as a Singer tap."""

from __future__ import annotations

import sys
from functools import cached_property
from typing import Any

import requests
from singer_sdk import Stream, Tap
from singer_sdk import typing as th

from sync_ledger import ISO_8601_PATTERN, RateLimiter
from sync_ledger.util import quiet_sdk_metrics
from tap_quickbooks_merge.client import DEFAULT_BASE_URL, MAX_PAGE_SIZE, MergeStream
from tap_quickbooks_merge.streams import STREAM_TYPES

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override


class TapQuickbooksMerge(Tap):
    """Reads contacts, items, accounts, invoices and payments of one linked QuickBooks Online company."""

    name = "tap-quickbooks-merge"

    config_jsonschema = th.PropertiesList(
        th.Property(
            "merge_api_key",
            th.StringType,
            required=True,
            secret=True,
            title="Merge API key",
            description="Merge production or test access key (sent as `Authorization: Bearer`).",
        ),
        th.Property(
            "account_token",
            th.StringType,
            required=True,
            secret=True,
            title="Merge account token",
            description="Linked-account token of the QuickBooks Online company (`X-Account-Token`).",
        ),
        th.Property(
            "base_url",
            th.StringType,
            default=DEFAULT_BASE_URL,
            description=(
                "Merge Accounting API base URL. US: https://api.merge.dev/api/accounting/v1, "
                "EU: https://api-eu.merge.dev/api/accounting/v1, APAC: https://api-ap.merge.dev/api/accounting/v1."
            ),
        ),
        th.Property(
            "start_date",
            th.DateTimeType,
            description="Earliest `modified_at` to extract when there is no bookmark yet.",
        ),
        th.Property(
            "page_size",
            th.IntegerType,
            default=MAX_PAGE_SIZE,
            description="Records per page (Merge allows at most 100; larger values are clamped).",
        ),
        th.Property(
            "max_requests_per_minute",
            th.IntegerType,
            default=300,
            description="Client-side ceiling on requests to this linked account (Merge plans allow 100-600/min).",
        ),
        th.Property(
            "max_retries",
            th.IntegerType,
            default=6,
            description="Attempts per request on 429/5xx/connection errors (Retry-After is honoured).",
        ),
        th.Property(
            "lookback_window",
            th.IntegerType,
            default=300,
            title="Lookback window (seconds)",
            description=(
                "Seconds re-read before the bookmark each run: Merge stamps `modified_at` when its sync job writes "
                "a row, which can become visible later, and this machine's clock is not Merge's. Rows already "
                "emitted with the same `modified_at` are not emitted again."
            ),
        ),
        th.Property(
            "invoice_type",
            th.StringType,
            default="ACCOUNTS_RECEIVABLE",
            description="Merge invoice `type` filter; empty string extracts bills (ACCOUNTS_PAYABLE) too.",
        ),
        th.Property(
            "log_sdk_metrics",
            th.BooleanType,
            default=False,
            title="Log SDK metrics",
            description="Also log the Singer SDK's METRIC lines (one per request and batch); off by default.",
        ),
    ).to_dict()
    config_jsonschema["properties"]["start_date"]["pattern"] = ISO_8601_PATTERN  # fail at start, not mid-sync

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        quiet_sdk_metrics(self)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        """One token bucket for every stream: Merge rate-limits per linked account."""
        per_minute = self.config.get("max_requests_per_minute")
        return RateLimiter(float(per_minute) / 60.0 if per_minute else None)

    @override
    def discover_streams(self) -> list[Stream]:
        return [stream_type(tap=self) for stream_type in STREAM_TYPES]

    # The SDK marks sync_all final but has no hook that runs once before the streams; this only puts a check in
    # front of the SDK's own sync_all, which it then calls unchanged.
    @override  # type: ignore[misc]
    def sync_all(self) -> None:
        self.check_linked_account()
        super().sync_all()

    def check_linked_account(self) -> str | None:
        """One `GET /account-details` before the streams: a link that is not COMPLETE (e.g. RELINK_NEEDED) still
        answers reads, but from a copy Merge no longer refreshes, so the run says so instead of going on quietly.
        An unreachable Merge or refused credentials are left to the streams, which report them clearly."""
        stream = next(iter(self.streams.values()))
        if not isinstance(stream, MergeStream):
            return None
        headers = {**stream.http_headers, **stream.authenticator.auth_headers}
        try:
            response = stream.requests_session.get(
                f"{stream.url_base}/account-details", headers=headers, timeout=stream.timeout
            )
            status = str(response.json().get("status") or "").upper() if response.status_code == 200 else None
        except (requests.RequestException, ValueError, AttributeError):
            return None
        if status and status != "COMPLETE":
            self.logger.warning(
                "WARNING: Merge reports the QuickBooks link as %s (not COMPLETE): what it lists may "
                "be out of date until the link is repaired (`coperniq-qbo status`, then "
                "`coperniq-qbo connect`)",
                status,
            )
        return status


if __name__ == "__main__":
    TapQuickbooksMerge.cli()
