"""Merge sandbox write vocabulary: which fields QBO takes per write, their JSON schemas, the problem objects.

Why apart from the write rules: the endpoints answer `/meta/*` and `/available-actions` from these tables and
the rules (merge_contacts, merge_invoices, merge_payments) screen every request model against them, so both
read one copy.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sandbox.merge_credit_schema import CREDIT_NOTE_EXPANDS, CREDIT_NOTE_REQUIRED, CREDIT_NOTE_SUPPORTED
from sandbox.merge_qbo import QboError
from sandbox.merge_store import parse_dt

FIELD_MAPPINGS: dict[str, dict[str, Any]] = {"organization_defined_targets": {}, "linked_account_defined_targets": {}}

# QBO supported fields per write (from qbo_supported_fields.json, the Merge docs' integration widget)
SUPPORTED: dict[str, list[str]] = {
    "POST contacts": [
        "addresses",
        "currency",
        "email_address",
        "is_customer",
        "is_supplier",
        "name",
        "phone_numbers",
        "remote_id",
        "remote_updated_at",
        "status",
        "tax_number",
    ],
    "PATCH contacts": [
        "addresses",
        "currency",
        "email_address",
        "is_customer",
        "is_supplier",
        "name",
        "phone_numbers",
        "remote_updated_at",
        "status",
        "tax_number",
    ],
    "POST invoices": [
        "balance",
        "contact",
        "currency",
        "due_date",
        "exchange_rate",
        "inclusive_of_tax",
        "issue_date",
        "line_items",
        "memo",
        "model_uuid",
        "number",
        "payment_term",
        "remote_id",
        "remote_updated_at",
        "status",
        "total_amount",
        "total_discount",
        "total_tax_amount",
        "tracking_categories",
        "type",
    ],
    "PATCH invoices": [
        "balance",
        "contact",
        "currency",
        "due_date",
        "exchange_rate",
        "issue_date",
        "line_items",
        "memo",
        "model_uuid",
        "number",
        "payment_term",
        "remote_id",
        "remote_updated_at",
        "status",
        "total_amount",
        "total_tax_amount",
        "tracking_categories",
        "type",
    ],
    "POST payments": [
        "account",
        "applied_to_lines",
        "contact",
        "currency",
        "exchange_rate",
        "invoice",
        "journal_entry",
        "payment_method",
        "remote_id",
        "remote_updated_at",
        "total_amount",
        "transaction_date",
    ],
    "PATCH payments": [
        "account",
        "applied_to_lines",
        "contact",
        "currency",
        "exchange_rate",
        "remote_id",
        "remote_updated_at",
        "total_amount",
        "transaction_date",
    ],
    "POST items": [
        "name",
        "purchase_account",
        "purchase_price",
        "remote_id",
        "remote_updated_at",
        "sales_account",
        "status",
        "type",
        "unit_price",
    ],
    "PATCH items": [
        "name",
        "purchase_account",
        "purchase_price",
        "remote_id",
        "remote_updated_at",
        "sales_account",
        "status",
        "type",
        "unit_price",
    ],
    **CREDIT_NOTE_SUPPORTED,
}
REQUIRED: dict[str, list[str]] = {
    "POST contacts": ["name"],
    "POST invoices": ["contact", "line_items", "type"],
    "POST payments": ["account", "contact", "total_amount", "transaction_date"],
    "POST items": ["name"],
    **CREDIT_NOTE_REQUIRED,
}
LINE_FIELDS = [
    "account",
    "contact",
    "description",
    "is_billable",
    "item",
    "project",
    "quantity",
    "remote_id",
    "total_amount",
    "tracking_categories",
    "unit_price",
]
APPLIED_FIELDS = ["applied_amount", "applied_date", "related_object_id", "related_object_type", "remote_id"]
ADDRESS_FIELDS = ["type", "street_1", "street_2", "city", "state", "country_subdivision", "country", "zip_code"]
SILENT = {"integration_params", "linked_account_params", "remote_fields"}  # accepted, no QBO effect

_S = {"type": ["string", "null"]}
_N = {"type": ["number", "null"]}
_B = {"type": ["boolean", "null"]}
_DT = {"type": ["string", "null"], "format": "date-time"}
_UUID = {"type": ["string", "null"], "format": "uuid"}
FIELD_SCHEMAS: dict[str, Any] = {
    "name": {"type": "string", "maxLength": 100},
    "is_customer": _B,
    "is_supplier": _B,
    "email_address": _S,
    "tax_number": _S,
    "status": _S,
    "currency": _S,
    "remote_id": _S,
    "remote_updated_at": _DT,
    "addresses": {"type": "array", "items": {"type": "object", "properties": dict.fromkeys(ADDRESS_FIELDS, _S)}},
    "phone_numbers": {"type": "array", "items": {"type": "object", "properties": {"number": _S, "type": _S}}},
    "contact": _UUID,
    "account": _UUID,
    "payment_method": _UUID,
    "payment_term": _UUID,
    "invoice": _UUID,
    "journal_entry": _UUID,
    "purchase_account": _UUID,
    "sales_account": _UUID,
    "number": {"type": ["string", "null"], "maxLength": 21},
    "memo": _S,
    "issue_date": _DT,
    "due_date": _DT,
    "transaction_date": _DT,
    "exchange_rate": _S,
    "inclusive_of_tax": _B,
    "balance": _N,
    "total_amount": _N,
    "total_discount": _N,
    "total_tax_amount": _N,
    "unit_price": _N,
    "purchase_price": _N,
    "model_uuid": _UUID,
    "tracking_categories": {"type": "array", "items": {"type": "string", "format": "uuid"}},
    "type": _S,
    "line_items": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "properties": {
                "account": _UUID,
                "contact": _UUID,
                "description": _S,
                "is_billable": _B,
                "item": _UUID,
                "project": _UUID,
                "quantity": _N,
                "remote_id": _S,
                "total_amount": _N,
                "unit_price": _N,
                "tracking_categories": {"type": "array", "items": {"type": "string"}},
            },
        },
    },
    "applied_to_lines": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "applied_amount": _S,
                "applied_date": _DT,
                "related_object_id": _UUID,
                "related_object_type": {"type": "string", "enum": ["INVOICE", "CREDIT_NOTE", "JOURNAL_ENTRY"]},
                "remote_id": _S,
            },
            "required": ["applied_amount", "related_object_id", "related_object_type"],
        },
    },
}
EXPANDS = {
    "contacts": {"addresses", "company", "phone_numbers"},
    "invoices": {
        "accounting_period",
        "applied_credit_notes",
        "applied_payments",
        "applied_vendor_credits",
        "company",
        "contact",
        "employee",
        "line_items",
        "payment_term",
        "payments",
        "purchase_orders",
        "sales_orders",
        "tracking_categories",
    },
    "payments": {
        "account",
        "accounting_period",
        "applied_to_lines",
        "company",
        "contact",
        "payment_method",
        "tracking_categories",
    },
    "items": {"company", "purchase_account", "purchase_tax_rate", "sales_account", "sales_tax_rate"},
    "accounts": {"company"},
    "company-info": {"addresses", "phone_numbers"},
    "tax-rates": {"company"},
    "tracking-categories": {"company"},
    **CREDIT_NOTE_EXPANDS,
}


#: the QBO entity behind each table (its Id counter when QuickBooks numbers entities separately); contacts are
#: customers unless the row says otherwise (`_entity`)
QBO_ENTITY = {
    "contacts": "Customer",
    "invoices": "Invoice",
    "payments": "Payment",
    "items": "Item",
    "accounts": "Account",
    "company-info": "CompanyInfo",
    "tax-rates": "TaxCode",
    "tracking-categories": "Class",  # a department row says `_entity`: Department
    "credit-notes": "CreditMemo",
}


def problem(pointer: str, title: str, detail: str, problem_type: str, **extra: Any) -> dict[str, Any]:
    """One Merge ValidationProblem."""
    return {"source": {"pointer": pointer}, "title": title, "detail": detail, "problem_type": problem_type, **extra}


def provider_problem(exc: QboError, pointer: str = "model") -> dict[str, Any]:
    """A QBO Fault as Merge reports it: PROVIDER_ERROR carrying the raw QBO error."""
    return problem(
        pointer,
        exc.message,
        f"{exc.message}: {exc.detail}",
        "PROVIDER_ERROR",
        raw_error=json.dumps(exc.fault()),
        error_code=int(exc.code) if exc.code.isdigit() else 0,
    )


class WriteError(Exception):
    """A rejected write: becomes 400 {"warnings": [...], "errors": [...]}."""

    def __init__(self, errors: list[dict[str, Any]], warnings: list[dict[str, Any]] | None = None) -> None:
        super().__init__("; ".join(e["detail"] for e in errors))
        self.errors = errors
        self.warnings = warnings or []


def money(value: Any) -> float:
    """Numbers and decimal strings -> float rounded to cents; raises ValueError/TypeError."""
    if isinstance(value, bool) or value is None:
        raise TypeError("not a number")
    return round(float(value), 2)


def norm_date(value: Any) -> str | None:
    """Client dates ("2025-01-15" or datetimes) -> Merge's date-time string."""
    if value in (None, ""):
        return None
    dt = parse_dt(str(value))
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def today() -> str:
    """Midnight UTC today, Merge's date-time form of a date."""
    return datetime.now(UTC).strftime("%Y-%m-%dT00:00:00Z")


