"""ApiClient against a tiny scripted HTTP server on 127.0.0.1: retries, Retry-After, errors, redaction."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sync_ledger import ApiClient, ApiError, RateLimiter, fingerprint, redact
from sync_ledger.http import _spread, parse_retry_after

API_KEY = "sk-live-super-secret-123"
TOKEN = "acct-token-987654"


class Script:
    """Responses to serve in order: (status, headers, body) or "drop" to close the connection mid-response."""

    def __init__(self) -> None:
        self.responses: list[Any] = []
        self.seen: list[tuple[str, str, dict[str, str], float]] = []
        self.lock = threading.Lock()

    def next(self) -> Any:
        with self.lock:
            return self.responses.pop(0) if self.responses else (200, {}, {"ok": True})


def _make_handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            script.seen.append((self.command, self.path, dict(self.headers), time.monotonic()))
            item = script.next()
            if item == "drop":
                self.send_response(200)
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.write(b'{"partial"')
                self.wfile.flush()
                self.close_connection = True
                return
            status, headers, body = item
            raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(script))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/api/accounting/v1", script
    httpd.shutdown()
    httpd.server_close()


def _client(url: str, **kw: Any) -> ApiClient:
    opts: dict[str, Any] = {
        "headers": {"Authorization": f"Bearer {API_KEY}", "X-Account-Token": TOKEN},
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "timeout": 5,
        "secrets": [API_KEY, TOKEN],
    }
    opts.update(kw)
    return ApiClient(url, **opts)


def test_success_sends_headers_and_counts(server: tuple[str, Script]) -> None:
    url, script = server
    script.responses = [(200, {}, {"results": [1]}), (201, {}, {"model": {"id": "u1"}}), (204, {}, "")]
    client = _client(url)
    assert client.get("/contacts", params={"page_size": 1}) == {"results": [1]}
    assert client.post("contacts", json={"model": {}}) == {"model": {"id": "u1"}}
    assert client.delete("/contacts/u1") is None
    method, path, headers, _ = script.seen[0]
    assert (method, path) == ("GET", "/api/accounting/v1/contacts?page_size=1")
    assert headers["Authorization"] == f"Bearer {API_KEY}" and headers["X-Account-Token"] == TOKEN
    assert script.seen[1][1] == "/api/accounting/v1/contacts"
    assert client.calls == {"GET": 1, "POST": 1, "DELETE": 1}
    assert client.retries == 0


def test_429_honours_retry_after_seconds(server: tuple[str, Script], caplog: pytest.LogCaptureFixture) -> None:
    url, script = server
    script.responses = [(429, {"Retry-After": "1"}, {"detail": "Request was throttled."}), (200, {}, {"ok": 1})]
    client = _client(url)
    with caplog.at_level(logging.WARNING, logger="sync_ledger.http"):
        assert client.get("/invoices", params={"cursor": "abc"}) == {"ok": 1}
    gap = script.seen[1][3] - script.seen[0][3]
    assert 0.9 <= gap < 3.0, gap  # backoff alone would be <= 0.05 s
    assert client.retries == 1 and client.calls["GET"] == 2
    # Retry-After plus up to a quarter more, so writers throttled together come back spread out
    assert re.search(r"GET /api/accounting/v1/invoices -> 429; retry 1/6 in 1\.[0-2] s", caplog.text), caplog.text
    assert "cursor" not in caplog.text  # no query string in logs


def test_retry_after_http_date(server: tuple[str, Script]) -> None:
    url, script = server
    script.responses = [(503, {"Retry-After": formatdate(time.time() + 2, usegmt=True)}, "busy"), (200, {}, {})]
    client = _client(url)
    client.get("/x")
    gap = script.seen[1][3] - script.seen[0][3]
    assert 0.5 <= gap < 3.5, gap  # HTTP-date has 1 s resolution


def test_retry_after_is_spread_within_a_quarter_more() -> None:
    waits = [_spread(4.0) for _ in range(200)]
    assert all(4.0 <= w <= 5.0 for w in waits) and len({round(w, 3) for w in waits}) > 50
    assert all(60.0 <= _spread(60.0) <= 62.0 for _ in range(50))  # at most 2 s more


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_5xx_then_success(server: tuple[str, Script], caplog: pytest.LogCaptureFixture) -> None:
    url, script = server
    script.responses = [(500, {}, "oops"), (502, {}, "bad gateway"), (200, {}, {"id": 1})]
    client = _client(url)
    with caplog.at_level(logging.WARNING, logger="sync_ledger.http"):
        assert client.patch("/invoices/1", json={"model": {"status": "PAID"}}) == {"id": 1}
    assert client.retries == 2 and client.calls["PATCH"] == 3
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
    assert "-> 500" in caplog.records[0].getMessage() and "-> 502" in caplog.records[1].getMessage()


def test_connection_drop_is_retried(server: tuple[str, Script]) -> None:
    url, script = server
    script.responses = ["drop", (200, {}, {"ok": True})]
    client = _client(url)
    assert client.get("/contacts") == {"ok": True}
    assert client.retries == 1


def test_connection_refused_exhausts_to_api_error() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = _client(f"http://127.0.0.1:{port}/v1", max_retries=2)
    with pytest.raises(ApiError) as info:
        client.get("/projects")
    assert info.value.status == 0
    assert "no response after 3 attempt(s)" in info.value.message
    assert client.retries == 2 and client.calls["GET"] == 3


def test_exhausted_retries_raise_api_error(server: tuple[str, Script]) -> None:
    url, script = server
    script.responses = [(503, {"X-Request-Id": "req-5"}, {"detail": "down"})] * 4
    client = _client(url, max_retries=3)
    with pytest.raises(ApiError) as info:
        client.get("/contacts")
    err = info.value
    assert err.status == 503 and err.request_id == "req-5" and err.body == {"detail": "down"}
    assert "gave up after 3 retries" in err.message and "down" in err.message and "req-5" in err.message
    assert client.calls["GET"] == 4 and client.retries == 3


def test_per_call_max_retries_override(server: tuple[str, Script]) -> None:
    url, script = server
    script.responses = [(500, {}, "x"), (200, {}, {})]
    client = _client(url)
    with pytest.raises(ApiError):
        client.post("/invoices", json={}, max_retries=0)
    assert client.calls["POST"] == 1


def test_merge_400_becomes_readable_message(server: tuple[str, Script]) -> None:
    url, script = server
    body = {
        "warnings": [],
        "errors": [
            {
                "source": {"pointer": "model/name"},
                "title": "Missing Required Field",
                "detail": "name is a required field on model.",
                "problem_type": "MISSING_REQUIRED_FIELD",
            },
            {"title": "Provider Error", "detail": "Duplicate Name Exists Error", "problem_type": "PROVIDER_ERROR"},
        ],
    }
    script.responses = [(400, {"X-Merge-Request-Id": "m-42"}, body)]
    client = _client(url)
    with pytest.raises(ApiError) as info:
        client.post("/contacts", json={"model": {}})
    err = info.value
    assert err.status == 400 and err.body == body and err.request_id == "m-42"
    assert err.message == (
        "POST /api/accounting/v1/contacts failed with HTTP 400 Bad Request: Missing Required Field: name is a "
        "required field on model. (MISSING_REQUIRED_FIELD, at model/name); Provider Error: Duplicate Name Exists "
        "Error (PROVIDER_ERROR) [request id m-42]"
    )
    assert str(err) == err.message
    assert client.retries == 0 and client.calls["POST"] == 1  # 4xx is not retried


def test_drf_detail_and_coperniq_bodies(server: tuple[str, Script]) -> None:
    url, script = server
    script.responses = [
        (404, {}, {"detail": "Not found."}),
        (422, {"X-Request-Id": "c-1"}, {"message": "Phase not found", "code": "NOT_FOUND", "field": "phaseId"}),
        (400, {}, "<html>plain text failure</html>"),
    ]
    client = _client(url)
    with pytest.raises(ApiError, match=r"HTTP 404 Not Found: Not found\.$"):
        client.get("/contacts/nope")
    with pytest.raises(ApiError) as info:
        client.patch("/projects/1", json={})
    assert info.value.message.endswith(
        "HTTP 422 Unprocessable Entity: Phase not found (code=NOT_FOUND, field=phaseId) [request id c-1]"
    )
    with pytest.raises(ApiError, match="plain text failure"):
        client.get("/x")


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_say_credentials_rejected(server: tuple[str, Script], status: int) -> None:
    url, script = server
    # a misbehaving server that echoes the credentials back must not leak them through the error
    script.responses = [(status, {}, {"detail": f"Invalid token {API_KEY} for account {TOKEN}"})]
    client = _client(url)
    with pytest.raises(ApiError) as info:
        client.get("/account-details")
    assert info.value.status == status
    assert "credentials were rejected" in info.value.message
    assert API_KEY not in info.value.message and TOKEN not in info.value.message
    assert "Invalid token ****" in info.value.message


def test_secrets_never_logged(server: tuple[str, Script], caplog: pytest.LogCaptureFixture) -> None:
    url, script = server
    script.responses = [(500, {}, f"error for key {API_KEY}")] * 3
    # secrets only in the auth headers (not passed explicitly) are masked too
    client = ApiClient(url, headers={"x-api-key": API_KEY}, max_retries=2, backoff_base=0.01, backoff_max=0.02)
    # (urllib3 logs raw URLs at DEBUG; ours must be clean at every level)
    with (
        caplog.at_level(logging.INFO),
        caplog.at_level(logging.DEBUG, logger="sync_ledger"),
        pytest.raises(ApiError) as info,
    ):
        client.get(f"/projects/{API_KEY}", params={"token": TOKEN})
    assert caplog.records, "expected retry warnings"
    assert API_KEY not in caplog.text and TOKEN not in caplog.text
    assert API_KEY not in info.value.message


def test_redact() -> None:
    text = (
        f"Authorization: Bearer {API_KEY}\nx-api-key: abc123\n{{'X-Account-Token': 'tok-1'}} "
        f'"authorization": "Basic dXNlcjpwYXNz" other={TOKEN}'
    )
    out = redact(text, [TOKEN, ""])
    assert API_KEY not in out and "abc123" not in out and "tok-1" not in out and TOKEN not in out
    assert "dXNlcjpwYXNz" not in out
    assert "Authorization: Bearer ****" in out and "x-api-key: ****" in out
    assert "'X-Account-Token': '****'" in out and "other=****" in out
    assert redact("nothing to hide", ["", "zzz"]) == "nothing to hide"
    assert redact("ab abc", ["ab", "abc"]) == "**** ****"  # longest secret first


def test_fingerprint_is_canonical() -> None:
    from datetime import date

    assert fingerprint({"b": 1, "a": [1, 2]}) == fingerprint({"a": [1, 2], "b": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert fingerprint({"d": date(2025, 1, 2)}) == fingerprint({"d": "2025-01-02"})  # default=str
    assert len(fingerprint({})) == 64


def test_rate_limiter_spaces_calls_across_threads() -> None:
    limiter = RateLimiter(20.0)  # 20/s, burst 1
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(3):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert len(stamps) == 12
    assert 0.5 <= elapsed < 3.0, elapsed  # 12 calls at 20/s: first free, 11 spaced by 50 ms
    RateLimiter(None).acquire()  # unlimited never blocks
    with pytest.raises(ValueError, match="per_second must be positive"):
        RateLimiter(0)


def test_proxy_and_ca_settings_are_read_from_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session does not look the environment up per request, so what it would have found is applied at start."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/corp.pem")
    client = ApiClient("https://api.merge.dev/api/accounting/v1", headers={})
    assert client.session.trust_env is False
    assert client.session.proxies.get("https") == "http://proxy.example:3128"
    assert client.session.verify == "/etc/ssl/certs/corp.pem"
    bypassed = ApiClient("https://internal.example/v1", headers={})
    assert not bypassed.session.proxies and bypassed.session.verify == "/etc/ssl/certs/corp.pem"


def test_a_4xx_after_a_retried_5xx_is_marked_ambiguous(server: tuple[str, Script]) -> None:
    """The first attempt may have written (its answer was a 5xx): a 4xx on the retry must not read as "not created"."""
    url, script = server
    script.responses = [(400, {}, {"errors": [{"title": "bad"}]})]
    with pytest.raises(ApiError) as plain:
        _client(url).post("/payments", json={})
    assert plain.value.status == 400 and plain.value.ambiguous is False
    script.responses = [(503, {}, "busy"), (400, {}, {"errors": [{"title": "amount exceeds balance"}]})]
    with pytest.raises(ApiError) as after_5xx:
        _client(url).post("/payments", json={})
    assert after_5xx.value.status == 400 and after_5xx.value.ambiguous is True
    script.responses = [(429, {"Retry-After": "0"}, {}), (400, {}, {"errors": [{"title": "bad"}]})]
    with pytest.raises(ApiError) as after_429:
        _client(url).post("/payments", json={})
    assert after_429.value.ambiguous is False  # a 429 was not processed
    script.responses = [(503, {}, "busy"), (200, {}, {"model": {"id": "p1"}})]
    assert _client(url).request("POST", "/payments", json={}).ambiguous_retry is True
