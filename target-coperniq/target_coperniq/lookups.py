"""Ledger look-ups of the reverse leg: which links already tie a QuickBooks record to Coperniq, and which way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sync_ledger import Ledger, Link
from sync_ledger.rows import echo_link
from target_coperniq.context import SOURCE, TARGET

#: The forward leg's write-ahead intents (key prefixes) that create a QuickBooks record of each kind.
FORWARD_WRITES = {
    "invoice": ("forward:invoice:",),
    "payment": ("forward:payment:", "forward:replace:payment:"),
}


class Lookups:
    """Both legs write links to one ledger; the direction of a link decides echo (skip) or own write (update)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def forward_link(self, target_type: str, merge_id: str, remote_id: Any) -> Link | None:
        """A link whose QuickBooks side is this record and which the forward leg wrote (echo)."""
        return echo_link(
            self.ledger, SOURCE, target_type, merge_id, other=TARGET, remote_id=str(remote_id) if remote_id else None
        )

    def forward_in_flight(self, kind: str) -> bool:
        """Does the forward leg have a create of this kind (invoice, payment) announced but not linked yet? Its
        intent is durable before the QuickBooks call and ends in the transaction that saves the link, so a
        QuickBooks record this leg reads while one is pending may be that create: it waits for the forward leg
        (running now, or its next run after a crash) instead of being imported as the bookkeeper's."""
        return any(self.ledger.pending_intents(prefix) for prefix in FORWARD_WRITES.get(kind, ()))

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
