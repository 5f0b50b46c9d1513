"""`coperniq-qbo log` and `runs`: integration-log and run rows from a read-only ledger, as a table, JSON or CSV.

Tables are for people (truncated reasons, short timestamps); JSON/CSV are for pipes and spreadsheets and
carry every column untruncated.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from coperniq_qbo.console import Console, utc_text
from coperniq_qbo.errors import EXIT_NOT_CONNECTED, EXIT_OK
from coperniq_qbo.ledger_access import counts_summary, open_ledger
from coperniq_qbo.settings import Settings

# (key, header, max width in the table; 0 = no limit)
LOG_COLUMNS: list[tuple[str, str, int]] = [
    ("logged_at", "LOGGED_AT", 20),
    ("run_id", "RUN", 0),
    ("direction", "DIR", 7),
    ("stream", "STREAM", 24),
    ("source_id", "SOURCE_ID", 16),
    ("action", "ACTION", 8),
    ("target_id", "TARGET_ID", 38),
    ("request_id", "REQUEST_ID", 0),
    ("reason", "REASON", 60),
]
RUN_COLUMNS: list[tuple[str, str, int]] = [
    ("run_id", "RUN", 0),
    ("direction", "DIR", 7),
    ("status", "STATUS", 10),
    ("dry_run", "DRY", 5),
    ("started_at", "STARTED_AT", 20),
    ("finished_at", "FINISHED_AT", 20),
    ("counts", "COUNTS", 80),
]


def _plain(value: Any) -> Any:
    """JSON/CSV-safe scalar: datetimes become ISO-8601 UTC."""
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def _cell(value: Any, width: int) -> str:
    """One table cell: one line, at most `width` characters."""
    if value is None:
        text = "-"
    elif isinstance(value, datetime):
        text = utc_text(value)
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, default=str, separators=(",", ":"))
    else:
        text = " ".join(str(value).split())  # one line per row, whatever the error text held
    if width and len(text) > width:
        text = text[: width - 1] + "\u2026"
    return text


def render(
    rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, int]], fmt: str, *, empty: str = "no rows"
) -> str:
    """One string to print: `table`, `json` (a list of objects) or `csv` (with a header)."""
    if fmt == "json":
        return json.dumps([{k: _plain(v) for k, v in row.items()} for row in rows], indent=2, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        keys = [k for k, _, _ in columns]
        writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    k: (
                        json.dumps(row.get(k), default=str)
                        if isinstance(row.get(k), (dict, list))
                        else _plain(row.get(k))
                    )
                    for k in keys
                }
            )
        return buf.getvalue().rstrip("\n")
    if not rows:
        return empty
    cells = [[_cell(row.get(key), width) for key, _, width in columns] for row in rows]
    widths = [max(len(header), *(len(r[i]) for r in cells)) for i, (_, header, _) in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for (_, h, _), w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


def cmd_log(args: argparse.Namespace, settings: Settings, con: Console) -> int:
    """Recent integration log rows, newest first, from a read-only ledger."""
    ledger = open_ledger(settings, read_only=True)
    if ledger is None:
        con.warn(f"no ledger at {settings.ledger_display} yet: nothing has synced")
        return EXIT_NOT_CONNECTED
    try:
        run_id = args.run
        if args.last:
            runs = ledger.runs(limit=1)
            if not runs:
                con.warn("no runs recorded in the ledger yet")
                return EXIT_NOT_CONNECTED
            run_id = runs[0]["run_id"]
        action = args.action
        failed_only = args.failed or action == "failed"
        rows = ledger.log_rows(
            run_id=run_id,
            action=None if failed_only else action,
            stream=args.stream,
            failed_only=failed_only,
            limit=args.limit,
            direction=args.direction or None,
        )
    finally:
        ledger.close()
    con.say(render(rows, LOG_COLUMNS, args.format, empty="no matching log rows"))
    # As documented: 1 = nothing to show. So `log --last --failed` exits 0 exactly when the last run had failures.
    return EXIT_OK if rows else EXIT_NOT_CONNECTED


def cmd_runs(args: argparse.Namespace, settings: Settings, con: Console) -> int:
    """Recent runs with their per-action counts."""
    ledger = open_ledger(settings, read_only=True)
    if ledger is None:
        con.warn(f"no ledger at {settings.ledger_display} yet: nothing has synced")
        return EXIT_NOT_CONNECTED
    try:
        runs = ledger.runs(limit=args.limit)
    finally:
        ledger.close()
    for run in runs:
        counts = run.pop("counts_json", None)
        run.setdefault("counts", counts)
        if args.format == "table":
            run["counts"] = counts_summary(run.get("counts"))
    con.say(render(runs, RUN_COLUMNS, args.format, empty="no runs recorded yet"))
    return EXIT_OK
