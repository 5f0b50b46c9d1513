"""A customer's credit paid back, as QuickBooks records it: a Check (a Purchase) to Accounts Receivable for the
customer, and a Payment of 0 that links the Check to the Credit Memo (Intuit's help "Refund a customer's credit";
the Payment reference's `Line.LinkedTxn.TxnType`: `Check`, "reimbursement for expense paid by check made on behalf
of the customer", `Expense` for one paid in cash, `CreditMemo`). Merge's common models have neither a check to A/R
nor a payment line linking one, so both are passthrough-only here: `POST .../purchase`, `POST .../payment` (a new
one, TotalAmt 0), `select * from Purchase|Payment where ...`.

The Payment moves the credit memo's remaining credit down and the check's open amount with it; in Merge's tables it
is a payment of 0 whose applied line is the credit note (`related_object_type` CREDIT_NOTE: Merge has no type for a
check), the check lines kept beside it for QuickBooks' own view.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sandbox.merge_credit_notes import take_credit
from sandbox.merge_payments import new_payment
from sandbox.merge_purchases import PAYMENT_TYPES, Purchases, amount_of, ref_value
from sandbox.merge_qbo_faults import (
    business_error,
    invalid_property,
    invalid_reference,
    missing_param,
    unsupported_operation,
)
from sandbox.merge_store import Row, iso, now_us
from sandbox.merge_tables import MergeTables


def create_linking_payment(data: MergeTables, purchases: Purchases, body: Any) -> Row:
    """`POST .../payment` of a new Payment of 0 linking credit memos to checks (or cash expenses) of the same
    customer: each line at most what its credit memo has left and what its check has open, credits and charges
    equal. Any other new Payment through passthrough is not emulated (payments are written through Merge)."""
    if not isinstance(body, dict):
        raise invalid_property("Body must be an object")
    if body.get("TotalAmt") is None or Decimal(str(body["TotalAmt"])) != 0:
        raise unsupported_operation("The sandbox emulates only a new Payment of 0 through passthrough")
    contact = data.t("contacts").by_remote_id(ref_value(body.get("CustomerRef")), "Customer")
    if contact is None or contact["remote_was_deleted"]:
        raise invalid_reference("Customer", ref_value(body.get("CustomerRef")) or None)
    lines = body.get("Line")
    if not isinstance(lines, list) or not lines:
        raise missing_param("Line")
    credit_lines: list[tuple[Row, Decimal]] = []
    charges: list[tuple[dict[str, Any], Decimal, str]] = []
    for line in lines:
        linked = (line.get("LinkedTxn") or [None])[0] if isinstance(line, dict) else None
        if not isinstance(linked, dict):
            raise missing_param("Line.LinkedTxn")
        amount = amount_of(line.get("Amount"), "Line.Amount")
        kind, txn_id = linked.get("TxnType"), str(linked.get("TxnId") or "")
        if kind == "CreditMemo":
            credit = data.t("credit-notes").by_remote_id(txn_id)
            if credit is None or credit["remote_was_deleted"] or credit["contact"] != contact["id"]:
                raise invalid_reference("CreditMemo", txn_id)
            if amount > Decimal(str(credit["remaining_credit"])) + Decimal("0.001"):
                raise business_error(
                    f"The amount ({amount:.2f}) is more than the credit memo's remaining credit "
                    f"({credit['remaining_credit']:.2f}).",
                    "Line.Amount",
                )
            credit_lines.append((credit, amount))
        elif kind in ("Check", "Expense"):
            purchase = purchases.get(txn_id)
            if purchase is None or PAYMENT_TYPES[purchase["PaymentType"]][0] != kind:
                raise invalid_reference(kind, txn_id)
            if ref_value(purchase.get("EntityRef")) != contact["remote_id"]:
                raise business_error("The check is for another customer.", "LinkedTxn")
            if amount > Decimal(str(purchase["_open"])) + Decimal("0.001"):
                raise business_error(
                    f"The amount ({amount:.2f}) is more than the check's open amount ({purchase['_open']:.2f}).",
                    "Line.Amount",
                )
            charges.append((purchase, amount, kind))
        else:
            raise unsupported_operation(f"The sandbox links credit memos to checks only (TxnType={kind!r})")
    if not credit_lines or sum(a for _, a in credit_lines) != sum(a for _, a, _ in charges):
        raise business_error("The payment's credits and charges must be equal for a payment of 0.", "Line")
    undeposited = data.find("accounts", "Undeposited Funds")
    row = new_payment(
        data,
        transaction_date=f"{body.get('TxnDate') or iso(now_us())[:10]}T00:00:00Z",
        contact=contact["id"],
        account=undeposited["id"] if undeposited else None,
        currency=data.tax.currency,
        total_amount=0.0,
    )
    row.update(
        _private_note=body.get("PrivateNote"),
        _payment_ref_num=body.get("PaymentRefNum"),
        _linked_expenses=[{"TxnId": p["Id"], "TxnType": kind, "Amount": float(a)} for p, a, kind in charges],
    )
    for credit, amount in credit_lines:
        row["applied_to_lines"].append(take_credit(data, credit, float(amount), row))
    for purchase, amount, _ in charges:
        purchase["_open"] = round(purchase["_open"] - float(amount), 2)
    data.t("payments").touch(row)
    return row
