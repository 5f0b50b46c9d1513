"""Coperniq sandbox writes: inserting records and changing them, the same way for every caller.

Why plain functions over the state: the HTTP handlers, the admin helpers and the seeder (sandbox/seed.py, which
must not import the app) all create records through these, so ids, timestamps and the list-cache versions move
identically whoever writes. Callers validate first and hold the app's lock.
"""

from __future__ import annotations

import re
from typing import Any

from sandbox.coperniq_params import fold, invalid
from sandbox.coperniq_state import DAY_US, OWNER, SANDBOX_USER, STAGE_ID_OFFSET, CoperniqState, iso


# --- inserts (shared by HTTP handlers, admin helpers and the seeder) ---------------------------------
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


def invoice_line(st: CoperniqState, spec: dict[str, Any], section: str | None, lid: int) -> dict[str, Any]:
    """One invoice line as the API returns it (shared by replace and append PATCH semantics)."""
    item = st.catalog_items[spec["catalogItemId"]]
    return {
        "id": lid,
        "catalogItemId": item["id"],
        "quantity": spec["quantity"],
        "unitCost": float(spec["unitCost"]),
        "unitPrice": float(spec["unitPrice"]),
        "description": spec.get("description"),
        "sectionName": section,
        "catalogItem": {
            "id": item["id"],
            "name": item["name"],
            "manufacturer": item["manufacturer"],
            "sku": item["sku"],
            "type": item["type"],
        },
    }


