"""ApiClient: one requests.Session per API with a rate limit, retries that honour Retry-After, readable errors
and redaction, so both targets and taps talk to Coperniq and Merge the same dependable way."""

from __future__ import annotations

import email.utils
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

from .util import fingerprint, json_text, redact

__all__ = ["ApiClient", "ApiError", "RateLimitedSession", "RateLimiter", "fingerprint", "redact", "send_checked"]

log = logging.getLogger(__name__)

RETRY_AFTER_CAP = 900.0  # never sleep longer than this on one Retry-After, whatever the server says
_SENSITIVE_HEADERS = frozenset({"authorization", "x-api-key", "x-account-token"})
_REQUEST_ID_HEADERS = ("X-Request-Id", "X-Merge-Request-Id", "X-Amzn-Requestid", "intuit_tid")
_CONNECTION_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class ApiError(Exception):
    """A non-retriable HTTP error, or retries exhausted. `message` is human readable with secrets redacted;
    status is 0 when no response was received at all."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        body: Any = None,
        request_id: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body
        self.request_id = request_id
        self.method = method
        self.path = path
        #: an earlier attempt of this request got a 5xx or no response: a write may have happened even though
        #: this (last) answer is a 4xx
        self.ambiguous = False

    def __str__(self) -> str:
        return self.message


class RateLimiter:
    """Thread-safe token bucket. Each caller reserves a slot under the lock and sleeps outside it, so
    concurrent sink threads are spaced evenly instead of waking together. per_second=None: unlimited."""

    def __init__(self, per_second: float | None, burst: float = 1.0) -> None:
        if per_second is not None and per_second <= 0:
            raise ValueError("per_second must be positive or None")
        self.per_second = per_second
        self.burst = max(1.0, burst)
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if self.per_second is None:
            return
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.per_second)
            self._stamp = now
            self._tokens -= 1.0
            wait = -self._tokens / self.per_second if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


class RateLimitedSession(requests.Session):
    """A requests.Session that waits for a (shared) RateLimiter before every send, retries included: the taps'
    singer-sdk streams send through their session, so this is where one API budget is enforced for all of them."""

    def __init__(self, limiter: RateLimiter) -> None:
        super().__init__()
        self.limiter = limiter

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.limiter.acquire()
        return super().send(request, **kwargs)


T = TypeVar("T")


def send_checked(
    send: Callable[[], T],
    find: Callable[[], T | None],
    *,
    tries: int,
    backoff: Callable[[int], float],
    errors: tuple[type[Exception], ...] = (),
) -> T:
    """Send a create that must never happen twice, whatever the server does with idempotency keys.

    `send` must not retry by itself after a 5xx or no answer (`retry_ambiguous=False`) and raises an error with
    `ambiguous` true when the write may have happened. Then the record is looked up by its natural key (`find`)
    before it is sent again. A refusal of a later send (a uniqueness rule answering for our own first write) is
    checked the same way; if the lookup finds nothing, the error is raised marked ambiguous, so the caller keeps
    its intent and checks again next run. `errors`: the caller's error types besides ApiError."""
    maybe_written = False
    catch: tuple[type[Exception], ...] = (ApiError, *errors)
    for attempt in range(tries):
        try:
            return send()
        except catch as exc:
            lost = bool(getattr(exc, "ambiguous", False))  # this send got a 5xx or no answer
            maybe_written = maybe_written or lost
            if not maybe_written:
                raise  # a clean refusal of the first send: nothing was written
            if (hit := find()) is not None:
                log.warning(
                    "A create's answer was lost (%s) but the record exists: using it, not creating another",
                    getattr(exc, "status", None) or "no response",
                )
                return hit
            if not lost or attempt == tries - 1:
                exc.ambiguous = True  # type: ignore[attr-defined]
                raise
            time.sleep(backoff(attempt))
    raise AssertionError("unreachable")


def _spread(wait: float) -> float:
    """Retry-After plus up to a quarter more (at most 2 s): writers throttled together do not all come back in the
    same instant and collide again (a concurrency limit answers them all with the same Retry-After)."""
    return wait + random.uniform(0, min(2.0, wait / 4))


