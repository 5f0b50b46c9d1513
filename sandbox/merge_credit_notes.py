"""Merge sandbox Credit Notes (QuickBooks Credit Memos): POST/PATCH/GET /credit-notes and the application of a
credit note to an invoice (`POST /credit-notes/{id}/application`), under QuickBooks' credit-memo rules.

QuickBooks' rules emulated: a Credit Memo needs a customer (CustomerRef) and at least one line with an amount
(Amount = UnitPrice x Qty, 6070); its total may not be negative (it *is* the credit: a negative one is refused,
6000); its DocNumber is unique among credit memos (6140; invoices are numbered apart). Applying it moves money
from its `remaining_credit` to the invoice's `balance`: never more than either holds (6000, as QuickBooks refuses
a linked amount above the open balance), only to an open invoice of the same customer. The invoice then lists the
credit note in `applied_credit_notes`; a PATCH may not bring the credit memo's total below what it applied.
Decimal fields of the wire format (line `quantity`, `unit_price`, `total_line_amount`, `applied_amount`) are decimal
strings, totals numbers, as Merge's CreditNote schema has them. ASSUMPTION: Merge shows QuickBooks' credit memo as
`SUBMITTED` while credit remains and `PAID` once it is used up.
"""

from __future__ import annotations

import uuid
from typing import Any

from sandbox.merge_credit_schema import CREDIT_LINE_FIELDS
from sandbox.merge_invoices import code_of, customer_ref, line_tax_rate, settle
from sandbox.merge_qbo import QboError, business_error, invalid_reference, missing_param
from sandbox.merge_schema import (
    WriteError,
    date_field,
    money_field,
    nested_warnings,
    problem,
    provider_problem,
    screen,
    today,
    type_error,
)
from sandbox.merge_store import Row, iso, now_us
from sandbox.merge_tables import MergeTables
from sandbox.merge_tax import compute_tax, money_sum
from sandbox.merge_tracking import apply_tracking

TABLE = "credit-notes"


def _money_text(value: float) -> str:
    return f"{value:.2f}"


def _line(data: MergeTables, line: Any, i: int, contact_id: str) -> Row:
    """One validated credit-note line (an amount, or quantity x unit price; a live item/account)."""
    ptr = f"model/line_items/{i}"
    if not isinstance(line, dict):
        raise type_error(ptr, "line items must be objects.")
    qty = money_field(line["quantity"], f"{ptr}/quantity") if line.get("quantity") is not None else None
    price = money_field(line["unit_price"], f"{ptr}/unit_price") if line.get("unit_price") is not None else None
    if line.get("total_line_amount") is not None:
        amount = money_field(line["total_line_amount"], f"{ptr}/total_line_amount")
        if qty is not None and price is not None and abs(round(qty * price, 2) - amount) > 0.011:
            fault = QboError(
                "6070",
                "Amount is not equal to UnitPrice * Qty",
                f"Amount is not equal to UnitPrice * Qty. Supplied value:{amount}",
                "Line.Amount",
            )
            raise WriteError([provider_problem(fault, ptr)])
    elif qty is not None and price is not None:
        amount = round(qty * price, 2)
    else:
        raise WriteError([provider_problem(missing_param("Line.Amount"), ptr)])
    for key, table, ref in (("item", "items", "ItemRef"), ("account", "accounts", "AccountRef")):
        if line.get(key) is not None and data.live(table, line[key]) is None:
            raise WriteError([provider_problem(invalid_reference(ref, line[key]), f"{ptr}/{key}")])
    default = data.default_item()
    item_id = line.get("item") or (default["id"] if default else None)
    item = data.t("items").get(item_id)
    rate = line_tax_rate(data, line, item, ptr)
    return {
        "id": str(uuid.uuid4()),
        "remote_id": str(i + 1),
        "created_at": None,
        "modified_at": None,
        "item": item_id,
        "name": item.get("name") if item is not None else None,
        "description": line.get("description"),
        "quantity": _money_text(qty) if qty is not None else None,
        "memo": line.get("memo"),
        "unit_price": _money_text(price) if price is not None else None,
        "tax_rate": rate["id"] if rate is not None else None,
        "total_line_amount": _money_text(amount),
        "tracking_category": None,
        "tracking_categories": list(line.get("tracking_categories") or []),
        "account": line.get("account"),
        "company": None,
        "contact": contact_id,
        "project": None,
        "remote_was_deleted": False,
    }


