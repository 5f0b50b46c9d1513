"""Who may use `coperniq-qbo ui`: the Host check, the optional password, the one-time URL token and the session.

The console can link customers and disconnect the company, so a page another site opens in the operator's browser
must get nothing: every request needs the session cookie (HttpOnly, SameSite=Strict) that only the printed URL's
token hands out, the Host header must name this machine (no DNS rebinding), every form carries a per-session CSRF
token, and off loopback an HTTP Basic password is asked for as well.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

COOKIE = "coperniq_qbo_ui"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
#: Sent with every answer: no framing, no referrer (the URL once held the token), nothing cached, no outside scripts.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class Session:
    """One browser's session: its CSRF token, who it is, and the messages to show on the next page."""

    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    user: str = ""
    flash: list[tuple[str, str]] = field(default_factory=list)  # (level, text)


@dataclass
class Gate:
    """The console's access rules; `token` is the one in the printed URL."""

    token: str
    allowed_hosts: frozenset[str]
    password: str | None = None
    default_user: str = "operator"
    sessions: dict[str, Session] = field(default_factory=dict)

    def host_ok(self, host_header: str) -> bool:
        """The Host header without its port is one we serve (loopback, or a name given with --allow-host)."""
        host = host_header.strip().lower()
        if host.startswith("["):
            name = host.split("]", 1)[0] + "]"
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return name in self.allowed_hosts

    def basic_user(self, header: str | None) -> str | None:
        """The Basic-auth user name when the password matches (constant time), else None."""
        if self.password is None:
            return self.default_user
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, given = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not hmac.compare_digest(given.encode("utf-8"), self.password.encode("utf-8")):
            return None
        return user or self.default_user

    def token_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8"))

    def session_of(self, request: Request) -> Session | None:
        key = request.cookies.get(COOKIE)
        return self.sessions.get(key) if key else None


def csrf_ok(session: Session, form: dict[str, list[str]]) -> bool:
    """The form's csrf field is this session's token (constant time)."""
    given = (form.get("csrf") or [""])[0]
    return bool(given) and hmac.compare_digest(given.encode("utf-8"), session.csrf.encode("utf-8"))


def _refuse(status: int, text: str, **headers: str) -> Response:
    return PlainTextResponse(text, status_code=status, headers={**SECURITY_HEADERS, **headers})


class GateMiddleware:
    """ASGI middleware in front of every route: Host, password, token -> cookie, cookie; the session goes to
    `request.state.session`. Anything not allowed is answered here and never reaches a route."""

    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        response = self.check(request)
        if response is not None:
            await response(scope, receive, send)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {k.lower() for k, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.lower().encode("latin-1") not in present:
                        headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def check(self, request: Request) -> Response | None:
        """None when the request may go on (its session set), else the refusal."""
        gate = self.gate
        if not gate.host_ok(request.headers.get("host", "")):
            return _refuse(403, "Forbidden: this Host is not served (start the console with --allow-host NAME).\n")
        user = gate.basic_user(request.headers.get("authorization"))
        if user is None:
            return _refuse(401, "Password required.\n", **{"WWW-Authenticate": 'Basic realm="coperniq-qbo ui"'})
        query = parse_qs(request.url.query, keep_blank_values=True)
        given = (query.pop("token", None) or [""])[0]
        if given:
            if not gate.token_ok(given):
                return _refuse(403, "Forbidden: wrong token. Open the URL `coperniq-qbo ui` printed.\n")
            key = secrets.token_urlsafe(32)
            gate.sessions[key] = Session(user=user)
            rest = urlencode({k: v[0] for k, v in query.items()})
            response = RedirectResponse(request.url.path + (f"?{rest}" if rest else ""), status_code=303)
            response.set_cookie(COOKIE, key, httponly=True, samesite="strict", path="/")
            return response
        session = gate.session_of(request)
        if session is None:
            return _refuse(403, "Forbidden: no session. Open the URL `coperniq-qbo ui` printed (it holds a token).\n")
        request.scope.setdefault("state", {})["session"] = session
        return None
