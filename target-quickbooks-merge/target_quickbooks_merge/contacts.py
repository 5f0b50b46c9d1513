"""What customers and jobs share: both are QuickBooks Customers (Merge Contacts) matched by DisplayName, linked under
the matching strategy, and recovered by name after an interrupted create."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sync_ledger import Link, fingerprint

from .context import QBO, Context, link_for
from .mapping import describe_patch, diff_for_strategy, normalize_email, normalize_name, with_clears
from .merge_index import ContactIndex, NameBook

#: (Merge id, QBO Id) of a record found by name, either possibly unknown yet.
FoundIds = tuple[str | None, str | None]


class ContactRules:
    """Base of CustomerSync and JobSync."""

    def __init__(self, ctx: Context, contacts: ContactIndex, names: NameBook) -> None:
        self.ctx = ctx
        self.contacts = contacts
        self.names = names

    def qbo_customer(self, candidate: Mapping[str, Any]) -> dict[str, Any] | None:
        """The QuickBooks Customer behind a Merge Contact (Job, ParentRef, Active), through passthrough: Merge's
        Contact has no hierarchy. None when passthrough cannot answer."""
        if self.ctx.dry and not candidate.get("remote_id"):
            return None
        rows = self.ctx.client.query_customers_by_name(str(candidate.get("name") or ""))
        if rows is None:
            return None
        return next((r for r in rows if str(r.get("Id")) == str(candidate.get("remote_id"))), {})

    def recover(
        self,
        intent_key: str,
        source_type: str,
        source_id: str,
        target_type: str,
        find: Callable[[str], FoundIds | None],
    ) -> Link | None:
        """A create may have happened before a crash: find it (`find(name)`) by the DisplayName its intent recorded
        before creating again."""
        ctx = self.ctx
        intent = ctx.leftover.get(intent_key) or {}
        name = intent.get("name")
        found = find(str(name)) if name else None
        ctx.end(intent_key)
        if found is None:
            return None
        merge_id, remote = found
        link = link_for(
            source_type, source_id, target_type, {"id": merge_id, "remote_id": remote}, intent.get("fingerprint")
        )
        ctx.save_link(link)
        stream = "accounts" if source_type == "account" else "projects"
        ctx.record(
            stream,
            source_id,
            "linked",
            f"recovered {target_type} {name!r} created by an interrupted run (no duplicate created)",
            target_id=merge_id or remote,
            name=str(name),
        )
        return link

    def link_existing(
        self,
        stream: str,
        source_type: str,
        source_id: str,
        target_type: str,
        match: dict[str, Any],
        desired: dict[str, Any],
        base: str,
        *,
        how: str = "by name",
    ) -> Link:
        """Link a matched QuickBooks record and bring it in line under the matching strategy."""
        ctx = self.ctx
        strategy = ctx.policy.strategy
        wanted = with_clears(desired) if strategy == "replace" and target_type == "customer" else desired
        patch = diff_for_strategy(
            {k: v for k, v in wanted.items() if k not in {"is_supplier", "name"}}, match, strategy
        )
        if strategy == "replace" and match.get("name") != desired.get("name"):
            patch["name"] = desired["name"]
        rid = None
        if patch and not ctx.dry:
            rid = ctx.client.update("contacts", str(match["id"]), patch).request_id
        # fingerprint of what Coperniq wants, so an unchanged record costs nothing next run
        fp = fingerprint({**desired, "name": match.get("name") if strategy != "replace" else desired["name"]})
        link = link_for(source_type, source_id, target_type, match, fp, origin=QBO)
        ctx.save_link(link)
        if strategy != "replace":
            self.names.remember(target_type, source_id, base, str(match.get("name") or base))
        what = f"updated {describe_patch(patch, match)}" if patch else "left unchanged"
        ctx.record(
            stream,
            source_id,
            "linked",
            f"matched existing QuickBooks {target_type} {match.get('name')!r} {how} ({strategy}: {what})",
            target_id=link.target_id,
            request_id=rid,
            name=str(match.get("name")),
        )
        return link

    def find_own_customer(self, name: str, desired: Mapping[str, Any]) -> dict[str, Any] | None:
        """The customer a create of ours under `name` made when its answer was lost (or the run crashed): the
        customer holding that DisplayName (QuickBooks keeps them unique), linked to no other record, with the
        email we sent if we sent one. A vendor or employee holding the name is somebody else's."""
        email = normalize_email(desired.get("email_address"))
        for contact in self.ctx.client.find_contacts(name=name, is_customer="true"):
            if (
                normalize_name(contact.get("name")) != normalize_name(name)
                or not contact.get("is_customer")
                or str(contact.get("id")) in self.ctx.links.targets
            ):
                continue
            other = normalize_email(contact.get("email_address"))
            if email and other and email != other:
                continue
            return contact
        return None

    def find_own_job(self, name: str, parent: str) -> dict[str, Any] | None:
        """The QBO job a create of ours under `name` made: `Job` true, `ParentRef` = our customer, linked to no
        other project. Asked of QuickBooks through passthrough: Merge may list a passthrough write only after its
        next sync."""
        for row in self.ctx.client.query_customers_by_name(name) or []:
            if (
                row.get("Job")
                and str((row.get("ParentRef") or {}).get("value")) == str(parent)
                and not self.ctx.links.is_linked_job(str(row.get("Id")))
                and normalize_name(row.get("DisplayName")) == normalize_name(name)
            ):
                return row
        return None
