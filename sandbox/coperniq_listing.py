"""Coperniq sandbox reading: list pages, `/search`, GET by id, the invoice envelope.

Why cached id lists: the tap pages through 100k projects with `updated_after`; filtering and sorting once per
(resource, filters, data version) keeps every page O(page size) while any write still shows on the next page.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sandbox._server import Request, Response
from sandbox.coperniq_params import ListParams, bool_arg, fold, invalid, not_found, path_id
from sandbox.coperniq_state import CoperniqState
from sandbox.coperniq_views import invoice_out
from sandbox.profiles import CoperniqAssumptions


def list_ids(
    st: CoperniqState,
    resource: str,
    records: dict[int, dict[str, Any]],
    params: ListParams,
    base: list[int] | None = None,
    extra: tuple[Any, ...] = (),
    pred: Callable[[dict[str, Any]], bool] | None = None,
    archived_key: str | None = None,
) -> list[int]:
    """Filtered, ordered ids, cached per (resource, filters, data version): paging 100k rows stays O(page)."""
    key = (resource, extra, params.after, params.before, params.desc, params.include_archived if archived_key else None)
    version = st.versions[resource]
    hit = st.list_cache.get(key)
    if hit is not None and hit[0] == version:
        st.list_cache.move_to_end(key)
        return hit[1]
    after, before = params.after, params.before
    ids = []
    source: Iterable[int] = base if base is not None else records.keys()  # ids are created ascending
    for rid in source:
        rec = records.get(rid)
        if rec is None:
            continue
        u = rec["_u"]
        if after is not None and u <= after:
            continue
        if before is not None and u >= before:
            continue
        if archived_key and not params.include_archived and rec.get(archived_key) is False:
            continue
        if pred is not None and not pred(rec):
            continue
        ids.append(rid)
    if base is not None:
        ids.sort()
    if params.desc:
        ids.reverse()
    st.list_cache[key] = (version, ids)
    if len(st.list_cache) > 64:
        st.list_cache.popitem(last=False)
    return ids


def text_filters(
    req: Request, fields: tuple[str, ...]
) -> tuple[tuple[Any, ...], Callable[[dict[str, Any]], bool] | None]:
    """`q` (substring over several fields) and per-field substring filters (title, primaryEmail, ...)."""
    wanted = {f: fold(req.arg(f)) for f in ("title", "address", "primaryEmail", "primaryPhone") if req.arg(f)}
    q = fold(req.arg("q"))
    if not wanted and not q:
        return (), None

    def text(rec: dict[str, Any], f: str) -> str:
        v = rec.get(f)
        if isinstance(v, list):
            return " ".join(x for x in v if isinstance(x, str)).casefold()
        return v.casefold() if isinstance(v, str) else ""

    def pred(rec: dict[str, Any]) -> bool:
        if any(w not in text(rec, f) for f, w in wanted.items()):
            return False
        return not q or any(q in text(rec, f) for f in fields)

    return (tuple(sorted(wanted.items())), q), pred


def get_record(records: dict[int, dict[str, Any]], req: Request, param: str, what: str) -> dict[str, Any]:
    """The record named by path parameter `param`, or 404 `what` not found."""
    rid = path_id(req, param)
    rec = records.get(rid)
    if rec is None:
        raise not_found(what, rid)
    return rec


def get_visible(
    records: dict[int, dict[str, Any]], req: Request, param: str, what: str, assumptions: CoperniqAssumptions
) -> dict[str, Any]:
    """GET by id: without `archived_visible_by_id` an archived record is 404 unless `include_archived=true`
    (the spec gives GET /projects/{id} and /accounts/{id} that parameter, default false)."""
    rec = get_record(records, req, param, what)
    if (
        not assumptions.archived_visible_by_id
        and rec.get("isActive") is False
        and not bool_arg(req, "include_archived")
    ):
        raise not_found(what, rec["id"])
    return rec


def invoice_page(
    st: CoperniqState, req: Request, base: list[int] | None, scope: tuple[Any, ...], *, tax_fields: bool
) -> Response:
    """Invoice lists are the one envelope (`items`, `page`, `page_size`, `has_more`); `base` = a record's ids;
    `tax_fields`: the profile's `invoice_tax_fields`."""
    params = ListParams.parse(req)
    ids = list_ids(st, "invoices", st.invoices, params, base=list(base) if base is not None else None, extra=scope)
    page = params.window(ids)
    return Response(
        200,
        {
            "items": [invoice_out(st, st.invoices[i], tax_fields=tax_fields) for i in page],
            "page": params.page,
            "page_size": params.page_size,
            "has_more": params.page * params.page_size < len(ids),
        },
    )


SEARCH_OPS = ("eq", "neq", "gt", "gte", "lt", "lte", "contains", "in", "nin", "between")
_Ordered = TypeVar("_Ordered", float, str)


def ordered(op: str, x: _Ordered, y: _Ordered) -> bool:
    """`x op y` for the ordering search ops (gt, gte, lt, lte)."""
    return {"gt": x > y, "gte": x >= y, "lt": x < y, "lte": x <= y}[op]


def search(req: Request, records: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """`/search?prop1=&op1=&value1=[&prop2=&op2=&value2=&logic=and|or]` over standard and custom fields."""
    params = ListParams.parse(req)
    conds = []
    for n in ("1", "2"):
        prop, op, value = req.arg("prop" + n), req.arg("op" + n), req.arg("value" + n)
        if n == "1" and (not prop or not op or value is None):
            raise invalid("prop1", "prop1, op1 and value1 are required")
        if prop is None:
            continue
        if op not in SEARCH_OPS:
            raise invalid("op" + n, f"op{n} must be one of: {', '.join(SEARCH_OPS)}")
        conds.append((prop if prop != "clientId" else "accountId", op, value or ""))
    logic = (req.arg("logic") or "and").lower()
    if logic not in ("and", "or"):
        raise invalid("logic", "logic must be and or or")

    def values(raw: str) -> list[str]:
        raw = raw.strip()
        if raw.startswith("["):
            try:
                return [str(v) for v in json.loads(raw)]
            except ValueError:
                raise invalid("value1", "invalid JSON array") from None
        return [v.strip().strip('"') for v in raw.split(",")]

    def check(rec: dict[str, Any], prop: str, op: str, raw: str) -> bool:
        v = rec["custom"].get(prop) if prop not in rec else rec[prop]
        if isinstance(v, list):
            v = v[0] if v else None
        sv = "" if v is None else str(v)
        if op == "eq":
            return sv.casefold() == raw.casefold()
        if op == "neq":
            return sv.casefold() != raw.casefold()
        if op == "contains":
            return raw.casefold() in sv.casefold()
        if op in ("in", "nin"):
            hit = sv.casefold() in {x.casefold() for x in values(raw)}
            return hit if op == "in" else not hit
        if op == "between":
            lo, hi = [*values(raw), "", ""][:2]
            try:
                return float(lo) <= float(sv) <= float(hi)
            except ValueError:
                return lo <= sv <= hi
        try:  # gt/gte/lt/lte: as numbers when both sides are, else as case-folded text
            return ordered(op, float(sv), float(raw.split(",", maxsplit=1)[0]))
        except ValueError:
            return ordered(op, sv.casefold(), raw.casefold())

    combine = all if logic == "and" else any
    hits = [
        rec
        for rec in records.values()
        if (params.include_archived or rec.get("isActive", True)) and combine(check(rec, *c) for c in conds)
    ]
    if params.desc:
        hits.reverse()
    start = (params.page - 1) * params.page_size
    return hits[start : start + params.page_size]
