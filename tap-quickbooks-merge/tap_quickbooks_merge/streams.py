"""Merge Accounting common models as Singer streams; each schema sits next to its stream.

Field names are Merge's (snake_case). Relations are emitted as Merge UUIDs even when expanded; the
child objects Merge always inlines (invoice line items, payment lines) are emitted as objects.
Money is `number` (Merge sends some amounts as decimal strings; they are converted).
"""

from __future__ import annotations

import sys
import typing as t

from singer_sdk import typing as th

from tap_quickbooks_merge.client import MergeStream, relation_id, to_decimal

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

_STR_ARRAY = th.ArrayType(th.StringType)


def _common(*props: th.Property) -> th.PropertiesList:
    """Fields every Merge model has, then the model's own."""
    return th.PropertiesList(
        th.Property("id", th.StringType, required=True, description="Merge UUID"),
        th.Property("remote_id", th.StringType, description="QuickBooks Online Id"),
        th.Property("created_at", th.DateTimeType),
        th.Property("modified_at", th.DateTimeType, required=True, description="Merge modification time"),
        *props,
        th.Property("remote_updated_at", th.DateTimeType),
        th.Property("remote_was_deleted", th.BooleanType, description="Deleted in QuickBooks"),
    )


class AccountsStream(MergeStream):
    """Chart of accounts (reference data for payments and line items)."""

    name = "accounts"
    path = "/accounts"
    decimal_fields = ("current_balance",)
    schema = _common(
        th.Property("name", th.StringType),
        th.Property("description", th.StringType),
        th.Property("classification", th.StringType),
        th.Property("type", th.StringType),
        th.Property("account_type", th.StringType),
        th.Property("status", th.StringType),
        th.Property("current_balance", th.NumberType),
        th.Property("currency", th.StringType),
        th.Property("account_number", th.StringType),
        th.Property("parent_account", th.StringType),
        th.Property("company", th.StringType),
    ).to_dict()

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        for key in ("parent_account", "company"):
            row[key] = relation_id(row.get(key))
        return super().post_process(row, context)


class ItemsStream(MergeStream):
    """Products and services: the target maps them to Coperniq catalog items by name."""

    name = "items"
    path = "/items"
    decimal_fields = ("unit_price", "purchase_price")
    schema = _common(
        th.Property("name", th.StringType),
        th.Property("status", th.StringType),
        th.Property("type", th.StringType, description="INVENTORY | NON_INVENTORY | SERVICE | UNKNOWN"),
        th.Property("unit_price", th.NumberType),
        th.Property("purchase_price", th.NumberType),
        th.Property("purchase_account", th.StringType),
        th.Property("sales_account", th.StringType),
        th.Property("company", th.StringType),
        th.Property("purchase_tax_rate", th.StringType),
        th.Property("sales_tax_rate", th.StringType),
    ).to_dict()

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        for key in ("purchase_account", "sales_account", "company", "purchase_tax_rate", "sales_tax_rate"):
            row[key] = relation_id(row.get(key))
        return super().post_process(row, context)


class TrackingCategoriesStream(MergeStream):
    """QuickBooks Classes and Departments (Locations): the names of the ids on invoices and lines (reconciliation).

    A few dozen rows. target-coperniq (the reverse leg) does not use them and ignores the stream (it stages only
    the streams it reconciles)."""

    name = "tracking_categories"
    path = "/tracking-categories"
    schema = _common(
        th.Property("name", th.StringType),
        th.Property("status", th.StringType, description="ACTIVE | ARCHIVED"),
        th.Property("category_type", th.StringType, description="CLASS | DEPARTMENT"),
        th.Property("parent_category", th.StringType, description="Merge UUID of the parent (a sub-class)"),
        th.Property("company", th.StringType),
    ).to_dict()

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        for key in ("parent_category", "company"):
            row[key] = relation_id(row.get(key))
        return super().post_process(row, context)


class ContactsStream(MergeStream):
    """Customers (and suppliers). The target resolves an invoice's customer/job link through these.

    Addresses are left out: Merge returns them as ids or inline objects depending on how the contact was
    written, and nothing downstream needs them."""

    name = "contacts"
    path = "/contacts"
    schema = _common(
        th.Property("name", th.StringType),
        th.Property("is_customer", th.BooleanType),
        th.Property("is_supplier", th.BooleanType),
        th.Property("email_address", th.StringType),
        th.Property("tax_number", th.StringType),
        th.Property("status", th.StringType),
        th.Property("currency", th.StringType),
        th.Property("company", th.StringType),
        th.Property(
            "phone_numbers",
            th.ArrayType(th.ObjectType(th.Property("number", th.StringType), th.Property("type", th.StringType))),
        ),
    ).to_dict()

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        row["company"] = relation_id(row.get("company"))
        row["phone_numbers"] = [
            {"number": p.get("number"), "type": p.get("type")}
            for p in row.get("phone_numbers") or []
            if isinstance(p, dict)
        ]
        return super().post_process(row, context)


_LINE_ITEM = th.ObjectType(
    th.Property("id", th.StringType),
    th.Property("remote_id", th.StringType),
    th.Property("description", th.StringType),
    th.Property("unit_price", th.NumberType),
    th.Property("quantity", th.NumberType),
    th.Property("total_amount", th.NumberType),
    th.Property("item", th.StringType, description="Merge item UUID"),
    th.Property("account", th.StringType),
    th.Property("project", th.StringType),
    th.Property("contact", th.StringType),
    th.Property("tax_rate", th.StringType),
    th.Property("is_billable", th.BooleanType),
    th.Property("tracking_categories", _STR_ARRAY, description="Merge TrackingCategory UUIDs (the line's Class)"),
    th.Property("remote_was_deleted", th.BooleanType),
)
_LINE_ITEM_RELATIONS = ("item", "account", "project", "contact", "tax_rate")

