"""Coperniq sandbox workflow and phase moves: switching a project's workflow, moving it to another phase.

Why apart from the updates: a project's phase history (`phase_instances`) is not a field a PATCH sets; the public
API can only restart it (a new `workflowId`), the admin helpers move it as a user would in the UI.
"""

from __future__ import annotations

from typing import Any

from sandbox.coperniq_params import fold, invalid
from sandbox.coperniq_state import SANDBOX_USER, STAGE_ID_OFFSET, CoperniqState, iso


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
