"""Request, response and routing types shared by both sandboxes (standard library only).

Why apart from the server: handlers, validation code and the route table need only these types, not sockets,
fault injection or rate limits, so the emulators' lower modules import just this layer.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


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


#: A route handler: one parsed request in, one response out.
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
