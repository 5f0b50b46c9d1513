"""Tiny HTTP framework shared by both sandboxes: routing, fault injection, rate limits, stats.

Standard library only, so the sandboxes start in milliseconds inside tests and `make demo`.
"""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
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
    """

    error_rate: float = 0.0
    error_status: int = 500
    burst_429: int = 0
    retry_after: float = 1
    latency_ms: int = 0
    drop_after: int | None = None
    only_paths: list[str] = field(default_factory=list)
    seed: int = 1234

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def update(self, **values: Any) -> None:
        for key, value in values.items():
            if not hasattr(self, key) or key.startswith("_"):
                raise ValueError(f"unknown fault setting: {key}")
            setattr(self, key, value)
        if "seed" in values:
            self._rng = random.Random(self.seed)

    def reset(self) -> None:
        self.update(error_rate=0.0, error_status=500, burst_429=0, retry_after=1, latency_ms=0,
                    drop_after=None, only_paths=[])

    def applies(self, path: str) -> bool:
        return not self.only_paths or any(p in path for p in self.only_paths)

    def roll_error(self) -> bool:
        return self.error_rate > 0 and self._rng.random() < self.error_rate


class RateLimiter:
    """Sliding-window limits per key, e.g. [(100, 1.0), (5000, 86400.0)]."""

    def __init__(self, windows: list[tuple[int, float]]) -> None:
        self.windows = windows
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def set_windows(self, windows: list[tuple[int, float]]) -> None:
        with self._lock:
            self.windows = windows

    def hit(self, key: str) -> tuple[bool, int, int, float]:
        """Count one request. Returns (allowed, limit, remaining, retry_after_seconds).

        `limit`/`remaining` describe the longest window (what the real APIs put in headers).
        """
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            longest = max((w for _, w in self.windows), default=0.0)
            while hits and now - hits[0] > longest:
                hits.popleft()
            retry_after = 0.0
            for limit, window in self.windows:
                in_window = [t for t in hits if now - t < window] if window < longest else list(hits)
                if len(in_window) >= limit:
                    retry_after = max(retry_after, window - (now - in_window[-limit]))
            if retry_after > 0:
                lim = self.windows[-1][0] if self.windows else 0
                return False, lim, max(0, lim - len(hits)), retry_after
            hits.append(now)
            if not self.windows:
                return True, 0, 0, 0.0
            lim = max(self.windows, key=lambda w: w[1])[0]
            return True, lim, max(0, lim - len(hits)), 0.0

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
                    "by_status": {str(k): v for k, v in self.by_status.items()}}

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
        if faults.applies(req.path) and faults.burst_429 > 0:
            faults.burst_429 -= 1
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
            except ValueError as exc:  # bad JSON / bad parameter parse
                resp = self.error(400, str(exc), "BAD_REQUEST")
        resp.headers.update(rl_headers)
        return resp

    def too_many(self, retry_after: float) -> Response:
        resp = self.error(429, "Rate limit exceeded", "RATE_LIMIT_EXCEEDED")
        resp.headers["Retry-After"] = str(max(1, round(retry_after))) if retry_after >= 1 else f"{retry_after:.2f}"
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
        with self.lock:
            resp = self.admin(req)
        return resp or Response(404, {"message": "unknown admin endpoint"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    app: SandboxApp  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence default stderr log
        return

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
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


class SandboxServer:
    """Runs a SandboxApp on 127.0.0.1 in a background thread (tests) or in the foreground (CLI)."""

    def __init__(self, app: SandboxApp, host: str = "127.0.0.1", port: int = 0) -> None:
        handler = type("Handler", (_Handler,), {"app": app})
        self.app = app
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name=f"{self.app.name}-sandbox",
                                        daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