def build_lines(
    st: CoperniqState, lines: list[tuple[dict[str, Any], str | None]], existing: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The new set of lines; a line whose `id` is one of `existing` keeps it, every other gets a new id."""
    keep = {li["id"] for li in existing or []}
    out = []
    for spec, section in lines:
        lid = spec.get("id")
        out.append(
            invoice_line(st, spec, section, lid if isinstance(lid, int) and lid in keep else st.next_id("line_item"))
        )
    return out


def merge_lines(
    st: CoperniqState, lines: list[tuple[dict[str, Any], str | None]], existing: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`invoice_patch_replaces_lines=False`: a line with an existing `id` updates that line in place, every
    other line is appended; lines not sent stay (so re-sending the full set without ids doubles it)."""
    out = list(existing)
    index = {li["id"]: i for i, li in enumerate(out)}
    for spec, section in lines:
        lid = spec.get("id")
        if isinstance(lid, int) and lid in index:
            out[index[lid]] = invoice_line(st, spec, section, lid)
        else:
            out.append(invoice_line(st, spec, section, st.next_id("line_item")))
    return out


def insert_invoice(
    st: CoperniqState,
    record: tuple[str, int],
    calculation_method: str,
    lines: list[tuple[dict[str, Any], str | None]],
    status: str = "DRAFT",
    issue_us: int | None = None,
    due_us: int | None = None,
    description: str | None = None,
    percentage: float | None = None,
    at_us: int | None = None,
) -> dict[str, Any]:
    """An invoice on `record` = ("project"|"account", id); amount from the lines or the percentage."""
    at = at_us if at_us is not None else st.clock.tick()
    iid = st.next_id("invoice")
    line_items = build_lines(st, lines) if calculation_method == "LINE_ITEMS" else []
    base_amount = None
    if calculation_method == "PERCENTAGE":
        base_amount = float(st.projects[record[1]].get("value") or 0.0) if record[0] == "project" else 0.0
        amount = round(base_amount * (percentage or 0.0) / 100.0, 2)
    else:
        amount = round(sum(li["quantity"] * li["unitPrice"] for li in line_items), 2)
    if status == "DRAFT":
        issue_us = None
    due = due_us if due_us is not None else (issue_us or at) + 30 * DAY_US
    inv = {
        "id": iid,
        "uid": st.next_id("invoice_uid"),
        "description": description,
        "type": "INVOICE",
        "status": status,
        "basedOnId": None,
        "basedOnUid": None,
        "issueDate": iso(issue_us) if issue_us is not None else None,
        "dueDate": iso(due),
        "amount": amount,
        "amountPaid": 0.0,
        "isArchived": False,
        "sharedWithPortal": False,
        "calculationMethod": calculation_method,
        "percentage": percentage if calculation_method == "PERCENTAGE" else None,
        "baseAmount": base_amount,
        "createdAt": iso(at),
        "updatedAt": iso(at),
        "account": None,
        "record": None,
        "lineItems": line_items,
        "_u": at,
        "_record": record,
    }
    st.invoices[iid] = inv
    st.payments[iid] = []
    if record[0] == "project":
        st.invoices_by_project.setdefault(record[1], []).append(iid)
        acc_id = st.projects[record[1]]["accountId"]
    else:
        acc_id = record[1]
    if acc_id is not None:
        st.invoices_by_account.setdefault(acc_id, []).append(iid)
    st.touch("invoices")
    return inv


def insert_payment(
    st: CoperniqState,
    inv: dict[str, Any],
    amount: float,
    method: str,
    date_us: int,
    reference: str | None = None,
    notes: str | None = None,
    at_us: int | None = None,
) -> dict[str, Any]:
    """Record a payment and roll it into the invoice: amountPaid, status, updatedAt."""
    at = at_us if at_us is not None else st.clock.tick()
    payments = st.payments.setdefault(inv["id"], [])
    pay = {
        "id": st.next_id("payment"),
        "invoiceNumber": len(payments) + 1,
        "amount": round(float(amount), 2),
        "status": "COMPLETED",
        "paymentMethod": method,
        "paymentDate": iso(date_us),
        "paymentReference": reference,
        "notes": notes,
        "isExternal": False,
        "createdAt": iso(at),
        "updatedAt": iso(at),
        "createdBy": {k: SANDBOX_USER[k] for k in ("id", "firstName", "lastName")},
    }
    st.payments[inv["id"]] = [*payments, pay]
    paid = round(inv["amountPaid"] + pay["amount"], 2)
    inv["amountPaid"] = paid
    if paid >= inv["amount"] - 0.005:
        inv["status"] = "PAID"
    elif paid > 0:
        inv["status"] = "PARTIALLY_PAID"
    inv["updatedAt"], inv["_u"] = iso(at), at
    st.touch("invoices")
    return pay


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


# --- changes ---------------------------------------------------------------------------------------
def apply_update(
    st: CoperniqState, rec: dict[str, Any], fields: dict[str, Any], resource: str, *, enrich_only: bool = False
) -> None:
    """Set fields (PATCH semantics; `null` clears). enrich_only fills only empty values."""
    changed = False
    for key, value in fields.items():
        if key == "contacts":
            for cid in value or []:
                if resource == "accounts":
                    link_contact(st, cid, account_id=rec["id"])
                else:
                    link_contact(st, cid, project_id=rec["id"])
            continue
        new_value = value
        if key == "custom":
            new_value = dict(rec["custom"])
            for k, v in value.items():
                if enrich_only and new_value.get(k) not in (None, "", []):
                    continue
                if v is None:
                    new_value.pop(k, None)
                else:
                    new_value[k] = v
        elif enrich_only and rec.get(key) not in (None, "", [], {}):
            continue
        if rec.get(key) != new_value:
            rec[key] = new_value
            changed = True
    if changed:
        now = st.clock.tick()
        rec["updatedAt"], rec["_u"] = iso(now), now
        rec["updatedBy"] = SANDBOX_USER
        if "lastActivity" in rec:
            rec["lastActivity"] = rec["updatedAt"]
    st.touch(resource)


def restart_workflow(st: CoperniqState, p: dict[str, Any], workflow_id: int) -> None:
    """Switching workflows starts the project over at the new workflow's first phase."""
    wf = st.workflows[workflow_id]
    now = st.clock.tick()
    st.phase_instances[p["id"]] = [
        [st.next_id("phase_instance"), tid, "IN_PROGRESS" if i == 0 else "NOT_STARTED", now if i == 0 else None, None]
        for i, tid in enumerate(wf["_phases"])
    ]
    p["workflowId"], p["workflowName"] = wf["id"], wf["name"]


def move_to_phase(st: CoperniqState, p: dict[str, Any], phase: int | str, *, bump_updated_at: bool) -> None:
    """Move project `p` as a user would in the UI (see CoperniqApp.move_project_to_phase); a no-op if it is there.

    Forward: the current phase completes, skipped phases are recorded as completed, the target starts. Backward:
    the target restarts and later phases go back to NOT_STARTED.
    """
    instances = st.phase_instances.get(p["id"]) or []
    target = None
    ids = (
        {int(phase)}
        if isinstance(phase, str) and phase.isdigit()
        else {phase}
        if isinstance(phase, int) and not isinstance(phase, bool)
        else set()
    )
    if p.get("_v1"):
        ids |= {i - STAGE_ID_OFFSET for i in ids}
    for idx, inst in enumerate(instances):
        tpl = st.phase_templates[inst[1]]
        if tpl["id"] in ids or (isinstance(phase, str) and fold(phase) in (fold(tpl["name"]), fold(tpl["type"]))):
            target = idx
            break
    if target is None:
        raise invalid("phase", f"phase {phase!r} is not in workflow {p['workflowName']!r} of project {p['id']}")
    current = next((i for i, inst in enumerate(instances) if inst[2] == "IN_PROGRESS"), None)
    if current == target:
        return
    now = st.clock.tick()
    for idx, inst in enumerate(instances):
        if idx < target:
            if inst[2] == "IN_PROGRESS":
                inst[2], inst[4] = "COMPLETED", now
            elif inst[2] == "NOT_STARTED":
                inst[2], inst[3], inst[4] = "COMPLETED", now, now
        elif idx == target:
            inst[2], inst[3], inst[4] = "IN_PROGRESS", now, None
        else:
            inst[2], inst[3], inst[4] = "NOT_STARTED", None, None
    if bump_updated_at:
        p["updatedAt"], p["_u"] = iso(now), now
        p["lastActivity"] = p["updatedAt"]
        p["updatedBy"] = SANDBOX_USER
    # cached list id orders depend on `_u` only; `phase` is rendered live, so lists show the move anyway
    st.touch("projects")