def json_body(body: Any, headers: dict[str, str] | None) -> tuple[bytes | None, dict[str, str] | None]:
    """A request's JSON body as bytes, with its Content-Type. Written by `json_text` rather than by requests
    (whose encoder refuses a Decimal), so an amount goes out as the JSON number it is: Decimal("59.97") as 59.97,
    Decimal("100.00") as 100.0, the bytes a float of the same value was sent as, never a binary-float artefact.
    Otherwise the bytes requests would send (its separators, ASCII, no NaN)."""
    if body is None:
        return None, headers
    data = json_text(body, separators=(", ", ": "), allow_nan=False).encode("utf-8")
    if not any(name.lower() == "content-type" for name in headers or {}):
        headers = {**(headers or {}), "Content-Type": "application/json"}
    return data, headers


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or unparsable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else time.time()
    return max(0.0, when.timestamp() - current)


def _request_id(response: requests.Response) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value = response.headers.get(name)
        if value:
            return value
    return None


def _body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def describe_error_body(body: Any) -> str:
    """Turn Merge (`errors[]`, DRF `detail`) and Coperniq (`message/code/field`) error bodies into one line."""
    if isinstance(body, dict):
        parts: list[str] = []
        errors = body.get("errors")
        if isinstance(errors, list):
            for err in errors:
                if not isinstance(err, dict):
                    parts.append(str(err))
                    continue
                text = ": ".join(str(err[k]) for k in ("title", "detail") if err.get(k))
                extra = []
                if err.get("problem_type"):
                    extra.append(str(err["problem_type"]))
                source = err.get("source")
                if isinstance(source, dict) and source.get("pointer"):
                    extra.append(f"at {source['pointer']}")
                parts.append(f"{text or 'error'}" + (f" ({', '.join(extra)})" if extra else ""))
        if body.get("message"):
            extra = [f"{k}={body[k]}" for k in ("code", "field") if body.get(k) not in (None, "")]
            parts.append(str(body["message"]) + (f" ({', '.join(extra)})" if extra else ""))
        detail = body.get("detail")
        if detail and not parts:
            parts.append(str(detail))
        if not parts and body.get("error"):
            parts.append(str(body["error"]))
        if parts:
            return "; ".join(parts)
        return str(body)[:500]
    if isinstance(body, list):
        return "; ".join(describe_error_body(b) for b in body[:5])
    text = str(body or "").strip()
    return text[:500]


