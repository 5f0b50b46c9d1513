"""Human-readable end-of-run output: the summary table and the dry-run plan."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from sync_ledger.rows import PlanRow

ACTIONS = ("created", "updated", "linked", "skipped", "failed")
STREAM_ORDER = ("accounts", "projects", "invoices", "payments")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], max_width: int = 90) -> str:
    cells = [[str(c) if len(str(c)) <= max_width else str(c)[: max_width - 1] + "…" for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, sep, *body])


def summary_table(counts: Mapping[str, Counter[str] | Mapping[str, int]]) -> str:
    streams = [s for s in STREAM_ORDER if s in counts] + sorted(s for s in counts if s not in STREAM_ORDER)
    rows = [[s, *(str(counts[s].get(a, 0)) for a in ACTIONS)] for s in streams]
    if not rows:
        rows = [["(nothing to do)", *("0" for _ in ACTIONS)]]
    return _table(["stream", *ACTIONS], rows)


def read_run_summary(log: str) -> dict[str, dict[str, int]]:
    """The inverse of the "Run summary" log line's summary_table, for the bench and tests that read a target's
    stderr: {stream: {created, updated, linked, skipped, failed}}; {} when the log has no summary."""
    if "Run summary" not in log:
        return {}
    lines = log.split("Run summary", 1)[1].splitlines()[1:]
    if not lines:
        return {}
    header = lines[0].split()
    out: dict[str, dict[str, int]] = {}
    for line in lines[2:]:
        cells = line.split()
        if len(cells) != len(header) or not all(c.isdigit() for c in cells[1:]):
            break
        out[cells[0]] = {h: int(c) for h, c in zip(header[1:], cells[1:], strict=True)}
    return out


def plan_table(plan: Sequence[PlanRow]) -> str:
    verbs = {"created": "CREATE", "updated": "UPDATE", "linked": "LINK", "skipped": "SKIP", "failed": "FAIL"}
    rows = [[verbs.get(p.action, p.action.upper()), p.stream, p.source_id, p.name, p.reason] for p in plan]
    if not rows:
        return "(nothing would change)"
    return _table(["action", "stream", "coperniq id", "quickbooks name", "why"], rows)
