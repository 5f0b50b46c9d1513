"""REST client base for Coperniq: auth, page/page_size paging, rate limit, retries, API usage accounting."""

from __future__ import annotations

import contextlib
import decimal
import json
import sys
import threading
import typing as t
from collections import Counter
from datetime import UTC, datetime
from functools import cached_property
from http import HTTPStatus

import requests
from singer_sdk import RESTStream, SchemaDirectory, StreamSchema
from singer_sdk.authenticators import APIKeyAuthenticator
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.helpers.jsonpath import extract_jsonpath
from singer_sdk.pagination import PageNumberPaginator

from sync_ledger import RateLimiter
from sync_ledger.http import RateLimitedSession, parse_retry_after
from tap_coperniq import schemas
from tap_coperniq.budget import QuotaGovernor, QuotaReached
from tap_coperniq.retries import DEFAULT_MAX_RATE_LIMIT_WAIT, DOCUMENTED_DAILY_CAP, RetrySchedule

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from backoff.types import Details
    from singer_sdk.helpers.types import Context
    from singer_sdk.streams.rest import HTTPRequest, PageContext

DEFAULT_API_URL = "https://api.coperniq.io/v1"
MAX_PAGE_SIZE = 100  # Coperniq rejects/clamps anything larger
#: A Retry-After longer than this means the daily cap (5,000/day) is spent: waiting inside the run is pointless.
MAX_RETRY_AFTER = 600.0
SCHEMAS = SchemaDirectory(schemas)
_BODY_ATTR = "_coperniq_body"
#: The wait generator ends retries (RetrySchedule); this only keeps the SDK's own counter out of the way.
_UNBOUNDED_TRIES = 1_000_000


class CoperniqStopError(FatalAPIError):
    """A failure the operator has to act on: the CLI prints its message as one line, without a traceback."""


