"""Coperniq sandbox request parsing: query and body fields, their 400/404 errors, the shared list query.

Why one place: every handler answers a bad field with the same VALIDATION_ERROR body (`field` names the culprit),
so the wording and the rules (numeric strings as ids, ISO 8601 dates, page bounds) are written once.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sandbox._server import HttpError, Request
from sandbox.coperniq_state import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, parse_iso


def invalid(field: str, message: str) -> HttpError:
    return HttpError(400, message, "VALIDATION_ERROR", field=field)


def not_found(what: str, rid: Any) -> HttpError:
    return HttpError(404, f"{what} {rid} not found", "NOT_FOUND")


def json_body(req: Request) -> dict[str, Any]:
    if not req.body or not req.body.strip():
        return {}
    try:
        data = json.loads(req.body)
    except (ValueError, UnicodeDecodeError):
        raise HttpError(400, "Request body is not valid JSON", "INVALID_JSON") from None
    if not isinstance(data, dict):
        raise HttpError(400, "Request body must be a JSON object", "VALIDATION_ERROR")
    return data


def path_id(req: Request, name: str) -> int:
    raw = req.path_params[name]
    try:
        return int(raw)
    except ValueError:
        raise invalid(name, f"{name} must be an integer") from None


def is_num(v: Any) -> bool:
    """A finite JSON number (bool is an int in Python, not in JSON)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def as_int(v: Any, field: str) -> int:
    """Integer field; numeric strings accepted (the spec types accountId/workflowId as string)."""
    if isinstance(v, bool):
        raise invalid(field, f"{field} must be an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and re.fullmatch(r"\s*-?\d+\s*", v):
        return int(v)
    raise invalid(field, f"{field} must be an integer")


def opt_str(body: dict[str, Any], field: str, *, nullable: bool = True) -> str | None:
    v = body.get(field)
    if v is None:
        if field in body and not nullable:
            raise invalid(field, f"{field} cannot be null")
        return None
    if not isinstance(v, str):
        raise invalid(field, f"{field} must be a string")
    return v


def req_str(body: dict[str, Any], field: str) -> str:
    v = body.get(field)
    if not isinstance(v, str) or not v.strip():
        raise invalid(field, f"{field} is required")
    return v


def enum(body: dict[str, Any], field: str, allowed: Iterable[str], default: str | None = None) -> str | None:
    v = body.get(field, default)
    if v is None:
        return default
    if v not in allowed:
        raise invalid(field, f"{field} must be one of: {', '.join(allowed)}")
    return str(v)  # equal to one of `allowed`


def req_enum(body: dict[str, Any], field: str, allowed: Iterable[str]) -> str:
    """A required enum field."""
    value = enum(body, field, allowed)
    if value is None:
        raise invalid(field, f"{field} is required")
    return value


def str_list(body: dict[str, Any], field: str) -> list[str] | None:
    v = body.get(field)
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise invalid(field, f"{field} must be an array of strings")
    return list(v)


def address_field(body: dict[str, Any], required: bool) -> list[str] | None:
    v = body.get("address")
    if v is None:
        if required:
            raise invalid("address", "address is required (an array with one string)")
        return None
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v) or not v[0].strip():
        raise invalid("address", "address must be an array containing one non-empty string")
    return [v[0]]


def date_field(body: dict[str, Any], field: str, required: bool = False) -> int | None:
    v = body.get(field)
    if v is None:
        if required:
            raise invalid(field, f"{field} is required")
        return None
    try:
        return parse_iso(v)
    except ValueError:
        raise invalid(field, f"{field} must be an ISO 8601 date-time") from None


def num_field(body: dict[str, Any], field: str, required: bool = False) -> float | None:
    v = body.get(field)
    if v is None:
        if required:
            raise invalid(field, f"{field} is required")
        return None
    if not is_num(v):
        raise invalid(field, f"{field} must be a number")
    return float(v)


def bool_arg(req: Request, name: str, default: bool = False) -> bool:
    raw = req.arg(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise invalid(name, f"{name} must be true or false")


@dataclass(frozen=True)
class ListParams:
    """The shared list query: page/page_size/updated_after/updated_before/order_by/include_archived."""

    page: int
    page_size: int
    after: int | None
    before: int | None
    desc: bool
    include_archived: bool

    @classmethod
    def parse(cls, req: Request) -> ListParams:
        def int_arg(name: str, default: int) -> int:
            raw = req.arg(name)
            if raw is None or raw == "":
                return default
            try:
                return int(raw)
            except ValueError:
                raise invalid(name, f"{name} must be an integer") from None

        page = int_arg("page", 1)
        if page < 1:
            raise invalid("page", "page must be >= 1")
        size = int_arg("page_size", PAGE_SIZE_DEFAULT)
        if size < 1 or size > PAGE_SIZE_MAX:
            raise invalid("page_size", f"page_size must be between 1 and {PAGE_SIZE_MAX}")
        bounds: dict[str, int | None] = {}
        for name in ("updated_after", "updated_before"):
            raw = req.arg(name)
            if raw is None or raw == "":
                bounds[name] = None
                continue
            try:
                bounds[name] = parse_iso(raw)
            except ValueError:
                raise invalid(name, f"{name} must be an ISO 8601 date-time") from None
        order = (req.arg("order_by") or "asc").lower()
        if order not in ("asc", "desc"):
            raise invalid("order_by", "order_by must be asc or desc")
        return cls(
            page,
            size,
            bounds["updated_after"],
            bounds["updated_before"],
            order == "desc",
            bool_arg(req, "include_archived"),
        )

    def window(self, ids: list[int]) -> list[int]:
        start = (self.page - 1) * self.page_size
        return ids[start : start + self.page_size]


def digits(s: Any) -> str:
    """Only the digits: phone numbers match whatever their punctuation."""
    return re.sub(r"\D", "", s) if isinstance(s, str) else ""


def fold(s: Any) -> str:
    """Trimmed and case-folded, for case-insensitive matching; "" for a non-string."""
    return s.strip().casefold() if isinstance(s, str) else ""
