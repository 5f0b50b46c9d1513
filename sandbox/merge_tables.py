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


class MergeTables:
    """All common-model tables plus the QBO company they mirror (the data, without the rules)."""

    def __init__(self, company: QboCompany, *, unique_invoice_numbers: bool = True) -> None:
        self.qbo = company
        self.unique_invoice_numbers = unique_invoice_numbers
        self.tables: dict[str, Table] = {
            n: Table(n, QBO_ENTITY[n])
            for n in ("contacts", "invoices", "payments", "items", "accounts", "company-info")
        }
        self.payment_lines: dict[str, Row] = {}
        self.doc_numbers: dict[str, str] = {}  # casefolded DocNumber -> invoice id (non-deleted AR invoices)
        self.next_doc_number = 1001

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

    def default_item(self) -> Row | None:
        """The item QBO puts lines without an ItemRef on."""
        return self.find("items", "Services")
