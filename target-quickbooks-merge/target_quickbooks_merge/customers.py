"""Coperniq clients (accounts) -> QuickBooks customers: matched, created (batched) or updated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from typing import Any

from sync_ledger import Link, fingerprint
from sync_ledger.ledger_review import Decision, review_key
from sync_ledger.rows import RowFailure, Wait, link_key, record_key
from sync_ledger.writer import PlannedWrite

from .contacts import ContactRules, FoundIds
from .context import SRC, Context, idempotency_key, link_for, remote_id_of
from .mapping import conflicting_contact, customer_payload, normalize_name, render_name, with_clears
from .merge_client import WriteResult
from .merge_index import ContactIndex, NameBook
from .review import Review, candidate_summary, chosen_contact


class CustomerSync(ContactRules):
    """One customer per client; a client is synced when a project of it triggers (or it was synced before)."""

    def __init__(self, ctx: Context, contacts: ContactIndex, names: NameBook) -> None:
        super().__init__(ctx, contacts, names)
        self.done: set[str] = set()
        self.pending: set[str] = set()
        #: clients whose customer QuickBooks refused this run: their projects fail with the same reason
        self.failures: dict[str, Exception] = {}
        #: clients waiting in the review queue: their projects wait for the client's link
        self.reviewing: set[str] = set()

    def ensure(self, account_id: str) -> Link | None:
        """The account's customer link; None when its create is planned (sent with the batch)."""
        ctx = self.ctx
        link = ctx.links.get("account", account_id)
        if account_id in self.done and link is not None:
            return link
        if account_id in self.pending:
            return None
        if account_id in self.failures:
            raise self.failures[account_id]  # failed earlier in this run: not sent again
        if account_id in self.reviewing:
            raise self._waits_for_review(account_id)
        account = ctx.ledger.staged(SRC, "accounts", account_id)
        if account is None or "__invalid__" in account:
            if link is not None:
                return link
            raise Wait(
                f"client (account {account_id}) has not been received from Coperniq yet",
                on=record_key("accounts", account_id),
            )
        base = render_name(
            ctx.s.customer_name_template, title=account.get("title"), number=account.get("number"), id=account_id
        )
        if link is not None:
            self.done.add(account_id)  # its projects go on with the link; an update marks the row when sent
            if not self._update(account_id, account, link, base):
                ctx.mark("accounts", account_id, "done")
            return link
        try:
            if self._create_or_match(account_id, account, base) is None:
                return None
        except Review as doubt:
            self._queue(account_id, account, doubt)
            raise self._waits_for_review(account_id) from None
        self.done.add(account_id)
        ctx.mark("accounts", account_id, "done")
        return ctx.links.get("account", account_id)

    def sync_decided(self) -> None:
        """Before the projects (so their jobs follow in this run): clients a person decided about in the review
        queue, and queued clients evaluated again (changed in Coperniq, undismissed, retried)."""
        ctx = self.ctx
        ledger = ctx.ledger
        decided = ledger.decided(SRC, "accounts")
        dismissed = ledger.decided(SRC, "accounts", ("dismiss",))
        queued = {i["record_id"] for i in ledger.review_items(status=("open", "dismissed"), source_system=SRC)}
        again = {
            aid for aid in queued - dismissed if (ledger.staged_status(SRC, "accounts", aid) or ("",))[0] == "pending"
        }
        for aid in sorted(decided | again):
            if ("account", aid) in ctx.links or ledger.staged(SRC, "accounts", aid) is None:
                continue
            ctx.guard("accounts", aid, partial(self._ensure_none, aid))
        ctx.writer.flush_all()
        if ctx.dry:
            return
        ctx.journal.flush()  # the links are durable before the decisions that made them are used up
        for aid in decided | again:
            if ("account", aid) in ctx.links:
                ledger.resolve_review(SRC, "accounts", aid)  # linked as decided, or no longer in doubt

    def sync_remaining(self) -> None:
        """Clients not reached through a triggered project: updates of synced ones, the rest waits."""
        ctx = self.ctx
        for aid, account, _, _ in ctx.todo("accounts"):
            if "__invalid__" in account or aid in self.done or aid in self.reviewing:
                continue
            if ("account", aid) in ctx.links or aid in self.failures:
                ctx.guard("accounts", aid, partial(self._ensure_none, aid))
            else:
                ctx.skip("accounts", aid, "client has no triggered project yet", name=str(account.get("title") or ""))
        ctx.writer.flush_all()

    def _ensure_none(self, account_id: str) -> None:
        self.ensure(account_id)

    def _update(self, account_id: str, account: Mapping[str, Any], link: Link, base: str) -> bool:
        """Bring a synced customer in line with its client; True when a PATCH is planned (it marks the row)."""
        ctx = self.ctx
        name = self.names.stored("customer", account_id, base)
        desired = customer_payload(account, name)
        fp = fingerprint(desired)
        if link.fingerprint == fp:
            return False  # unchanged: zero API calls
        if ctx.policy.leaves_alone(link):
            ctx.save_link(replace(link, fingerprint=fp))
            ctx.record(
                "accounts",
                account_id,
                "skipped",
                "matched QuickBooks customer; matching_strategy skip leaves it unchanged",
                target_id=link.target_id,
                name=name,
            )
            return False
        # replace: fields emptied in Coperniq are cleared in QuickBooks too; enrich never blanks anything out
        patch = with_clears(desired) if ctx.policy.clears else dict(desired)
        if ctx.policy.keeps_qbo_name(link):
            patch.pop("name", None)  # a matched record keeps its QuickBooks name
        patch.pop("is_supplier", None)
        if not link.target_id:
            raise Wait("customer has no Merge id yet")
        self._plan_update(account_id, account, link, base, patch, set())
        return True

    def _plan_update(
        self, account_id: str, account: Mapping[str, Any], link: Link, base: str, patch: dict[str, Any], tried: set[str]
    ) -> None:
        """A rename QuickBooks refuses as a duplicate (6240: the new name is held by another customer, vendor or
        employee) moves to the next suffixed name, as a create does."""
        ctx = self.ctx
        name = str(patch.get("name") or self.names.stored("customer", account_id, base))
        fields = ", ".join(sorted(patch))

        def finish(request_id: str | None) -> None:
            if "name" in patch:
                self.names.remember("customer", account_id, base, name)
            ctx.save_link(replace(link, fingerprint=fingerprint(customer_payload(account, name))))
            ctx.record(
                "accounts",
                account_id,
                "updated",
                f"client changed in Coperniq ({fields})",
                target_id=link.target_id,
                request_id=request_id,
                name=name,
            )
            ctx.mark("accounts", account_id, "done")

        def failed(exc: Exception) -> None:
            following = (
                self.names.next_after(exc, name, base, str(account.get("number") or account_id), tried)
                if "name" in patch
                else None
            )
            if following is None:
                raise exc
            self._plan_update(account_id, account, link, base, {**patch, "name": following}, tried)

        ctx.plan_update("accounts", account_id, "contacts", str(link.target_id), patch, finish, failed)

    def _match(self, account: Mapping[str, Any], base: str, key: str) -> dict[str, Any] | None:
        """A top-level, active QuickBooks customer with the client's name (or a suffixed name of ours) and no
        conflicting evidence (mapping.conflicting_contact). A job of some customer holding the name is another
        party: never linked as a client. With ambiguous_match `review`, doubt (several candidates under one name,
        a same-name customer with other contact details, the name held by a job, an inactive customer or a vendor)
        raises Review instead of creating a suffixed customer of its own."""
        desired = customer_payload(account, base)
        doubts: list[dict[str, Any]] = []
        found: list[dict[str, Any]] = []
        for candidate in self.names.candidates(base, key, self.ctx.links.targets):
            if found and normalize_name(candidate.get("name")) != normalize_name(found[0].get("name")):
                break  # a match under an earlier (more specific) name wins
            conflict = conflicting_contact(desired, candidate)
            if conflict:
                doubts.append(candidate_summary(candidate, f"same name, {conflict}"))
                continue  # same name, different person: the client gets a suffixed customer of its own
            row = self.qbo_customer(candidate)
            if row is not None and (row.get("Job") or row.get("Active") is False):
                # a sub-customer (job) of another customer, or inactive in QuickBooks
                doubts.append(
                    candidate_summary(candidate, "a job of another customer" if row.get("Job") else "inactive")
                )
                continue
            found.append(candidate)
        if self.ctx.s.ambiguous_match != "review":
            return found[0] if found else None
        if len(found) > 1:
            why = "several QuickBooks customers have this name"
            raise Review(why, [candidate_summary(c, "same name") for c in found])
        if found:
            return found[0]
        doubts += [
            candidate_summary(c, "the name is held by a record that is not a customer")
            for c in self.contacts.by_name.get(normalize_name(base), [])
            if c.get("id") and not c.get("is_customer") and str(c.get("id")) not in self.ctx.links.targets
        ]
        if doubts:
            raise Review(f"QuickBooks holds {base!r} already, and it may not be this client", doubts)
        return None

    def _queue(self, account_id: str, account: Mapping[str, Any], doubt: Review) -> None:
        """Put the client in the review queue (logged once per change of its candidates) and mark it waiting."""
        ctx = self.ctx
        self.reviewing.add(account_id)
        name = str(account.get("title") or "")
        if ctx.dry:
            ctx.record("accounts", account_id, "review", f"would wait for review: {doubt}", name=name)
            return
        if ctx.ledger.queue_review(
            SRC, "accounts", account_id, reason=str(doubt), candidates=doubt.candidates, name=name, run_id=ctx.run_id
        ):
            ctx.record(
                "accounts",
                account_id,
                "review",
                f"{doubt}: waits in the review queue with {len(doubt.candidates)} candidate(s) "
                f"(`coperniq-qbo review`, then `coperniq-qbo link accounts:{account_id} <QuickBooks id>` or `--new`)",
                name=name,
            )
        ctx.mark_waiting(
            "accounts", account_id, f"waits in the review queue: {doubt}", review_key("accounts", account_id)
        )

    def _waits_for_review(self, account_id: str) -> Wait:
        return Wait(
            f"client (account {account_id}) waits in the review queue (`coperniq-qbo review`)",
            on=link_key("account", account_id),
        )

    def _decided(self, account_id: str, account: Mapping[str, Any], base: str, decision: Decision) -> Link | None:
        """A person chose the client's QuickBooks customer (`link`) or a customer of its own (`new`)."""
        key = str(account.get("number") or account_id)
        if decision.decision == "new":
            self._plan(account_id, account, base, key, self.names.free(base, key), set(), decided=True)
            return None
        contact = chosen_contact(self, str(decision.target_id), decision.actor)
        name = self.names.own("customer", account_id, base, contact)
        link = self.link_existing(
            "accounts",
            "account",
            account_id,
            "customer",
            contact,
            customer_payload(account, name),
            base,
            how=f"as {decision.actor} decided in the review queue",
        )
        return link  # the decision is used up once the link is durable (sync_decided)

    def _create_or_match(self, account_id: str, account: Mapping[str, Any], base: str) -> Link | None:
        intent_key = f"forward:account:{account_id}"
        if intent_key in self.ctx.leftover:
            desired = customer_payload(account, base)
            recovered = self.recover(
                intent_key, "account", account_id, "customer", lambda name: self._own_ids(name, desired)
            )
            if recovered:
                return recovered
        decision = self.ctx.ledger.decision(SRC, "accounts", account_id)
        if decision is not None and decision.decision in ("link", "new"):
            return self._decided(account_id, account, base, decision)
        key = str(account.get("number") or account_id)
        match = self._match(account, base, key)
        if match is not None:
            name = self.names.own("customer", account_id, base, match)
            return self.link_existing(
                "accounts", "account", account_id, "customer", match, customer_payload(account, name), base
            )
        self._plan(account_id, account, base, key, self.names.free(base, key), set())
        return None

    def _own_ids(self, name: str, desired: Mapping[str, Any]) -> FoundIds | None:
        contact = self.find_own_customer(name, desired)
        return (str(contact["id"]), remote_id_of(contact)) if contact is not None else None

    def _plan(
        self,
        account_id: str,
        account: Mapping[str, Any],
        base: str,
        key: str,
        name: str,
        tried: set[str],
        *,
        decided: bool = False,
    ) -> None:
        ctx = self.ctx
        intent_key = f"forward:account:{account_id}"
        desired = customer_payload(account, name)
        fp = fingerprint(desired)
        ikey = idempotency_key("account", account_id, fp)
        self.contacts.reserve(name)
        self.pending.add(account_id)

        def send() -> WriteResult:
            if ctx.dry:
                return WriteResult({"id": ctx.fake_id("customer"), "remote_id": None, "name": name})
            return ctx.client.create(
                "contacts", desired, idempotency_key=ikey, find_existing=lambda: self.find_own_customer(name, desired)
            )

        def finish(res: WriteResult) -> None:
            model = res.model
            self.pending.discard(account_id)
            link = link_for("account", account_id, "customer", model, fp)
            ctx.commit_create(link, intent_key)
            self.names.remember("customer", account_id, base, name)
            self.done.add(account_id)
            reason = (
                "a customer of its own, as decided in the review queue" if decided else "client of a triggered project"
            )
            if name != base:
                reason += f"; DisplayName {base!r} is used by an unrelated QuickBooks record, used {name!r}"
            ctx.record("accounts", account_id, "created", reason, target_id=link.target_id, name=name, write=res)
            ctx.mark("accounts", account_id, "done")

        def failed(exc: Exception) -> None:
            self.pending.discard(account_id)
            try:
                following = self.names.next_after(exc, name, base, key, tried)
            except RowFailure as no_name:
                following, exc = None, no_name
            if following is not None:
                self._plan(account_id, account, base, key, following, tried, decided=decided)
                return
            self.failures[account_id] = exc  # its projects fail with this reason (JobSync)

        ctx.writer.plan(
            PlannedWrite(
                "accounts",
                account_id,
                intent_key,
                {"kind": "customer", "name": name, "idempotency_key": ikey},
                send,
                finish,
                failed,
            ),
            durable_now=bool(tried),
        )
