"""Checks and cash expenses (QuickBooks Purchases) of the emulated company, as Merge's passthrough reaches them
(`POST .../purchase`, `select * from Purchase ...`): what a refunded credit's check to Accounts Receivable needs
(sandbox/merge_credit_refunds.py). Merge's Expense model is not emulated.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from sandbox.merge_qbo_faults import (
    business_error,
    invalid_property,
    invalid_reference,
    missing_param,
    unsupported_operation,
)
from sandbox.merge_refunds import QboRecords

#: A Purchase's PaymentType -> the TxnType a Payment links it by, and the account types it may be paid from.
PAYMENT_TYPES = {"Check": ("Check", ("Bank",)), "Cash": ("Expense", ("Bank", "Other Current Asset"))}
RECEIVABLE = "Accounts Receivable"


def amount_of(raw: Any, what: str) -> Decimal:
    """A positive amount of a QuickBooks body (6000 otherwise)."""
    try:
        amount = Decimal(str(raw))
    except InvalidOperation:
        raise invalid_property(f"{what} is not a number") from None
    if amount <= 0:
        raise business_error(f"{what} must be greater than 0", what)
    return amount


def ref_value(ref: Any) -> str:
    return str(ref.get("value") or "") if isinstance(ref, dict) else ""


class Purchases(QboRecords):
    """The company's purchases (checks, cash expenses)."""

    FIRST_ID = 7001

    def _account(self, ref: Any) -> dict[str, Any]:
        found = self._find("Account", ref)
        if found is None:
            raise invalid_reference("Account", ref_value(ref) or None)
        return found

    def create(self, body: Any) -> dict[str, Any]:
        """Validate and store one Purchase: PaymentType, AccountRef (paid from), EntityRef, account-based lines."""
        if not isinstance(body, dict):
            raise invalid_property("Body must be an object")
        kind = body.get("PaymentType")
        if kind not in PAYMENT_TYPES:
            raise unsupported_operation(f"The sandbox emulates Check and Cash purchases only (PaymentType={kind!r})")
        if not body.get("AccountRef"):
            raise missing_param("AccountRef")
        paid_from = self._account(body["AccountRef"])
        if paid_from.get("AccountType") not in PAYMENT_TYPES[kind][1]:
            raise business_error(
                f"A {kind} purchase must be paid from a {' or '.join(PAYMENT_TYPES[kind][1])} account", "AccountRef"
            )
        raw_entity = body.get("EntityRef")
        entity: dict[str, Any] = raw_entity if isinstance(raw_entity, dict) else {}
        customer = self.customer(ref_value(entity)) if entity.get("type") == "Customer" else None
        if entity and entity.get("type") == "Customer" and (customer is None or customer.get("Active") is False):
            raise invalid_reference("Customer", ref_value(entity))
        lines = body.get("Line")
        if not isinstance(lines, list) or not lines:
            raise missing_param("Line")
        total = receivable = Decimal(0)
        for line in lines:
            detail = line.get("AccountBasedExpenseLineDetail") if isinstance(line, dict) else None
            if not isinstance(detail, dict):
                raise unsupported_operation("The sandbox emulates account-based purchase lines only")
            amount = amount_of(line.get("Amount"), "Line.Amount")
            if self._account(detail.get("AccountRef")).get("AccountType") == RECEIVABLE:
                # QuickBooks: a line on Accounts Receivable needs the customer it is for (the sandbox's wording)
                line_customer = ref_value(detail.get("CustomerRef"))
                if customer is None or (line_customer and line_customer != ref_value(entity)):
                    raise business_error(
                        "When you use Accounts Receivable, you must choose a customer in the Name field.", "EntityRef"
                    )
                receivable += amount
            total += amount
        return self._store(body, total, _open=float(receivable))  # _open: what a Payment may still link
