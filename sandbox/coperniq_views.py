"""Coperniq sandbox response shapes: a stored record -> the JSON object the API returns for it.

Why separate from the handlers: GET, list, search, writes and the admin helpers all answer with the same shapes,
and the shapes are what the tap's schemas and the OpenAPI tests pin. Each function reads the state it is given and
copies (never shares) the record, because responses are encoded outside the lock.
"""

from __future__ import annotations

from typing import Any

from sandbox.coperniq_state import DAY_US, STAGE_ID_OFFSET, STAGE_SCOPE, CoperniqState, iso, public


def current_phase(st: CoperniqState, pid: int) -> list[Any] | None:
    """The phase instance in progress, else the last completed one (a finished workflow), else None."""
    instances = st.phase_instances.get(pid) or []
    current = None
    for inst in instances:
        if inst[2] == "IN_PROGRESS":
            return inst
        if inst[2] == "COMPLETED":
            current = inst
    return current


def phase_object(st: CoperniqState, pid: int) -> dict[str, Any] | None:
    """A project's `phase`, with the SLA fields computed against the sandbox clock."""
    inst = current_phase(st, pid)
    if inst is None:
        return None
    tpl = st.phase_templates[inst[1]]
    days = max(0, (st.clock.now_us() - inst[3]) // DAY_US) if inst[3] is not None else 0
    obj: dict[str, Any] = {
        "instanceId": inst[0],
        "templateId": tpl["id"],
        "name": tpl["name"],
        "status": inst[2],
        "type": tpl["type"],
    }
    if tpl["redSla"] is not None:
        obj["redSla"] = tpl["redSla"]
    if tpl["yellowSla"] is not None:
        obj["yellowSla"] = tpl["yellowSla"]
    obj["timeInStageDays"] = days
    obj["slaStatus"] = "VIOLATED" if tpl["redSla"] is not None and days > tpl["redSla"] else "NON_VIOLATED"
    return obj


def stage_object(st: CoperniqState, pid: int) -> dict[str, Any] | None:
    """Workflows 1.0 `stage` (ProjectStage in the spec): no instance id, status or template id."""
    phase = phase_object(st, pid)
    if phase is None:
        return None
    stage: dict[str, Any] = {
        "id": phase["templateId"] + STAGE_ID_OFFSET,
        "name": phase["name"],
        "type": phase["type"],
        "scope": STAGE_SCOPE,
    }
    for key in ("redSla", "yellowSla", "timeInStageDays", "slaStatus"):
        if key in phase:
            stage[key] = phase[key]
    return stage


def phase_instances_out(st: CoperniqState, pid: int) -> list[dict[str, Any]]:
    """`phaseInstances` of GET /projects/{id}: every phase of the workflow, in position order."""
    out = []
    for inst in st.phase_instances.get(pid) or []:
        tpl = st.phase_templates[inst[1]]
        out.append(
            {
                "id": inst[0],
                "name": tpl["name"],
                "status": inst[2],
                "position": tpl["position"],
                "type": tpl["type"],
                "phaseTemplateId": tpl["id"],
                "phaseTemplate": {
                    "id": tpl["id"],
                    "name": tpl["name"],
                    "type": tpl["type"],
                    "redSla": tpl["redSla"],
                    "yellowSla": tpl["yellowSla"],
                },
                "startedAt": iso(inst[3]) if inst[3] is not None else None,
                "completedAt": iso(inst[4]) if inst[4] is not None else None,
            }
        )
    return out


def project_out(st: CoperniqState, p: dict[str, Any], detail: bool = False) -> dict[str, Any]:
    """List item (`phase`) or GET by id (+ `phaseInstances`). A Workflows 1.0 project has `stage` instead
    of `phase` and no phase instances: the reference documents no stage history at all."""
    out = public(p)
    if p.get("_v1"):
        stage = stage_object(st, p["id"])
        if stage is not None:
            out["stage"] = stage
        if detail:
            out["phaseInstances"] = []
        return out
    phase = phase_object(st, p["id"])
    if phase is not None:
        out["phase"] = phase
    if detail:
        out["phaseInstances"] = phase_instances_out(st, p["id"])
    return out


def account_out(st: CoperniqState, a: dict[str, Any], include_contacts: bool = False) -> dict[str, Any]:
    """An account; `include_contacts=true` adds each linked contact's id, emails and phones."""
    out = public(a)
    if include_contacts:
        out["contacts"] = [
            {"id": c["id"], "emails": list(c["emails"]), "phones": list(c["phones"])}
            for cid in a["_contacts"]
            if (c := st.contacts.get(cid))
        ]
    return out


def contact_out(st: CoperniqState, c: dict[str, Any]) -> dict[str, Any]:
    """A contact with the id and title of every account and project it is linked to."""
    out = public(c)
    out["accounts"] = [{"id": a["id"], "title": a["title"]} for i in c["_accounts"] if (a := st.accounts.get(i))]
    out["projects"] = [{"id": p["id"], "title": p["title"]} for i in c["_projects"] if (p := st.projects.get(i))]
    if out.get("title") is None:  # the schema types Contact.title as a non-null string
        out.pop("title", None)
    return out


def invoice_out(st: CoperniqState, inv: dict[str, Any], *, tax_fields: bool = True) -> dict[str, Any]:
    """An invoice with its `record` (project or account) and `account`, looked up live. Without `tax_fields` (the
    API under `invoice_tax_fields=False`) it has no `taxId`/`taxRate`; the admin helpers always show them."""
    out = public(inv)
    if not tax_fields:
        out.pop("taxId", None)
        out.pop("taxRate", None)
    kind, rid = inv["_record"]
    account_id: int | None
    if kind == "project":
        p = st.projects.get(rid)
        out["record"] = {"id": rid, "uid": p["number"], "title": p["title"]} if p else None
        account_id = p["accountId"] if p else None
    else:
        a = st.accounts.get(rid)
        out["record"] = {"id": rid, "uid": a["number"], "title": a["title"]} if a else None
        account_id = rid
    acc = st.accounts.get(account_id) if account_id is not None else None
    out["account"] = {"id": acc["id"], "title": acc["title"]} if acc else None
    return out


def payment_out(pay: dict[str, Any]) -> dict[str, Any]:
    """A payment as stored (a shallow copy, like every view)."""
    return public(pay)


def workflow_out(st: CoperniqState, wf: dict[str, Any]) -> dict[str, Any]:
    """A workflow with its phase templates in position order."""
    out = public(wf)
    out["phases"] = [
        {k: st.phase_templates[t][k] for k in ("id", "name", "type", "description", "redSla", "yellowSla")}
        for t in wf["_phases"]
    ]
    return out
