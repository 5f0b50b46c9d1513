"""Voids as QuickBooks does them, and invoices/payments as QBO's own API (passthrough) reaches them.

QuickBooks keeps a voided transaction: its amounts and quantities become zero and "Voided" is prepended to its
`PrivateNote` (Intuit blog 2016-04-06 "Voiding Invoice Objects"; the Invoice and Payment references). Invoices are
voided with `POST .../invoice?operation=void {Id, SyncToken}`, payments with a sparse update
`POST .../payment?operation=update&include=void {Id, SyncToken, sparse: true}`. Both need the current SyncToken
(5010 otherwise) and bump it. The Merge common models follow: an invoice becomes `status: VOID` with zero totals,
a payment `total_amount: 0` without applications; the documents they were linked to reopen.

Why here, apart from the write rules: a void is done in QuickBooks (passthrough, or the admin helper), never
through a Merge common-model write, and it changes invoices and payments together.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from sandbox.merge_credit_refunds import create_linking_payment
from sandbox.merge_payments import unapply_payment
from sandbox.merge_qbo_faults import (
    QboError,
    business_error,
    deposited_transaction,
    invalid_property,
    missing_param,
    object_not_found,
    stale_object,
    unsupported_operation,
)
from sandbox.merge_store import Row, iso, now_us
from sandbox.merge_tables import MergeTables
from sandbox.merge_views import qbo_view

#: Called with (table, row) right before a void changes `row` (the app holds Merge's copy there when Merge sees
#: passthrough voids only at its next sync).
BeforeChange = Callable[[str, Row], None]
ENTITY_TABLE = {"Invoice": "invoices", "Payment": "payments"}


def _unchanged(table: str, row: Row) -> None:
    return None


def voided_note(note: str | None) -> str:
    """QBO prepends "Voided" to the existing private note (ASSUMPTION: the separator, ": ", is the sandbox's)."""
    return f"Voided{': ' + note if note else ''}"


def is_voided(table: str, row: Row) -> bool:
    return bool(row["status"] == "VOID") if table == "invoices" else bool(row.get("_voided"))


def void_invoice(data: MergeTables, row: Row, *, before_change: BeforeChange = _unchanged) -> list[tuple[str, Row]]:
    """Void an invoice as QuickBooks does: amounts and quantities zero, tax zero, "Voided" note, SyncToken + 1;
    payments applied to it stay, unapplied (customer credit). Returns the rows it changed ([] when the invoice was
    void already: voiding again changes nothing)."""
    if row["status"] == "VOID":
        return []
    payments = [p for p in map(data.t("payments").get, list(row["payments"])) if p is not None]
    before_change("invoices", row)
    for payment in payments:
        before_change("payments", payment)
    for payment in payments:
        unapply_payment(data, payment, only_invoice=row["id"])
        payment["_sync_token"] = payment.get("_sync_token", 0) + 1
        data.t("payments").touch(payment)
    for line in row["line_items"]:
        line["total_amount"] = 0.0
        line["unit_price"] = 0.0 if line["unit_price"] is not None else None
        line["quantity"] = 0.0 if line["quantity"] is not None else None
    row.update(
        status="VOID",
        total_amount=0.0,
        sub_total=0.0,
        total_tax_amount=0.0,
        balance=0.0,
        paid_on_date=None,
        memo=voided_note(row["memo"]),
    )
    row["_tax_lines"] = []
    row["_sync_token"] = row.get("_sync_token", 0) + 1
    data.doc_numbers.pop(str(row["number"]).casefold(), None)
    data.t("invoices").touch(row)
    for line in row["line_items"]:
        line["modified_at"] = row["modified_at"]
    return [("invoices", row)] + [("payments", p) for p in payments]


def void_payment(data: MergeTables, row: Row, *, before_change: BeforeChange = _unchanged) -> list[tuple[str, Row]]:
    """Void a payment as QuickBooks does: its amount zero, its applications gone (the invoices reopen), "Voided"
    note, SyncToken + 1. Returns the rows it changed ([] when it was void already)."""
    if row.get("_voided"):
        return []
    invoice_ids = list(dict.fromkeys(ln["related_object_id"] for ln in row["applied_to_lines"]))
    invoices = [i for i in map(data.t("invoices").get, invoice_ids) if i is not None]
    before_change("payments", row)
    for invoice in invoices:
        before_change("invoices", invoice)
    unapply_payment(data, row)  # reopens the invoices and bumps their modified_at
    row["total_amount"] = 0.0
    row["_voided"] = True
    row["_private_note"] = voided_note(row.get("_private_note"))
    row["_sync_token"] = row.get("_sync_token", 0) + 1
    data.t("payments").touch(row)
    return [("payments", row)] + [("invoices", i) for i in invoices]


def record_void(data: MergeTables, table: str, row: Row, changed: list[tuple[str, Row]], via: str) -> dict[str, Any]:
    """Log one void QuickBooks accepted (GET /__admin/voids): what, how, and what else it changed."""
    entry = {
        "at": iso(now_us()),
        "via": via,
        "entity": "Invoice" if table == "invoices" else "Payment",
        "merge_id": row["id"],
        "qbo_id": row["remote_id"],
        "sync_token": str(row.get("_sync_token", 0)),
        "changed": bool(changed),
        "also_changed": [{"model": t, "id": r["id"]} for t, r in changed if r is not row],
    }
    data.voids.append(entry)
    return entry


class QboTransactions:
    """Invoices and payments as QBO's API answers them through Merge's passthrough: `GET invoice/{Id}`,
    `GET payment/{Id}`, their voids, and a new Payment of 0 linking a credit memo to a check (a credit paid back).
    Other invoice/payment writes are not emulated (4001)."""

    def __init__(
        self, data: MergeTables, *, refuse_with_payments: bool = False, before_change: BeforeChange = _unchanged
    ) -> None:
        self.data = data
        self.refuse_with_payments = refuse_with_payments
        self.before_change = before_change

    def _row(self, entity: str, id_: Any) -> Row:
        row = self.data.t(ENTITY_TABLE[entity]).by_remote_id(str(id_), entity) if id_ not in (None, "") else None
        if row is None or row["remote_was_deleted"]:
            raise object_not_found(entity, id_, "Id")
        return row

    def read(self, entity: str, id_: str) -> dict[str, Any]:
        """`GET .../invoice/{Id}` (or payment): the QBO object, or 610."""
        return copy.deepcopy(qbo_view(self.data, ENTITY_TABLE[entity], self._row(entity, id_))[1])

    def post(self, entity: str, query: dict[str, list[str]], body: Any) -> dict[str, Any]:
        """`POST .../invoice?operation=void` or `.../payment?operation=update&include=void`: the voided object."""
        operation = (query.get("operation") or [""])[0].lower()
        include = (query.get("include") or [""])[0].lower()
        if entity == "Payment" and not operation and isinstance(body, dict) and body.get("Id") in (None, ""):
            made = create_linking_payment(self.data, self.data.qbo.purchases, body)  # a refunded credit's link
            return self.read(entity, made["remote_id"])
        wants_void = operation == "void" if entity == "Invoice" else operation == "update" and include == "void"
        if not wants_void:
            raise unsupported_operation(
                f"The sandbox emulates only the void of a {entity} through passthrough (operation={operation or '-'})"
            )
        if not isinstance(body, dict):
            raise invalid_property("Body must be an object")
        if body.get("Id") in (None, ""):
            raise missing_param("Id")
        row = self._row(entity, body["Id"])
        if body.get("SyncToken") in (None, ""):
            raise missing_param("SyncToken")
        if str(body["SyncToken"]) != str(row.get("_sync_token", 0)):
            raise stale_object()
        table = ENTITY_TABLE[entity]
        if table == "invoices" and self.refuse_with_payments and row["status"] != "VOID" and row["payments"]:
            raise self.payments_applied(row)
        if row.get("_deposited") and not row.get("_voided"):
            raise deposited_transaction()
        void = void_invoice if table == "invoices" else void_payment
        changed = void(self.data, row, before_change=self.before_change)
        record_void(self.data, table, row, changed, "passthrough")
        return self.read(entity, row["remote_id"])

    @staticmethod
    def payments_applied(row: Row) -> QboError:
        """ASSUMPTION (switch `void_refused_with_payments`): QuickBooks refuses to void an invoice a payment is
        applied to; the wording is the sandbox's (a 6000 business validation error)."""
        return business_error(
            f"Invoice {row['number']} has payments applied to it. Delete or void the payments, or unlink them from "
            "the invoice, before you void it.",
            "LinkedTxn",
        )