def screen(model: Any, op: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Split a request model into supported fields and UNSUPPORTED_FIELD warnings; check required fields."""
    if not isinstance(model, dict):
        raise WriteError([problem("model", "Invalid Request Body", "model must be an object.", "INCORRECT_FIELD_TYPE")])
    supported = set(SUPPORTED[op])
    fields: dict[str, Any] = {}
    warnings = []
    for key, value in model.items():
        if key in supported:
            fields[key] = value
        elif key not in SILENT:
            warnings.append(
                problem(
                    f"model/{key}",
                    "Unsupported Field",
                    f"{key} is not supported by QuickBooks Online for this operation and was ignored.",
                    "UNSUPPORTED_FIELD",
                )
            )
    errors = [
        problem(
            f"model/{key}", "Missing Required Field", f"{key} is a required field on model.", "MISSING_REQUIRED_FIELD"
        )
        for key in REQUIRED.get(op, [])
        if fields.get(key) in (None, "", [])
    ]
    if errors:
        raise WriteError(errors, warnings)
    return fields, warnings


def nested_warnings(items: list[Any], allowed: list[str], pointer: str) -> list[dict[str, Any]]:
    """UNSUPPORTED_FIELD warnings for keys of nested objects (lines, addresses) QBO does not take."""
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(items):
        if isinstance(entry, dict):
            out.extend(
                problem(
                    f"{pointer}/{i}/{key}",
                    "Unsupported Field",
                    f"{key} is not supported by QuickBooks Online and was ignored.",
                    "UNSUPPORTED_FIELD",
                )
                for key in entry
                if key not in allowed and key not in SILENT
            )
    return out


def type_error(pointer: str, detail: str) -> WriteError:
    """An INCORRECT_FIELD_TYPE write error at `pointer`."""
    return WriteError([problem(pointer, "Incorrect Field Type", detail, "INCORRECT_FIELD_TYPE")])


def money_field(value: Any, pointer: str) -> float:
    """`money(value)`, or an INCORRECT_FIELD_TYPE error naming the field."""
    try:
        return money(value)
    except (TypeError, ValueError):
        raise type_error(pointer, f"{pointer.rsplit('/', maxsplit=1)[-1]} must be a number.") from None


def date_field(value: Any, pointer: str) -> str | None:
    """`norm_date(value)`, or an INCORRECT_FIELD_TYPE error naming the field."""
    try:
        return norm_date(value)
    except ValueError:
        raise type_error(pointer, f"{pointer.rsplit('/', maxsplit=1)[-1]} must be an ISO-8601 date-time.") from None