_PAYMENT_LINE = th.ObjectType(
    th.Property("id", th.StringType),
    th.Property("remote_id", th.StringType),
    th.Property("applied_amount", th.NumberType),
    th.Property("applied_date", th.DateTimeType),
    th.Property("related_object_id", th.StringType, description="Merge UUID of the invoice (or credit note...)"),
    th.Property("related_object_type", th.StringType, description="INVOICE | CREDIT_NOTE | JOURNAL_ENTRY"),
)


def _payment_line(line: t.Any) -> dict:
    """A PaymentLineItem object (or just its id when Merge did not expand it)."""
    if not isinstance(line, dict):
        return {"id": line}
    return {
        "id": line.get("id"),
        "remote_id": line.get("remote_id"),
        "applied_amount": to_decimal(line.get("applied_amount")),
        "applied_date": line.get("applied_date"),
        "related_object_id": relation_id(line.get("related_object_id")),
        "related_object_type": line.get("related_object_type"),
    }


class InvoicesStream(MergeStream):
    """Invoices with their line items, payment ids and applied payment lines inlined (`expand`)."""

    name = "invoices"
    path = "/invoices"
    expand = ("line_items", "payments", "applied_payments")
    decimal_fields = ("total_discount", "sub_total", "total_tax_amount", "total_amount", "balance")
    schema = _common(
        th.Property("type", th.StringType, description="ACCOUNTS_RECEIVABLE | ACCOUNTS_PAYABLE"),
        th.Property("contact", th.StringType, description="Merge contact UUID (QBO customer or job)"),
        th.Property("number", th.StringType),
        th.Property("issue_date", th.DateTimeType),
        th.Property("due_date", th.DateTimeType),
        th.Property("paid_on_date", th.DateTimeType),
        th.Property("memo", th.StringType),
        th.Property("company", th.StringType),
        th.Property("currency", th.StringType),
        th.Property("exchange_rate", th.StringType),
        th.Property("status", th.StringType, description="DRAFT | SUBMITTED | OPEN | PARTIALLY_PAID | PAID | VOID"),
        th.Property("total_discount", th.NumberType),
        th.Property("sub_total", th.NumberType),
        th.Property("total_tax_amount", th.NumberType),
        th.Property("total_amount", th.NumberType),
        th.Property("balance", th.NumberType),
        th.Property("inclusive_of_tax", th.BooleanType),
        th.Property("line_items", th.ArrayType(_LINE_ITEM)),
        th.Property("payments", _STR_ARRAY, description="Merge payment UUIDs"),
        th.Property("applied_payments", th.ArrayType(_PAYMENT_LINE)),
        th.Property("tracking_categories", _STR_ARRAY),
    ).to_dict()

    @property
    @override
    def extra_params(self) -> dict[str, str]:  # type: ignore[override]
        invoice_type = self.config.get("invoice_type", "ACCOUNTS_RECEIVABLE")
        return {"type": invoice_type} if invoice_type else {}

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        for key in ("contact", "company"):
            row[key] = relation_id(row.get(key))
        lines = []
        for line in row.get("line_items") or []:
            if not isinstance(line, dict):  # not expanded: nothing usable beyond the id
                lines.append({"id": line})
                continue
            item = dict(line)
            for key in _LINE_ITEM_RELATIONS:
                item[key] = relation_id(item.get(key))
            for key in ("unit_price", "quantity", "total_amount"):
                item[key] = to_decimal(item.get(key))
            item["tracking_categories"] = [relation_id(c) for c in item.get("tracking_categories") or []]
            lines.append(item)
        row["line_items"] = lines
        row["payments"] = [relation_id(p) for p in row.get("payments") or []]
        row["applied_payments"] = [_payment_line(p) for p in row.get("applied_payments") or []]
        row["tracking_categories"] = [relation_id(c) for c in row.get("tracking_categories") or []]
        return super().post_process(row, context)


class PaymentsStream(MergeStream):
    """Customer payments with the invoices they apply to (`applied_to_lines`)."""

    name = "payments"
    path = "/payments"
    expand = ("applied_to_lines",)
    decimal_fields = ("total_amount",)
    schema = _common(
        th.Property("transaction_date", th.DateTimeType),
        th.Property("contact", th.StringType, description="Merge contact UUID"),
        th.Property("account", th.StringType),
        th.Property("payment_method", th.StringType),
        th.Property("currency", th.StringType),
        th.Property("exchange_rate", th.StringType),
        th.Property("company", th.StringType),
        th.Property("total_amount", th.NumberType),
        th.Property("type", th.StringType, description="ACCOUNTS_RECEIVABLE | ACCOUNTS_PAYABLE"),
        th.Property("applied_to_lines", th.ArrayType(_PAYMENT_LINE)),
        th.Property("tracking_categories", _STR_ARRAY),
    ).to_dict()

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        for key in ("contact", "account", "payment_method", "company"):
            row[key] = relation_id(row.get(key))
        row["applied_to_lines"] = [_payment_line(p) for p in row.get("applied_to_lines") or []]
        row["tracking_categories"] = [relation_id(c) for c in row.get("tracking_categories") or []]
        return super().post_process(row, context)


#: Reference data first, then documents: a target draining in stream order sees lookups before use.
STREAM_TYPES: tuple[type[MergeStream], ...] = (
    AccountsStream,
    ItemsStream,
    TrackingCategoriesStream,
    ContactsStream,
    InvoicesStream,
    PaymentsStream,
)
