"""Small pure helpers shared by the ledger, the HTTP client and the plugins."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

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
    """sha256 of canonical JSON, so "did this record change since we last wrote it" is one string compare."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


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
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


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
