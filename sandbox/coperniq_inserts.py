"""Coperniq sandbox inserts: workflows, accounts, contacts (and their links), projects, catalog items, taxes.

Why plain functions over the state: the HTTP handlers, the admin helpers and the seeder (sandbox/seed.py, which
must not import the app) all create records through these, so ids, timestamps and the list-cache versions move
identically whoever writes. Callers validate first and hold the app's lock. Invoices and payments are in
`coperniq_invoice_writes`; `coperniq_writes` serves every write function under one name.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sandbox.coperniq_state import OWNER, SANDBOX_USER, CoperniqState, iso


def insert_workflow(
    st: CoperniqState, name: str, phases: list[Any], description: str | None = None, at_us: int | None = None
) -> dict[str, Any]:
    """A workflow and its phase templates (`phases`: names, or dicts {name, type?, redSla?, yellowSla?})."""
    at = at_us if at_us is not None else st.clock.tick()
    wid = st.next_id("workflow")
    tpl_ids = []
    for pos, ph in enumerate(phases, start=1):
        spec = ph if isinstance(ph, dict) else {"name": ph}
        tid = st.next_id("phase_template")
        st.phase_templates[tid] = {
            "id": tid,
            "name": spec["name"],
            "type": spec.get("type") or re.sub(r"\W+", "_", spec["name"]).strip("_").upper(),
            "description": spec.get("description"),
            "redSla": spec.get("redSla", 14),
            "yellowSla": spec.get("yellowSla", 7),
            "position": pos,
            "workflowId": wid,
        }
        tpl_ids.append(tid)
    wf = {
        "id": wid,
        "name": name,
        "description": description,
        "type": "PROJECT",
        "createdAt": iso(at),
        "updatedAt": iso(at),
        "createdBy": {k: SANDBOX_USER[k] for k in ("id", "firstName", "lastName", "avatarUrl")},
        "_u": at,
        "_phases": tpl_ids,
    }
    st.workflows[wid] = wf
    st.touch("workflows")
    return wf


def insert_account(
    st: CoperniqState, fields: dict[str, Any], at_us: int | None = None, updated_us: int | None = None
) -> dict[str, Any]:
    """An account from validated fields; `contacts` (ids) are linked both ways."""
    at = at_us if at_us is not None else st.clock.tick()
    upd = updated_us if updated_us is not None else at
    aid = st.next_id("account")
    acc = {
        "id": aid,
        "number": st.next_id("account_number"),
        "title": fields["title"],
        "description": fields.get("description"),
        "address": list(fields.get("address") or []),
        "isActive": fields.get("isActive", True),
        "primaryEmail": fields.get("primaryEmail"),
        "primaryPhone": fields.get("primaryPhone"),
        "accountType": fields.get("accountType"),
        "custom": dict(fields.get("custom") or {}),
        "createdAt": iso(at),
        "updatedAt": iso(upd),
        "createdBy": SANDBOX_USER,
        "updatedBy": None,
        "_u": upd,
        "_contacts": [],
    }
    st.accounts[aid] = acc
    for cid in fields.get("contacts") or []:
        link_contact(st, cid, account_id=aid)
    st.touch("accounts")
    return acc


def insert_contact(st: CoperniqState, fields: dict[str, Any], at_us: int | None = None) -> dict[str, Any]:
    """A contact from validated fields, linked to `accountIds` and `projectIds`."""
    at = at_us if at_us is not None else st.clock.tick()
    cid = st.next_id("contact")
    c: dict[str, Any] = {
        "id": cid,
        "companyId": 1,
        "name": fields["name"],
        "emails": list(fields.get("emails") or []),
        "phones": list(fields.get("phones") or []),
        "createdByUser": {"id": SANDBOX_USER["id"]},
        "createdAt": iso(at),
        "updatedAt": iso(at),
        "_u": at,
        "_accounts": [],
        "_projects": [],
    }
    if fields.get("title") is not None:
        c["title"] = fields["title"]
    st.contacts[cid] = c
    for aid in fields.get("accountIds") or []:
        link_contact(st, cid, account_id=aid)
    for pid in fields.get("projectIds") or []:
        link_contact(st, cid, project_id=pid)
    st.touch("contacts")
    return c


def link_contact(st: CoperniqState, cid: int, account_id: int | None = None, project_id: int | None = None) -> None:
    """Link a contact to an account (both sides) and/or a project; linking twice is a no-op."""
    c = st.contacts[cid]
    if account_id is not None and account_id not in c["_accounts"]:
        c["_accounts"] = c["_accounts"] + [account_id]
        acc = st.accounts[account_id]
        acc["_contacts"] = acc["_contacts"] + [cid]
    if project_id is not None and project_id not in c["_projects"]:
        c["_projects"] = c["_projects"] + [project_id]
    st.touch("contacts")


def insert_project(
    st: CoperniqState,
    fields: dict[str, Any],
    account_id: int,
    workflow_id: int | None,
    at_us: int | None = None,
    phase_index: int = 0,
    phase_starts: list[int] | None = None,
    updated_us: int | None = None,
    workflows_v1: bool = False,
) -> dict[str, Any]:
    """Create a project; with a workflow, phases 0..phase_index-1 are completed and phase_index is in
    progress (`phase_starts[i]` = start of phase i; phase i completes when i+1 starts).

    `workflows_v1`: the project shows `stage` instead of `phase` (its progress is tracked the same way)."""
    at = at_us if at_us is not None else st.clock.tick()
    pid = st.next_id("project")
    wf = st.workflows.get(workflow_id) if workflow_id is not None else None
    upd = updated_us if updated_us is not None else (max(at, phase_starts[phase_index]) if phase_starts else at)
    p = {
        "id": pid,
        "number": st.next_id("project_number"),
        "title": fields["title"],
        "description": fields.get("description"),
        "address": list(fields.get("address") or []),
        "isActive": fields.get("isActive", True),
        "status": fields.get("status") or "ACTIVE",
        "primaryEmail": fields.get("primaryEmail"),
        "primaryPhone": fields.get("primaryPhone"),
        "trades": list(fields.get("trades") or ["Solar"]),
        "value": fields.get("value"),
        "size": fields.get("size"),
        "workflowId": wf["id"] if wf else None,
        "workflowName": wf["name"] if wf else "",
        "accountId": account_id,
        "custom": dict(fields.get("custom") or {}),
        "createdAt": iso(at),
        "updatedAt": iso(upd),
        "createdBy": SANDBOX_USER,
        "updatedBy": None,
        "owner": OWNER,
        "salesRep": None,
        "projectManager": None,
        "lastActivity": iso(upd),
        "_u": upd,
    }
    if workflows_v1:
        p["_v1"] = True
    st.projects[pid] = p
    if wf is not None:
        starts = phase_starts or [at]
        instances = []
        for i, tid in enumerate(wf["_phases"]):
            if i < phase_index:
                instances.append([st.next_id("phase_instance"), tid, "COMPLETED", starts[i], starts[i + 1]])
            elif i == phase_index:
                instances.append([st.next_id("phase_instance"), tid, "IN_PROGRESS", starts[i], None])
            else:
                instances.append([st.next_id("phase_instance"), tid, "NOT_STARTED", None, None])
        st.phase_instances[pid] = instances
    for cid in fields.get("contacts") or []:
        link_contact(st, cid, project_id=pid)
    st.touch("projects")
    return p


def insert_catalog_item(st: CoperniqState, fields: dict[str, Any], at_us: int | None = None) -> dict[str, Any]:
    """A catalog item from validated fields (`tradeGroup` becomes `catalog`)."""
    at = at_us if at_us is not None else st.clock.tick()
    cid = st.next_id("catalog_item")
    item = {
        "id": cid,
        "name": fields["name"],
        "catalog": fields.get("tradeGroup") or "OTHER",
        "type": fields["type"],
        "category": fields["category"],
        "manufacturer": fields.get("manufacturer"),
        "sku": fields.get("sku"),
        "code": fields.get("code"),
        "cost": float(fields["cost"]),
        "price": float(fields["price"]),
        "description": fields.get("description"),
        "image": None,
        "isArchived": False,
        "createdById": SANDBOX_USER["id"],
        "createdAt": iso(at),
        "updatedAt": iso(at),
        "preferredVendorId": None,
        "_u": at,
    }
    st.catalog_items[cid] = item
    st.touch("catalog_items")
    return item


def tax_rate_text(rate: Any) -> str:
    """A CompanyTax `rate`: the percentage as a decimal string with four places, e.g. 8.25 -> "8.2500"."""
    return f"{Decimal(str(rate)).quantize(Decimal('0.0001'), rounding=ROUND_HALF_UP)}"


def insert_tax(
    st: CoperniqState, name: str, rate: Any, archived: bool = False, at_us: int | None = None
) -> dict[str, Any]:
    """A company tax (CompanyTax of GET /taxes); `rate` is a percentage (number or decimal string)."""
    at = at_us if at_us is not None else st.clock.tick()
    tid = st.next_id("tax")
    tax = {
        "id": tid,
        "name": name,
        "rate": tax_rate_text(rate),
        "isArchived": bool(archived),
        "createdAt": iso(at),
        "updatedAt": iso(at),
        "_u": at,
    }
    st.taxes[tid] = tax
    st.touch("taxes")
    return tax
