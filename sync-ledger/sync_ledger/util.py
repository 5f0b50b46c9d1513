"""Small pure helpers shared by the ledger, the HTTP client and the plugins."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from .money import decimal_json

MASK = "****"

#: Where both targets and the CLI keep the ledger unless `ledger_path` says otherwise (relative to the
#: Meltano project root, which is the plugins' working directory under Meltano).
DEFAULT_LEDGER_PATH = ".meltano/sync-ledger.duckdb"
#: Merge's Accounting API in its US region (EU: https://api-eu.merge.dev/..., APAC: https://api-ap.merge.dev/...);
#: the default `base_url` of both Merge plugins and the CLI.
MERGE_ACCOUNTING_URL = "https://api.merge.dev/api/accounting/v1"

# Auth headers in any of the shapes they show up in logs: "Authorization: Bearer x", "'x-api-key': 'x'",
# '"X-Account-Token": "x"', "authorization=x". The name and separator are kept so the log stays readable.
_AUTH_HEADER = re.compile(
    r"""(?P<head>["']?(?:authorization|x-api-key|x-account-token)["']?\s*[:=]\s*["']?)"""
    r"""(?P<scheme>(?:bearer|basic|token)\s+)?"""
    r"""(?P<value>[^\s"',;}\]]+)""",
    re.IGNORECASE,
)


def fingerprint(payload: Any) -> str:
    """sha256 of canonical JSON, so "did this record change since we last wrote it" is one string compare.

    A Decimal is written as the number it is, in the form a float of it had (`decimal_json`): an amount that
    became a Decimal keeps the fingerprint the ledger holds for it, so nothing synced is pushed again."""
    canonical = json_text(payload, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class _DecimalFound(Exception):
    """json.dumps met a Decimal: write this value with the slower writer that knows them."""


def json_text(
    value: Any,
    *,
    sort_keys: bool = False,
    separators: tuple[str, str] = (",", ":"),
    default: Callable[[Any], Any] | None = None,
    allow_nan: bool = True,
) -> str:
    """`json.dumps` with the same arguments, except that a Decimal is a JSON number (`decimal_json`), never a
    string or a float: money goes to the wire and into fingerprints exactly. Values without a Decimal are
    written by json.dumps itself (same bytes, same speed)."""

    def hook(obj: Any) -> Any:
        if isinstance(obj, Decimal):
            raise _DecimalFound
        if default is None:
            raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")
        return default(obj)

    try:
        return json.dumps(value, sort_keys=sort_keys, separators=separators, default=hook, allow_nan=allow_nan)
    except _DecimalFound:
        return _DecimalWriter(sort_keys, separators, hook, allow_nan).write(value)


class _DecimalWriter:
    """The containers json.dumps would write, around scalars json.dumps writes, and Decimals as numbers."""

    def __init__(
        self, sort_keys: bool, separators: tuple[str, str], hook: Callable[[Any], Any], allow_nan: bool
    ) -> None:
        self.sort_keys = sort_keys
        self.item_sep, self.key_sep = separators
        self.hook = hook
        self.allow_nan = allow_nan

    def write(self, value: Any) -> str:
        if isinstance(value, Decimal):
            if value.is_finite() or not self.allow_nan:
                return decimal_json(value)  # raises ValueError for NaN/Infinity, like allow_nan=False
            return json.dumps(str(value))
        if isinstance(value, dict):
            items = sorted(value.items()) if self.sort_keys else value.items()
            return "{" + self.item_sep.join(f"{self.key(k)}{self.key_sep}{self.write(v)}" for k, v in items) + "}"
        if isinstance(value, list | tuple):
            return "[" + self.item_sep.join(self.write(v) for v in value) + "]"
        try:
            return json.dumps(value, default=self.hook, allow_nan=self.allow_nan)
        except _DecimalFound:  # `default` turned an unknown object into something holding a Decimal
            return self.write(self.hook(value))

    @staticmethod
    def key(key: Any) -> str:
        """A dict key as json.dumps writes it: strings as they are; numbers, booleans and None as their JSON."""
        if isinstance(key, str):
            return json.dumps(key)
        if key is None or isinstance(key, bool | int | float):
            return json.dumps(json.dumps(key))
        raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask secret values and auth headers, so anything we log or raise is safe to paste in a ticket."""
    if not text:
        return text
    # Longest first: a secret that contains another secret must be masked whole.
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _AUTH_HEADER.sub(lambda m: f"{m['head']}{m['scheme'] or ''}{MASK}", text)


def utcnow() -> datetime:
    """Naive UTC timestamp: DuckDB TIMESTAMP columns hold UTC by convention (no ICU/timezone dependency)."""
    return datetime.now(UTC).replace(tzinfo=None)


def as_utc(value: datetime | None) -> datetime | None:
    """Attach UTC to a naive timestamp read back from DuckDB so callers never guess the zone."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


# JSON Schema pattern for ISO 8601 dates/date-times. The SDK validates config without a format checker, so a
# "date-time" format alone lets "next tuesday" through and the run crashes mid-sync; taps add this pattern so a bad
# start_date fails at start, naming the setting.
ISO_8601_PATTERN = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"


def to_jsonable(value: Any) -> Any:
    """Undo the SDK's timestamp parsing (and its Decimals) so staged payloads are plain JSON, stable to fingerprint.

    Both targets stage records exactly as a tap would have sent them: datetimes as ISO 8601 UTC with `Z`.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return _json_number(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def _json_number(value: Decimal) -> int | float | Decimal:
    """What a staged payload holds for a Decimal: an int, or the float whose repr is its exact decimal text (the
    ledger stores JSON numbers; `sync_ledger.money` reads such a float back through that repr, exactly). A value
    no float carries exactly stays a Decimal (the ledger then stores its exact text)."""
    if not value.is_finite():
        return float(value)  # NaN/Infinity: the targets reject the record before it is staged
    if value == value.to_integral_value():
        return int(value)
    carrier = float(value)
    return carrier if Decimal(repr(carrier)) == value else value


#: Setting shared by the four plugins: the SDK's per-request/per-batch METRIC lines back on (off by default: at
#: 2,000 projects they were 18,521 of a first run's 31,632 log lines).
LOG_SDK_METRICS = "log_sdk_metrics"


def quiet_sdk_metrics(plugin: Any) -> None:
    """Call after the SDK plugin's __init__ (which sets the metrics logger to the plugin's level): METRIC lines
    only at DEBUG unless `log_sdk_metrics` is on."""
    if not plugin.config.get(LOG_SDK_METRICS):
        plugin.metrics_logger.setLevel(logging.WARNING)


#: Days a payment recorded by hand in both systems may differ in date and still be one payment (both targets).
PAYMENT_DATE_SLACK = 7


def day_of(value: Any) -> date | None:
    """The calendar day of an ISO date or date-time (QuickBooks keeps payment and invoice dates as days)."""
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def closest_by_day(candidates: Iterable[Any], day: date | None, when: Any, slack_days: int) -> Any | None:
    """The candidate whose day (`when(candidate)`) is closest to `day`, within `slack_days`; an undated side
    counts as a match (gap 0). The twin-payment rule shared by the forward and reverse targets."""
    best: tuple[int, Any] | None = None
    for candidate in candidates:
        theirs = day_of(when(candidate))
        gap = abs((theirs - day).days) if theirs and day else 0
        if gap <= slack_days and (best is None or gap < best[0]):
            best = (gap, candidate)
    return best[1] if best else None


def is_postgres_url(value: object) -> bool:
    """Is this ledger place a PostgreSQL URL (else a DuckDB file path)?"""
    return isinstance(value, str) and value.split("://", 1)[0].lower() in ("postgresql", "postgres")


def ledger_place(config: Any) -> tuple[str, str | None]:
    """(where, company) from a plugin's settings: `ledger_url` (a postgresql:// URL) wins over `ledger_path` (a
    DuckDB file); `company` names the tenant. Raises ValueError naming the setting, never showing the URL."""
    url = str(config.get("ledger_url") or "").strip()
    if url and not is_postgres_url(url):
        raise ValueError(
            "ledger_url: must be a postgresql://user:password@host:5432/dbname URL (for a DuckDB file, set "
            "ledger_path instead)"
        )
    company = config.get("company")
    if company is not None and not isinstance(company, str):
        raise ValueError(f"company: must be text (the tenant's key, e.g. its Merge linked account id), got {company!r}")
    company = (company or "").strip() or None
    if company is not None and len(company) > 200:
        raise ValueError("company: at most 200 characters")
    return url or str(config.get("ledger_path") or DEFAULT_LEDGER_PATH), company


def url_secrets(place: str) -> tuple[str, ...]:
    """The password (and the URL holding it) of a ledger_url, for the redaction lists of logs and errors."""
    if not is_postgres_url(place):
        return ()
    from urllib.parse import unquote, urlsplit

    password = urlsplit(place).password
    return (place, *((password, unquote(password)) if password else ()))
