"""The emulated QBO company's query language: a small subset of Intuit's SQL-like `select ... from ...`.

Why apart from the passthrough (sandbox/merge_qbo.py): parsing and matching need no company state, only the
rows of the entity queried, which the company hands in through `resolve`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from typing import Any

from sandbox.merge_qbo_faults import qbo_time, query_error

#: What `resolve` answers for an entity name: the entity's canonical name and its objects, or None (unsupported).
Source = tuple[str, Iterable[dict[str, Any]]]
#: One `where` condition: (field path, operator, value).
Condition = tuple[str, str, Any]

_SELECT = re.compile(
    r"^\s*select\s+(\*|count\(\*\))\s+from\s+(\w+)(?:\s+where\s+(.+?))?"
    r"(?:\s+orderby\s+[\w.]+(?:\s+(?:asc|desc))?)?(?:\s+startposition\s+(\d+))?"
    r"(?:\s+maxresults\s+(\d+))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_TOKEN = r"'((?:[^'\\]|\\.)*)'|(true|false)|(-?\d+(?:\.\d+)?)"
_CONDITION = re.compile(
    r"\s*([\w.]+)\s*(=|!=|<>|like|in)\s*(\((?:[^()']|'(?:[^'\\]|\\.)*')*\)|" + _TOKEN + r")\s*(?:and\s+|$)",
    re.IGNORECASE,
)


def run_query(text: str, resolve: Callable[[str], Source | None]) -> dict[str, Any]:
    """`select */count(*) from X [where a = 'v' and ...] [orderby f] [startposition n] [maxresults n]`."""
    m = _SELECT.match(text)
    if not m:
        raise query_error(f"Encountered an unsupported query: {text}")
    what, entity_raw, where, start, maxres = m.groups()
    found = resolve(entity_raw[0].upper() + entity_raw[1:])
    if found is None:
        raise query_error(f"Unsupported entity {entity_raw}")
    entity, source = found
    conds = parse_where(where or "")
    rows = [copy.deepcopy(o) for o in source if all(matches(o, *c) for c in conds)]
    if what.lower().startswith("count"):
        return {"QueryResponse": {"totalCount": len(rows)}, "time": qbo_time()}
    first = max(1, int(start or 1))
    limit = min(1000, int(maxres or 100))
    rows = rows[first - 1 : first - 1 + limit]
    resp: dict[str, Any] = {}
    if rows:
        resp = {entity: rows, "startPosition": first, "maxResults": len(rows)}
    return {"QueryResponse": resp, "time": qbo_time()}


def parse_where(where: str) -> list[Condition]:
    """`a = 'v' and b in ('x', 'y') and c like '%z'`: string, boolean and number literals."""
    conds: list[Condition] = []
    pos = 0
    while pos < len(where):
        m = _CONDITION.match(where, pos)
        if not m:
            raise query_error(f'Encountered "{where[pos:]}"')
        field, op, raw = m.group(1), m.group(2).lower(), m.group(3)
        if op == "in":
            values: Any = [v.replace("\\'", "'") for v in re.findall(r"'((?:[^'\\]|\\.)*)'", raw)]
        elif raw.startswith("'"):
            values = raw[1:-1].replace("\\'", "'")
        elif raw.lower() in ("true", "false"):
            values = raw.lower() == "true"
        else:
            values = raw
        conds.append((field, op, values))
        pos = m.end()
    return conds


def matches(obj: dict[str, Any], field: str, op: str, value: Any) -> bool:
    """One condition on one object: dotted paths, refs by their `value`, case-insensitive text."""
    cur: Any = obj
    for part in field.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if isinstance(cur, dict) and "value" in cur:  # e.g. ParentRef = '12'
        cur = cur["value"]

    def norm(v: Any) -> Any:
        return v.casefold() if isinstance(v, str) else str(v).casefold() if v is not None else None

    if op == "in":
        return norm(cur) in {norm(v) for v in value}
    if op == "like":
        regex = "^" + re.escape(str(value).casefold()).replace("%", ".*") + "$"
        return cur is not None and re.match(regex, norm(cur) or "", re.DOTALL) is not None
    if isinstance(value, bool):
        equal = bool(cur) == value if cur is not None else value is False
    else:
        equal = norm(cur) == norm(value)
    return equal if op == "=" else not equal
