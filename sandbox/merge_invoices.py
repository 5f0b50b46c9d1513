"""Merge sandbox Invoices: POST/PATCH /invoices under QBO's invoice rules, and how status follows the balance.

QuickBooks keeps no invoice status: the sandbox derives OPEN / PARTIALLY_PAID / PAID from the balance on every
change (`settle`), so invoices and payments (merge_payments) always agree.
"""

from __future__ import annotations

import copy
import uuid
from datetime import timedelta
from typing import Any

from sandbox.merge_qbo import QboError, business_error, invalid_reference, missing_param
from sandbox.merge_schema import (
    FIELD_MAPPINGS,
    LINE_FIELDS,
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
from sandbox.merge_store import Row, parse_dt
from sandbox.merge_tables import MergeTables
from sandbox.merge_tax import compute_tax, line_tax_code, money_sum
from sandbox.merge_tracking import apply_tracking


def build_lines(data: MergeTables, raw: Any, contact_id: str | None) -> list[Row]:
    """Validate `line_items` (an amount, or quantity x unit price; live item/account) into invoice lines."""
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
    lines: list[Row] = []
    for i, line in enumerate(raw):
        ptr = f"model/line_items/{i}"
        if not isinstance(line, dict):
            raise type_error(ptr, "line items must be objects.")
        qty = money_field(line["quantity"], f"{ptr}/quantity") if line.get("quantity") is not None else None
        price = money_field(line["unit_price"], f"{ptr}/unit_price") if line.get("unit_price") is not None else None
        if line.get("total_amount") is not None:
            amount = money_field(line["total_amount"], f"{ptr}/total_amount")
            if qty is not None and price is not None and abs(round(qty * price, 2) - amount) > 0.011:
                raise WriteError(
                    [
                        provider_problem(
                            QboError(
                                "6070",
                                "Amount is not equal to UnitPrice * Qty",
                                f"Amount is not equal to UnitPrice * Qty. Supplied value:{amount}",
                                "Line.Amount",
                            ),
                            ptr,
                        )
                    ]
                )
        elif qty is not None and price is not None:
            amount = round(qty * price, 2)
        else:
            raise WriteError([provider_problem(missing_param("Line.Amount"), ptr)])
        item_id = line.get("item")
        if item_id is not None and data.live("items", item_id) is None:
            raise WriteError([provider_problem(invalid_reference("ItemRef", item_id), f"{ptr}/item")])
        account_id = line.get("account")
        if account_id is not None and data.live("accounts", account_id) is None:
            raise WriteError([provider_problem(invalid_reference("AccountRef", account_id), f"{ptr}/account")])
        if item_id is None:  # QBO puts lines without an ItemRef on the default "Services" item
            default = data.default_item()
            item_id = default["id"] if default else None
        item = data.t("items").get(item_id)
        tax_rate = line_tax_rate(data, line, item, ptr)
        lines.append(
            {
                "id": str(uuid.uuid4()),
                "remote_id": str(i + 1),
                "created_at": None,
                "modified_at": None,
                "description": line.get("description"),
                "unit_price": price,
                "quantity": qty,
                "total_amount": amount,
                "employee": None,
                "project": None,
                "contact": contact_id,
                "currency": data.tax.currency,
                "exchange_rate": None,
                "item": item_id,
                "account": account_id,
                "tax_rate": tax_rate["id"] if tax_rate is not None else None,
                "tracking_category": None,
                "tracking_categories": [],
                "company": None,
                "remote_was_deleted": False,
                "is_billable": line.get("is_billable"),
                "field_mappings": copy.deepcopy(FIELD_MAPPINGS),
            }
        )
    return lines


def line_tax_rate(data: MergeTables, line: Any, item: Row | None, ptr: str) -> Row | None:
    """The Merge TaxRate a written line ends up with: the one it names, or what the company's tax setup gives an
    untaxed line (a non-US company refuses a line without one; an untaxable item is exempt)."""
    raw_rate = line.get("tax_rate")
    try:
        code_id = line_tax_code(
            data.tax,
            raw_rate,
            data.t("tax-rates").get(raw_rate) if isinstance(raw_rate, str) else None,
            taxable=bool(item.get("_taxable", True)) if item is not None else True,
        )
    except QboError as exc:
        raise WriteError([provider_problem(exc, f"{ptr}/tax_rate")]) from None
    return data.tax_rate_by_code(code_id)


def code_of(data: MergeTables, line: Row) -> str | None:
    """The QBO TaxCode Id an invoice line carries (its Merge `tax_rate`'s remote_id), or None."""
    rate = data.t("tax-rates").get(line.get("tax_rate"))
    return str(rate["remote_id"]) if rate is not None else None


def customer_ref(data: MergeTables, contact_id: Any, pointer: str = "model/contact") -> Row:
    """The live, active customer a transaction names, or QBO's invalid-reference error."""
    row = data.live("contacts", contact_id)
    if row is None or not row["is_customer"] or row["status"] != "ACTIVE":
        raise WriteError([provider_problem(invalid_reference("CustomerRef", contact_id), pointer)])
    return row


def check_doc_number(data: MergeTables, raw: Any, own_id: str | None) -> str:
    """A DocNumber QBO accepts: at most 21 characters, unique among invoices (unless the app allows repeats)."""
    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        raise type_error("model/number", "number must be a string.")
    number = str(raw).strip()
    if len(number) > 21:
        raise WriteError(
            [
                provider_problem(
                    QboError(
                        "2050",
                        "String length is either shorter or longer than supported by specification",
                        f"String length specified does not match the supported length. Min:0 Max:21 supplied length:"
                        f"{len(number)}",
                        "DocNumber",
                    ),
                    "model/number",
                )
            ]
        )
    holder = data.doc_numbers.get(number.casefold())
    if data.unique_invoice_numbers and holder is not None and holder != own_id:
        raise WriteError(
            [
                provider_problem(
                    QboError(
                        "6140",
                        "Duplicate Document Number Error",
                        "Duplicate Document Number Error : You must specify a different number. This number has "
                        f"already been used. DocNumber={number} is assigned to TxnType=Invoice with TxnId="
                        f"{data.t('invoices').row(holder)['remote_id']}",
                        "DocNumber",
                    ),
                    "model/number",
                )
            ]
        )
    return number


def auto_number(data: MergeTables) -> str:
    """The next free DocNumber, as QBO assigns one when the invoice has none."""
    while str(data.next_doc_number).casefold() in data.doc_numbers:
        data.next_doc_number += 1
    value = str(data.next_doc_number)
    data.next_doc_number += 1
    return value


def write_invoice(data: MergeTables, model: Any, existing: Row | None = None) -> tuple[Row, list[dict[str, Any]]]:
    """POST/PATCH /invoices with QBO's invoice rules (customer, >= 1 line with an amount, DocNumber)."""
    op = "PATCH invoices" if existing else "POST invoices"
    fields, warnings = screen(model, op)
    if isinstance(fields.get("line_items"), list):  # a company that needs a tax code on every line takes one
        allowed = [*LINE_FIELDS, "tax_rate"] if data.tax.lines_need_code else LINE_FIELDS
        warnings += nested_warnings(fields["line_items"], allowed, "model/line_items")
    for key in ("status", "total_amount", "balance", "sub_total"):
        if key in fields:  # QBO computes these from the lines and the applied payments
            warnings.append(
                problem(
                    f"model/{key}",
                    "Read-only Field",
                    f"{key} is computed by QuickBooks Online and was ignored.",
                    "UNSUPPORTED_FIELD",
                )
            )
    inv_type = fields.get("type", existing["type"] if existing else None)
    if inv_type not in ("ACCOUNTS_RECEIVABLE", "ACCOUNTS_PAYABLE"):
        raise WriteError(
            [
                problem(
                    "model/type",
                    "Invalid Field Choice",
                    "type must be ACCOUNTS_RECEIVABLE or ACCOUNTS_PAYABLE.",
                    "INVALID_FIELD_CHOICE",
                )
            ],
            warnings,
        )
    if inv_type == "ACCOUNTS_PAYABLE":
        raise WriteError(
            [
                problem(
                    "model/type",
                    "Unsupported Operation",
                    "The sandbox emulates invoices (ACCOUNTS_RECEIVABLE) only; bills are not supported.",
                    "ERROR",
                )
            ],
            warnings,
        )
    try:
        if existing is not None and existing["status"] == "VOID":
            raise WriteError(
                [provider_problem(business_error("This transaction has been voided and can't be edited."))]
            )
        contact_id = fields.get("contact", existing["contact"] if existing else None)
        contact = customer_ref(data, contact_id)
        if existing is not None and contact["id"] != existing["contact"] and existing["payments"]:
            raise WriteError(
                [
                    provider_problem(
                        business_error("You can't change the customer of an invoice that has payments applied."),
                        "model/contact",
                    )
                ]
            )
        lines = (
            build_lines(data, fields["line_items"], contact["id"])
            if "line_items" in fields or existing is None
            else existing["line_items"]
        )
        tracking = apply_tracking(data, fields, existing, lines)
        number = fields.get("number")
        number = (
            check_doc_number(data, number, existing["id"] if existing else None)
            if number not in (None, "")
            else (existing["number"] if existing else auto_number(data))
        )
        issue = (
            date_field(fields["issue_date"], "model/issue_date")
            if "issue_date" in fields
            else (existing["issue_date"] if existing else today())
        )
        issue = issue or today()
        due = (
            date_field(fields["due_date"], "model/due_date")
            if "due_date" in fields
            else (existing["due_date"] if existing else None)
        )
        if due is None:
            due = (parse_dt(issue) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
        sub_total = money_sum(*(line["total_amount"] for line in lines))
        tax, tax_lines = compute_tax(
            data.tax,
            [(code_of(data, line), line["total_amount"]) for line in lines] if data.tax.computes_tax else [],
        )
        total = money_sum(sub_total, tax)
        paid = round(existing["total_amount"] - existing["balance"], 2) if existing else 0.0
        if existing is not None and total + 0.001 < paid:
            raise WriteError(
                [
                    provider_problem(
                        business_error(
                            f"The invoice total ({total:.2f}) can't be less than the payments applied ({paid:.2f})."
                        ),
                        "model/line_items",
                    )
                ]
            )
    except WriteError as exc:
        exc.warnings = warnings + exc.warnings
        raise
    values = {
        "type": inv_type,
        "contact": contact["id"],
        "number": number,
        "issue_date": issue,
        "due_date": due,
        "memo": fields.get("memo", existing["memo"] if existing else None),
        "currency": fields.get("currency") or (existing["currency"] if existing else data.tax.currency),
        "sub_total": sub_total,
        "total_amount": total,
        "balance": round(total - paid, 2),
        "line_items": lines,
        "tracking_categories": tracking,
        "total_tax_amount": float(tax),
        "_tax_lines": tax_lines,
        "total_discount": existing["total_discount"] if existing else None,
    }
    table = data.t("invoices")
    if existing is None:
        row = data.new_row(
            "invoices",
            **values,
            paid_on_date=None,
            company=None,
            employee=None,
            exchange_rate=None,
            payment_term=None,
            status="OPEN",
            remote_updated_at=None,
            accounting_period=None,
            purchase_orders=[],
            sales_orders=[],
            payments=[],
            applied_payments=[],
            applied_credit_notes=[],
            applied_vendor_credits=[],
            inclusive_of_tax=fields.get("inclusive_of_tax"),
        )
        row["_sync_token"] = 0
        table.insert(row)
    else:
        row = existing
        if row["number"]:
            data.doc_numbers.pop(row["number"].casefold(), None)
        row.update(values)
        row["_sync_token"] += 1
    data.doc_numbers[number.casefold()] = row["id"]
    settle(row)
    if existing is not None:
        table.touch(row)
    for line in row["line_items"]:
        line["created_at"] = line["created_at"] or row["created_at"]
        line["modified_at"] = row["modified_at"]
    return row, warnings


def settle(invoice: Row) -> None:
    """Status and paid_on_date follow the balance (QBO has no explicit invoice status)."""
    if invoice["status"] == "VOID":
        return
    if invoice["balance"] <= 0.001:
        invoice["balance"] = 0.0
        invoice["status"] = "PAID"
        invoice["paid_on_date"] = invoice.get("_last_payment_date") or invoice["issue_date"]
    else:
        invoice["status"] = "PARTIALLY_PAID" if invoice["balance"] + 0.001 < invoice["total_amount"] else "OPEN"
        invoice["paid_on_date"] = None
