"""Merge sandbox query parameters: booleans, date-times, page size, `expand`, and each model's list filters.

Why DRF wording: Merge is a Django REST Framework API, so a bad parameter answers 400 `{name: [message]}` with
DRF's own messages ("Must be a valid boolean.", "Enter a valid date/time.").
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from sandbox._server import Request
from sandbox.merge_schema import EXPANDS
from sandbox.merge_state import MergeState
from sandbox.merge_store import Row, dt_us

#: A model's list filters: row predicates, and the candidate row positions (None: every row).
Filters = tuple[list[Callable[[Row], bool]], list[int] | None]


class BadParam(ValueError):
    """A query parameter DRF would reject: answered as 400 `{name: [message]}`."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name, self.message = name, message


def parse_bool(req: Request, name: str) -> bool | None:
    """`true`/`1`, `false`/`0`, or None when absent."""
    raw = req.arg(name)
    if raw in (None, ""):
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise BadParam(name, "Must be a valid boolean.")


def parse_time(req: Request, name: str) -> int | None:
    """A date-time parameter as µs since epoch, or None when absent."""
    raw = req.arg(name)
    if raw in (None, ""):
        return None
    try:
        return dt_us(raw)
    except ValueError:
        raise BadParam(name, "Enter a valid date/time.") from None


def page_size(req: Request) -> int:
    """DRF semantics: invalid or non-positive -> default 30; above the maximum -> clamped to 100."""
    try:
        size = int(req.arg("page_size") or 30)
    except ValueError:
        return 30
    return 30 if size <= 0 else min(size, 100)


def parse_expand(req: Request, model: str) -> set[str]:
    """`expand=a,b`: each must be one of the model's expandable fields."""
    raw = req.arg("expand") or ""
    values = {v.strip() for v in raw.split(",") if v.strip()}
    bad = values - EXPANDS.get(model, set())
    if bad:
        raise BadParam("expand", f"Select a valid choice. {min(bad)} is not one of the available choices.")
    return values


# --- row predicates (bound with functools.partial: one per filter parameter) -------------------------
def _flag_is(field: str, want: bool, row: Row) -> bool:
    return bool(row[field]) is want


def _equals(field: str, want: str, row: Row) -> bool:
    return bool(row[field] == want)


def _get_equals(field: str, want: str, row: Row) -> bool:
    return bool(row.get(field) == want)


def _folded_equals(field: str, want: str, row: Row) -> bool:
    """`row[field]` case-folded equals `want` (already folded)."""
    return str(row[field] or "").casefold() == want


def _name_key_equals(key: str, row: Row) -> bool:
    """The name compared as QBO compares DisplayNames: whitespace collapsed, case-folded."""
    return " ".join(str(row["name"] or "").split()).casefold() == key


def _date_beyond(field: str, bound: int, direction: int, row: Row) -> bool:
    """`row[field]` is after `bound` (direction 1) or before it (-1)."""
    return row[field] is not None and (dt_us(row[field]) - bound) * direction > 0


def contact_filters(state: MergeState, req: Request) -> Filters:
    """`is_customer`, `is_supplier`, `name` (exact, via the QBO name index), `email_address`, `status`."""
    checks: list[Callable[[Row], bool]] = []
    candidates = None
    for flag in ("is_customer", "is_supplier"):
        value = parse_bool(req, flag)
        if value is not None:
            checks.append(partial(_flag_is, flag, value))
    name = req.arg("name")
    if name:
        key = " ".join(name.split()).casefold()
        checks.append(partial(_name_key_equals, key))
        holder = state.qbo.names.get(key)  # an employee's name holder has no Contact
        row = state.contacts.by_remote_id(holder[1], holder[0]) if holder else None
        candidates = [row["_pos"]] if row else []
    email = req.arg("email_address")
    if email:
        checks.append(partial(_folded_equals, "email_address", email.strip().casefold()))
    status = req.arg("status")
    if status:
        checks.append(partial(_equals, "status", status))
    return checks, candidates


def invoice_filters(req: Request) -> Filters:
    """`contact_id`, `number`, `type`, `status`, `company_id`, `issue_date_after`/`_before`."""
    checks: list[Callable[[Row], bool]] = []
    for arg, key in (
        ("contact_id", "contact"),
        ("number", "number"),
        ("type", "type"),
        ("status", "status"),
        ("company_id", "company"),
    ):
        value = req.arg(arg)
        if value:
            checks.append(partial(_equals, key, value))
    for arg, direction in (("issue_date_after", 1), ("issue_date_before", -1)):
        bound = parse_time(req, arg)
        if bound is not None:
            checks.append(partial(_date_beyond, "issue_date", bound, direction))
    return checks, None


def payment_filters(req: Request) -> Filters:
    """`contact_id`, `account_id`, `company_id`, `transaction_date_after`/`_before`."""
    checks: list[Callable[[Row], bool]] = []
    for arg, key in (("contact_id", "contact"), ("account_id", "account"), ("company_id", "company")):
        value = req.arg(arg)
        if value:
            checks.append(partial(_equals, key, value))
    for arg, direction in (("transaction_date_after", 1), ("transaction_date_before", -1)):
        bound = parse_time(req, arg)
        if bound is not None:
            checks.append(partial(_date_beyond, "transaction_date", bound, direction))
    return checks, None


def simple_filters(*names: str) -> Callable[[Request], tuple[list[Callable[[Row], bool]], None]]:
    """Equality filters on `names` (`name` compared case-insensitively) for the models without special ones."""

    def build(req: Request) -> tuple[list[Callable[[Row], bool]], None]:
        checks: list[Callable[[Row], bool]] = []
        for name in names:
            value = req.arg(name)
            if value:
                if name == "name":
                    checks.append(partial(_folded_equals, "name", value.strip().casefold()))
                else:
                    checks.append(partial(_get_equals, name, value))
        return checks, None

    return build


def tax_rate_filters(req: Request) -> Filters:
    """`name` (case-insensitive, as the other models' `name`) and `company_id` (QBO tax rates have no company)."""
    checks: list[Callable[[Row], bool]] = []
    name = req.arg("name")
    if name:
        checks.append(partial(_folded_equals, "name", name.strip().casefold()))
    company = req.arg("company_id")
    if company:
        checks.append(partial(_equals, "company", company))
    return checks, None
