"""The report of `coperniq-qbo verify`: one `Finding` per assumption, rendered as a table for people or as JSON.

Its own module because every group of checks (verify_merge, verify_probe, verify_coperniq) produces findings and
the command (verify) prints them: keeping the row type, the outcome words and the renderers here lets the checks
and the command depend on it without depending on each other. The two time helpers live here for the same
reason: both the Merge and the Coperniq checks read service timestamps and print them in table cells.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from coperniq_qbo.console import utc_text
from target_quickbooks_merge.settings import parse_dt

OK, DIFFERS, BLOCKS, NOT_CHECKED = "as assumed", "differs", "blocks", "not checked"


@dataclass
class Finding:
    """One row of the report; `blocker` is set when this answer means the sync cannot run (one line, why)."""

    key: str
    assumption: str
    saw: str
    product: str
    outcome: str
    blocker: str | None = None


def as_datetime(value: Any) -> datetime | None:
    """ISO-8601 (Z, offsets, QBO's -07:00) to an aware datetime; None when absent or unreadable."""
    if not value:
        return None
    try:
        return parse_dt(str(value))
    except ValueError:
        return None


def short_time(dt: datetime | None) -> str:
    """A time for a table cell, "-" when unknown."""
    return utc_text(dt) if dt else "-"


def render_json(
    findings: list[Finding],
    *,
    blockers: list[str],
    calls: dict[str, int],
    coperniq_api_url: str,
    merge_base_url: str,
) -> str:
    """The `--format json` document: the verdict, what was spent, where it asked, and every finding."""
    return json.dumps(
        {
            "can_run": not blockers,
            "blockers": blockers,
            "calls": calls,
            "coperniq_api_url": coperniq_api_url,
            "merge_base_url": merge_base_url,
            "findings": [asdict(f) for f in findings],
        },
        indent=2,
    )


def render_calls(calls: dict[str, int]) -> str:
    """The line under the table: calls spent against each service (Coperniq's are off a daily budget)."""
    return (
        f"Calls used: Coperniq {calls['coperniq']} (ceiling {calls['coperniq_budget']}; the key allows "
        f"5,000 a day), Merge {calls['merge']}."
    )


COLUMNS = (("ASSUMPTION", 30), ("WHAT IT SAW", 48), ("WHAT THE PRODUCT WILL DO", 48))


def render_table(findings: list[Finding]) -> str:
    """Wrapped cells, so long answers stay readable in an 80-130 column terminal and paste into a ticket."""
    lines = [" | ".join(h.ljust(w) for h, w in COLUMNS).rstrip(), "-+-".join("-" * w for _, w in COLUMNS)]
    for f in findings:
        saw = f.saw if f.outcome in (OK, NOT_CHECKED) else f"[{f.outcome}] {f.saw}"
        cells = [
            textwrap.wrap(text, width) or ["-"]
            for text, (_, width) in zip((f.assumption, saw, f.product), COLUMNS, strict=True)
        ]
        lines.extend(
            " | ".join((c[i] if i < len(c) else "").ljust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True)).rstrip()
            for i in range(max(len(c) for c in cells))
        )
        lines.append("-+-".join("-" * w for _, w in COLUMNS))
    return "\n".join(lines)
