"""Merge sandbox write vocabulary of credit notes (QuickBooks Credit Memos): the fields QBO takes per write.

Why apart from merge_schema: those lists are long and merge_schema holds every other model's; it merges these into
its `SUPPORTED`, `REQUIRED` and `EXPANDS`, so the endpoints and `screen` read one copy. From
qbo_supported_fields.json (POST/PATCH /credit-notes) and the openapi's CreditNoteLineItemRequest.
"""

from __future__ import annotations

CREDIT_NOTE_SUPPORTED: dict[str, list[str]] = {
    "POST credit-notes": [
        "applied_to_lines",
        "contact",
        "currency",
        "exchange_rate",
        "line_items",
        "number",
        "remaining_credit",
        "remote_created_at",
        "remote_id",
        "remote_updated_at",
        "total_amount",
        "tracking_categories",
        "transaction_date",
    ],
    "PATCH credit-notes": [
        "contact",
        "currency",
        "exchange_rate",
        "line_items",
        "number",
        "remaining_credit",
        "remote_created_at",
        "remote_id",
        "remote_updated_at",
        "total_amount",
        "tracking_categories",
        "transaction_date",
    ],
}
#: QuickBooks' field list names `contact` required on create (a Credit Memo needs a CustomerRef).
CREDIT_NOTE_REQUIRED: dict[str, list[str]] = {"POST credit-notes": ["contact", "line_items"]}
#: CreditNoteLineItem fields QBO maps (the GET widget's `CreditNoteLineItem.*`).
CREDIT_LINE_FIELDS = [
    "account",
    "description",
    "item",
    "memo",
    "project",
    "quantity",
    "remote_id",
    "tax_rate",
    "total_line_amount",
    "tracking_categories",
    "unit_price",
]
CREDIT_NOTE_EXPANDS = {
    "credit-notes": {
        "accounting_period",
        "applied_payments",
        "company",
        "contact",
        "line_items",
        "payments",
        "tracking_categories",
    }
}
