"""Coperniq sandbox: what projects and accounts share, their write-body fields and the `match_by` upsert.

Why together: AccountUpsert and ProjectCreate/*Update take the same title/address/contact fields and the same
POST-as-upsert query (`match_by`, `match_found_strategy`), so both resources validate and match through here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox._server import Request
from sandbox.coperniq_params import (
    address_field,
    as_int,
    digits,
    enum,
    fold,
    invalid,
    num_field,
    opt_str,
    req_str,
    str_list,
)
from sandbox.coperniq_state import CoperniqState

PROJECT_STATUSES = ("ACTIVE", "ON_HOLD", "CANCELLED", "COMPLETED")
ACCOUNT_TYPES = ("RESIDENTIAL", "COMMERCIAL")
MATCH_BY = ("title", "primaryEmail", "primaryPhone", "address")
MATCH_STRATEGIES = ("skip", "replace", "enrich")


def validate_record_body(st: CoperniqState, body: dict[str, Any], *, create: bool, kind: str) -> dict[str, Any]:
    """Common fields of projects and accounts (AccountUpsert / ProjectCreate / *Update)."""
    fields: dict[str, Any] = {}
    if create or "title" in body:
        fields["title"] = req_str(body, "title")
    addr = address_field(body, required=create)
    if addr is not None:
        fields["address"] = addr
    for f in ("description", "primaryEmail", "primaryPhone"):
        if f in body:
            fields[f] = opt_str(body, f)
    if fields.get("primaryEmail") and "@" not in fields["primaryEmail"]:
        raise invalid("primaryEmail", "primaryEmail must be a valid email address")
    if "custom" in body:
        if not isinstance(body["custom"], dict):
            raise invalid("custom", "custom must be an object")
        fields["custom"] = body["custom"]
    if "contacts" in body and body["contacts"] is not None:
        if not isinstance(body["contacts"], list):
            raise invalid("contacts", "contacts must be an array of contact ids")
        ids = [as_int(c, "contacts") for c in body["contacts"]]
        missing = [c for c in ids if c not in st.contacts]
        if missing:
            raise invalid("contacts", f"contact {missing[0]} not found")
        fields["contacts"] = ids
    if kind == "account":
        if "accountType" in body:
            fields["accountType"] = enum(body, "accountType", ACCOUNT_TYPES)
        if "isActive" in body and not create:
            if not isinstance(body["isActive"], bool):
                raise invalid("isActive", "isActive must be a boolean")
            fields["isActive"] = body["isActive"]
    else:
        if "trades" in body:
            fields["trades"] = str_list(body, "trades") or ["Solar"]
        for f in ("value", "size"):
            if f in body:
                fields[f] = num_field(body, f)
        if "status" in body:
            fields["status"] = enum(body, "status", PROJECT_STATUSES)
    return fields


def match_params(req: Request) -> tuple[str, str]:
    """`match_by` (default title) and `match_found_strategy` (default skip) of POST /projects and /accounts."""
    match_by = req.arg("match_by") or "title"
    if match_by not in MATCH_BY:
        raise invalid("match_by", f"match_by must be one of: {', '.join(MATCH_BY)}")
    strategy = req.arg("match_found_strategy") or "skip"
    if strategy not in MATCH_STRATEGIES:
        raise invalid("match_found_strategy", f"match_found_strategy must be one of: {', '.join(MATCH_STRATEGIES)}")
    return match_by, strategy


def find_match(records: dict[int, dict[str, Any]], match_by: str, fields: dict[str, Any]) -> dict[str, Any] | None:
    """The first record equal on `match_by` (case-insensitive; phones by digits, addresses by their line)."""
    if match_by == "address":
        want = fold((fields.get("address") or [""])[0])
        get: Callable[[dict[str, Any]], str] = lambda r: fold((r.get("address") or [""])[0])  # noqa: E731
    elif match_by == "primaryPhone":
        want = digits(fields.get("primaryPhone"))
        get = lambda r: digits(r.get("primaryPhone"))  # noqa: E731
    else:
        want = fold(fields.get(match_by))
        get = lambda r: fold(r.get(match_by))  # noqa: E731
    if not want:
        return None
    return next((r for r in records.values() if get(r) == want), None)
