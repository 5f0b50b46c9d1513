"""Ledger access for the CLI: open it without ever creating it by accident, and summarise run rows for people.

Read-only commands (status, log, runs, doctor) must not create a ledger (or a company in it) where nothing has
synced, and a ledger locked by a running sync, or a PostgreSQL server that refuses us, is one clear line, not a
traceback (never showing the URL's password: the ledger's messages show it redacted).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal, overload

from coperniq_qbo.console import fmt_time
from coperniq_qbo.errors import EXIT_API, CliError
from coperniq_qbo.settings import Settings
from sync_ledger import Ledger, LedgerError, LedgerNotFoundError

#: Ledger meta key `disconnect` sets (to the time) and `connect` clears; the targets fail fast while it is set.
DISCONNECTED_META = "disconnected"


@overload
def open_ledger(settings: Settings, *, read_only: Literal[True]) -> Ledger | None: ...
@overload
def open_ledger(settings: Settings, *, read_only: Literal[False]) -> Ledger: ...
def open_ledger(settings: Settings, *, read_only: bool) -> Ledger | None:
    """The ledger (the settings' company in it), or None when read-only and it does not exist yet (nothing has
    synced: no DuckDB file, or no such company / ledger in the PostgreSQL database)."""
    if not settings.on_postgres:
        path = settings.ledger_path
        if read_only and not path.exists():
            return None
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return Ledger(
            settings.ledger_place, company=settings.company, lock_timeout=settings.lock_timeout, read_only=read_only
        )
    except LedgerError as exc:
        if read_only and isinstance(exc, LedgerNotFoundError):  # no such company, or no ledger in the database yet
            return None
        # locked by a running sync, not a ledger, newer schema, cannot connect: one clear line
        raise CliError(str(exc), EXIT_API) from exc


def counts_summary(counts: Any) -> str:
    """{stream: {action: n}} -> "created 3, updated 1, failed 2" (totals over streams)."""
    if isinstance(counts, str):
        text = counts
        try:
            counts = json.loads(text)
        except ValueError:
            return text
    totals: dict[str, int] = {}
    if isinstance(counts, dict):
        for value in counts.values():
            if isinstance(value, dict):
                for action, n in value.items():
                    totals[action] = totals.get(action, 0) + int(n or 0)
        if not totals and all(isinstance(v, (int, float)) for v in counts.values()):
            totals = {k: int(v) for k, v in counts.items()}
    return ", ".join(f"{k} {v}" for k, v in sorted(totals.items())) or "no records"


def run_jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """A run row for JSON output: timestamps as text, the raw counts column dropped."""
    return {k: (fmt_time(v) if isinstance(v, datetime) else v) for k, v in row.items() if k != "counts_json"}
