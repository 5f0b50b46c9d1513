"""Test controls shared by both sandboxes: fault injection, sliding-window rate limits, request stats.

Why one place: both emulators must fail, throttle and count the same way, so a client's retry and budget code is
exercised identically against Coperniq and Merge.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field, fields
from typing import Any

from sandbox._routing import Request


@dataclass
class Faults:
    """Fault injection, settable per test (in-process or via POST /__admin/faults).

    error_rate: fraction of API requests answered with `error_status` (after auth, before the handler).
    burst_429: the next N API requests get 429 with Retry-After `retry_after` seconds.
    latency_ms: added to every API request.
    write_latency_ms: added to every API write (POST, PATCH, PUT, DELETE) on top of latency_ms: a real Merge write
        takes 0.3-1 s (it waits for QuickBooks), which decides how much of a rate limit a client can use.
    drop_after: after this many API requests, close connections without answering (None = never).
    only_paths: if set, faults apply only to request paths containing one of these substrings.
    lost_response_rate: fraction of successful POSTs answered with `error_status` AFTER the handler ran (the
        write happened, the client sees a 5xx): what a timeout or proxy error looks like to a client without an
        idempotency key.
    max_concurrent: at most this many API requests per client key (Merge: per linked account) are served at once,
        latency included; one more is answered at once with the app's concurrency 429 (`too_many_concurrent`)
        and never reaches the rate limit or the handler. 0 or None = unlimited.

    `reset()` returns every setting to the value it was constructed with (an app's profile may start with a
    `max_concurrent`), not to the class default.
    """

    error_rate: float = 0.0
    error_status: int = 500
    burst_429: int = 0
    retry_after: float = 1
    latency_ms: int = 0
    write_latency_ms: int = 0
    drop_after: int | None = None
    only_paths: list[str] = field(default_factory=list)
    lost_response_rate: float = 0.0
    max_concurrent: int | None = None
    seed: int = 1234

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._initial = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != "seed"}

    def update(self, **values: Any) -> None:
        for key, value in values.items():
            if not hasattr(self, key) or key.startswith("_"):
                raise ValueError(f"unknown fault setting: {key}")
            setattr(self, key, value)
        if "seed" in values:
            self._rng = random.Random(self.seed)

    def reset(self) -> None:
        self.update(**copy.deepcopy(self._initial))

    def applies(self, path: str) -> bool:
        return not self.only_paths or any(p in path for p in self.only_paths)

    def roll_error(self) -> bool:
        with self._lock:
            return self.error_rate > 0 and self._rng.random() < self.error_rate

    def roll_lost_response(self) -> bool:
        with self._lock:
            return self.lost_response_rate > 0 and self._rng.random() < self.lost_response_rate

    def take_429(self) -> bool:
        """Consume one request of a 429 burst (thread-safe: concurrent clients must not over-consume)."""
        with self._lock:
            if self.burst_429 > 0:
                self.burst_429 -= 1
                return True
            return False


class RateLimiter:
    """Sliding-window limits per key, e.g. [(100, 1.0), (5000, 86400.0)].

    One deque of timestamps per (key, window), so a hit is amortised O(1) even with a large daily
    limit (the bench makes tens of thousands of calls). A limit <= 0 or None means unlimited.
    Rejected requests do not count against any window.
    """

    def __init__(self, windows: list[tuple[int, float]]) -> None:
        self.windows = list(windows)
        self._hits: dict[str, list[deque[float]]] = {}
        self._lock = threading.Lock()

    def set_windows(self, windows: list[tuple[int, float]]) -> None:
        with self._lock:
            self.windows = list(windows)
            self._hits.clear()

    def _headline(self, hits: list[deque[float]]) -> tuple[int, int]:
        """(limit, remaining) of the longest limited window: what the real APIs put in headers."""
        best: tuple[int, int] | None = None
        longest = -1.0
        for (limit, window), dq in zip(self.windows, hits, strict=True):
            if limit and limit > 0 and window > longest:
                longest = window
                best = (limit, max(0, limit - len(dq)))
        return best or (0, 0)

    def hit(self, key: str) -> tuple[bool, int, int, float]:
        """Count one request. Returns (allowed, limit, remaining, retry_after_seconds).

        `limit`/`remaining` describe the longest window; `remaining` is after this request.
        """
        now = time.monotonic()
        with self._lock:
            hits = self._hits.get(key)
            if hits is None or len(hits) != len(self.windows):
                hits = self._hits[key] = [deque() for _ in self.windows]
            retry_after = 0.0
            for (limit, window), dq in zip(self.windows, hits, strict=True):
                while dq and now - dq[0] >= window:
                    dq.popleft()
                if limit and limit > 0 and len(dq) >= limit:
                    retry_after = max(retry_after, window - (now - dq[len(dq) - limit]))
            if retry_after > 0:
                limit, remaining = self._headline(hits)
                return False, limit, remaining, retry_after
            for (limit, _), dq in zip(self.windows, hits, strict=True):
                if limit and limit > 0:
                    dq.append(now)
            limit, remaining = self._headline(hits)
            return True, limit, remaining, 0.0

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()


class Stats:
    """Request counters, for tests and bench (API calls per record)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._serving: Counter[str] = Counter()  # admitted requests per key; not reset: they are still in flight
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.by_route: Counter[str] = Counter()
            self.by_status: Counter[int] = Counter()
            self.total = 0
            self.log: deque[dict[str, Any]] = deque(maxlen=5000)
            self.in_flight = 0
            self.max_in_flight = 0  # most API requests being handled at once (shows a client's parallelism)
            self.max_in_flight_per_key = 0  # most admitted at once for one client key (<= Faults.max_concurrent)
            self.concurrency_429 = 0  # requests refused for Faults.max_concurrent

    def note(self, route: str) -> None:
        """Count something a route did inside one request (e.g. "PASSTHROUGH GET": a passthrough read)."""
        with self._lock:
            self.by_route[route] += 1

    def admit(self, key: str, limit: int | None) -> bool:
        """Count one request of `key` in flight, unless `limit` (0/None = none) are already: then count a refusal.

        One lock for the check and the increment, so concurrent requests can never over-admit."""
        with self._lock:
            if limit and self._serving[key] >= limit:
                self.concurrency_429 += 1
                return False
            self._serving[key] += 1
            self.max_in_flight_per_key = max(self.max_in_flight_per_key, self._serving[key])
            return True

    def release(self, key: str) -> None:
        with self._lock:
            self._serving[key] -= 1
            if self._serving[key] <= 0:
                del self._serving[key]

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def add(self, req: Request, status: int) -> None:
        with self._lock:
            self.total += 1
            self.by_route[req.route or f"{req.method} {req.path}"] += 1
            self.by_status[status] += 1
            self.log.append(
                {
                    "method": req.method,
                    "path": req.path,
                    "status": status,
                    "idempotency_key": req.headers.get("idempotency-key"),
                }
            )

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self.total,
                "by_route": dict(self.by_route),
                "by_status": {str(k): v for k, v in self.by_status.items()},
                "max_in_flight": self.max_in_flight,
                "max_in_flight_per_key": self.max_in_flight_per_key,
                "concurrency_429": self.concurrency_429,
            }

    def count(self, method: str | None = None, contains: str = "") -> int:
        """Requests whose method matches and whose path contains `contains`."""
        with self._lock:
            return sum(1 for e in self.log if (method is None or e["method"] == method) and contains in e["path"])
