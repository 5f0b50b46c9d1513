"""Tiny HTTP framework shared by both sandboxes: routing, fault injection, rate limits, stats.

Standard library only, so the sandboxes start in milliseconds inside tests and `make demo`.

The request/response types and the route table are in `sandbox._routing`, the fault injection, rate limits and
stats in `sandbox._controls`; every name of them is still importable from here.
"""

from __future__ import annotations

import contextlib
import math
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sandbox._controls import Faults, RateLimiter, Stats
from sandbox._routing import App, Handler, HttpError, Request, Response, is_loopback

#: Names this module had before the split and still serves.
__all__ = [
    "App",
    "Faults",
    "Handler",
    "HttpError",
    "RateLimiter",
    "Request",
    "Response",
    "SandboxApp",
    "SandboxServer",
    "Stats",
    "is_loopback",
]


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

    def concurrency_key(self, key: str) -> str | None:
        """What `Faults.max_concurrent` counts a request of rate-limit `key` against (None: not limited)."""
        return key

    def too_many_concurrent(self, limit: int) -> Response:
        """The answer to a request over `Faults.max_concurrent`: a 429 like the rate limit's, saying why."""
        resp = self.too_many(self.faults.retry_after)
        resp.body = {"message": f"Too many concurrent requests (limit {limit})", "code": "RATE_LIMIT_EXCEEDED"}
        return resp

    def fault_target(self, req: Request) -> str:
        """What `Faults.only_paths` is matched against (the request path; an app may add what the request names)."""
        return req.path

    def http_date(self) -> str | None:
        """The `Date` header of every response; None: this machine's clock (what `http.server` sends)."""
        return None

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
        """Auth comes first only to learn whose request it is: a request over `max_concurrent` is refused before
        its latency; every other one is served (or refused) as before, latency included in its time in flight."""
        faults = self.faults
        key, auth_error = self.authenticate(req)
        slot = self.concurrency_key(key) if key is not None else None
        if slot is None:
            return self._serve_api(req, key, auth_error)
        target = self.fault_target(req) if faults.only_paths else req.path
        limit = faults.max_concurrent if faults.applies(target) else None
        if not self.stats.admit(slot, limit):
            return self.too_many_concurrent(limit or 0)
        try:
            return self._serve_api(req, key, auth_error)
        finally:
            self.stats.release(slot)

    def _serve_api(self, req: Request, key: str | None, auth_error: Response | None) -> Response | None:
        faults = self.faults
        target = self.fault_target(req) if faults.only_paths else req.path
        if (faults.latency_ms or faults.write_latency_ms) and faults.applies(target):
            write = req.method in ("POST", "PATCH", "PUT", "DELETE")
            time.sleep((faults.latency_ms + (faults.write_latency_ms if write else 0)) / 1000)
        if faults.drop_after is not None and faults.applies(target) and self.stats.total >= faults.drop_after:
            return None
        handler, path_seen = self.match(req)
        if auth_error is not None:
            return auth_error
        assert key is not None
        limited, rl_headers = self.rate_limit(key, req)
        if limited is not None:
            limited.headers.update(rl_headers)
            return limited
        resp: Response
        if faults.applies(target) and faults.take_429():
            resp = self.too_many(faults.retry_after)
        elif faults.applies(target) and faults.roll_error():
            resp = self.error(faults.error_status, "Injected fault", "INTERNAL_SERVER_ERROR")
        elif handler is None:
            resp = self.error(
                405 if path_seen else 404,
                "Not found" if not path_seen else "Method not allowed",
                "NOT_FOUND" if not path_seen else "METHOD_NOT_ALLOWED",
            )
        else:
            try:
                with self.lock:
                    resp = handler(req)
            except HttpError as exc:
                resp = self.error(exc.status, exc.message, exc.code, **exc.extra)
            except ValueError as exc:  # bad JSON / bad parameter parse
                resp = self.error(400, str(exc), "BAD_REQUEST")
            except Exception:  # noqa: BLE001 - a sandbox bug must look like a server error, not a dropped connection
                traceback.print_exc(file=sys.stderr)
                resp = self.error(500, "Internal server error", "INTERNAL_SERVER_ERROR")
            if req.method == "POST" and resp.status < 300 and faults.applies(target) and faults.roll_lost_response():
                resp = self.error(faults.error_status, "Injected fault after the write", "INTERNAL_SERVER_ERROR")
        resp.headers.update(rl_headers)
        return resp

    def too_many(self, retry_after: float) -> Response:
        resp = self.error(429, "Rate limit exceeded", "RATE_LIMIT_EXCEEDED")
        # Whole seconds, rounded up (so clients never retry early); sub-second values stay
        # fractional so fault-injection tests can keep their back-off short.
        resp.headers["Retry-After"] = str(math.ceil(retry_after - 1e-9)) if retry_after >= 1 else f"{retry_after:.2f}"
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

    def date_time_string(self, timestamp: float | None = None) -> str:
        """`Date` (send_response asks for it without a timestamp): the app's clock when it keeps its own."""
        if timestamp is None and (date := self.app.http_date()) is not None:
            return date
        return super().date_time_string(timestamp)

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
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
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
        bound_host, self.port = self.httpd.server_address[:2]
        self.host = bound_host if isinstance(bound_host, str) else bytes(bound_host).decode()
        self._thread: threading.Thread | None = None

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        # short poll interval: stop() (every test teardown) returns in ~50 ms instead of 500 ms
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.app.name}-sandbox",
            daemon=True,
        )
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
