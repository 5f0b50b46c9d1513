"""Merge sandbox Payments: POST/PATCH /payments, applying them to invoices and taking them back off.

Why applications are planned before anything changes: a payment that over-applies any invoice must fail without
moving a balance, and a PATCH that fails must leave the old applications in place.
"""

from __future__ import annotations

import uuid
from typing import Any

from sandbox.merge_invoices import customer_ref, settle
from sandbox.merge_qbo import business_error, invalid_reference
from sandbox.merge_qbo_faults import deposited_transaction
from sandbox.merge_schema import (
    APPLIED_FIELDS,
    WriteError,
    date_field,
    money_field,
    nested_warnings,
    problem,
    provider_problem,
    screen,
    type_error,
)
from sandbox.merge_store import Row, iso, now_us
from sandbox.merge_tables import MergeTables


def plan_applications(data: MergeTables, raw: Any, contact: Row, total: float) -> list[tuple[Row, float, str | None]]:
    """Validate applied_to_lines against live invoice balances; returns (invoice, amount, applied_date)."""
    if raw in (None, []):
        return []
    if not isinstance(raw, list):
        raise type_error("model/applied_to_lines", "applied_to_lines must be a list.")
    plan: list[tuple[Row, float, str | None]] = []
    per_invoice: dict[str, float] = {}
    for i, line in enumerate(raw):
        ptr = f"model/applied_to_lines/{i}"
        if not isinstance(line, dict):
            raise type_error(ptr, "applied_to_lines entries must be objects.")
        kind = line.get("related_object_type") or "INVOICE"
        if kind != "INVOICE":
            raise WriteError(
                [
                    problem(
                        f"{ptr}/related_object_type",
                        "Unsupported Operation",
                        "The sandbox applies payments to invoices only.",
                        "ERROR",
                    )
                ]
            )
        invoice = data.live("invoices", line.get("related_object_id"))
        if invoice is None or invoice["status"] == "VOID":
            raise WriteError(
                [
                    provider_problem(
                        invalid_reference("LinkedTxn", line.get("related_object_id")), f"{ptr}/related_object_id"
                    )
                ]
            )
        if invoice["contact"] != contact["id"]:
            raise WriteError(
                [
                    provider_problem(
                        business_error(
                            f"Invoice {invoice['number']} belongs to a different customer than this payment.",
                            "LinkedTxn",
                        ),
                        f"{ptr}/related_object_id",
                    )
                ]
            )
        if line.get("applied_amount") in (None, ""):
            raise WriteError(
                [
                    problem(
                        f"{ptr}/applied_amount",
                        "Missing Required Field",
                        "applied_amount is a required field.",
                        "MISSING_REQUIRED_FIELD",
                    )
                ]
            )
        amount = money_field(line["applied_amount"], f"{ptr}/applied_amount")
        if amount <= 0:
            raise WriteError(
                [
                    provider_problem(
                        business_error("Applied amounts must be greater than zero."), f"{ptr}/applied_amount"
                    )
                ]
            )
        per_invoice[invoice["id"]] = round(per_invoice.get(invoice["id"], 0.0) + amount, 2)
        if per_invoice[invoice["id"]] > invoice["balance"] + 0.001:
            raise WriteError(
                [
                    provider_problem(
                        business_error(
                            f"The amount applied ({per_invoice[invoice['id']]:.2f}) is more than the open balance "
                            f"({invoice['balance']:.2f}) of invoice {invoice['number']}.",
                            "Line.Amount",
                        ),
                        f"{ptr}/applied_amount",
                    )
                ]
            )
        plan.append((invoice, amount, date_field(line.get("applied_date"), f"{ptr}/applied_date")))
    if round(sum(a for _, a, _ in plan), 2) > total + 0.001:
        raise WriteError(
            [
                provider_problem(
                    business_error(
                        f"The amounts applied ({sum(a for _, a, _ in plan):.2f}) exceed the payment total "
                        f"({total:.2f}).",
                        "TotalAmt",
                    ),
                    "model/applied_to_lines",
                )
            ]
        )
    return plan


def apply_payment(data: MergeTables, payment: Row, plan: list[tuple[Row, float, str | None]]) -> None:
    """Apply `payment` as planned: one applied line per invoice, balances and statuses move."""
    ts = now_us()
    for invoice, amount, applied_date in plan:
        line = {
            "id": str(uuid.uuid4()),
            "remote_id": None,
            "created_at": iso(ts),
            "modified_at": iso(ts),
            "applied_amount": f"{amount:.2f}",
            "applied_date": applied_date or payment["transaction_date"],
            "related_object_id": invoice["id"],
            "related_object_type": "INVOICE",
        }
        data.payment_lines[line["id"]] = line
        payment["applied_to_lines"].append(line)
        invoice["balance"] = round(invoice["balance"] - amount, 2)
        if payment["id"] not in invoice["payments"]:
            invoice["payments"].append(payment["id"])
        invoice["applied_payments"].append(line["id"])
        invoice["_last_payment_date"] = payment["transaction_date"]
        settle(invoice)
        data.t("invoices").touch(invoice)


