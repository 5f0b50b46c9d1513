"""The request budget of one run: one rate limiter, one call counter and one quota governor for all streams.

All streams share one API key, one daily cap and one rate limiter: every request goes through a `MeteredSession`
that waits for the limiter, asks the `QuotaGovernor` first and counts what it sent in the tap-wide `ApiUsage`.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import typing as t
from collections import Counter
from functools import cached_property

from singer_sdk import RESTStream

from sync_ledger import RateLimiter
from sync_ledger.http import RateLimitedSession
from tap_coperniq.budget import QuotaGovernor

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    import requests


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


class MeteredStream(RESTStream[int]):
    """A REST stream whose requests go through the tap-wide `ApiUsage` and `QuotaGovernor`."""

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
