"""How long one Coperniq request waits between attempts, and when it gives up.

429s are bounded by total wait, not by a count: a per-second burst clears in seconds, a spent daily cap never
clears within the run, and Coperniq may send no rate-limit headers at all (sandbox `rate_limit_headers=False`),
so a count of short retries cannot tell the two apart.
  429 with Retry-After  wait what the server asks (the stream fails at once when it is over 10 minutes).
  429 without it        exponential from 1 s, capped at 60 s per wait.
  both                  until `max_rate_limit_wait` seconds of 429 waits are spent; then the caller stops the run.
  5xx / connection      exponential 0.5 s -> 60 s, `MAX_TRIES` attempts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from http import HTTPStatus

#: Attempts per request for server errors and connection failures.
MAX_TRIES = 8
#: Default total seconds one request keeps retrying 429s.
DEFAULT_MAX_RATE_LIMIT_WAIT = 300.0
#: Documented Coperniq cap per API key; without X-RateLimit-* headers it is the only figure there is.
DOCUMENTED_DAILY_CAP = 5000


@dataclass
class RetrySchedule:
    """The waits of one request's retries; `next_wait` returns None when it is time to give up."""

    max_rate_limit_wait: float = DEFAULT_MAX_RATE_LIMIT_WAIT
    rate_limit_first_wait: float = 1.0
    rate_limit_max_wait: float = 60.0
    jitter: float = 0.1
    tries: int = 1
    errors: int = 0
    blind_429s: int = 0
    answers_429: int = 0
    rate_limited_for: float = 0.0
    #: Budget used: each 429 costs at least `rate_limit_first_wait`, so `Retry-After: 0` cannot retry forever.
    charged: float = 0.0
    last_retry_after: float | None = None
    #: Set when a 429 finds the wait budget spent (the caller raises a clear error instead of the last one).
    rate_limit_exhausted: bool = False

    def next_wait(self, status: int | None, retry_after: float | None) -> float | None:
        """Seconds before the next attempt after a failure with `status` (None: no response)."""
        if status == HTTPStatus.TOO_MANY_REQUESTS:
            return self._rate_limited(retry_after)
        if self.tries >= MAX_TRIES:
            return None
        self.tries += 1
        if retry_after is not None:
            return self._spread(retry_after)
        wait = min(0.5 * 2**self.errors, 60.0)
        self.errors += 1
        return self._spread(wait)

    def _rate_limited(self, retry_after: float | None) -> float | None:
        self.answers_429 += 1
        self.last_retry_after = retry_after
        left = self.max_rate_limit_wait - self.charged
        if left <= 0:
            self.rate_limit_exhausted = True
            return None
        if retry_after is not None:
            wait = self._spread(retry_after)  # the server said when: honoured even past the budget
        else:
            base = min(self.rate_limit_first_wait * 2**self.blind_429s, self.rate_limit_max_wait)
            wait = min(self._spread(base), left)  # jitter inside the budget: the bound holds exactly
            self.blind_429s += 1
        self.rate_limited_for += wait
        self.charged += max(wait, self.rate_limit_first_wait)
        return wait

    def _spread(self, value: float) -> float:
        """Up to `jitter` extra, so parallel runs spread out without doubling a short Retry-After."""
        return value + random.uniform(0, value * self.jitter)  # jitter, not crypto
