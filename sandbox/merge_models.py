"""Merge Accounting common models over the emulated QBO company: validation, writes, serialization.

Everything that changes data goes through `MergeData` (HTTP writes, passthrough sync-back and the admin helpers),
so the QuickBooks rules are enforced in exactly one place. The rules of each model are in their own module
(merge_contacts, merge_invoices, merge_payments) over the tables (merge_tables), the shapes in merge_views, the
field lists and problem objects in merge_schema; this class is their one entry point, and holds what a fresh
company has, items and accounts, and what is done directly in QuickBooks (void, delete).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from typing import Any

from sandbox import merge_contacts, merge_invoices, merge_payments, merge_views, merge_voids
from sandbox.merge_payments import unapply_payment
from sandbox.merge_qbo import QboCompany, QboError, norm_name
from sandbox.merge_schema import (
    ADDRESS_FIELDS,
    APPLIED_FIELDS,
    EXPANDS,
    FIELD_MAPPINGS,
    FIELD_SCHEMAS,
    LINE_FIELDS,
    QBO_ENTITY,
    REQUIRED,
    SILENT,
    SUPPORTED,
    WriteError,
    money,
    norm_date,
    problem,
    provider_problem,
    screen,
    today,
)
from sandbox.merge_store import Row, Table
from sandbox.merge_tables import MergeTables
from sandbox.merge_tax import TaxSetup, merge_tax_rate_fields
from sandbox.merge_tracking import seed_categories

#: Names this module had before the split and still serves.
__all__ = [
    "ADDRESS_FIELDS",
    "APPLIED_FIELDS",
    "EXPANDS",
    "FIELD_MAPPINGS",
    "FIELD_SCHEMAS",
    "LINE_FIELDS",
    "QBO_ENTITY",
    "REQUIRED",
    "SILENT",
    "SUPPORTED",
    "MergeData",
    "Row",
    "Table",
    "WriteError",
    "money",
    "norm_date",
    "problem",
    "provider_problem",
    "today",
]


class MergeData(MergeTables):
    """All common-model tables plus the QBO company they mirror."""

    def __init__(
        self,
        company: QboCompany,
        *,
        company_name: str,
        unique_invoice_numbers: bool = True,
        tax: TaxSetup | None = None,
    ) -> None:
        super().__init__(company, unique_invoice_numbers=unique_invoice_numbers, tax=tax)
        self.qbo.other_entities = self._qbo_entities
        self.qbo.refund_receipts.tax = self.tax
        self.qbo.entity_name = merge_views.qbo_entity_name
        self._seed_defaults(company_name)

    def _seed_defaults(self, company_name: str) -> None:
        """What a fresh QBO company has: company info, its tax codes, core accounts, the default items."""
        self.t("company-info").insert(
            self.new_row(
                "company-info",
                name=company_name,
                legal_name=f"{company_name} LLC",
                tax_number=None,
                fiscal_year_end_month=12,
                fiscal_year_end_day=31,
                currency=self.tax.currency,
                remote_created_at="2020-01-01T00:00:00Z",
                urls=[],
                addresses=[],
                phone_numbers=[],
            )
        )
        rates = self.t("tax-rates")
        for code in self.tax.codes:  # remote_id = the TaxCode's own Id: no QBO Id counter is used
            row = rates.insert(self.new_row("tax-rates", remote_id=code["Id"], **merge_tax_rate_fields(self.tax, code)))
            for component in row["tax_components"]:
                component["created_at"] = component["modified_at"] = row["created_at"]
        seed_categories(self)  # classes and departments (locations)
        self.add_account("Services", classification="REVENUE", type="Income", account_type="OTHER_INCOME")
        self.add_account(
            "Sales of Product Income", classification="REVENUE", type="Income", account_type="OTHER_INCOME"
        )
        self.add_account(
            "Undeposited Funds", classification="ASSET", type="Other Current Asset", account_type="OTHER_CURRENT_ASSET"
        )
        self.add_account(
            "Accounts Receivable (A/R)",
            classification="ASSET",
            type="Accounts Receivable",
            account_type="ACCOUNTS_RECEIVABLE",
        )
        self.add_account("Checking", classification="ASSET", type="Bank", account_type="BANK")
        income = self.find("accounts", "Services")
        product = self.find("accounts", "Sales of Product Income")
        self.add_item("Services", type="SERVICE", unit_price=None, sales_account=income["id"] if income else None)
        self.add_item("Hours", type="SERVICE", unit_price=None, sales_account=income["id"] if income else None)
        self.add_item(
            "Solar Panel Installation",
            type="NON_INVENTORY",
            unit_price=None,
            sales_account=product["id"] if product else None,
        )

    # --- accounts / items -------------------------------------------------------------------------
    # --- accounts / items -------------------------------------------------------------------------
    def add_account(
        self,
        name: str,
        *,
        classification: str = "REVENUE",
        type: str = "Income",  # noqa: A002
        account_type: str | None = "OTHER_INCOME",
        **extra: Any,
    ) -> Row:
        return self.t("accounts").insert(
            self.new_row(
                "accounts",
                name=name,
                description=extra.pop("description", None),
                classification=classification,
                type=type,
                account_type=account_type,
                status=extra.pop("status", "ACTIVE"),
                current_balance=extra.pop("current_balance", 0.0),
                currency=self.tax.currency,
                account_number=extra.pop("account_number", None),
                parent_account=None,
                company=None,
                **extra,
            )
        )

    def add_item(
        self,
        name: Any,
        *,
        type: str = "SERVICE",  # noqa: A002 - QBO's field name
        unit_price: float | None = None,
        sales_account: str | None = None,
        **extra: Any,
    ) -> Row:
        """An item (`name` as the request gave it: validated here). `taxable=False` (admin only) makes QBO's
        automated sales tax leave its lines untaxed."""
        taxable = bool(extra.pop("taxable", True))
        clean = name.strip() if isinstance(name, str) else name
        if not clean:
            raise WriteError(
                [
                    problem(
                        "model/name",
                        "Missing Required Field",
                        "name is a required field on model.",
                        "MISSING_REQUIRED_FIELD",
                    )
                ]
            )
        if self.find("items", clean):
            raise WriteError(
                [
                    provider_problem(
                        QboError(
                            "6240",
                            "Duplicate Name Exists Error",
                            f"The name supplied already exists. : {clean}",
                            "Name",
                        ),
                        "model/name",
                    )
                ]
            )
        return self.t("items").insert(
            self.new_row(
                "items",
                _taxable=taxable,
                name=clean,
                status=extra.pop("status", "ACTIVE"),
                type=type,
                unit_price=unit_price,
                purchase_price=extra.pop("purchase_price", None),
                purchase_account=extra.pop("purchase_account", None),
                sales_account=sales_account,
                company=None,
                purchase_tax_rate=None,
                sales_tax_rate=None,
                remote_updated_at=None,
                **extra,
            )
        )

    def write_item(self, model: dict[str, Any], existing: Row | None = None) -> tuple[Row, list[dict[str, Any]]]:
        op = "PATCH items" if existing else "POST items"
        fields, warnings = screen(model, op)
        if existing is None:
            row = self.add_item(
                fields.get("name"),
                type=fields.get("type") or "SERVICE",
                unit_price=fields.get("unit_price"),
                sales_account=fields.get("sales_account"),
                purchase_price=fields.get("purchase_price"),
                purchase_account=fields.get("purchase_account"),
                status=fields.get("status") or "ACTIVE",
            )
            return row, warnings
        for key in ("name", "type", "unit_price", "purchase_price", "sales_account", "purchase_account", "status"):
            if key in fields:
                existing[key] = fields[key]
        self.t("items").touch(existing)
        return existing, warnings

    # --- contacts, invoices, payments (rules in merge_contacts, merge_invoices, merge_payments) -----
    contact_fields_from_qbo = staticmethod(merge_contacts.contact_fields_from_qbo)

    def sync_contact(self, entity: str, obj: dict[str, Any]) -> Row:
        """Materialize/refresh the Merge Contact for a QBO customer/vendor; modified_at moves only on changes."""
        return merge_contacts.sync_contact(self, entity, obj)

    def write_contact(self, model: Any, existing: Row | None = None) -> tuple[Row, list[dict[str, Any]]]:
        """POST/PATCH /contacts: Merge validation, then the QBO rules (in QboCompany), then the synced Contact."""
        return merge_contacts.write_contact(self, model, existing)

    def write_invoice(self, model: Any, existing: Row | None = None) -> tuple[Row, list[dict[str, Any]]]:
        """POST/PATCH /invoices with QBO's invoice rules (customer, >= 1 line with an amount, DocNumber)."""
        return merge_invoices.write_invoice(self, model, existing)

    def write_payment(self, model: Any, existing: Row | None = None) -> tuple[Row, list[dict[str, Any]]]:
        """POST/PATCH /payments: required fields, then QBO rules, then invoice balances/status move."""
        return merge_payments.write_payment(self, model, existing)

    # --- voids and deletes (things done directly in QuickBooks) -----------------------------------
    def void_invoice(self, invoice_id: str) -> Row:
        """Voided in the QuickBooks UI: amounts zero, payments unapplied (they become unapplied credit); Merge
        sees it at once, like every admin helper. Voiding a void invoice again changes nothing."""
        row = self.live("invoices", invoice_id)
        if row is None:
            raise KeyError(invoice_id)
        return self._void_in_qbo("invoices", row, merge_voids.void_invoice)

    def void_payment(self, payment_id: str) -> Row:
        """Voided in the QuickBooks UI: amount zero, its invoices reopen; Merge sees it at once."""
        row = self.live("payments", payment_id)
        if row is None:
            raise KeyError(payment_id)
        return self._void_in_qbo("payments", row, merge_voids.void_payment)

    def _void_in_qbo(self, table: str, row: Row, void: Callable[[MergeTables, Row], list[tuple[str, Row]]]) -> Row:
        changed = void(self, row)
        merge_voids.record_void(self, table, row, changed, "admin")
        for name, other in [(table, row), *changed]:  # an admin change is synced at once, held copies too
            self.publish(name, other)
        return row

    def delete(self, table: str, id_: str) -> Row:
        """Deleted in QuickBooks: the row stays, flagged `remote_was_deleted`; its name and number are free again."""
        row = self.t(table).get(id_)
        if row is None:
            raise KeyError(id_)
        if table == "payments":
            unapply_payment(self, row)
        if table == "invoices":
            self.doc_numbers.pop(str(row["number"]).casefold(), None)
        if table == "contacts":
            self.qbo.names.pop(norm_name(str(row["name"])), None)
            self.qbo.entities.get(row.get("_entity", "Customer"), {}).pop(row["remote_id"], None)
        row["remote_was_deleted"] = True
        self.t(table).touch(row)
        return row

    # --- views (in merge_views) -------------------------------------------------------------------
    def qbo_view(self, table: str, row: Row) -> tuple[str, dict[str, Any]]:
        """(remote_data path, QBO object) for a row."""
        return merge_views.qbo_view(self, table, row)

    def _qbo_entities(self, entity: str) -> Iterable[dict[str, Any]] | None:
        return merge_views.qbo_entities(self, entity)

    def serialize(
        self,
        table: str,
        row: Row,
        *,
        expand: AbstractSet[str] = frozenset(),
        remote_data: bool = False,
        remote_fields: bool = False,
    ) -> dict[str, Any]:
        """Public JSON of a row: relations as ids unless expanded; remote_data only when asked."""
        return merge_views.serialize(
            self, table, row, expand=expand, remote_data=remote_data, remote_fields=remote_fields
        )
