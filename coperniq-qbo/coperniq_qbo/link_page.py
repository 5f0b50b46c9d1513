"""The local page `coperniq-qbo connect` serves: the Merge Link flow from a terminal.

Merge Link is a browser widget, so the CLI serves a one-page app on 127.0.0.1 that embeds it and posts the
public token back; the CLI (which alone holds the API key) exchanges it for the account token. Binding to
loopback and a per-run nonce keep other sites and other local users from injecting a token.
"""

from __future__ import annotations

import html
import json
import secrets as _secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

#: Package data next to this module (pyproject ships it in the wheel).
PAGE_TEMPLATE = "link_page.html"


@dataclass
class LinkResult:
    """What the browser page reported: a public token, or that the user closed Merge Link."""

    public_token: str | None = None
    metadata: Any = None
    exited: bool = False
    error: str | None = None


@dataclass
class _Shared:
    page: bytes
    nonce: str
    result: LinkResult = field(default_factory=LinkResult)
    got_token: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    final: dict[str, Any] = field(default_factory=lambda: {"ok": False, "message": "still working"})
    lock: threading.Lock = field(default_factory=threading.Lock)


def render_page(link_token: str, link_js_url: str, nonce: str, auto_open: bool = True) -> bytes:
    """Fill the page template; JSON is escaped for an inline <script> (no `</` can close the tag)."""
    config = {"linkToken": link_token, "linkJsUrl": link_js_url, "nonce": nonce, "autoOpen": auto_open}
    blob = json.dumps(config).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    template = resources.files("coperniq_qbo").joinpath(PAGE_TEMPLATE).read_text(encoding="utf-8")
    return template.replace("__CONFIG_JSON__", blob).encode("utf-8")


class _Handler(BaseHTTPRequestHandler):
    shared: _Shared  # set on the per-server subclass
    timeout = 15  # socket timeout: an idle local connection must not hold `stop()` up

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep the terminal clean
        return

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(200, self.shared.page, "text/html; charset=utf-8")
        elif path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        else:
            self._send(404, html.escape("not found").encode(), "text/plain")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        try:
            length = min(int(self.headers.get("Content-Length") or 0), 64 * 1024)
            body = json.loads(self.rfile.read(length) or b"{}")
        except (ValueError, TypeError):
            self._json(400, {"ok": False, "message": "bad request"})
            return
        if not isinstance(body, dict) or not _secrets.compare_digest(str(body.get("nonce", "")), self.shared.nonce):
            self._json(403, {"ok": False, "message": "this page belongs to another coperniq-qbo connect run"})
            return
        shared = self.shared
        if path == "/public-token":
            token = body.get("public_token")
            if not isinstance(token, str) or not token:
                self._json(400, {"ok": False, "message": "missing public_token"})
                return
            with shared.lock:
                if not shared.got_token.is_set():
                    shared.result.public_token = token
                    shared.result.metadata = body.get("metadata")
                    shared.got_token.set()
            # Wait for the CLI to exchange the token so the page can show the real outcome.
            shared.finished.wait(timeout=60)
            self._json(200, dict(shared.final))
        elif path == "/exit":
            with shared.lock:
                shared.result.exited = True
            self._json(200, {"ok": True})
        elif path == "/error":
            with shared.lock:
                shared.result.error = str(body.get("message", "error"))[:500]
            self._json(200, {"ok": True})
        else:
            self._json(404, {"ok": False, "message": "not found"})


class _Server(ThreadingHTTPServer):
    # Non-daemon handler threads are joined on close, so the page always gets its final answer
    # before the CLI exits.
    daemon_threads = False
    block_on_close = True


class LinkPageServer:
    """The local page server. `wait_for_token()` blocks until the page posts a public token or times out."""

    def __init__(self, link_token: str, link_js_url: str, *, port: int = 0, auto_open: bool = True) -> None:
        nonce = _secrets.token_urlsafe(24)
        self.shared = _Shared(page=render_page(link_token, link_js_url, nonce, auto_open), nonce=nonce)
        handler = type("LinkHandler", (_Handler,), {"shared": self.shared})
        self.httpd = _Server(("127.0.0.1", port), handler)
        self.port: int = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="coperniq-qbo-connect", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> LinkPageServer:
        self._thread.start()
        return self

    def wait_for_token(self, timeout: float) -> LinkResult | None:
        """The page's result, or None on timeout."""
        if self.shared.got_token.wait(timeout):
            return self.shared.result
        return None

    def finish(self, ok: bool, message: str) -> None:
        """Tell the waiting page how the exchange went (it shows this to the user)."""
        self.shared.final = {"ok": ok, "message": message}
        self.shared.finished.set()

    def stop(self) -> None:
        self.shared.finished.set()
        self.httpd.shutdown()
        self.httpd.server_close()
