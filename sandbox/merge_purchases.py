"""Checks and cash expenses (QuickBooks Purchases) of the emulated company, as Merge's passthrough reaches them
(`POST .../purchase`, `select * from Purchase ...`): what a refunded credit's check to Accounts Receivable needs
(sandbox/merge_credit_refunds.py). Merge's Expense model is not emulated.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from sandbox.merge_qbo_faults import (
    business_error,
    invalid_property,
    invalid_reference,
    missing_param,
    qbo_time,
    unsupported_operation,
)

#: A Purchase's PaymentType -> the TxnType a Payment links it by, and the account types it may be paid from.
PAYMENT_TYPES = {"Check": ("Check", ("Bank",)), "Cash": ("Expense", ("Bank", "Other Current Asset"))}
RECEIVABLE = "Accounts Receivable"
DOC_NUMBER_LIMIT = 21


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


class Purchases:
    """The company's purchases (checks, cash expenses); `lookup(entity)` is the company's view of other entities
    (Account) and `customer(id)` its customer/job by Id."""

    def __init__(
        self,
        lookup: Callable[[str], Iterable[dict[str, Any]] | None],
        customer: Callable[[str], dict[str, Any] | None],
    ) -> None:
        self.lookup = lookup
        self.customer = customer
        self.purchases: list[dict[str, Any]] = []
        self._next_id = 7001

    def all(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self.purchases)

    def get(self, id_: str) -> dict[str, Any] | None:
        return next((p for p in self.purchases if p["Id"] == id_), None)

    def _account(self, ref: Any) -> dict[str, Any]:
        value = ref_value(ref)
        found = next((a for a in self.lookup("Account") or () if str(a.get("Id")) == value), None) if value else None
        if found is None:
            raise invalid_reference("Account", value or None)
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
        number = str(body.get("DocNumber") or "")
        if len(number) > DOC_NUMBER_LIMIT:
            raise business_error(f"String length is more than {DOC_NUMBER_LIMIT} characters", "DocNumber")
        purchase = {
            **copy.deepcopy(body),
            "Id": str(self._next_id),
            "SyncToken": "0",
            "TotalAmt": float(total),
            "MetaData": {"CreateTime": qbo_time(), "LastUpdatedTime": qbo_time()},
            "_open": float(receivable),  # what a Payment may still link of its A/R lines
        }
        self._next_id += 1
        self.purchases.append(purchase)
        return copy.deepcopy(purchase)
