"""Merge sandbox tables of one QuickBooks company: the common-model tables, the QBO company, the numbering.

Why a base class of its own: the write rules (merge_contacts, merge_invoices, merge_payments) and the views
(merge_views) are functions over these tables and `MergeData` (merge_models) delegates to them; typing them
against this class keeps the imports one-way.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from sandbox.merge_qbo import QboCompany
from sandbox.merge_schema import FIELD_MAPPINGS, QBO_ENTITY
from sandbox.merge_store import Row, Table
from sandbox.merge_tax import TaxSetup, tax_setup

#: The key of a row's Merge copy while QuickBooks has changed the record and Merge has not synced it yet
#: (`passthrough_void_visible_after_sync`): Merge's endpoints show the copy, QBO's passthrough the row itself.
MERGE_COPY = "_merge_copy"


class MergeTables:
    """All common-model tables plus the QBO company they mirror (the data, without the rules)."""

    def __init__(
        self, company: QboCompany, *, unique_invoice_numbers: bool = True, tax: TaxSetup | None = None
    ) -> None:
        self.qbo = company
        self.unique_invoice_numbers = unique_invoice_numbers
        self.tax = tax or tax_setup()
        self.tables: dict[str, Table] = {
            n: Table(n, QBO_ENTITY[n])
            for n in (
                "contacts",
                "invoices",
                "payments",
                "items",
                "accounts",
                "company-info",
                "tax-rates",
                "credit-notes",
                "tracking-categories",
            )
        }
        self.payment_lines: dict[str, Row] = {}
        self.doc_numbers: dict[str, str] = {}  # casefolded DocNumber -> invoice id (non-deleted AR invoices)
        self.credit_numbers: dict[str, str] = {}  # casefolded DocNumber -> credit note id (QBO numbers them apart)
        self.next_doc_number = 1001
        self.voids: list[dict[str, Any]] = []  # every void QuickBooks did, in order (GET /__admin/voids)
        self.class_tracking = "per_line"  # the company's "Track classes": per_line or per_txn (merge_tracking)
        self.payment_amount_patch_ignored = False  # the switch of that name (sandbox/profiles.py), set by the app

    def t(self, name: str) -> Table:
        """The table `name` ("contacts", "invoices", ...)."""
        return self.tables[name]

    def new_row(self, table: str, **fields: Any) -> Row:
        """A new common-model row; without a `remote_id`, QBO's next Id for the table's entity."""
        return {
            "id": str(uuid.uuid4()),
            "remote_id": fields.pop("remote_id", None) or self.qbo.new_id(QBO_ENTITY[table]),
            "created_at": None,
            "modified_at": None,
            **fields,
            "remote_was_deleted": False,
            "field_mappings": copy.deepcopy(FIELD_MAPPINGS),
        }

    @staticmethod
    def merge_copy(row: Row) -> Row:
        """What Merge shows of a row: its copy from Merge's last sync while a QuickBooks change waits for the next
        one, else the row itself."""
        copy_: Row | None = row.get(MERGE_COPY)
        return copy_ if copy_ is not None else row

    def hold_merge_copy(self, row: Row) -> None:
        """Keep what Merge shows of `row` as it is now, until `publish` (QuickBooks is about to change it)."""
        if MERGE_COPY not in row:
            row[MERGE_COPY] = copy.deepcopy({k: v for k, v in row.items() if k != MERGE_COPY})

    def publish(self, table: str, row: Row) -> bool:
        """Merge synced `row`: drop its held copy and bump modified_at. False when nothing was held."""
        if row.pop(MERGE_COPY, None) is None:
            return False
        self.t(table).touch(row)
        return True

    @staticmethod
    def drop_merge_copy(row: Row) -> None:
        """Merge has QuickBooks' current record of `row` (it just wrote it): show the row itself."""
        row.pop(MERGE_COPY, None)

    def live(self, table: str, id_: Any) -> Row | None:
        """A row that QuickBooks still has (not deleted), by Merge id."""
        row = self.t(table).get(id_) if isinstance(id_, str) else None
        return row if row is not None and not row["remote_was_deleted"] else None

    def find(self, table: str, name: str) -> Row | None:
        """First live row of `table` with this name (case-insensitive); admin convenience."""
        key = name.strip().casefold()
        for row in self.t(table).order:
            if not row["remote_was_deleted"] and str(row.get("name") or "").casefold() == key:
                return row
        return None

    def tax_rate_by_code(self, code_id: str | None) -> Row | None:
        """The Merge TaxRate of a QBO TaxCode Id."""
        return self.t("tax-rates").by_remote_id(code_id) if code_id is not None else None

    def default_line_tax(self) -> dict[str, Any]:
        """What an invoice line entered in QuickBooks carries when the company needs a tax code on every line:
        `{"tax_rate": <the company's home rate>}` (else nothing)."""
        rate = self.tax_rate_by_code(self.tax.default_code) if self.tax.lines_need_code else None
        return {"tax_rate": rate["id"]} if rate is not None else {}

    def default_line(self, amount: float | None) -> dict[str, Any]:
        """The one "Services" line of an invoice entered in QuickBooks with just an amount."""
        return {"description": "Services", "total_amount": amount, **self.default_line_tax()}

    def default_item(self) -> Row | None:
        """The item QBO puts lines without an ItemRef on."""
        return self.find("items", "Services")
