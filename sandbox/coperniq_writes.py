"""Coperniq sandbox writes: inserting records and changing them, the same way for every caller.

Why plain functions over the state: the HTTP handlers, the admin helpers and the seeder (sandbox/seed.py, which
must not import the app) all create records through these, so ids, timestamps and the list-cache versions move
identically whoever writes. Callers validate first and hold the app's lock.

This module serves them all under one name; they live one layer down: `coperniq_inserts` (workflows, accounts,
contacts, projects, catalog items, taxes), `coperniq_invoice_writes` (invoice lines, invoices and their tax, payments),
`coperniq_updates` (PATCH semantics) and `coperniq_phase_moves` (workflow restarts, phase moves).
"""

from __future__ import annotations

from sandbox.coperniq_inserts import (
    insert_account,
    insert_catalog_item,
    insert_contact,
    insert_project,
    insert_tax,
    insert_workflow,
    link_contact,
    tax_rate_text,
)
from sandbox.coperniq_invoice_writes import (
    apply_invoice_tax,
    build_lines,
    insert_invoice,
    insert_payment,
    invoice_line,
    merge_lines,
    set_invoice_tax,
)
from sandbox.coperniq_phase_moves import move_to_phase, restart_workflow
from sandbox.coperniq_updates import apply_update

__all__ = [
    "apply_invoice_tax",
    "apply_update",
    "build_lines",
    "insert_account",
    "insert_catalog_item",
    "insert_contact",
    "insert_invoice",
    "insert_payment",
    "insert_project",
    "insert_tax",
    "insert_workflow",
    "invoice_line",
    "link_contact",
    "merge_lines",
    "move_to_phase",
    "restart_workflow",
    "set_invoice_tax",
    "tax_rate_text",
]
