"""Rendering of integration-log and run rows as a terminal table, JSON or CSV.

Tables are for people (truncated reasons, short timestamps); JSON/CSV are for pipes and spreadsheets and
carry every column untruncated.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

# (key, header, max width in the table; 0 = no limit)
LOG_COLUMNS: list[tuple[str, str, int]] = [
    ("logged_at", "LOGGED_AT", 20), ("run_id", "RUN", 0), ("direction", "DIR", 7), ("stream", "STREAM", 24),
    ("source_id", "SOURCE_ID", 16), ("action", "ACTION", 8), ("target_id", "TARGET_ID", 38),
    ("request_id", "REQUEST_ID", 0), ("reason", "REASON", 60),
]
RUN_COLUMNS: list[tuple[str, str, int]] = [
    ("run_id", "RUN", 0), ("direction", "DIR", 7), ("status", "STATUS", 10), ("dry_run", "DRY", 5),
    ("started_at", "STARTED_AT", 20), ("finished_at", "FINISHED_AT", 20), ("counts", "COUNTS", 80),
]


def _plain(value: Any) -> Any:
    """JSON/CSV-safe scalar: datetimes become ISO-8601 UTC."""
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    return value


def _cell(value: Any, width: int) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        text = dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, default=str, separators=(",", ":"))
    else:
        text = " ".join(str(value).split())  # one line per row, whatever the error text held
    if width and len(text) > width:
        text = text[: width - 1] + "\u2026"
    return text


def render(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, int]], fmt: str,
           *, empty: str = "no rows") -> str:
    """One string to print: `table`, `json` (a list of objects) or `csv` (with a header)."""
    if fmt == "json":
        return json.dumps([{k: _plain(v) for k, v in row.items()} for row in rows], indent=2, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        keys = [k for k, _, _ in columns]
        writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (json.dumps(row.get(k), default=str) if isinstance(row.get(k), (dict, list))
                                 else _plain(row.get(k))) for k in keys})
        return buf.getvalue().rstrip("\n")
    if not rows:
        return empty
    cells = [[_cell(row.get(key), width) for key, _, width in columns] for row in rows]
    widths = [max(len(header), *(len(r[i]) for r in cells)) for i, (_, header, _) in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for (_, h, _), w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)
