"""How a Coperniq stream answers errors: stop at once (bad key, spent daily cap) or retry (RetrySchedule)."""

from __future__ import annotations

import sys
import typing as t
from datetime import UTC, datetime
from http import HTTPStatus

from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

from sync_ledger.http import parse_retry_after
from tap_coperniq.budget import QuotaReached
from tap_coperniq.retries import DEFAULT_MAX_RATE_LIMIT_WAIT, DOCUMENTED_DAILY_CAP, RetrySchedule
from tap_coperniq.usage import MeteredStream

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    import requests
    from backoff.types import Details

#: A Retry-After longer than this means the daily cap (5,000/day) is spent: waiting inside the run is pointless.
MAX_RETRY_AFTER = 600.0
#: The wait generator ends retries (RetrySchedule); this only keeps the SDK's own counter out of the way.
_UNBOUNDED_TRIES = 1_000_000


class CoperniqStopError(FatalAPIError):
    """A failure the operator has to act on: the CLI prints its message as one line, without a traceback."""


class RetryingStream(MeteredStream):
    """Coperniq's error answers: 401/403 and a day-long 429 stop the run; 429s, 5xx and timeouts are retried."""

    #: First and largest single wait on a 429 without Retry-After, seconds (tests shrink them).
    rate_limit_waits: t.ClassVar[tuple[float, float]] = (1.0, 60.0)

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
