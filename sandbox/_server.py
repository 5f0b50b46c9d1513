"""Tiny HTTP framework shared by both sandboxes: routing, fault injection, rate limits, stats.

Standard library only, so the sandboxes start in milliseconds inside tests and `make demo`.
"""

from __future__ import annotations

import ipaddress
import json
import math
import random
import re
import socket
import sys
import threading
import time
import traceback
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    """An incoming request, already parsed."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    path_params: dict[str, str] = field(default_factory=dict)
    route: str = ""

    def arg(self, name: str, default: str | None = None) -> str | None:
        """First value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        """Body parsed as JSON; raises ValueError on bad JSON."""
        if not self.body:
            return None
        return json.loads(self.body)


@dataclass
class Response:
    """What a handler returns. `body` is JSON-encoded unless it is bytes/str."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body, default=str).encode()


Handler = Callable[[Request], Response]


class HttpError(Exception):
    """Raise from a handler to answer with `app.error(status, message, code, **extra)`.

    Lets deep validation code bail out without threading Response objects back up.
    """

    def __init__(self, status: int, message: str, code: str = "ERROR", **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.extra = extra


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost': the sandboxes never listen anywhere else."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class App:
    """Route table: `@app.route("GET", "/v1/projects/{projectId}")`."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], str, Handler]] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern.rstrip("/")) + "/?$")

        def deco(fn: Handler) -> Handler:
            self._routes.append((method.upper(), regex, pattern, fn))
            return fn

        return deco

    def match(self, req: Request) -> tuple[Handler | None, bool]:
        """Return (handler, path_matched_any_method)."""
        path_seen = False
        for method, regex, pattern, fn in self._routes:
            m = regex.match(req.path)
            if not m:
                continue
            path_seen = True
            if method == req.method:
                req.path_params = m.groupdict()
                req.route = f"{method} {pattern}"
                return fn, True
        return None, path_seen


@dataclass
class Faults:
    """Fault injection, settable per test (in-process or via POST /__admin/faults).

    error_rate: fraction of API requests answered with `error_status` (after auth, before the handler).
    burst_429: the next N API requests get 429 with Retry-After `retry_after` seconds.
    latency_ms: added to every API request.
    drop_after: after this many API requests, close connections without answering (None = never).
    only_paths: if set, faults apply only to request paths containing one of these substrings.
    lost_response_rate: fraction of successful POSTs answered with `error_status` AFTER the handler ran (the
        write happened, the client sees a 5xx): what a timeout or proxy error looks like to a client without an
        idempotency key.
    """

    error_rate: float = 0.0
    error_status: int = 500
    burst_429: int = 0
    retry_after: float = 1
    latency_ms: int = 0
    drop_after: int | None = None
    only_paths: list[str] = field(default_factory=list)
    lost_response_rate: float = 0.0
    seed: int = 1234

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def update(self, **values: Any) -> None:
        for key, value in values.items():
            if not hasattr(self, key) or key.startswith("_"):
                raise ValueError(f"unknown fault setting: {key}")
            setattr(self, key, value)
        if "seed" in values:
            self._rng = random.Random(self.seed)

    def reset(self) -> None:
        self.update(error_rate=0.0, error_status=500, burst_429=0, retry_after=1, latency_ms=0,
                    drop_after=None, only_paths=[], lost_response_rate=0.0)

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
        for (limit, window), dq in zip(self.windows, hits):
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
            for (limit, window), dq in zip(self.windows, hits):
                while dq and now - dq[0] >= window:
                    dq.popleft()
                if limit and limit > 0 and len(dq) >= limit:
                    retry_after = max(retry_after, window - (now - dq[len(dq) - limit]))
            if retry_after > 0:
                limit, remaining = self._headline(hits)
                return False, limit, remaining, retry_after
            for (limit, _), dq in zip(self.windows, hits):
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
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.by_route: Counter[str] = Counter()
            self.by_status: Counter[int] = Counter()
            self.total = 0
            self.log: deque[dict[str, Any]] = deque(maxlen=5000)
            self.in_flight = 0
            self.max_in_flight = 0  # most API requests being handled at once (shows a client's parallelism)

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
            self.log.append({"method": req.method, "path": req.path, "status": status,
                             "idempotency_key": req.headers.get("idempotency-key")})

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"total": self.total, "by_route": dict(self.by_route),
                    "by_status": {str(k): v for k, v in self.by_status.items()},
                    "max_in_flight": self.max_in_flight}

    def count(self, method: str | None = None, contains: str = "") -> int:
        """Requests whose method matches and whose path contains `contains`."""
        with self._lock:
            return sum(1 for e in self.log if (method is None or e["method"] == method) and contains in e["path"])


