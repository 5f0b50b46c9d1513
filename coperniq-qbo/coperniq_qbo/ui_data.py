"""What the console's page shows, gathered the way the CLI commands gather it (status, log, review, runs).

Each read opens the ledger read-only and closes it at once, so a sync that starts while the page is open is not
kept waiting; a ledger a sync holds is one message on the page, not a traceback.
"""

from __future__ import annotations

import argparse
import io
import json
from dataclasses import dataclass, field
from typing import Any

from coperniq_qbo.actions import RowRef
from coperniq_qbo.console import Console, fmt_time
from coperniq_qbo.errors import CliError
from coperniq_qbo.ledger_access import counts_summary, open_ledger
from coperniq_qbo.settings import Settings
from coperniq_qbo.status import cmd_status
from coperniq_qbo.ui_config import ConfigStore, WorkflowView, as_bool, workflow_views
from sync_ledger.ledger_core import LOG_ACTIONS

PAGE_SIZE = 50
#: The log's direction -> the source system of its rows (for Retry).
SYSTEM_OF = {"forward": "coperniq", "reverse": "quickbooks"}


@dataclass
class LogFilter:
    """The integration log's filters, from the page's query string."""

    run: str = ""
    stream: str = ""
    action: str = ""
    search: str = ""
    offset: int = 0

    @classmethod
    def from_query(cls, query: dict[str, str]) -> LogFilter:
        try:
            offset = max(int(query.get("offset") or 0), 0)
        except ValueError:
            offset = 0
        action = query.get("action", "")
        return cls(
            run=query.get("run", "").strip(),
            stream=query.get("stream", "").strip(),
            action=action if action in LOG_ACTIONS else "",
            search=query.get("q", "").strip(),
            offset=offset,
        )

    def query(self, **changes: Any) -> str:
        """This filter as a query string, with `changes` (for the paging links)."""
        from urllib.parse import urlencode

        values = {"run": self.run, "stream": self.stream, "action": self.action, "q": self.search}
        values["offset"] = str(changes.get("offset", self.offset))
        return urlencode({k: v for k, v in values.items() if v not in ("", "0")})


@dataclass
class PageData:
    """Everything one render of the page needs; `ledger_error` when the ledger could not be read."""

    status: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    has_more: bool = False
    review: list[dict[str, Any]] = field(default_factory=list)
    workflows: list[WorkflowView] = field(default_factory=list)
    other_triggers: list[dict[str, Any]] = field(default_factory=list)
    invoice_sync: bool = False
    matching_strategy: str = "enrich"
    config_source: str = ""
    config_error: str = ""
    ledger_error: str = ""
    streams: list[str] = field(default_factory=list)


def status_of(settings: Settings) -> dict[str, Any]:
    """`coperniq-qbo status --format json`, so the console and the CLI can never disagree on Connected."""
    out = io.StringIO()
    try:
        cmd_status(argparse.Namespace(format="json"), settings, Console(settings.secrets, out=out, err=io.StringIO()))
    except CliError as exc:
        return {"connected": False, "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - Merge unreachable and the like: a reason on the page, not a traceback
        return {"connected": False, "reason": f"status failed: {type(exc).__name__}: {exc}"}
    try:
        result: dict[str, Any] = json.loads(out.getvalue())
    except ValueError:
        return {"connected": False, "reason": "status gave no answer"}
    return result


def gather(settings: Settings, store: ConfigStore, filt: LogFilter) -> PageData:
    """Read the page's data: status (Merge + ledger), config, then the ledger once, read-only."""
    data = PageData(status=status_of(settings))
    raw_triggers: Any = None
    try:
        config, data.config_source = store.current()
        raw_triggers = config.get("trigger_phases")
        data.invoice_sync = as_bool(config.get("invoice_sync"))
        data.matching_strategy = str(config.get("matching_strategy") or "enrich")
    except CliError as exc:
        data.config_error = str(exc)
    try:
        ledger = open_ledger(settings, read_only=True)
    except CliError as exc:
        data.ledger_error = f"The ledger is busy or unreachable ({exc}). Reload in a moment."
        return data
    if ledger is None:
        data.ledger_error = f"No ledger at {settings.ledger_display} yet: nothing has synced."
        data.workflows, data.other_triggers = workflow_views(None, raw_triggers)
        return data
    try:
        data.runs = ledger.runs(limit=5)
        rows = ledger.log_rows(
            run_id=filt.run or None,
            action=filt.action or None,
            stream=filt.stream or None,
            search=filt.search or None,
            limit=PAGE_SIZE + 1,
            offset=filt.offset,
        )
        data.review = ledger.review_items(status=("open", "decided"))
        pending = ledger.row_actions(pending=True, limit=1000) if data.review else []
        for item in data.review:  # the Coperniq side, for comparing with the candidates
            item["source"] = ledger.staged(item["source_system"], item["stream"], str(item["record_id"])) or {}
        data.workflows, data.other_triggers = workflow_views(ledger, raw_triggers)
    finally:
        ledger.close()
    data.has_more = len(rows) > PAGE_SIZE
    data.log = rows[:PAGE_SIZE]
    for run in data.runs:
        run["summary"] = counts_summary(run.get("counts") or run.get("counts_json"))
    for row in data.log:
        system = SYSTEM_OF.get(str(row.get("direction")))
        row["retry_ref"] = (
            str(RowRef(system, str(row["stream"]), str(row["source_id"])))
            if row.get("action") == "failed" and system and row.get("source_id")
            else ""
        )
    for item in data.review:  # asked in the console or CLI, not applied by a run yet (newest first)
        item["ref"] = str(RowRef(item["source_system"], item["stream"], item["record_id"]))
        key = (item["source_system"], item["stream"], str(item["record_id"]))
        item["pending"] = next(
            (a for a in pending if (a["source_system"], a["stream"], str(a["record_id"])) == key), None
        )
    data.streams = sorted(
        {"accounts", "projects", "invoices", "payments", "contacts", *(r["stream"] for r in data.log)}
    )
    return data


def time_text(value: Any) -> str:
    """Timestamps on the page as the CLI prints them."""
    return fmt_time(value)
