"""What the review queue needs of the customer rules: the Review outcome, candidates as a person reads them, and
the customer a person chose, checked before it is linked (sync_ledger.ledger_review keeps the queue)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync_ledger.rows import RowFailure

from .contacts import ContactRules


class Review(Exception):
    """A match this sync must not guess: the client waits in the review queue with its candidates."""

    def __init__(self, reason: str, candidates: list[dict[str, Any]]) -> None:
        super().__init__(reason)
        self.candidates = candidates


def candidate_summary(contact: Mapping[str, Any], why: str) -> dict[str, Any]:
    """What a person needs to choose between candidates (ids to link to, and why each is in doubt)."""
    kind = "customer" if contact.get("is_customer") else "vendor" if contact.get("is_supplier") else "contact"
    return {
        "id": contact.get("id"),
        "remote_id": contact.get("remote_id"),
        "name": contact.get("name"),
        "email": contact.get("email_address"),
        "kind": kind,
        "why": why,
    }


def chosen_contact(rules: ContactRules, target: str, actor: str) -> dict[str, Any]:
    """The QuickBooks customer a person chose, by Merge id or QuickBooks Id; a RowFailure says why it cannot be
    linked (unknown, not a customer, a job, already linked to another client)."""
    contact = next(
        (
            c
            for group in rules.contacts.by_name.values()
            for c in group
            if c.get("id") and target in (str(c.get("id")), str(c.get("remote_id")))
        ),
        None,
    )
    where = f"QuickBooks customer {target} (chosen by {actor})"
    if contact is None:
        raise RowFailure(f"{where} is not among the QuickBooks customers Merge lists: check the id")
    if not contact.get("is_customer"):
        raise RowFailure(f"{where} is not a customer in QuickBooks")
    if str(contact["id"]) in rules.ctx.links.targets:
        raise RowFailure(f"{where} is linked to another Coperniq record already")
    row = rules.qbo_customer(contact)
    if row is not None and row.get("Job"):
        raise RowFailure(f"{where} is a job (sub-customer) of another customer, not a client's customer")
    return contact