class SandboxApp(App):
    """Base for an emulated API: subclasses implement auth, error bodies, rate-limit headers."""

    name = "sandbox"

    def __init__(self) -> None:
        super().__init__()
        self.faults = Faults()
        self.stats = Stats()
        self.lock = threading.RLock()  # handlers mutate state under this lock

    # --- hooks for subclasses -------------------------------------------------------------
    def authenticate(self, req: Request) -> tuple[str | None, Response | None]:
        """Return (rate-limit key, None) or (None, error response)."""
        return "anonymous", None

    def rate_limit(self, key: str, req: Request) -> tuple[Response | None, dict[str, str]]:
        """Return (429 response or None, headers to add to every authenticated response)."""
        return None, {}

    def error(self, status: int, message: str, code: str = "ERROR", **extra: Any) -> Response:
        return Response(status, {"message": message, "code": code, **extra})

    def reset_state(self) -> None:
        """Drop all data (POST /__admin/reset)."""

    def admin(self, req: Request) -> Response | None:
        """Extra admin endpoints under /__admin/ (return None if not handled)."""
        return None

    # --- dispatch -------------------------------------------------------------------------
    def dispatch(self, req: Request) -> Response | None:
        """Handle one request. Returns None to drop the connection (fault injection)."""
        if req.path.startswith("/__admin/"):
            return self._admin(req)
        self.stats.enter()
        try:
            return self._dispatch_api(req)
        finally:
            self.stats.leave()

    def _dispatch_api(self, req: Request) -> Response | None:
        faults = self.faults
        if faults.latency_ms and faults.applies(req.path):
            time.sleep(faults.latency_ms / 1000)
        if faults.drop_after is not None and faults.applies(req.path):
            if self.stats.total >= faults.drop_after:
                return None
        handler, path_seen = self.match(req)
        key, auth_error = self.authenticate(req)
        if auth_error is not None:
            return auth_error
        assert key is not None
        limited, rl_headers = self.rate_limit(key, req)
        if limited is not None:
            limited.headers.update(rl_headers)
            return limited
        resp: Response
        if faults.applies(req.path) and faults.take_429():
            resp = self.too_many(faults.retry_after)
        elif faults.applies(req.path) and faults.roll_error():
            resp = self.error(faults.error_status, "Injected fault", "INTERNAL_SERVER_ERROR")
        elif handler is None:
            resp = self.error(405 if path_seen else 404, "Not found" if not path_seen else "Method not allowed",
                              "NOT_FOUND" if not path_seen else "METHOD_NOT_ALLOWED")
        else:
            try:
                with self.lock:
                    resp = handler(req)
            except HttpError as exc:
                resp = self.error(exc.status, exc.message, exc.code, **exc.extra)
            except ValueError as exc:  # bad JSON / bad parameter parse
                resp = self.error(400, str(exc), "BAD_REQUEST")
            except Exception:  # a sandbox bug must look like a server error, not a dropped connection
                traceback.print_exc(file=sys.stderr)
                resp = self.error(500, "Internal server error", "INTERNAL_SERVER_ERROR")
            if (req.method == "POST" and resp.status < 300 and faults.applies(req.path)
                    and faults.roll_lost_response()):
                resp = self.error(faults.error_status, "Injected fault after the write", "INTERNAL_SERVER_ERROR")
        resp.headers.update(rl_headers)
        return resp

    def too_many(self, retry_after: float) -> Response:
        resp = self.error(429, "Rate limit exceeded", "RATE_LIMIT_EXCEEDED")
        # Whole seconds, rounded up (so clients never retry early); sub-second values stay
        # fractional so fault-injection tests can keep their back-off short.
        resp.headers["Retry-After"] = (str(math.ceil(retry_after - 1e-9)) if retry_after >= 1
                                       else f"{retry_after:.2f}")
        return resp

    def _admin(self, req: Request) -> Response:
        if req.path == "/__admin/faults" and req.method == "POST":
            try:
                self.faults.update(**(req.json() or {}))
            except (ValueError, TypeError) as exc:
                return Response(400, {"message": str(exc)})
            return Response(200, {"ok": True})
        if req.path == "/__admin/reset" and req.method == "POST":
            with self.lock:
                self.reset_state()
            self.faults.reset()
            self.stats.reset()
            return Response(200, {"ok": True})
        if req.path == "/__admin/stats" and req.method == "GET":
            return Response(200, self.stats.snapshot())
        if req.path == "/__admin/health":
            return Response(200, {"ok": True, "name": self.name})
        try:
            with self.lock:
                resp = self.admin(req)
        except HttpError as exc:
            return Response(exc.status, {"message": exc.message, "code": exc.code, **exc.extra})
        except (ValueError, TypeError) as exc:
            return Response(400, {"message": str(exc), "code": "BAD_REQUEST"})
        return resp or Response(404, {"message": "unknown admin endpoint"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: avoid 40 ms delayed-ACK stalls
    app: SandboxApp  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence default stderr log
        return

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length else b""
        req = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        resp = self.app.dispatch(req)
        if resp is None:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if not req.path.startswith("/__admin/"):
            self.app.stats.add(req, resp.status)
        payload = resp.encode()
        self.send_response(resp.status)
        if payload:
            self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in resp.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _handle


class _LoopbackHTTPServer(ThreadingHTTPServer):
    """Bigger accept backlog: parallel test clients must not see connection resets."""

    request_queue_size = 128
    daemon_threads = True


class SandboxServer:
    """Runs a SandboxApp on 127.0.0.1 in a background thread (tests) or in the foreground (CLI)."""

    def __init__(self, app: SandboxApp, host: str = "127.0.0.1", port: int = 0) -> None:
        if not is_loopback(host):
            raise ValueError(f"sandboxes only listen on loopback, refusing host {host!r}")
        handler = type("Handler", (_Handler,), {"app": app})
        self.app = app
        self.httpd = _LoopbackHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        # short poll interval: stop() (every test teardown) returns in ~50 ms instead of 500 ms
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{self.app.name}-sandbox", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Foreground (the CLIs): serve until Ctrl-C, then close the socket."""
        try:
            self.httpd.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.httpd.server_close()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