class ApiClient:
    """requests.Session wrapper: rate limit, retries on 429/5xx/connection errors honouring Retry-After, and
    ApiError with a readable, redacted message for everything else that is not 2xx/3xx."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str],
        max_requests_per_second: float | None = None,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
        timeout: float = 60.0,
        secrets: Iterable[str] = (),
        connections: int = 10,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(headers)
        # Proxy and CA-bundle settings come from the environment once here instead of on every request (requests
        # looks them up per request, ~1.4 ms each; all requests of a client go to one host).
        self.session.trust_env = False
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=max(10, connections))  # one per concurrent caller
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if ca_bundle:
            self.session.verify = ca_bundle
        self.limiter = RateLimiter(max_requests_per_second)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.timeout = timeout
        # Auth header values are secrets even if the caller forgot to pass them.
        auth_values = [v for k, v in headers.items() if k.lower() in _SENSITIVE_HEADERS and v]
        auth_values += [v.split(None, 1)[1] for v in auth_values if " " in v]
        self.secrets: tuple[str, ...] = tuple(s for s in (*secrets, *auth_values) if s)
        self.calls: Counter[str] = Counter()
        self.retries = 0
        self._stats_lock = threading.Lock()

    # ------------------------------------------------------------------ public

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        max_retries: int | None = None,
        retry_ambiguous: bool = True,
        counted_as: str | None = None,
    ) -> requests.Response:
        """Send a request; retries 429/5xx/connection errors, raises ApiError on other 4xx or when retries
        run out. `max_retries` overrides the client's for one call (e.g. 0 for a write that must not repeat).

        `retry_ambiguous=False` is for a create without an idempotency key: after a 5xx or a lost connection the
        write may have happened, so the error is raised at once for the caller to look the record up before
        sending again; a 429 (not processed) is still retried. `counted_as`: the method the call counts as in
        `calls` (a passthrough read is a POST that writes nothing)."""
        method = method.upper()
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"
        shown = self._loggable_path(url)
        data, headers = json_body(json, headers)
        retries = self.max_retries if max_retries is None else max_retries
        attempt = 0
        ambiguous = False  # an attempt got a 5xx or no response (a write may have happened)
        while True:
            self.limiter.acquire()
            with self._stats_lock:
                self.calls[counted_as or method] += 1
            started = time.monotonic()
            try:
                response = self.session.request(
                    method, url, params=params, data=data, headers=headers, timeout=self.timeout
                )
            except _CONNECTION_ERRORS as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if attempt >= retries or not retry_ambiguous:
                    err = ApiError(
                        0,
                        self._redact(f"{method} {shown} failed: no response after {attempt + 1} attempt(s) ({reason})"),
                        method=method,
                        path=shown,
                    )
                    err.ambiguous = True
                    raise err from None
                ambiguous = True
                wait = self._backoff(attempt)
                self._log_retry(method, shown, type(exc).__name__, wait, attempt + 1, retries)
                attempt += 1
                time.sleep(wait)
                continue
            status = response.status_code
            log.debug("%s %s -> %s in %.0f ms", method, shown, status, (time.monotonic() - started) * 1000)
            if status < 400:
                response.ambiguous_retry = ambiguous  # type: ignore[attr-defined]  # read by Merge passthrough
                return response
            if status == 429 or status >= 500:
                if attempt < retries and (status == 429 or retry_ambiguous):
                    ambiguous = ambiguous or status >= 500
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    wait = (
                        _spread(min(retry_after, RETRY_AFTER_CAP))
                        if retry_after is not None
                        else self._backoff(attempt)
                    )
                    self._log_retry(method, shown, str(status), wait, attempt + 1, retries)
                    response.close()
                    attempt += 1
                    time.sleep(wait)
                    continue
                err = self._error(response, method, shown, gave_up_after=attempt)
                err.ambiguous = ambiguous or status >= 500
                raise err
            err = self._error(response, method, shown)
            err.ambiguous = ambiguous
            raise err

    def get(self, path: str, **kw: Any) -> Any:
        return self._json(self.request("GET", path, **kw))

    def post(self, path: str, **kw: Any) -> Any:
        return self._json(self.request("POST", path, **kw))

    def patch(self, path: str, **kw: Any) -> Any:
        return self._json(self.request("PATCH", path, **kw))

    def put(self, path: str, **kw: Any) -> Any:
        return self._json(self.request("PUT", path, **kw))

    def delete(self, path: str, **kw: Any) -> Any:
        return self._json(self.request("DELETE", path, **kw))

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _json(response: requests.Response) -> Any:
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def _loggable_path(self, url: str) -> str:
        """Path only: query strings can carry tokens and customer data."""
        return self._redact(urlsplit(url).path or "/")

    def backoff(self, attempt: int) -> float:
        """The wait before retry number `attempt + 1` (for callers that retry by themselves)."""
        return self._backoff(attempt)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter in the upper half, so parallel clients spread out."""
        ceiling = min(self.backoff_max, self.backoff_base * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)

    def _log_retry(self, method: str, path: str, why: str, wait: float, n: int, retries: int) -> None:
        with self._stats_lock:
            self.retries += 1
        log.warning("%s %s -> %s; retry %d/%d in %.1f s", method, path, why, n, retries, wait)

    def _error(self, response: requests.Response, method: str, path: str, gave_up_after: int | None = None) -> ApiError:
        status = response.status_code
        body = _body(response)
        request_id = _request_id(response)
        detail = describe_error_body(body)
        reason = response.reason or ""
        head = f"{method} {path} failed with HTTP {status}" + (f" {reason}" if reason else "")
        if status in (401, 403):
            head += ": the API credentials were rejected"
        if gave_up_after is not None:
            head += f" (gave up after {gave_up_after} retries)"
        message = head + (f": {detail}" if detail else "")
        if request_id:
            message += f" [request id {request_id}]"
        return ApiError(status, self._redact(message), body=body, request_id=request_id, method=method, path=path)
