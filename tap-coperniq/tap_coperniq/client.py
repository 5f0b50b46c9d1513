"""REST client base for Coperniq: auth, page/page_size paging, rate limit, retries, API usage accounting.

The seams live in their own modules: paging (`pagination`), the run's request budget (`usage`), error answers and
retries (`retrying`). Their names are re-exported here, the import path other code and tests use.
"""

from __future__ import annotations

import sys
import typing as t
from datetime import UTC, datetime

from singer_sdk import SchemaDirectory, StreamSchema
from singer_sdk.authenticators import APIKeyAuthenticator
from singer_sdk.helpers.jsonpath import extract_jsonpath

from tap_coperniq import schemas
from tap_coperniq.budget import QuotaReached
from tap_coperniq.pagination import MAX_PAGE_SIZE, CoperniqPaginator, response_body
from tap_coperniq.retries import DOCUMENTED_DAILY_CAP
from tap_coperniq.retrying import MAX_RETRY_AFTER, CoperniqStopError, RetryingStream
from tap_coperniq.usage import ApiUsage, MeteredSession, MeteredStream

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context
    from singer_sdk.pagination import PageNumberPaginator
    from singer_sdk.streams.rest import HTTPRequest, PageContext

__all__ = [
    "DEFAULT_API_URL",
    "MAX_PAGE_SIZE",
    "MAX_RETRY_AFTER",
    "SCHEMAS",
    "ApiUsage",
    "CoperniqPaginator",
    "CoperniqStopError",
    "CoperniqStream",
    "MeteredSession",
    "MeteredStream",
    "RetryingStream",
    "format_timestamp",
    "response_body",
]

DEFAULT_API_URL = "https://api.coperniq.io/v1"
SCHEMAS = SchemaDirectory(schemas)


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with a Z, as Coperniq documents it (floor to ms: earlier is the safe side)."""
    value = value.astimezone(UTC)
    spec = "milliseconds" if value.microsecond else "seconds"
    return value.isoformat(timespec=spec).replace("+00:00", "Z")


class CoperniqStream(RetryingStream):
    """Base stream: one request per page, deduplicated by id within a run."""

    primary_keys: t.ClassVar[tuple[str, ...]] = ("id",)
    records_jsonpath = "$[*]"
    schema: t.ClassVar[StreamSchema] = StreamSchema(SCHEMAS)
    #: Coperniq query params understood by this endpoint besides paging (e.g. include_archived).
    extra_params: t.ClassVar[dict[str, t.Any]] = {}
    paginated: t.ClassVar[bool] = True

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._seen_ids: set[t.Any] = set()
        self._duplicates = 0

    # --- connection -------------------------------------------------------------------------
    @property
    @override
    def url_base(self) -> str:
        return str(self.config.get("api_url") or DEFAULT_API_URL).rstrip("/")

    @property
    @override
    def authenticator(self) -> APIKeyAuthenticator:
        return APIKeyAuthenticator(key="x-api-key", value=self.config["api_key"], location="header")

    @property
    @override
    def http_headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "User-Agent": self.user_agent}

    @property
    @override
    def timeout(self) -> int:
        return 60

    # --- requests ---------------------------------------------------------------------------
    @property
    def page_size(self) -> int:
        return max(1, min(int(self.config.get("page_size") or MAX_PAGE_SIZE), MAX_PAGE_SIZE))

    @override
    def get_new_paginator(self) -> PageNumberPaginator | None:
        if not self.paginated:
            return None
        return CoperniqPaginator(1, self.page_size, self.records_jsonpath)

    @override
    def get_http_request(self, *, page: PageContext) -> HTTPRequest:
        request = super().get_http_request(page=page)
        params: dict[str, t.Any] = dict(self.extra_params)
        if self.paginated:
            params["page"] = page.next_page_token
            params["page_size"] = self.page_size
        request.params.update(params)
        return request

    # --- responses --------------------------------------------------------------------------
    @override
    def response_error_message(self, response: requests.Response) -> str:
        """Status, path and Coperniq's `{message, code}`; never the request headers (they hold the key)."""
        body = response.text[:500] if response.content else ""
        return f"{response.status_code} {response.reason} for {self.name} ({self.path}): {body}"

    @override
    def parse_response(self, response: requests.Response) -> t.Iterable[dict]:
        body = response_body(response)
        if body is None:
            return iter(())
        if isinstance(body, list) and self.records_jsonpath == "$[*]":
            return iter(body)
        return extract_jsonpath(self.records_jsonpath, body)

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        """Drop a record already emitted in this run (overlap window, rows shifting between pages)."""
        key = row.get("id")
        if key in self._seen_ids:
            self._duplicates += 1
            return None
        self._seen_ids.add(key)
        return row

    # --- reporting --------------------------------------------------------------------------
    def log_usage(self) -> None:
        """INFO line after a top-level stream (children included): calls used, daily quota left."""
        usage = self.api_usage
        mine = usage.by_stream[self.name]
        children = {c.name: usage.by_stream[c.name] for c in self.child_streams if usage.by_stream[c.name]}
        child_txt = "".join(f", {name}: {n}" for name, n in children.items())
        if usage.remaining is None:  # no X-RateLimit-* headers: our own count is all there is
            quota = f"remaining: not reported by Coperniq; {usage.total} calls made this run"
        else:
            limit = "" if usage.limit is None else f"/{usage.limit}"
            quota = f"run total {usage.total}; X-RateLimit-Remaining {usage.remaining}{limit}"
        self.logger.info(
            "Coperniq API usage after stream '%s': %d requests (%s%s); %s; %d duplicate rows dropped",
            self.name,
            mine + sum(children.values()),
            f"{self.name}: {mine}",
            child_txt,
            quota,
            self._duplicates,
        )
        if usage.remaining is None and usage.total >= DOCUMENTED_DAILY_CAP * 0.9:
            self.logger.warning(
                "This run alone made %d Coperniq calls of the documented %d a day per API key "
                "(Coperniq reports no remaining quota)",
                usage.total,
                DOCUMENTED_DAILY_CAP,
            )
        if usage.remaining is not None and usage.limit and usage.remaining < usage.limit * 0.1:
            self.logger.warning(
                "Only %d of %d daily Coperniq requests left for this API key",
                usage.remaining,
                usage.limit,
            )

    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        governor = self.governor
        if governor is not None and governor.stopped:
            return  # the daily quota stopped an earlier stream: this one waits for the next run
        try:
            yield from self.read_records(context)
        except QuotaReached:
            self.on_quota_stop(context)
        if self.parent_stream_type is None:
            # Runs after the last record and its children were processed (or the quota stop).
            self.log_usage()

    def read_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        """The stream's records (the SDK's paging by default); the quota stop is handled around it."""
        yield from super().get_records(context)

    def on_quota_stop(self, context: Context | None) -> None:
        """What to keep when the quota stops this stream mid-read (small full-table streams: nothing)."""

    @override
    def log_sync_costs(self) -> None:
        """Replaced by log_usage (which counts retries too)."""