def unapply_payment(data: MergeTables, payment: Row, only_invoice: str | None = None) -> None:
    """Reverse a payment's applications (all, or those on one invoice): balances reopen."""
    keep: list[Row] = []
    touched: dict[str, Row] = {}
    for line in payment["applied_to_lines"]:
        invoice = data.t("invoices").get(line["related_object_id"])
        if invoice is None or (only_invoice and invoice["id"] != only_invoice):
            keep.append(line)
            continue
        invoice["balance"] = round(invoice["balance"] + float(line["applied_amount"]), 2)
        if line["id"] in invoice["applied_payments"]:
            invoice["applied_payments"].remove(line["id"])
        touched[invoice["id"]] = invoice
    payment["applied_to_lines"] = keep
    for invoice in touched.values():
        if payment["id"] in invoice["payments"] and not any(ln["related_object_id"] == invoice["id"] for ln in keep):
            invoice["payments"].remove(payment["id"])
        settle(invoice)
        data.t("invoices").touch(invoice)


def amount_kept(
    fields: dict[str, Any], existing: Row, warnings: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """ASSUMPTION (switch `payment_amount_patch_ignored`): QuickBooks keeps a payment's amount and applications on
    a PATCH; Merge answers 200 and says so in a warning (the wording is the sandbox's)."""
    kept = {k: v for k, v in fields.items() if k not in ("total_amount", "applied_to_lines")}
    note = problem(
        "model/total_amount",
        "Field not updated",
        "QuickBooks did not change the payment's amount or applications on update; void it and create it again.",
        "IGNORED_FIELD",
    )
    return kept, [*warnings, note]


def new_payment(data: MergeTables, **values: Any) -> Row:
    """A new customer payment row (inserted), applied to nothing yet; `values`: its dates, contact, account, amount."""
    row = data.new_row(
        "payments",
        **values,
        payment_method=None,
        exchange_rate=None,
        company=None,
        type="ACCOUNTS_RECEIVABLE",
        tracking_categories=[],
        accounting_period=None,
        applied_to_lines=[],
        remote_updated_at=None,
    )
    row["_sync_token"] = 0
    data.t("payments").insert(row)
    return row


def write_payment(data: MergeTables, model: Any, existing: Row | None = None) -> tuple[Row, list[dict[str, Any]]]:
    """POST/PATCH /payments: required fields, then QBO rules, then invoice balances/status move."""
    op = "PATCH payments" if existing else "POST payments"
    fields, warnings = screen(model, op)
    if isinstance(fields.get("applied_to_lines"), list):
        warnings += nested_warnings(fields["applied_to_lines"], APPLIED_FIELDS, "model/applied_to_lines")
    before: Row = existing or {}  # a POST has every field it would fall back on: screen() requires them
    try:
        if existing is not None and existing.get("_voided"):
            raise WriteError(
                [provider_problem(business_error("This transaction has been voided and can't be edited."))]
            )
        if existing is not None and existing.get("_deposited"):
            raise WriteError([provider_problem(deposited_transaction())])
        total = (
            money_field(fields["total_amount"], "model/total_amount")
            if "total_amount" in fields
            else before["total_amount"]
        )
        txn_date = (
            date_field(fields["transaction_date"], "model/transaction_date")
            if "transaction_date" in fields
            else before["transaction_date"]
        )
        if total <= 0:
            raise WriteError(
                [
                    provider_problem(
                        business_error("The payment amount must be greater than zero.", "TotalAmt"),
                        "model/total_amount",
                    )
                ]
            )
        if existing is not None and data.payment_amount_patch_ignored and total != existing["total_amount"]:
            fields, warnings = amount_kept(fields, existing, warnings)
            total = existing["total_amount"]
        contact = customer_ref(data, fields.get("contact", existing["contact"] if existing else None))
        account_id = fields.get("account", existing["account"] if existing else None)
        if data.live("accounts", account_id) is None:
            raise WriteError([provider_problem(invalid_reference("DepositToAccountRef", account_id), "model/account")])
        old_lines = (
            []
            if existing is None
            else [
                {
                    "applied_amount": ln["applied_amount"],
                    "applied_date": ln["applied_date"],
                    "related_object_id": ln["related_object_id"],
                    "related_object_type": ln["related_object_type"],
                }
                for ln in existing["applied_to_lines"]
            ]
        )
        if existing is not None:
            unapply_payment(data, existing)
        try:
            raw = fields.get("applied_to_lines", old_lines)
            plan = plan_applications(data, raw, contact, total)
        except WriteError:
            if existing is not None:  # put the old applications back
                apply_payment(
                    data,
                    existing,
                    plan_applications(
                        data, old_lines, data.t("contacts").row(existing["contact"]), existing["total_amount"]
                    ),
                )
            raise
    except WriteError as exc:
        exc.warnings = warnings + exc.warnings
        raise
    values = {
        "transaction_date": txn_date,
        "contact": contact["id"],
        "account": account_id,
        "currency": fields.get("currency") or (existing["currency"] if existing else data.tax.currency),
        "total_amount": total,
    }
    if existing is None:
        row = new_payment(data, **values)
    else:
        row = existing
        row.update(values)
        row["_sync_token"] = row.get("_sync_token", 0) + 1
        data.t("payments").touch(row)
    apply_payment(data, row, plan)
    return row, warnings