def _lines(data: MergeTables, raw: Any, contact_id: str) -> list[Row]:
    if not isinstance(raw, list) or not raw:
        raise WriteError(
            [
                problem(
                    "model/line_items",
                    "Missing Required Field",
                    "line_items is a required field on model and needs at least one line.",
                    "MISSING_REQUIRED_FIELD",
                )
            ]
        )
    return [_line(data, line, i, contact_id) for i, line in enumerate(raw)]


def _number(data: MergeTables, raw: Any, own_id: str | None) -> str:
    """A DocNumber QuickBooks takes for a credit memo: at most 21 characters, unique among credit memos."""
    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        raise type_error("model/number", "number must be a string.")
    number = str(raw).strip()
    if len(number) > 21:
        raise type_error("model/number", "number may have at most 21 characters.")
    holder = data.credit_numbers.get(number.casefold())
    if data.unique_invoice_numbers and holder is not None and holder != own_id:
        fault = QboError(
            "6140",
            "Duplicate Document Number Error",
            "Duplicate Document Number Error : You must specify a different number. This number has already been "
            f"used. DocNumber={number} is assigned to TxnType=CreditMemo with TxnId="
            f"{data.t(TABLE).row(holder)['remote_id']}",
            "DocNumber",
        )
        raise WriteError([provider_problem(fault, "model/number")])
    return number


def applied_total(row: Row) -> float:
    """What a credit note has used: applied to invoices, and paid back through payments of 0 (take_credit)."""
    applied = (float(a["applied_amount"]) for a in row["applied_to_lines"] if not a["remote_was_deleted"])
    return money_sum(*applied, row.get("_paid_back", 0.0))


