"""Coperniq sandbox updates: PATCH semantics (and upsert enrich/replace) for projects, accounts and contacts.

Why one function for every resource: `null` clears, `custom` merges key by key, `contacts` links instead of
replacing, and `updatedAt` moves only when a value really changed; the routes must not differ in any of that.
"""

from __future__ import annotations

from typing import Any

from sandbox.coperniq_inserts import link_contact
from sandbox.coperniq_state import SANDBOX_USER, CoperniqState, iso


def apply_update(
    st: CoperniqState,
    rec: dict[str, Any],
    fields: dict[str, Any],
    resource: str,
    *,
    enrich_only: bool = False,
    touched: bool = False,
) -> None:
    """Set fields (PATCH semantics; `null` clears). enrich_only fills only empty values. `updatedAt` moves when a
    field changed, or the caller changed the record already (`touched`: a PATCH's new workflow)."""
    changed = touched
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
