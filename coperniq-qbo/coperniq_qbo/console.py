"""Terminal output that is safe to paste: every line is redacted with the configured secrets before it is written.

Also the one timestamp format people read in this CLI (ISO-8601 UTC, whole seconds), used by status, log and verify.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from sync_ledger import redact

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class Console:
    """stdout/stderr writer that masks every configured secret (and auth headers) in everything it prints."""

    def __init__(self, secrets: Iterable[str] = (), out: TextIO | None = None, err: TextIO | None = None) -> None:
        self._secrets: list[str] = [s for s in secrets if s]
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def add_secret(self, value: str | None) -> None:
        """Mask this value too from now on (tokens learnt mid-command, e.g. by `connect`)."""
        if value and value not in self._secrets:
            self._secrets.append(value)

    def clean(self, text: str) -> str:
        """The text with every secret and auth header masked."""
        return redact(text, self._secrets)

    def say(self, text: str = "") -> None:
        """One line to stdout."""
        self.out.write(self.clean(text) + "\n")
        self.out.flush()

    def warn(self, text: str) -> None:
        """One line to stderr."""
        self.err.write(self.clean(text) + "\n")
        self.err.flush()


def utc_text(dt: datetime) -> str:
    """A datetime as ISO-8601 UTC seconds; naive values are taken as UTC (DuckDB returns them so)."""
    aware = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime(TIME_FORMAT)


def fmt_time(value: Any) -> str:
    """Timestamps as ISO-8601 UTC seconds, whatever shape (str from Merge, datetime from DuckDB) they arrive in."""
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return utc_text(value)
    return str(value)


def utc_now_text() -> str:
    """Now, in the same format."""
    return datetime.now(UTC).strftime(TIME_FORMAT)
