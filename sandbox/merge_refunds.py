"""Refund Receipts of the emulated QuickBooks company, as Merge's passthrough reaches them (`POST .../refundreceipt`,
`select * from RefundReceipt ...`); Merge's common models have none, so they live here, apart from the tables.

A refund receipt records money paid back to a customer from an account (Bank or Other Current Asset, Intuit's
RefundReceipt reference for DepositToAccountRef); it is linked to no invoice or payment, so it changes neither.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from sandbox.merge_qbo_faults import business_error, invalid_property, invalid_reference, missing_param, qbo_time
from sandbox.merge_tax import TaxSetup, compute_tax

#: Account types a refund may be paid from (QBO's AccountType spelling).
REFUND_ACCOUNT_TYPES = ("Bank", "Other Current Asset")
DOC_NUMBER_LIMIT = 21


class QboRecords:
    """Transactions of the company that only passthrough reaches (Merge's common models have none): `lookup(entity)`
    is the company's view of other entities (Account, Item) and `customer(id)` its customer/job by Id."""

    FIRST_ID = 1  # the Ids a subclass hands out start here

    def __init__(
        self,
        lookup: Callable[[str], Iterable[dict[str, Any]] | None],
        customer: Callable[[str], dict[str, Any] | None],
    ) -> None:
        self.lookup = lookup
        self.customer = customer
        self.records: list[dict[str, Any]] = []
        self._next_id = self.FIRST_ID
        #: the company's tax setup (set by the Merge app): a non-US company's sales lines need a tax code
        self.tax: TaxSetup | None = None

    def all(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self.records)

    def get(self, id_: str) -> dict[str, Any] | None:
        return next((r for r in self.records if r["Id"] == id_), None)

    def _find(self, entity: str, ref: Any) -> dict[str, Any] | None:
        value = str((ref or {}).get("value") or "") if isinstance(ref, dict) else ""
        return next((o for o in self.lookup(entity) or () if str(o.get("Id")) == value), None) if value else None

    def _store(self, body: dict[str, Any], total: Decimal, **fields: Any) -> dict[str, Any]:
        """Keep a new record of `body` (its DocNumber checked) under the next Id, with `fields`; returns a copy."""
        number = str(body.get("DocNumber") or "")
        if len(number) > DOC_NUMBER_LIMIT:
            raise business_error(f"String length is more than {DOC_NUMBER_LIMIT} characters", "DocNumber")
        record = {
            **copy.deepcopy(body),
            "Id": str(self._next_id),
            "SyncToken": "0",
            "TotalAmt": float(total),
            "MetaData": {"CreateTime": qbo_time(), "LastUpdatedTime": qbo_time()},
            **fields,
        }
        self._next_id += 1
        self.records.append(record)
        return copy.deepcopy(record)


class RefundReceipts(QboRecords):
    """The company's refund receipts."""

    FIRST_ID = 9001

    def create(self, body: Any) -> dict[str, Any]:
        """Validate and store one RefundReceipt: CustomerRef, DepositToAccountRef, Line items, DocNumber."""
        if not isinstance(body, dict):
            raise invalid_property("Body must be an object")
        customer_ref = body.get("CustomerRef")
        if not isinstance(customer_ref, dict) or not customer_ref.get("value"):
            raise missing_param("CustomerRef")
        customer = self.customer(str(customer_ref["value"]))
        if customer is None or customer.get("Active") is False:
            raise invalid_reference("Customer", customer_ref["value"])
        if not body.get("DepositToAccountRef"):
            raise missing_param("DepositToAccountRef")
        account = self._find("Account", body["DepositToAccountRef"])
        if account is None:
            raise invalid_reference("Account", body["DepositToAccountRef"])
        if account.get("AccountType") not in REFUND_ACCOUNT_TYPES:
            raise business_error(
                "A refund must be paid from a Bank or Other Current Asset account", "DepositToAccountRef"
            )
        lines = body.get("Line")
        if not isinstance(lines, list) or not lines:
            raise missing_param("Line")
        total = Decimal(0)
        taxed: list[tuple[str | None, float]] = []
        for line in lines:
            detail = (line or {}).get("SalesItemLineDetail") if isinstance(line, dict) else None
            if not isinstance(detail, dict) or self._find("Item", detail.get("ItemRef")) is None:
                raise invalid_reference("Item", (detail or {}).get("ItemRef"))
            try:
                amount = Decimal(str(line.get("Amount")))
            except InvalidOperation:
                raise invalid_property("Line Amount is not a number") from None
            if amount <= 0:
                raise business_error("A refund receipt line needs an amount greater than 0", "Line.Amount")
            total += amount
            taxed.append((self._line_code(detail), float(amount)))
        fields: dict[str, Any] = {}
        if self.tax is not None and self.tax.lines_need_code:
            tax, tax_lines = compute_tax(self.tax, taxed)
            total += tax
            fields["TxnTaxDetail"] = {"TotalTax": float(tax), "TaxLine": tax_lines}
        return self._store(
            body,
            total,
            Balance=0,
            CustomerRef={"value": str(customer_ref["value"]), "name": customer.get("DisplayName")},
            **fields,
        )

    def _line_code(self, detail: dict[str, Any]) -> str | None:
        """A non-US company refuses a sales line without a tax code (6000) or with one it does not have (2500), on a
        refund receipt as on an invoice (ASSUMPTION, target README "Refunds"); elsewhere the code is not checked."""
        if self.tax is None or not self.tax.lines_need_code:
            return None
        ref = detail.get("TaxCodeRef")
        value = str(ref.get("value") or "") if isinstance(ref, dict) else ""
        if not value:
            raise business_error(self.tax.missing_code_detail, "TaxCodeRef")
        if self.tax.code(value) is None:
            raise invalid_reference("TaxCodeRef", value)
        return value
