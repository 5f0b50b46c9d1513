"""The emulated QuickBooks Online company behind the Merge sandbox: name rules, customers/jobs, passthrough.

Merge writes (POST /contacts) and passthrough calls (POST .../customer) both land here, so the QBO rules
(DisplayName unique across customers, jobs, vendors and employees; no colon; SyncToken; 5 levels) hold for both
paths. Which Ids QBO hands out and whether it has employees follow the app's `MergeAssumptions`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

REALM_TEMPLATE = "{{LINKED_ACCOUNT_ATTR.realmId}}"
MAX_LEVEL = 4  # a top-level customer is Level 0; "up to four levels of nesting" under it
READ_ONLY = {"Id", "SyncToken", "MetaData", "Level", "FullyQualifiedName", "Balance", "BalanceWithJobs",
             "IsProject", "domain", "sparse"}


def qbo_time() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def norm_name(name: str) -> str:
    """QBO compares DisplayNames trimmed and case-insensitively."""
    return " ".join(name.split()).casefold()


class QboError(Exception):
    """A QBO Fault: code/message/detail as Intuit returns them (HTTP 400 unless `status` says otherwise)."""

    def __init__(self, code: str, message: str, detail: str, element: str = "",
                 fault_type: str = "ValidationFault", status: int = 400) -> None:
        super().__init__(f"{message}: {detail}")
        self.code, self.message, self.detail, self.element = code, message, detail, element
        self.fault_type, self.status = fault_type, status

    def fault(self) -> dict[str, Any]:
        return {"Fault": {"Error": [{"Message": self.message, "Detail": self.detail, "code": self.code,
                                     "element": self.element}], "type": self.fault_type}, "time": qbo_time()}


def duplicate_name(name: str) -> QboError:
    return QboError("6240", "Duplicate Name Exists Error",
                    f"The name supplied already exists. : Another customer, vendor or employee is already using "
                    f"this name. Please use a different name. Name: {name}", "DisplayName")


def invalid_reference(what: str, value: Any) -> QboError:
    return QboError("2500", "Invalid Reference Id",
                    f"Invalid Reference Id : {what} assigned to this transaction has been deleted or does not "
                    f"exist. Reference: {value}", what)


def missing_param(name: str) -> QboError:
    return QboError("2020", "Required param missing, need to supply the required value for the API",
                    f"Required parameter {name} is missing in the request", name)


def business_error(detail: str, element: str = "") -> QboError:
    return QboError("6000", "A business validation error has occurred while processing your request",
                    f"Business Validation Error: {detail}", element)


class QboCompany:
    """QBO entities that exist independently of Merge's copy (customers, jobs, vendors and, when the company has
    them, employees), plus the name registry.

    `separate_id_spaces=False` (the sandbox's original choice): one Id counter for every entity, so a remote_id
    is unique. True: one counter per entity, as QuickBooks may number them, so vendor 1 and customer 1 coexist.
    `employees=True`: the Employee entity exists (its DisplayNames share the registry with customers/vendors).
    """

    def __init__(self, realm_id: str, *, max_name_length: int = 100, separate_id_spaces: bool = False,
                 employees: bool = False) -> None:
        self.realm_id = realm_id
        self.max_name_length = max_name_length
        self.separate_id_spaces = separate_id_spaces
        self.counters: dict[str, int] = {}  # id space ("*" when shared) -> next Id
        self.name_entities: tuple[str, ...] = ("Customer", "Vendor") + (("Employee",) if employees else ())
        self.entities: dict[str, dict[str, dict[str, Any]]] = {e: {} for e in self.name_entities}
        self.names: dict[str, tuple[str, str]] = {}  # norm(DisplayName) -> (entity, Id)
        # hooks set by the Merge app
        self.on_change: Callable[[str, dict[str, Any], bool], None] = lambda entity, obj, created: None
        self.other_entities: Callable[[str], Iterable[dict[str, Any]] | None] = lambda entity: None

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
            raise QboError("2050", "String length is either shorter or longer than supported by specification",
                           f"String length specified does not match the supported length. Min:1 Max:"
                           f"{self.max_name_length} supplied length:{len(clean)}", "DisplayName")
        holder = self.names.get(norm_name(clean))
        if holder is not None and holder != own:
            raise duplicate_name(clean)
        return clean

    def name_taken(self, name: str) -> bool:
        return norm_name(name) in self.names

    # --- customers / vendors ----------------------------------------------------------------------
    def get(self, entity: str, id_: str) -> dict[str, Any] | None:
        return self.entities.get(entity, {}).get(str(id_))

    def create(self, entity: str, body: dict[str, Any], *, notify: bool = True,
               qbo_id: str | None = None) -> dict[str, Any]:
        """Create a Customer (or job, with Job/ParentRef), Vendor or Employee, applying QBO's rules.
        `qbo_id` (admin only) picks the new Id instead of the entity's counter."""
        if body.get("Id"):
            return self.update(entity, body, notify=notify)
        if entity not in self.entities:
            raise QboError("4001", "Unsupported Operation", f"This company has no {entity} entity")
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
        obj.update({"Id": new_id, "SyncToken": "0", "domain": "QBO", "sparse": False,
                    "MetaData": {"CreateTime": now, "LastUpdatedTime": now}})
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

    def update(self, entity: str, body: dict[str, Any], *, notify: bool = True,
               check_sync_token: bool = True) -> dict[str, Any]:
        """Full or sparse update with QBO's optimistic locking (SyncToken, Stale Object Error 5010)."""
        current = self.get(entity, str(body.get("Id")))
        if current is None:
            raise QboError("610", "Object Not Found",
                           f"Object Not Found : Something you're trying to use has been made inactive or deleted. "
                           f"{entity} Id: {body.get('Id')}", "Id")
        if check_sync_token:
            if body.get("SyncToken") in (None, ""):
                raise missing_param("SyncToken")
            if str(body["SyncToken"]) != current["SyncToken"]:
                raise QboError("5010", "Stale Object Error",
                               "Stale Object Error : You and sandbox were working on this at the same time. sandbox "
                               "finished before you did, so your work was not saved.", "SyncToken")
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

    # --- passthrough ------------------------------------------------------------------------------
    def passthrough(self, method: str, path: str, data: str | None) -> tuple[int, Any]:
        """Answer one raw QBO API call. Returns (HTTP status, parsed JSON body)."""
        parts = urlsplit(path.replace(REALM_TEMPLATE, self.realm_id))
        m = re.match(r"^/v3/company/([^/]+)/(.+?)/?$", unquote(parts.path))
        if not m:
            return 404, {"Fault": {"Error": [{"Message": "Unsupported path", "Detail": parts.path, "code": "0"}],
                                   "type": "ServiceFault"}, "time": qbo_time()}
        if m.group(1) != self.realm_id:
            return 403, QboError("003100", "ApplicationAuthorizationFailed",
                                 "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
                                 fault_type="AUTHENTICATION").fault()
        resource = m.group(2)
        query = parse_qs(parts.query)
        try:
            body = json.loads(data) if data else {}
        except json.JSONDecodeError:
            return 400, QboError("2010", "Request has invalid or unsupported property",
                                 "Request body is not valid JSON").fault()
        try:
            if resource == "query":
                text = (query.get("query") or [None])[0]
                if text is None and method == "POST":
                    text = data
                return 200, self.query(text or "")
            if method == "GET" and resource.lower() == f"companyinfo/{self.realm_id}":  # QBO: Id = the realm id
                info = next(iter(self.other_entities("CompanyInfo") or ()), None)
                if info is not None:
                    return 200, {"CompanyInfo": {**info, "Id": self.realm_id}, "time": qbo_time()}
            entity_match = re.match(r"^(\w+?)(?:/(\w+))?$", resource)
            if not entity_match or entity_match.group(1).capitalize() not in self.name_entities:
                return 400, QboError("4001", "Unsupported Operation",
                                     f"Operation {method} {resource} is not supported by the sandbox").fault()
            entity = entity_match.group(1).capitalize()
            if method == "GET" and entity_match.group(2):
                obj = self.get(entity, entity_match.group(2))
                if obj is None:
                    raise QboError("610", "Object Not Found",
                                   f"Object Not Found : Something you're trying to use has been made inactive or "
                                   f"deleted. {entity} Id: {entity_match.group(2)}")
                return 200, {entity: copy.deepcopy(obj), "time": qbo_time()}
            if method == "POST" and not entity_match.group(2):
                if not isinstance(body, dict):
                    raise QboError("2010", "Request has invalid or unsupported property", "Body must be an object")
                obj = self.update(entity, body) if body.get("Id") else self.create(entity, body)
                return 200, {entity: copy.deepcopy(obj), "time": qbo_time()}
            return 400, QboError("4001", "Unsupported Operation", f"{method} {resource} is not supported").fault()
        except QboError as exc:
            return exc.status, exc.fault()

    def query(self, text: str) -> dict[str, Any]:
        """A small subset of QBO's SQL-like query language: select */count(*) from X [where a = 'v' and ...]."""
        m = re.match(r"^\s*select\s+(\*|count\(\*\))\s+from\s+(\w+)(?:\s+where\s+(.+?))?"
                     r"(?:\s+orderby\s+[\w.]+(?:\s+(?:asc|desc))?)?(?:\s+startposition\s+(\d+))?"
                     r"(?:\s+maxresults\s+(\d+))?\s*$", text, re.I | re.S)
        if not m:
            raise QboError("4000", "Error parsing query", f"QueryParserError: Encountered an unsupported query: "
                                                          f"{text}")
        what, entity_raw, where, start, maxres = m.groups()
        entity = entity_raw[0].upper() + entity_raw[1:]
        if entity.capitalize() in self.name_entities:
            entity = entity.capitalize()
            source: Iterable[dict[str, Any]] | None = self.entities[entity].values()
        else:
            source = self.other_entities(entity)
            if source is None:
                raise QboError("4000", "Error parsing query", f"QueryParserError: Unsupported entity {entity_raw}")
        conds = self._parse_where(where or "")
        rows = [copy.deepcopy(o) for o in source if all(self._match(o, *c) for c in conds)]
        if what.lower().startswith("count"):
            return {"QueryResponse": {"totalCount": len(rows)}, "time": qbo_time()}
        first = max(1, int(start or 1))
        limit = min(1000, int(maxres or 100))
        rows = rows[first - 1:first - 1 + limit]
        resp: dict[str, Any] = {}
        if rows:
            resp = {entity: rows, "startPosition": first, "maxResults": len(rows)}
        return {"QueryResponse": resp, "time": qbo_time()}

    @staticmethod
    def _parse_where(where: str) -> list[tuple[str, str, Any]]:
        conds = []
        token = r"'((?:[^'\\]|\\.)*)'|(true|false)|(-?\d+(?:\.\d+)?)"
        pattern = re.compile(r"\s*([\w.]+)\s*(=|!=|<>|like|in)\s*(\((?:[^()']|'(?:[^'\\]|\\.)*')*\)|" + token +
                             r")\s*(?:and\s+|$)", re.I)
        pos = 0
        while pos < len(where):
            m = pattern.match(where, pos)
            if not m:
                raise QboError("4000", "Error parsing query", f"QueryParserError: Encountered \"{where[pos:]}\"")
            field, op, raw = m.group(1), m.group(2).lower(), m.group(3)
            if op == "in":
                values: Any = [v.replace("\\'", "'") for v in re.findall(r"'((?:[^'\\]|\\.)*)'", raw)]
            elif raw.startswith("'"):
                values = raw[1:-1].replace("\\'", "'")
            elif raw.lower() in ("true", "false"):
                values = raw.lower() == "true"
            else:
                values = raw
            conds.append((field, op, values))
            pos = m.end()
        return conds

    @staticmethod
    def _match(obj: dict[str, Any], field: str, op: str, value: Any) -> bool:
        cur: Any = obj
        for part in field.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        if isinstance(cur, dict) and "value" in cur:  # e.g. ParentRef = '12'
            cur = cur["value"]

        def norm(v: Any) -> Any:
            return v.casefold() if isinstance(v, str) else str(v).casefold() if v is not None else None

        if op == "in":
            return norm(cur) in {norm(v) for v in value}
        if op == "like":
            regex = "^" + re.escape(str(value).casefold()).replace("%", ".*") + "$"
            return cur is not None and re.match(regex, norm(cur) or "", re.S) is not None
        if isinstance(value, bool):
            equal = bool(cur) == value if cur is not None else value is False
        else:
            equal = norm(cur) == norm(value)
        return equal if op == "=" else not equal
