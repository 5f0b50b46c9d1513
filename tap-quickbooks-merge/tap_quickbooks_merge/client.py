"""REST client base for the Merge Accounting API: auth headers, cursor paging, rate limit, 401/429 handling."""

from __future__ import annotations

import sys
import typing as t
from datetime import UTC, datetime
from functools import cached_property
from http import HTTPStatus

import requests
from singer_sdk import RESTStream
from singer_sdk.authenticators import BearerTokenAuthenticator
from singer_sdk.exceptions import FatalAPIError
from singer_sdk.pagination import BaseAPIPaginator

from sync_ledger import RateLimiter, money, redact
from sync_ledger.http import RateLimitedSession, parse_retry_after
from sync_ledger.incremental import LookbackStreamMixin
from sync_ledger.util import MERGE_ACCOUNTING_URL

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context
    from singer_sdk.streams.rest import HTTPRequest, PageContext

DEFAULT_BASE_URL = MERGE_ACCOUNTING_URL
MAX_PAGE_SIZE = 100  # Merge's documented maximum
#: Never sleep longer than this on one Retry-After: past it, failing the run beats hanging the schedule.
MAX_RETRY_WAIT = 120.0


def merge_timestamp(value: datetime) -> str:
    """ISO-8601 UTC with a trailing Z, the way Merge documents and echoes timestamps."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def retry_after_seconds(response: requests.Response | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when absent or unparsable."""
    return parse_retry_after(response.headers.get("Retry-After")) if response is not None else None


class MergeCursorPaginator(BaseAPIPaginator[str | None]):
    """Merge lists answer `{"next", "previous", "results"}`; `next` is an opaque value for `?cursor=`."""

    def __init__(self) -> None:
        super().__init__(None)

    @override
    def get_next(self, response: requests.Response) -> str | None:
        body = response.json()
        return body.get("next") or None if isinstance(body, dict) else None


class MergeStream(LookbackStreamMixin, RESTStream[str | None]):
    """One Merge common model. Incremental on `modified_at` through `modified_after`, with a lookback overlap.

    `modified_at` is when Merge's sync job wrote the row, not when it became visible, and the tap's clock is
    not Merge's: each run re-reads `lookback_window` seconds before the bookmark and drops the rows it
    already emitted with the same `modified_at` (sync_ledger.incremental).
    """

    primary_keys: t.ClassVar[tuple[str, ...]] = ("id",)
    replication_key = "modified_at"
    #: Merge sorts by created_at, not modified_at: the bookmark may only advance when a stream finishes.
    is_sorted = False
    records_jsonpath = "$.results[*]"
    #: Relations to inline (`expand=`), so the target needs no extra reads.
    expand: t.ClassVar[tuple[str, ...]] = ()
    #: Endpoint-specific filters, e.g. the invoice type.
    extra_params: t.ClassVar[dict[str, str]] = {}
    #: Fields Merge may send as decimal strings; emitted as numbers so the schema stays `number`.
    decimal_fields: t.ClassVar[tuple[str, ...]] = ()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        #: Taken before any request, at the microsecond precision Merge stamps `modified_at` with (the SDK's
        #: default signpost is truncated to the millisecond, so rows written just before a run came again).
        self._signpost = datetime.now(UTC)

    @override
    def get_replication_key_signpost(self, context: Context | None = None) -> datetime:
        return self._signpost

    @property
    @override
    def url_base(self) -> str:
        return str(self.config.get("base_url") or DEFAULT_BASE_URL).rstrip("/")

    @property
    @override
    def authenticator(self) -> BearerTokenAuthenticator:
        return BearerTokenAuthenticator(token=self.config["merge_api_key"])

    @property
    @override
    def http_headers(self) -> dict[str, str]:
        return {
            "Accept": "application/json",
            "User-Agent": self.user_agent,
            "X-Account-Token": self.config["account_token"],
        }

    @property
    @override
    def timeout(self) -> int:
        return 60

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        """The tap-wide limiter (all streams share one linked account's budget)."""
        shared = getattr(self._tap, "rate_limiter", None)
        if isinstance(shared, RateLimiter):
            return shared
        per_minute = self.config.get("max_requests_per_minute")
        return RateLimiter(float(per_minute) / 60.0 if per_minute else None)

    @property
    @override
    def requests_session(self) -> requests.Session:
        if not isinstance(self._requests_session, RateLimitedSession):  # the SDK pre-sets a plain Session
            self._requests_session = RateLimitedSession(self.rate_limiter)
        return self._requests_session

    @property
    def page_size(self) -> int:
        return max(1, min(int(self.config.get("page_size") or MAX_PAGE_SIZE), MAX_PAGE_SIZE))

    @override
    def get_new_paginator(self) -> MergeCursorPaginator:
        return MergeCursorPaginator()

    @override
    def get_http_request(self, *, page: PageContext) -> HTTPRequest:
        request = super().get_http_request(page=page)
        request.params.update(self.extra_params)
        request.params["page_size"] = self.page_size
        request.params["include_deleted_data"] = "true"  # deletions arrive as remote_was_deleted=true
        if self.expand:
            request.params["expand"] = ",".join(self.expand)
        if start := self.read_from(page.stream_context):
            request.params["modified_after"] = merge_timestamp(start)
        request.params["cursor"] = page.next_page_token  # None on page 1 is dropped when encoded
        return request

    # --- errors and retries -------------------------------------------------------------------
    @override
    def validate_response(self, response: requests.Response) -> None:
        if response.status_code in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
            msg = (
                f"Merge rejected the credentials (HTTP {response.status_code}) for {self.path}: check the "
                "`merge_api_key` and `account_token` settings (and that `base_url` is the region of the key)."
            )
            raise FatalAPIError(msg)
        super().validate_response(response)

    @override
    def response_error_message(self, response: requests.Response) -> str:
        return redact(super().response_error_message(response), self._secrets)

    @property
    def _secrets(self) -> tuple[str, ...]:
        return tuple(str(self.config.get(k) or "") for k in ("merge_api_key", "account_token"))

    @override
    def backoff_wait_generator(self) -> t.Generator[float, t.Any, None]:
        """Honour Retry-After on 429/5xx; otherwise exponential (1, 2, 4 ... 60 s)."""
        attempt = 0
        exc = yield  # type: ignore[misc]  # primed by backoff with send(None)
        while True:
            attempt += 1
            wait = retry_after_seconds(getattr(exc, "response", None))
            if wait is None:
                wait = min(2.0 ** (attempt - 1), 60.0)
            exc = yield min(wait, MAX_RETRY_WAIT)

    @override
    def backoff_max_tries(self) -> int:
        return int(self.config.get("max_retries") or 6)

    # --- records --------------------------------------------------------------------------------
    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        yield from super().get_records(context)
        self.remember_overlap()

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        """Streams call this last (after their own rewrites, which keep `id` and `modified_at`)."""
        if not self.keep_row(row):
            return None
        for name in self.decimal_fields:
            row[name] = to_decimal(row.get(name))
        return row


def to_decimal(value: t.Any) -> t.Any:
    """Merge mixes numbers and decimal strings for money; emitted as exact Decimals (the SDK writes them as JSON
    numbers digit for digit), not rounded: target-coperniq rounds where it compares and writes. None and junk
    (and NaN/Infinity) become None; integers stay integers."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return money.to_decimal(value)


def relation_id(value: t.Any) -> t.Any:
    """An expanded relation is an object; a plain one is its UUID. Streams emit the UUID."""
    if isinstance(value, dict):
        return value.get("id")
    return value
