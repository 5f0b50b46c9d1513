"""Merge sandbox TrackingCategories: QuickBooks Classes and Departments (Locations), `GET /tracking-categories`, and
the `tracking_categories` of invoices and invoice lines.

QuickBooks (Intuit, "Categorize income and expenses"): a company tracks classes "one to each transaction" (the
invoice's ClassRef) or "one to each row" (each line's SalesItemLineDetail.ClassRef), and QuickBooks ignores a class
sent to the other place. Departments (Locations) are on the transaction only. The company's choice is the app's
`class_tracking` ("per_line", the default, or "per_txn"): a company property, like `company_tax`. How Merge maps
its `tracking_categories` onto those refs is not documented; the sandbox reads it the plain way (ASSUMPTIONS
in target-quickbooks-merge/README.md).
An id that is no active class/department of the company is QuickBooks' invalid reference (2500), as for items.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from sandbox._server import Request
from sandbox.merge_qbo_faults import invalid_reference
from sandbox.merge_schema import WriteError, problem, provider_problem
from sandbox.merge_store import Row
from sandbox.merge_tables import MergeTables

TABLE = "tracking-categories"
CLASS_TRACKING = ("per_line", "per_txn")
#: What the seeded company has (QuickBooks Plus with class and location tracking on); "Legacy" is inactive.
DEFAULT_CATEGORIES: list[tuple[str, str, str | None, str]] = [
    ("Solar", "CLASS", None, "ACTIVE"),
    ("Commercial", "CLASS", "Solar", "ACTIVE"),
    ("HVAC", "CLASS", None, "ACTIVE"),
    ("Other", "CLASS", None, "ACTIVE"),
    ("Legacy", "CLASS", None, "ARCHIVED"),
    ("Austin", "DEPARTMENT", None, "ACTIVE"),
    ("Dallas", "DEPARTMENT", None, "ACTIVE"),
]
#: QuickBooks' entity and its ref on a transaction, by Merge category_type
ENTITY = {"CLASS": ("Class", "ClassRef"), "DEPARTMENT": ("Department", "DepartmentRef")}

#: Merge's documented list filters (and the Row field each one tests); QBO categories have no company.
FILTERS = {"name": "name", "status": "status", "category_type": "category_type", "company_id": "company"}


def _matches(field: str, want: str, row: Row) -> bool:
    value = row.get(field)
    return str(value or "").casefold() == want.casefold() if field == "name" else value == want


def tracking_category_filters(req: Request) -> tuple[list[Callable[[Row], bool]], None]:
    """`category_type`, `company_id`, `name` (case-insensitive, as the other models' `name`) and `status`."""
    return [partial(_matches, field, str(req.arg(arg)).strip()) for arg, field in FILTERS.items() if req.arg(arg)], None


def add_category(
    data: MergeTables, name: str, category_type: str = "CLASS", *, parent: str | None = None, status: str = "ACTIVE"
) -> Row:
    """A class or department created in QuickBooks (`parent`: a category's Merge id or name: a sub-class)."""
    if category_type not in ENTITY:
        raise ValueError(f"category_type must be CLASS or DEPARTMENT, not {category_type!r}")
    if status not in ("ACTIVE", "ARCHIVED"):
        raise ValueError(f"status must be ACTIVE or ARCHIVED, not {status!r}")
    table = data.t(TABLE)
    parent_row = None
    if parent is not None:
        parent_row = table.get(parent) or next(
            (r for r in table.order if r["name"] == parent and r["category_type"] == category_type), None
        )
        if parent_row is None:
            raise ValueError(f"no {category_type.lower()} {parent!r} to put {name!r} under")
    entity = ENTITY[category_type][0]
    same = [r for r in table.order if r["_entity"] == entity]
    remote_id = f"50000000000000{len(same) + 1:05d}" if entity == "Class" else str(len(same) + 1)  # QBO's Id shapes
    row = data.new_row(
        TABLE,
        remote_id=remote_id,
        _entity=entity,
        name=name,
        status=status,
        category_type=category_type,
        parent_category=parent_row["id"] if parent_row else None,
        company=None,
    )
    return table.insert(row)


def seed_categories(data: MergeTables) -> None:
    """The default classes and departments (every reset), sub-classes after their parent."""
    for name, kind, parent, status in DEFAULT_CATEGORIES:
        add_category(data, name, kind, parent=parent, status=status)


def _refs(data: MergeTables, raw: Any, pointer: str) -> list[Row]:
    """The live, active categories a `tracking_categories` list names, or QBO's invalid reference (2500)."""
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise WriteError([problem(pointer, "Incorrect Field Type", "must be a list of ids.", "INCORRECT_FIELD_TYPE")])
    rows: list[Row] = []
    for i, id_ in enumerate(raw):
        row = data.live(TABLE, id_)
        if row is None or row["status"] != "ACTIVE":
            what = ENTITY[row["category_type"]][1] if row is not None else "ClassRef"
            raise WriteError([provider_problem(invalid_reference(what, id_), f"{pointer}/{i}")])
        rows.append(row)
    kinds = [r["category_type"] for r in rows]
    if len(kinds) != len(set(kinds)):
        detail = "QuickBooks takes one class and one department per transaction (or line)."
        raise WriteError([problem(pointer, "Invalid Field", detail, "INVALID_FIELD")])
    return rows


def apply_tracking(data: MergeTables, fields: dict[str, Any], existing: Row | None, lines: list[Row]) -> list[str]:
    """The invoice's `tracking_categories` after this write (a PATCH without them keeps them), with each line's
    set in place, as the company's class tracking keeps them: QuickBooks ignores, without a word, a class where
    the company does not track it and a department on a line. Unknown or inactive ids: QBO's 2500."""
    per_line = data.class_tracking == "per_line"
    if "tracking_categories" in fields:
        header = _refs(data, fields["tracking_categories"], "model/tracking_categories")
        kept = [r["id"] for r in header if r["category_type"] == "DEPARTMENT" or not per_line]
    else:
        kept = list(existing["tracking_categories"]) if existing else []
    raw_lines = fields.get("line_items")
    if not isinstance(raw_lines, list):
        return kept  # the lines are the invoice's earlier ones, with their categories
    for i, (raw, line) in enumerate(zip(raw_lines, lines, strict=False)):
        ids = raw.get("tracking_categories") if isinstance(raw, dict) else None
        rows = _refs(data, ids, f"model/line_items/{i}/tracking_categories") if ids is not None else []
        line["tracking_categories"] = [r["id"] for r in rows if r["category_type"] == "CLASS" and per_line]
    return kept


def qbo_view(row: Row) -> tuple[str, dict[str, Any]]:
    """The QBO Class or Department object of a category row."""
    entity = ENTITY[row["category_type"]][0]
    return f"/{entity.lower()}", {
        "Id": row["remote_id"],
        "Name": row["name"],
        "SubClass" if entity == "Class" else "SubDepartment": row["parent_category"] is not None,
        "Active": row["status"] == "ACTIVE",
        "MetaData": {"CreateTime": row["created_at"], "LastUpdatedTime": row["modified_at"]},
    }
