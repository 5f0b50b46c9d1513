"""The emulated QBO company's own records: customers and jobs, vendors, employees; their Ids and DisplayNames.

Why apart from the passthrough (sandbox/merge_qbo.py): Merge's writes (POST /contacts), the admin helpers and
passthrough calls all change these records, through `create`/`update` here, so QBO's rules (DisplayName unique
across customers, jobs, vendors and employees; no colon; SyncToken; 5 levels) hold on every path.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from sandbox.merge_qbo_faults import (
    QboError,
    business_error,
    duplicate_name,
    invalid_reference,
    missing_param,
    object_not_found,
    qbo_time,
    stale_object,
    unsupported_operation,
)

MAX_LEVEL = 4  # a top-level customer is Level 0; "up to four levels of nesting" under it
READ_ONLY = {
    "Id",
    "SyncToken",
    "MetaData",
    "Level",
    "FullyQualifiedName",
    "Balance",
    "BalanceWithJobs",
    "IsProject",
    "domain",
    "sparse",
}


def norm_name(name: str) -> str:
    """QBO compares DisplayNames trimmed and case-insensitively."""
    return " ".join(name.split()).casefold()


class QboEntities:
    """QBO entities that exist independently of Merge's copy (customers, jobs, vendors and, when the company has
    them, employees), plus the name registry.

    `separate_id_spaces=False` (the sandbox's original choice): one Id counter for every entity, so a remote_id
    is unique. True: one counter per entity, as QuickBooks may number them, so vendor 1 and customer 1 coexist.
    `employees=True`: the Employee entity exists (its DisplayNames share the registry with customers/vendors).
    """

    def __init__(
        self, *, max_name_length: int = 100, separate_id_spaces: bool = False, employees: bool = False
    ) -> None:
        self.max_name_length = max_name_length
        self.separate_id_spaces = separate_id_spaces
        self.counters: dict[str, int] = {}  # id space ("*" when shared) -> next Id
        self.name_entities: tuple[str, ...] = ("Customer", "Vendor") + (("Employee",) if employees else ())
        self.entities: dict[str, dict[str, dict[str, Any]]] = {e: {} for e in self.name_entities}
        self.names: dict[str, tuple[str, str]] = {}  # norm(DisplayName) -> (entity, Id)
        # hook set by the Merge app: (entity, object, created) after every notified create/update
        self.on_change: Callable[[str, dict[str, Any], bool], None] = lambda entity, obj, created: None

    def _space(self, entity: str) -> str:
        return entity if self.separate_id_spaces else "*"

    def new_id(self, entity: str = "") -> str:
        """The next QBO Id (a numeric string) of `entity`: from its own counter, or the one shared counter."""
        space = self._space(entity)
        value = self.counters.get(space, 1)
        self.counters[space] = value + 1
        return str(value)

    def claim_id(self, entity: str, id_: str) -> str:
        """Use a chosen Id for a new customer/vendor/employee (admin: force an Id collision across entities).
        Refused when the Id is taken in its id space (the shared space: any Id already issued to anything);
        later Ids of that space continue after it."""
        if not str(id_).isdigit() or int(id_) < 1:
            raise ValueError(f"a QBO Id is a positive integer, not {id_!r}")
        space = self._space(entity)
        if str(id_) in self.entities.get(entity, {}) or (space == "*" and int(id_) < self.counters.get(space, 1)):
            raise ValueError(f"QBO Id {id_} is already used in the {entity if space != '*' else 'shared'} id space")
        self.counters[space] = max(self.counters.get(space, 1), int(id_) + 1)
        return str(id_)

    # --- name rules -------------------------------------------------------------------------------
    def check_name(self, name: Any, *, own: tuple[str, str] | None = None) -> str:
        """Validate a DisplayName; returns it trimmed. `own` = (entity, Id) being renamed."""
        if not isinstance(name, str) or not name.strip():
            raise missing_param("DisplayName")
        clean = name.strip()
        if ":" in clean or "\t" in clean or "\n" in clean:
            raise business_error("Names can't contain a colon (:), tab or newline. Name: " + clean, "DisplayName")
        if len(clean) > self.max_name_length:
            raise QboError(
                "2050",
                "String length is either shorter or longer than supported by specification",
                f"String length specified does not match the supported length. Min:1 Max:"
                f"{self.max_name_length} supplied length:{len(clean)}",
                "DisplayName",
            )
        holder = self.names.get(norm_name(clean))
        if holder is not None and holder != own:
            raise duplicate_name(clean)
        return clean

    def name_taken(self, name: str) -> bool:
        return norm_name(name) in self.names

    # --- customers / vendors ----------------------------------------------------------------------
    def get(self, entity: str, id_: str) -> dict[str, Any] | None:
        return self.entities.get(entity, {}).get(str(id_))

    def create(
        self, entity: str, body: dict[str, Any], *, notify: bool = True, qbo_id: str | None = None
    ) -> dict[str, Any]:
        """Create a Customer (or job, with Job/ParentRef), Vendor or Employee, applying QBO's rules.
        `qbo_id` (admin only) picks the new Id instead of the entity's counter."""
        if body.get("Id"):
            return self.update(entity, body, notify=notify)
        if entity not in self.entities:
            raise unsupported_operation(f"This company has no {entity} entity")
        obj = {k: copy.deepcopy(v) for k, v in body.items() if k not in READ_ONLY}
        name = obj.get("DisplayName")
        if not name:
            parts = [obj.get(k) for k in ("Title", "GivenName", "MiddleName", "FamilyName", "Suffix")]
            name = " ".join(p for p in parts if p) or obj.get("CompanyName")
        obj["DisplayName"] = self.check_name(name)
        obj.setdefault("Active", True)
        if entity == "Customer":
            self._place_in_tree(obj)
        now = qbo_time()
        new_id = self.claim_id(entity, qbo_id) if qbo_id is not None else self.new_id(entity)
        obj.update(
            {
                "Id": new_id,
                "SyncToken": "0",
                "domain": "QBO",
                "sparse": False,
                "MetaData": {"CreateTime": now, "LastUpdatedTime": now},
            }
        )
        if entity != "Employee":  # QBO employees carry no balance
            obj["Balance"] = 0
        if entity == "Customer":
            obj["BalanceWithJobs"] = 0
            obj["IsProject"] = False
        self.entities[entity][obj["Id"]] = obj
        self.names[norm_name(obj["DisplayName"])] = (entity, obj["Id"])
        if notify:
            self.on_change(entity, obj, True)
        return obj

    def update(
        self, entity: str, body: dict[str, Any], *, notify: bool = True, check_sync_token: bool = True
    ) -> dict[str, Any]:
        """Full or sparse update with QBO's optimistic locking (SyncToken, Stale Object Error 5010)."""
        current = self.get(entity, str(body.get("Id")))
        if current is None:
            raise object_not_found(entity, body.get("Id"), "Id")
        if check_sync_token:
            if body.get("SyncToken") in (None, ""):
                raise missing_param("SyncToken")
            if str(body["SyncToken"]) != current["SyncToken"]:
                raise stale_object()
        changes = {k: copy.deepcopy(v) for k, v in body.items() if k not in READ_ONLY}
        if body.get("sparse") in (True, "true"):
            new = {**current, **changes}
        else:  # full update: omitted writable fields are cleared
            new = {k: v for k, v in current.items() if k in READ_ONLY}
            new.update(changes)
            new.setdefault("Active", True)
        own = (entity, current["Id"])
        new["DisplayName"] = self.check_name(new.get("DisplayName", current["DisplayName"]), own=own)
        if entity == "Customer":
            self._place_in_tree(new, self_id=current["Id"])
        new["SyncToken"] = str(int(current["SyncToken"]) + 1)
        new["MetaData"] = {**current.get("MetaData", {}), "LastUpdatedTime": qbo_time()}
        del self.names[norm_name(current["DisplayName"])]
        self.names[norm_name(new["DisplayName"])] = own
        current.clear()
        current.update(new)
        if entity == "Customer":
            self._refresh_children(current, notify)
        if notify:
            self.on_change(entity, current, False)
        return current

    # --- the customer/job tree --------------------------------------------------------------------
    def _place_in_tree(self, obj: dict[str, Any], self_id: str | None = None) -> None:
        """Set Job/Level/FullyQualifiedName from ParentRef (jobs need an active existing parent, max 5 levels)."""
        parent_ref = obj.get("ParentRef") or None
        if obj.get("Job") in (True, "true") and not parent_ref:
            raise missing_param("ParentRef")
        if parent_ref:
            pid = str(parent_ref.get("value", "")) if isinstance(parent_ref, dict) else str(parent_ref)
            parent = self.get("Customer", pid)
            if parent is None or not parent.get("Active", True):
                raise invalid_reference("ParentRef", pid)
            ancestor: dict[str, Any] | None = parent
            while ancestor is not None:  # no cycles when re-parenting
                if ancestor["Id"] == self_id:
                    raise business_error("A customer can't be its own parent.", "ParentRef")
                ref = ancestor.get("ParentRef")
                ancestor = self.get("Customer", ref["value"]) if ref else None
            if parent.get("Level", 0) + 1 > MAX_LEVEL:
                raise business_error("Sub-customers can be nested at most 4 levels deep.", "ParentRef")
            obj["ParentRef"] = {"value": pid, "name": parent["DisplayName"]}
            obj["Job"] = True
            obj["Level"] = parent.get("Level", 0) + 1
            obj["FullyQualifiedName"] = f"{parent['FullyQualifiedName']}:{obj['DisplayName']}"
        else:
            obj.pop("ParentRef", None)
            obj["Job"] = False
            obj["BillWithParent"] = False
            obj["Level"] = 0
            obj["FullyQualifiedName"] = obj["DisplayName"]
        obj.setdefault("BillWithParent", False)

    def _refresh_children(self, parent: dict[str, Any], notify: bool) -> None:
        """Renames and moves cascade into the FullyQualifiedName/Level of every descendant."""
        for child in self.entities["Customer"].values():
            ref = child.get("ParentRef")
            if ref and ref.get("value") == parent["Id"]:
                fqn = f"{parent['FullyQualifiedName']}:{child['DisplayName']}"
                if child.get("FullyQualifiedName") != fqn or child.get("Level") != parent["Level"] + 1:
                    child["FullyQualifiedName"] = fqn
                    child["Level"] = parent["Level"] + 1
                    child["ParentRef"] = {"value": parent["Id"], "name": parent["DisplayName"]}
                    self._refresh_children(child, notify)
                    if notify:
                        self.on_change("Customer", child, False)
