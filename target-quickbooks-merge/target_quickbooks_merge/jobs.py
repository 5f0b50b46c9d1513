"""Triggered Coperniq projects -> QuickBooks jobs (sub-customers of their client's customer).

Merge's Contact has no parent, so a job is created through passthrough (QuickBooks `Customer` with `Job` and
`ParentRef`) and gets its Merge id once Merge has synced it; until then it is known by its QBO Id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from typing import Any

from sync_ledger import ApiError, Link, fingerprint
from sync_ledger.rows import RowFailure, Wait, link_key
from sync_ledger.writer import WRITE_BATCH, PlannedWrite

from .contacts import ContactRules, FoundIds
from .context import SRC, Context, idempotency_key, link_for
from .customers import CustomerSync
from .mapping import job_contact_patch, job_payload, render_name
from .merge_client import WriteResult
from .merge_index import ContactIndex, NameBook
from .phases import ProjectTriggers
from .triggers import SNAPSHOT_STREAM

#: A project waiting for its customer's create, and the status it was read with.
Pending = tuple[str, Mapping[str, Any], str]


class JobSync(ContactRules):
    """Projects go in chunks: first the customers the chunk needs (creates sent together), then its jobs."""

    def __init__(
        self, ctx: Context, contacts: ContactIndex, names: NameBook, customers: CustomerSync, triggers: ProjectTriggers
    ) -> None:
        super().__init__(ctx, contacts, names)
        self.customers = customers
        self.triggers = triggers
        self._resolved: dict[str, str | None] = {}

    def sync_projects(self) -> None:
        ctx = self.ctx
        self.triggers.observe(ctx.links, ctx.todo_chunks("projects"), dry=ctx.dry)
        chunk: list[Pending] = []
        related = ("accounts", SNAPSHOT_STREAM) if self.triggers.uses_snapshots else ("accounts",)
        for pid, project, status, _ in ctx.todo("projects", prefetch=related):
            if "__invalid__" in project:
                continue
            ctx.guard(
                "projects",
                pid,
                partial(self._customer_of, pid, project, status, chunk),
                status,
            )
            if len(chunk) >= WRITE_BATCH:
                self._jobs(chunk)
                chunk = []
        self._jobs(chunk)

    def _customer_of(self, pid: str, project: Mapping[str, Any], status: str, chunk: list[Pending]) -> None:
        """Stage 1 of a project: is it triggered, and its customer (a create is only planned here)."""
        if self.ctx.links.get("project", pid) is None:
            reason = self.triggers.not_triggered_reason(project)
            if reason:
                if status != "skipped":  # log a skip once per version of the record, not every run
                    self.ctx.skip("projects", pid, reason, name=str(project.get("title") or ""))
                return
        account_id = project.get("accountId")
        if account_id in (None, ""):
            raise RowFailure("project has no accountId (client); QuickBooks jobs need a parent customer")
        self.customers.ensure(str(account_id))
        chunk.append((pid, project, status))

    def _jobs(self, chunk: list[Pending]) -> None:
        """Stage 2: send the chunk's planned customers, then plan and send its jobs."""
        writer = self.ctx.writer
        writer.flush_all()
        for pid, project, status in chunk:
            self.ctx.guard("projects", pid, partial(self._job_of, pid, project), status, count=False)
        writer.flush_all()

    def _job_of(self, pid: str, project: Mapping[str, Any]) -> None:
        account_id = str(project.get("accountId"))
        failure = self.customers.failures.get(account_id)
        if failure is not None:
            raise failure  # its customer could not be created: the project fails with that reason
        customer = self.ctx.links.get("account", account_id)
        if customer is None:
            raise Wait(
                f"client (account {account_id}) is not synced to QuickBooks yet", on=link_key("account", account_id)
            )
        if self._ensure(pid, project, customer) is not None:
            self.ctx.mark("projects", pid, "done")  # else a write is planned; it marks the project when sent

    def _ensure(self, pid: str, project: Mapping[str, Any], customer: Link) -> Link | None:
        """The project's job link; None when its create or update is planned (sent with the batch)."""
        ctx = self.ctx
        parent_remote = customer.target_remote_id
        if not parent_remote:
            if ctx.dry and customer.target_id and customer.target_id.startswith("dry-run"):
                parent_remote = "dry-run"
            else:
                contact = ctx.client.api.get(f"/contacts/{customer.target_id}") or {}
                parent_remote = contact.get("remote_id")
                if not parent_remote:
                    raise Wait("parent customer has no QuickBooks Id yet")
                customer = replace(customer, target_remote_id=str(parent_remote))
                ctx.save_link(customer)
        account = ctx.ledger.staged(SRC, "accounts", str(project.get("accountId"))) or {}
        title = project.get("title") or account.get("title") or f"Project {pid}"
        base = render_name(
            ctx.s.job_name_template, title=title, number=project.get("number"), id=pid, client=account.get("title")
        )
        link = ctx.links.get("project", pid)
        if link is not None:
            return None if self._update(pid, project, link, base, str(parent_remote)) else link
        return self._create_or_match(pid, project, base, str(parent_remote))

    def _update(self, pid: str, project: Mapping[str, Any], link: Link, base: str, parent: str) -> bool:
        """Bring a synced job in line with its project; True when a PATCH is planned (it marks the row)."""
        ctx = self.ctx
        name = self.names.stored("job", pid, base)
        desired = job_payload(project, name, parent)
        fp = fingerprint(desired)
        if link.fingerprint == fp:
            return False
        if ctx.policy.leaves_alone(link):
            ctx.save_link(replace(link, fingerprint=fp))
            return False
        merge_id = link.target_id or self.resolve(link)
        if not merge_id:
            raise Wait(f"job (QBO Id {link.target_remote_id}) is not visible in Merge yet; update retried next run")
        patch = job_contact_patch(desired)
        if ctx.policy.keeps_qbo_name(link):
            patch.pop("name", None)

        def finish(request_id: str | None) -> None:
            ctx.save_link(replace(link, target_id=merge_id, fingerprint=fp))
            ctx.record(
                "projects",
                pid,
                "updated",
                f"project changed in Coperniq ({', '.join(sorted(patch))})",
                target_id=merge_id,
                request_id=request_id,
                name=name,
            )
            ctx.mark("projects", pid, "done")

        ctx.plan_update("projects", pid, "contacts", merge_id, patch, finish)
        return True

    def resolve(self, link: Link) -> str | None:
        """Merge id of a job created by passthrough: visible once Merge synced it (GET /contacts?remote_id=)."""
        remote = link.target_remote_id
        if not remote:
            return None
        if remote not in self._resolved:
            found = None if self.ctx.dry else self.ctx.client.contact_by_remote_id(remote)
            self._resolved[remote] = str(found["id"]) if found and found.get("id") else None
            if self._resolved[remote]:
                self.ctx.save_link(replace(link, target_id=self._resolved[remote]))
        return self._resolved[remote]

    def _create_or_match(self, pid: str, project: Mapping[str, Any], base: str, parent: str) -> Link | None:
        intent_key = f"forward:project:{pid}"
        if intent_key in self.ctx.leftover:
            recovered = self.recover(intent_key, "project", pid, "job", lambda name: self._own_ids(name, parent))
            if recovered:
                return recovered
        key = str(project.get("number") or pid)
        for candidate in self.names.candidates(base, key, self.ctx.links.targets):
            row = self.qbo_customer(candidate)
            # Only a job (Job true) under this project's customer: a top-level customer, or a job of another
            # customer, with the same name is somebody else (without passthrough nothing can be verified).
            if (
                row
                and row.get("Job")
                and str((row.get("ParentRef") or {}).get("value")) == str(parent)
                and row.get("Active") is not False
            ):
                name = self.names.own("job", pid, base, candidate)
                return self.link_existing(
                    "projects",
                    "project",
                    pid,
                    "job",
                    candidate,
                    job_contact_patch(job_payload(project, name, parent)),
                    base,
                )
        self._plan(pid, project, base, parent, key, self.names.free(base, key), set())
        return None

    def _own_ids(self, name: str, parent: str) -> FoundIds | None:
        row = self.find_own_job(name, parent)
        if row is None:
            return None
        found = self.ctx.client.contact_by_remote_id(str(row["Id"]))  # None until Merge has synced it
        return (str(found["id"]) if found and found.get("id") else None), str(row["Id"])

    def _plan(
        self, pid: str, project: Mapping[str, Any], base: str, parent: str, key: str, name: str, tried: set[str]
    ) -> None:
        ctx = self.ctx
        intent_key = f"forward:project:{pid}"
        body = job_payload(project, name, parent)
        fp = fingerprint(body)
        ikey = idempotency_key("project", pid, fp)
        self.contacts.reserve(name)

        def send() -> tuple[WriteResult, dict[str, Any] | None]:
            if ctx.dry:
                return WriteResult({"Id": None}), None
            res = ctx.client.create_sub_customer(
                body, idempotency_key=ikey, find_existing=lambda: self.find_own_job(name, parent)
            )
            found = None
            if res.model.get("Id"):
                try:  # its Merge id, if Merge has synced it already (else resolved when an invoice needs it)
                    found = ctx.client.contact_by_remote_id(str(res.model["Id"]))
                except ApiError:
                    found = None
            return res, found

        def finish(sent: tuple[WriteResult, dict[str, Any] | None]) -> None:
            res, found = sent
            remote = str(res.model["Id"]) if res.model.get("Id") else None
            merge_id: str | None = ctx.fake_id("job") if ctx.dry else None
            if remote and not ctx.dry:
                merge_id = str(found["id"]) if found and found.get("id") else None
                self._resolved[remote] = merge_id
            link = link_for("project", pid, "job", {"id": merge_id, "remote_id": remote}, fp)
            ctx.commit_create(link, intent_key)
            self.names.remember("job", pid, base, name)
            reason = f"reached its trigger phase; QBO sub-customer of customer {parent}"
            if name != base:
                reason += f"; DisplayName {base!r} is used by an unrelated QuickBooks record, used {name!r}"
            if not merge_id and not ctx.dry:
                reason += " (not visible in Merge yet: its invoices wait for Merge's next sync)"
            ctx.record("projects", pid, "created", reason, target_id=merge_id or remote, name=name, write=res)
            ctx.mark("projects", pid, "done")

        def failed(exc: Exception) -> None:
            following = self.names.next_after(exc, name, base, key, tried)
            if following is None:
                raise exc
            self._plan(pid, project, base, parent, key, following, tried)

        ctx.writer.plan(
            PlannedWrite(
                "projects",
                pid,
                intent_key,
                {"kind": "job", "name": name, "idempotency_key": ikey, "fingerprint": fp},
                send,
                finish,
                failed,
            ),
            durable_now=bool(tried),
        )