def response_body(response: requests.Response) -> t.Any:
    """Parse a response once (paginator and parser both need it); floats become Decimal, money stays exact."""
    body = getattr(response, _BODY_ATTR, None)
    if body is None:
        body = json.loads(response.content or b"null", parse_float=decimal.Decimal) if response.content else None
        setattr(response, _BODY_ATTR, body)
    return body


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with a Z, as Coperniq documents it (floor to ms: earlier is the safe side)."""
    value = value.astimezone(UTC)
    spec = "milliseconds" if value.microsecond else "seconds"
    return value.isoformat(timespec=spec).replace("+00:00", "Z")


class ApiUsage:
    """Calls made by the whole tap (all streams share one key, one daily cap and one rate limiter)."""

    def __init__(self, max_requests_per_second: float | None) -> None:
        self.limiter = RateLimiter(max_requests_per_second or None)
        self.by_stream: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.limit: int | None = None
        self.remaining: int | None = None
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return sum(self.by_stream.values())

    def record(self, stream: str, response: requests.Response) -> None:
        """Count one HTTP exchange (retries included) and remember the latest rate-limit headers."""
        with self._lock:
            self.by_stream[stream] += 1
            self.by_status[response.status_code] += 1
            for header, attr in (("X-RateLimit-Limit", "limit"), ("X-RateLimit-Remaining", "remaining")):
                raw = response.headers.get(header)
                if raw is not None:
                    with contextlib.suppress(ValueError):
                        setattr(self, attr, int(float(raw)))


class MeteredSession(RateLimitedSession):
    """A session that waits for the shared rate limiter before every send and counts what it sent."""

    def __init__(self, usage: ApiUsage, stream_name: str, governor: QuotaGovernor | None = None) -> None:
        super().__init__(usage.limiter)
        self.usage = usage
        self.stream_name = stream_name
        self.governor = governor

    @override
    def send(self, request: requests.PreparedRequest, **kwargs: t.Any) -> requests.Response:
        if self.governor is not None:
            self.governor.before_call()  # raises QuotaReached instead of spending other integrations' calls
        response = super().send(request, **kwargs)
        self.usage.record(self.stream_name, response)
        if self.governor is not None:  # the rate-limit headers as ApiUsage just parsed them
            self.governor.after_call(self.usage.remaining, self.usage.limit)
        return response


class CoperniqPaginator(PageNumberPaginator):
    """`page`/`page_size` paging for both list shapes.

    Bare arrays have no has-more flag, so a short page ends the list. `{items, has_more}` (invoices) is
    trusted as is. If a page starts with the same id as the previous one, the endpoint ignores `page`
    (the spec lists no paging params for /workflows and /catalog-items), so stop instead of looping.
    """

    def __init__(self, start_value: int, page_size: int, records_jsonpath: str) -> None:
        super().__init__(start_value)
        self.page_size = page_size
        self.records_jsonpath = records_jsonpath
        self._previous_first_id: t.Any = None

    @override
    def has_more(self, response: requests.Response) -> bool:
        body = response_body(response)
        if isinstance(body, dict) and "has_more" in body:
            return bool(body["has_more"])
        rows = body if isinstance(body, list) else list(extract_jsonpath(self.records_jsonpath, body))
        if len(rows) < self.page_size:
            return False
        first_id = rows[0].get("id") if isinstance(rows[0], dict) else None
        if first_id is not None and first_id == self._previous_first_id:
            return False
        self._previous_first_id = first_id
        return True


class CoperniqStream(RESTStream[int]):
    """Base stream: one request per page, deduplicated by id within a run."""

    primary_keys: t.ClassVar[tuple[str, ...]] = ("id",)
    records_jsonpath = "$[*]"
    schema: t.ClassVar[StreamSchema] = StreamSchema(SCHEMAS)
    #: Coperniq query params understood by this endpoint besides paging (e.g. include_archived).
    extra_params: t.ClassVar[dict[str, t.Any]] = {}
    paginated: t.ClassVar[bool] = True
    #: First and largest single wait on a 429 without Retry-After, seconds (tests shrink them).
    rate_limit_waits: t.ClassVar[tuple[float, float]] = (1.0, 60.0)

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

    @cached_property
    def api_usage(self) -> ApiUsage:
        """The tap-wide usage tracker (shared limiter); a stream built outside a tap gets its own."""
        usage = getattr(self._tap, "api_usage", None)
        return usage if isinstance(usage, ApiUsage) else ApiUsage(self.config.get("max_requests_per_second"))

    @property
    def governor(self) -> QuotaGovernor | None:
        """The tap-wide daily-quota governor (None for a stream built outside a tap)."""
        governor = getattr(self._tap, "quota_governor", None)
        return governor if isinstance(governor, QuotaGovernor) else None

    @property
    @override
    def requests_session(self) -> requests.Session:
        if not isinstance(self._requests_session, MeteredSession):  # the SDK pre-sets a plain Session
            self._requests_session = MeteredSession(self.api_usage, self.name, self.governor)
        return self._requests_session

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
    def validate_response(self, response: requests.Response) -> None:
        status = response.status_code
        if status in {HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN}:
            msg = (
                f"Coperniq answered {status} {response.reason} for {self.name} at {self.url_base}: the API key was "
                "rejected. Check the `api_key` setting (env TAP_COPERNIQ_API_KEY) and that `api_url` points at "
                "the Coperniq environment that key belongs to."
            )
            raise CoperniqStopError(msg)
        if status == HTTPStatus.TOO_MANY_REQUESTS:
            wait = self._retry_after(response)
            if wait is not None and wait > MAX_RETRY_AFTER:
                # The daily cap is spent (by us or another integration): the same clean stop as the reserve.
                if (governor := self.governor) is not None:
                    governor.exhausted(
                        f"429 with Retry-After {wait:.0f} s, X-RateLimit-Limit "
                        f"{response.headers.get('X-RateLimit-Limit', '?')}"
                    )
                    raise QuotaReached
                msg = (
                    f"Coperniq rate limit exhausted (429, Retry-After {wait:.0f}s): the daily request cap "
                    f"(X-RateLimit-Limit={response.headers.get('X-RateLimit-Limit', '?')}) is used up. "
                    "Run again later; the bookmark of completed streams is kept."
                )
                raise CoperniqStopError(msg)
        super().validate_response(response)

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

    # --- retries ----------------------------------------------------------------------------
    @staticmethod
    def _retry_after(response: requests.Response) -> float | None:
        """Seconds to wait from Retry-After (seconds or HTTP date) or X-RateLimit-Reset (epoch or seconds)."""
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is not None:
            return retry_after
        reset = response.headers.get("X-RateLimit-Reset")
        if reset:
            try:
                value = float(reset)
            except ValueError:
                return None
            now = datetime.now(UTC).timestamp()
            return max(0.0, value - now) if value > 1e9 else value
        return None

    @property
    def max_rate_limit_wait(self) -> float:
        """Total seconds one request rides out 429s (setting `max_rate_limit_wait`)."""
        value = self.config.get("max_rate_limit_wait")
        return DEFAULT_MAX_RATE_LIMIT_WAIT if value is None else max(0.0, float(value))

    def retry_schedule(self) -> RetrySchedule:
        """A fresh schedule per request (a burst on one call must not eat another call's budget)."""
        first, largest = self.rate_limit_waits
        return RetrySchedule(self.max_rate_limit_wait, rate_limit_first_wait=first, rate_limit_max_wait=largest)

    @override
    def backoff_wait_generator(self) -> t.Generator[float, t.Any, None]:
        """Waits from RetrySchedule; a spent 429 budget stops the run with one clear line."""
        schedule = self.retry_schedule()
        exception = yield  # type: ignore[misc]
        while True:
            response = exception.response if isinstance(exception, RetriableAPIError) else None
            status = response.status_code if response is not None else None
            retry_after = self._retry_after(response) if response is not None else None
            wait = schedule.next_wait(status, retry_after)
            if wait is None:
                if schedule.rate_limit_exhausted:
                    raise CoperniqStopError(self._rate_limit_exhausted_message(schedule))
                return  # backoff re-raises the last error
            exception = yield wait

    def _rate_limit_exhausted_message(self, schedule: RetrySchedule) -> str:
        how = (
            "with no Retry-After"
            if schedule.last_retry_after is None
            else "(each time waiting the Retry-After it sent)"
        )
        return (
            f"Coperniq kept answering 429 Too Many Requests {how} for {schedule.rate_limited_for:.1f} s "
            f"({schedule.answers_429} times in a row) on stream '{self.name}' ({self.path}): the daily cap of "
            f"{DOCUMENTED_DAILY_CAP:,} calls per API key is probably spent ({self.api_usage.total} calls made this "
            "run). Run again later, or raise `max_rate_limit_wait`; the bookmarks of completed streams are kept."
        )

    @override
    def backoff_handler(self, details: Details) -> None:
        """A WARNING, not the SDK's ERROR: a retry that is expected to succeed is not an error yet."""
        exc = details.get("exception")
        response = getattr(exc, "response", None)
        why = f"{response.status_code} {response.reason}" if response is not None else type(exc).__name__
        self.logger.warning(
            "Coperniq answered %s for %s; retry %d in %.2f s",
            why,
            self.path,
            details.get("tries", 0),
            details.get("wait") or 0.0,
        )

    @override
    def backoff_max_tries(self) -> int:
        return _UNBOUNDED_TRIES

    @override
    def backoff_jitter(self, value: float) -> float:
        """No jitter here: RetrySchedule adds it, so the 429 budget holds exactly."""
        return value

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