def write_credit_note(data: MergeTables, model: Any, existing: Row | None = None) -> tuple[Row, list[dict[str, Any]]]:
    """POST/PATCH /credit-notes with QuickBooks' credit-memo rules (module docstring)."""
    fields, warnings = screen(model, f"{'PATCH' if existing else 'POST'} {TABLE}")
    if isinstance(fields.get("line_items"), list):
        warnings += nested_warnings(fields["line_items"], CREDIT_LINE_FIELDS, "model/line_items")
    for key in ("applied_to_lines", "remaining_credit"):  # applied through /application; QBO computes the rest
        if key in fields:
            warnings.append(problem(f"model/{key}", "Read-only Field", f"{key} was ignored.", "UNSUPPORTED_FIELD"))
    try:
        contact = customer_ref(data, fields.get("contact", existing["contact"] if existing else None))
        lines = (
            _lines(data, fields["line_items"], contact["id"])
            if "line_items" in fields or existing is None
            else existing["line_items"]
        )
        tracking = apply_tracking(data, fields, existing, lines)  # ClassRef/DepartmentRef: as on an invoice
        sub_total = money_sum(*(float(line["total_line_amount"]) for line in lines))
        tax, _ = compute_tax(
            data.tax,
            [(code_of(data, line), float(line["total_line_amount"])) for line in lines]
            if data.tax.computes_tax
            else [],
        )
        total = money_sum(sub_total, tax)
        if total < 0:
            raise WriteError(
                [provider_problem(business_error("A credit memo's total can't be negative."), "model/line_items")]
            )
        applied = applied_total(existing) if existing else 0.0
        if total + 0.001 < applied:
            detail_ = f"The credit memo total ({total:.2f}) can't be less than the credit applied ({applied:.2f})."
            raise WriteError([provider_problem(business_error(detail_), "model/line_items")])
        if "total_amount" in fields and fields["total_amount"] is not None:
            sent = money_field(fields["total_amount"], "model/total_amount")
            if abs(sent - total) > 0.001:
                warnings.append(
                    problem(
                        "model/total_amount",
                        "Computed Field",
                        f"total_amount {sent:.2f} differs from the lines' total {total:.2f}, which QuickBooks keeps.",
                        "UNSUPPORTED_FIELD",
                    )
                )
        number = fields.get("number")
        number = (
            _number(data, number, existing["id"] if existing else None)
            if number not in (None, "")
            else (existing["number"] if existing else None)
        )
        when = (
            date_field(fields["transaction_date"], "model/transaction_date")
            if "transaction_date" in fields
            else (existing["transaction_date"] if existing else None)
        )
    except WriteError as exc:
        exc.warnings = warnings + exc.warnings
        raise
    values = {
        "contact": contact["id"],
        "number": number,
        "transaction_date": when or today(),
        "currency": fields.get("currency") or (existing["currency"] if existing else data.tax.currency),
        "total_amount": total,
        "remaining_credit": round(total - applied, 2),
        "line_items": lines,
        "tracking_categories": tracking,
    }
    table = data.t(TABLE)
    if existing is None:
        row = data.new_row(
            TABLE,
            **values,
            status="SUBMITTED",
            company=None,
            exchange_rate=None,
            inclusive_of_tax=None,
            remote_created_at=today(),
            remote_updated_at=None,
            payments=[],
            applied_payments=[],
            accounting_period=None,
            applied_to_lines=[],
        )
        row["_sync_token"] = 0
        table.insert(row)
    else:
        row = existing
        if row["number"]:
            data.credit_numbers.pop(row["number"].casefold(), None)
        row.update(values)
        row["_sync_token"] += 1
        table.touch(row)
    if row["number"]:
        data.credit_numbers[row["number"].casefold()] = row["id"]
    _settle(row)
    for line in row["line_items"]:
        line["created_at"] = line["created_at"] or row["created_at"]
        line["modified_at"] = row["modified_at"]
    return row, warnings


def _settle(row: Row) -> None:
    row["status"] = "PAID" if row["remaining_credit"] <= 0.001 and row["total_amount"] > 0 else "SUBMITTED"


def take_credit(data: MergeTables, credit: Row, amount: float, payment: Row) -> Row:
    """A payment of 0 (sandbox/merge_credit_refunds.py) uses `amount` of the credit: its remaining credit drops and
    it lists the payment. Returns the payment's applied line (Merge's PaymentLineItem, type CREDIT_NOTE)."""
    ts = iso(now_us())
    line = {
        "id": str(uuid.uuid4()),
        "remote_id": None,
        "created_at": ts,
        "modified_at": ts,
        "applied_amount": _money_text(amount),
        "applied_date": payment["transaction_date"],
        "related_object_id": credit["id"],
        "related_object_type": "CREDIT_NOTE",
    }
    data.payment_lines[line["id"]] = line
    credit["remaining_credit"] = round(credit["remaining_credit"] - amount, 2)
    credit["_paid_back"] = money_sum(credit.get("_paid_back", 0.0), amount)
    if payment["id"] not in credit["payments"]:
        credit["payments"].append(payment["id"])
    credit["applied_payments"].append(line["id"])
    credit["_sync_token"] += 1
    _settle(credit)
    data.t(TABLE).touch(credit)
    return line


