"""Ledger look-ups of the reverse leg: which links already tie a QuickBooks record to Coperniq, and which way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sync_ledger import Ledger, Link
from sync_ledger.rows import echo_link
from target_coperniq.context import SOURCE, TARGET


class Lookups:
    """Both legs write links to one ledger; the direction of a link decides echo (skip) or own write (update)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def forward_link(self, target_type: str, merge_id: str, remote_id: Any) -> Link | None:
        """A link whose QuickBooks side is this record and which the forward leg wrote (echo)."""
        return echo_link(
            self.ledger, SOURCE, target_type, merge_id, other=TARGET, remote_id=str(remote_id) if remote_id else None
        )

    def reverse_link(self, source_type: str, source_id: str) -> Link | None:
        """The link this leg wrote for a QuickBooks record, once it has its Coperniq id."""
        link = self.ledger.get_link(SOURCE, source_type, source_id)
        return link if link is not None and link.target_system == TARGET and link.target_id else None

    def record_for(self, contact_id: str | None) -> tuple[str, int] | None:
        """(kind, id) of the Coperniq project (QBO job) or account (QBO customer) a Merge contact is linked to.

        By Merge UUID first; then by QBO Id, for jobs the forward leg created through passthrough before
        Merge had assigned them a UUID."""
        if not contact_id:
            return None
        found = self._contact_link(self.ledger.get_link_by_target, contact_id)
        if found is None:
            contact = self.ledger.staged(SOURCE, "contacts", contact_id)
            if contact and contact.get("remote_id"):
                found = self._contact_link(self.ledger.get_link_by_remote, str(contact["remote_id"]))
        return found

    @staticmethod
    def _contact_link(lookup: Callable[[str, str, str], Link | None], key: str) -> tuple[str, int] | None:
        for target_type in ("job", "customer"):
            link = lookup(SOURCE, target_type, key)
            if link is not None and link.source_system == TARGET and link.source_type in ("project", "account"):
                return link.source_type, int(link.source_id)
        return None