def apply_credit_note(data: MergeTables, credit: Row, body: Any) -> Row:
    """POST /credit-notes/{id}/application ({invoice, applied_date, applied_amount}, not wrapped in `model`)."""
    if not isinstance(body, dict):
        raise WriteError([problem("", "Invalid Request Body", "The body must be an object.", "INCORRECT_FIELD_TYPE")])
    missing = [key for key in ("invoice", "applied_date", "applied_amount") if body.get(key) in (None, "")]
    if missing:
        raise WriteError(
            [
                problem(k, "Missing Required Field", f"{k} is a required field.", "MISSING_REQUIRED_FIELD")
                for k in missing
            ]
        )
    amount = money_field(body["applied_amount"], "applied_amount")
    when = date_field(body["applied_date"], "applied_date")
    invoice = data.live("invoices", body["invoice"])
    if invoice is None or invoice["type"] != "ACCOUNTS_RECEIVABLE":
        raise WriteError([provider_problem(invalid_reference("Invoice", body["invoice"]), "invoice")])
    refusal = None
    if amount <= 0:
        refusal = "The amount applied must be positive."
    elif invoice["contact"] != credit["contact"]:
        refusal = "A credit memo can only be applied to an invoice of the same customer."
    elif invoice["status"] == "VOID":
        refusal = "This transaction has been voided and can't be edited."
    elif amount > credit["remaining_credit"] + 0.001:
        left = credit["remaining_credit"]
        refusal = f"The amount applied ({amount:.2f}) is more than the credit memo's remaining credit ({left:.2f})."
    elif amount > invoice["balance"] + 0.001:
        refusal = (
            f"The amount applied ({amount:.2f}) is more than the invoice's open balance ({invoice['balance']:.2f})."
        )
    if refusal is not None:
        raise WriteError([provider_problem(business_error(refusal, "LinkedTxn"), "applied_amount")])
    credit["applied_to_lines"].append(
        {
            "remote_id": None,
            "created_at": None,
            "modified_at": None,
            "invoice": invoice["id"],
            "applied_date": when,
            "applied_amount": _money_text(amount),
            "remote_was_deleted": False,
        }
    )
    credit["remaining_credit"] = round(credit["remaining_credit"] - amount, 2)
    credit["_sync_token"] += 1
    _settle(credit)
    data.t(TABLE).touch(credit)
    for applied in credit["applied_to_lines"]:
        applied["created_at"] = applied["created_at"] or credit["modified_at"]
        applied["modified_at"] = applied["modified_at"] or credit["modified_at"]
    invoice["balance"] = round(invoice["balance"] - amount, 2)
    if credit["id"] not in invoice["applied_credit_notes"]:
        invoice["applied_credit_notes"].append(credit["id"])
    invoice["_sync_token"] += 1
    settle(invoice)
    data.t("invoices").touch(invoice)
    return credit


def qbo_view(data: MergeTables, row: Row) -> tuple[str, dict[str, Any]]:
    """QuickBooks' CreditMemo of a credit note (its remote_data)."""
    contact = data.t("contacts").get(row["contact"])
    items = data.t("items")
    lines: list[dict[str, Any]] = []
    for n, line in enumerate(row["line_items"]):
        item = items.get(line["item"])
        rate = data.t("tax-rates").get(line.get("tax_rate"))
        detail_ = {
            "ItemRef": {"value": item["remote_id"], "name": item["name"]} if item else None,
            "UnitPrice": float(line["unit_price"]) if line["unit_price"] is not None else None,
            "Qty": float(line["quantity"]) if line["quantity"] is not None else None,
            **({"TaxCodeRef": {"value": rate["remote_id"]}} if rate is not None else {}),
        }
        lines.append(
            {
                "Id": line["remote_id"],
                "LineNum": n + 1,
                "Description": line["description"],
                "Amount": float(line["total_line_amount"]),
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": detail_,
            }
        )
    return "/creditmemo", {
        "Id": row["remote_id"],
        "SyncToken": str(row.get("_sync_token", 0)),
        "DocNumber": row["number"],
        "TxnDate": (row["transaction_date"] or "")[:10],
        "CustomerRef": {"value": contact["remote_id"], "name": contact["name"]} if contact else None,
        "Line": lines,
        "TotalAmt": row["total_amount"],
        "RemainingCredit": row["remaining_credit"],
        "CurrencyRef": {"value": row["currency"]},
        "MetaData": {"CreateTime": row["created_at"], "LastUpdatedTime": row["modified_at"]},
        "domain": "QBO",
        "sparse": False,
    }
