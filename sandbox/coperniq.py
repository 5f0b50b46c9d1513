"""Coperniq REST API emulator (`/v1`), faithful to docs/coperniq_api.md and coperniq-openapi.yml.

Why an emulator: the tap, the reverse target and the e2e/bench suites need a Coperniq that answers
with the real wire formats (auth header, bare-array vs. envelope pagination, error bodies, rate-limit
headers) and that tests can steer (move a project to a phase, inject faults, advance the clock).
Every behaviour the public docs leave open is listed as an ASSUMPTION in sandbox/README.md.

Run: `python -m sandbox.coperniq --port 8765 [--seed 42 --projects 50] [--profile pessimistic]`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

from sandbox._server import App, HttpError, RateLimiter, Request, Response, SandboxApp, SandboxServer
from sandbox.profiles import PROFILES, CoperniqAssumptions, resolve

API_PREFIX = "/v1"
PAGE_SIZE_DEFAULT = 20
PAGE_SIZE_MAX = 100
DAY_US = 86_400_000_000
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: The user the sandbox API key belongs to (a key acts as the user who created it).
SANDBOX_USER: dict[str, Any] = {"id": 77, "firstName": "Sandbox", "lastName": "Admin",
                                "email": "admin@sandbox.example", "avatarUrl": None}

_OWNER: dict[str, Any] = {"id": SANDBOX_USER["id"], "firstName": SANDBOX_USER["firstName"],
                          "lastName": SANDBOX_USER["lastName"], "email": SANDBOX_USER["email"], "phone": None}

PROJECT_STATUSES = ("ACTIVE", "ON_HOLD", "CANCELLED", "COMPLETED")
ACCOUNT_TYPES = ("RESIDENTIAL", "COMMERCIAL")
MATCH_BY = ("title", "primaryEmail", "primaryPhone", "address")
MATCH_STRATEGIES = ("skip", "replace", "enrich")
INVOICE_STATUSES = ("DRAFT", "SENT", "DECLINED", "PAID", "PARTIALLY_PAID", "OVERDUE")
INVOICE_CREATE_STATUSES = ("DRAFT", "SENT", "PARTIALLY_PAID", "PAID")
CALCULATION_METHODS = ("LINE_ITEMS", "PERCENTAGE")
PAYMENT_METHODS = ("CASH", "ACH", "CREDIT_CARD", "KLARNA", "AFFIRM", "CHECK")
CATALOG_TYPES = ("PRODUCT", "SERVICE")
TRADE_GROUPS = ("ENERGY", "MECHANICAL", "ELECTRICAL", "PLUMBING", "LOW_VOLTAGE", "ENVELOPE", "OTHER")
PRODUCT_CATEGORIES = frozenset("""
BATTERY_SYSTEM BATTERY_MANAGEMENT_SYSTEM CHARGING_GATEWAY COMBINER_BOX EV_CHARGER LOAD_CENTER MICROINVERTER
MOUNTING POWER_OPTIMIZER PRODUCTION_METER PV_INVERTER PV_MODULE RACKING RAPID_SHUTDOWN_DEVICE TRACKER
WEATHER_STATION AIR_CONDITIONER AIR_HANDLING_UNIT BOILER CHILLER COOLING_TOWER FAN HEAT_EXCHANGER HEAT_PUMP
MAKE_UP_AIR_UNIT PUMP ROOFTOP_UNIT THERMOSTAT VARIABLE_FREQUENCY_DRIVE AUTOMATIC_TRANSFER_SWITCH BREAKER
DISCONNECT_SWITCH ELECTRIC_METER GENERATOR LIGHTING_PANEL PANELBOARD SWITCHGEAR TRANSFORMER
UNINTERRUPTIBLE_POWER_SUPPLY WIRE BACKFLOW_PREVENTER BOOSTER_PUMP GREASE_INTERCEPTOR STORAGE_TANK SUMP_PUMP VALVE
WATER_FILTRATION_SYSTEM WATER_HEATER WATER_SOFTENER ACCESS_CONTROLLER AUTOMATION_CONTROLLER CAMERA CARD_READER
DOOR_STRIKE MAGLOCK NETWORK_SWITCH NETWORK_VIDEO_RECORDER SENSOR WIRELESS_ACCESS_POINT ROOF_COVERING
ROOF_UNDERLAYMENT ROOF_MEMBRANE ROOF_FLASHING ROOF_VENT WALL_CLADDING WALL_TRIM WEATHER_BARRIER WINDOW
EXTERIOR_DOOR SKYLIGHT OPENING_FLASHING GUTTER DOWNSPOUT INSULATION SEALANT SHEATHING OTHER""".split())
SERVICE_CATEGORIES = frozenset("""
ADJUSTMENT BALANCING CALIBRATION CLEANING COMMISSIONING DECOMMISSIONING DIAGNOSTICS ENGINEERING EQUIPMENT_RENTAL
INSPECTION INSTALLATION MAINTENANCE MONITORING OPTIMIZATION PERMITTING RELOCATION REMOVAL REPAIR REPLACEMENT
RETROFIT SITE_SURVEY TESTING TRAINING OTHER""".split())

#: First id of each kind: distinct ranges so an id used with the wrong resource fails loudly.
START_IDS = {"account": 9001, "account_number": 401, "contact": 30001, "project": 48001, "project_number": 1001,
             "workflow": 301, "phase_template": 5001, "phase_instance": 900001, "invoice": 66001,
             "invoice_uid": 1001, "line_item": 880001, "payment": 51001, "catalog_item": 4201}

#: A Workflows 1.0 `stage.id` is this plus the phase template id the sandbox tracks it with: a 1.0 stage is not
#: a phase template (GET /workflows lists phases, not stages), so a client must not find it among `phases[].id`.
STAGE_ID_OFFSET = 2000
#: `stage.scope` of a project's stage (the spec types scope as a free string; 1.0 stages were per record kind).
STAGE_SCOPE = "PROJECT"


# --- time --------------------------------------------------------------------------------------
def iso(us: int) -> str:
    """Microseconds since epoch -> ISO 8601 UTC with milliseconds, e.g. 2025-06-10T18:22:41.123Z."""
    return (_EPOCH + timedelta(microseconds=us)).isoformat(timespec="milliseconds") + "Z"


def parse_iso(value: Any) -> int:
    """ISO 8601 (date or date-time, Z/offset/naive=UTC) -> microseconds since epoch; ValueError if bad."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("not a date-time string")
    text = value.strip()
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH_UTC) // timedelta(microseconds=1)


class Clock:
    """Wall clock tests can advance or freeze; `tick()` never returns the same instant twice.

    Strictly increasing timestamps make `updated_after` (strict `>`) deterministic in tests.
    """

    def __init__(self, start: datetime | str | None = None) -> None:
        self._lock = threading.Lock()
        self._offset_us = 0
        self._frozen_us: int | None = None
        self._last_us = 0
        if start is not None:
            self.set(start)

    def now_us(self) -> int:
        base = self._frozen_us if self._frozen_us is not None else int(time.time() * 1_000_000)
        return base + self._offset_us

    def now(self) -> datetime:
        return _EPOCH_UTC + timedelta(microseconds=self.now_us())

    def tick(self) -> int:
        """Current time in whole milliseconds (as µs), strictly later than any earlier tick."""
        with self._lock:
            now = self.now_us() // 1000 * 1000
            self._last_us = max(now, self._last_us + 1000)
            return self._last_us

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset_us += int(seconds * 1_000_000)

    def set(self, when: datetime | str) -> None:
        """Freeze the clock at `when` (it then moves only by advance() and tick())."""
        us = parse_iso(when) if isinstance(when, str) else parse_iso(when.isoformat())
        with self._lock:
            self._frozen_us, self._offset_us = us, 0


# --- state ---------------------------------------------------------------------------------------
class CoperniqState:
    """In-memory company data. Records hold their public JSON fields plus private `_`-prefixed keys.

    `_u` is updatedAt in µs (fast filtering); `versions[resource]` bumps on every change of that
    resource so cached list id orders stay valid until the data really changes.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.accounts: dict[int, dict[str, Any]] = {}
        self.contacts: dict[int, dict[str, Any]] = {}
        self.projects: dict[int, dict[str, Any]] = {}
        self.workflows: dict[int, dict[str, Any]] = {}
        self.phase_templates: dict[int, dict[str, Any]] = {}
        # project id -> [[instance id, template id, status, started µs|None, completed µs|None], ...] by position
        self.phase_instances: dict[int, list[list[Any]]] = {}
        self.invoices: dict[int, dict[str, Any]] = {}
        self.payments: dict[int, list[dict[str, Any]]] = {}  # by invoice id
        self.catalog_items: dict[int, dict[str, Any]] = {}
        self.invoices_by_project: dict[int, list[int]] = {}
        self.invoices_by_account: dict[int, list[int]] = {}
        self.versions: Counter[str] = Counter()
        self._ids = dict(START_IDS)
        self.list_cache: OrderedDict[tuple[Any, ...], tuple[int, list[int]]] = OrderedDict()

    def next_id(self, kind: str) -> int:
        value = self._ids[kind]
        self._ids[kind] = value + 1
        return value

    def touch(self, resource: str) -> None:
        self.versions[resource] += 1

    def summary(self) -> dict[str, int]:
        return {"accounts": len(self.accounts), "contacts": len(self.contacts), "projects": len(self.projects),
                "workflows": len(self.workflows), "invoices": len(self.invoices),
                "payments": sum(len(v) for v in self.payments.values()),
                "catalog_items": len(self.catalog_items),
                "phase_instances": sum(len(v) for v in self.phase_instances.values())}


def public(rec: dict[str, Any]) -> dict[str, Any]:
    """Shallow copy without private keys: responses are encoded outside the lock."""
    return {k: v for k, v in rec.items() if k[0] != "_"}


# --- request parsing / validation ----------------------------------------------------------------
def invalid(field: str, message: str) -> HttpError:
    return HttpError(400, message, "VALIDATION_ERROR", field=field)


def not_found(what: str, rid: Any) -> HttpError:
    return HttpError(404, f"{what} {rid} not found", "NOT_FOUND")


def json_body(req: Request) -> dict[str, Any]:
    if not req.body or not req.body.strip():
        return {}
    try:
        data = json.loads(req.body)
    except (ValueError, UnicodeDecodeError):
        raise HttpError(400, "Request body is not valid JSON", "INVALID_JSON") from None
    if not isinstance(data, dict):
        raise HttpError(400, "Request body must be a JSON object", "VALIDATION_ERROR")
    return data


def path_id(req: Request, name: str) -> int:
    raw = req.path_params[name]
    try:
        return int(raw)
    except ValueError:
        raise invalid(name, f"{name} must be an integer") from None


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def as_int(v: Any, field: str) -> int:
    """Integer field; numeric strings accepted (the spec types accountId/workflowId as string)."""
    if isinstance(v, bool):
        raise invalid(field, f"{field} must be an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and re.fullmatch(r"\s*-?\d+\s*", v):
        return int(v)
    raise invalid(field, f"{field} must be an integer")


def opt_str(body: dict[str, Any], field: str, *, nullable: bool = True) -> str | None:
    v = body.get(field)
    if v is None:
        if field in body and not nullable:
            raise invalid(field, f"{field} cannot be null")
        return None
    if not isinstance(v, str):
        raise invalid(field, f"{field} must be a string")
    return v


def req_str(body: dict[str, Any], field: str) -> str:
    v = body.get(field)
    if not isinstance(v, str) or not v.strip():
        raise invalid(field, f"{field} is required")
    return v


def enum(body: dict[str, Any], field: str, allowed: Iterable[str], default: str | None = None) -> str | None:
    v = body.get(field, default)
    if v is None:
        return default
    if v not in allowed:
        raise invalid(field, f"{field} must be one of: {', '.join(allowed)}")
    return v


def str_list(body: dict[str, Any], field: str) -> list[str] | None:
    v = body.get(field)
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise invalid(field, f"{field} must be an array of strings")
    return list(v)


def address_field(body: dict[str, Any], required: bool) -> list[str] | None:
    v = body.get("address")
    if v is None:
        if required:
            raise invalid("address", "address is required (an array with one string)")
        return None
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v) or not v[0].strip():
        raise invalid("address", "address must be an array containing one non-empty string")
    return [v[0]]


def date_field(body: dict[str, Any], field: str, required: bool = False) -> int | None:
    v = body.get(field)
    if v is None:
        if required:
            raise invalid(field, f"{field} is required")
        return None
    try:
        return parse_iso(v)
    except ValueError:
        raise invalid(field, f"{field} must be an ISO 8601 date-time") from None


def num_field(body: dict[str, Any], field: str, required: bool = False) -> float | None:
    v = body.get(field)
    if v is None:
        if required:
            raise invalid(field, f"{field} is required")
        return None
    if not _is_num(v):
        raise invalid(field, f"{field} must be a number")
    return float(v)


def bool_arg(req: Request, name: str, default: bool = False) -> bool:
    raw = req.arg(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise invalid(name, f"{name} must be true or false")


@dataclass(frozen=True)
class ListParams:
    """The shared list query: page/page_size/updated_after/updated_before/order_by/include_archived."""

    page: int
    page_size: int
    after: int | None
    before: int | None
    desc: bool
    include_archived: bool

    @classmethod
    def parse(cls, req: Request) -> ListParams:
        def int_arg(name: str, default: int) -> int:
            raw = req.arg(name)
            if raw is None or raw == "":
                return default
            try:
                return int(raw)
            except ValueError:
                raise invalid(name, f"{name} must be an integer") from None

        page = int_arg("page", 1)
        if page < 1:
            raise invalid("page", "page must be >= 1")
        size = int_arg("page_size", PAGE_SIZE_DEFAULT)
        if size < 1 or size > PAGE_SIZE_MAX:
            raise invalid("page_size", f"page_size must be between 1 and {PAGE_SIZE_MAX}")
        bounds: dict[str, int | None] = {}
        for name in ("updated_after", "updated_before"):
            raw = req.arg(name)
            if raw is None or raw == "":
                bounds[name] = None
                continue
            try:
                bounds[name] = parse_iso(raw)
            except ValueError:
                raise invalid(name, f"{name} must be an ISO 8601 date-time") from None
        order = (req.arg("order_by") or "asc").lower()
        if order not in ("asc", "desc"):
            raise invalid("order_by", "order_by must be asc or desc")
        return cls(page, size, bounds["updated_after"], bounds["updated_before"], order == "desc",
                   bool_arg(req, "include_archived"))

    def window(self, ids: list[int]) -> list[int]:
        start = (self.page - 1) * self.page_size
        return ids[start:start + self.page_size]


def _digits(s: Any) -> str:
    return re.sub(r"\D", "", s) if isinstance(s, str) else ""


def _fold(s: Any) -> str:
    return s.strip().casefold() if isinstance(s, str) else ""


# --- the app -------------------------------------------------------------------------------------
class CoperniqApp(SandboxApp):
    """Coperniq `/v1` emulator: state in `self.state`, admin helpers as methods and under `/__admin/`."""

    name = "coperniq"

    def __init__(self, api_key: str = "sandbox-coperniq-key", rate_limit_per_second: int | None = 100,
                 rate_limit_per_day: int | None = 5000, *, allow_overpayment: bool = False,
                 clock: Clock | None = None, profile: str | CoperniqAssumptions | None = None,
                 **switch_overrides: Any) -> None:
        """`profile` ("optimistic" = default, "pessimistic" or a CoperniqAssumptions), then single switches
        (`phase_change_bumps_updated_at=False`, ...) on top: see sandbox/profiles.py."""
        super().__init__()
        self.api_key = api_key
        self.allow_overpayment = allow_overpayment
        self.assumptions = resolve(CoperniqAssumptions, profile, **switch_overrides)
        self.state = CoperniqState(clock)
        self.limiter = RateLimiter([])
        self.set_rate_limits(rate_limit_per_second, rate_limit_per_day)
        self.admin_routes = App()
        self._register_routes()
        self._register_admin_routes()

    # --- SandboxApp hooks ---------------------------------------------------------------------
    def authenticate(self, req: Request) -> tuple[str | None, Response | None]:
        key = req.headers.get("x-api-key")
        if not key or key != self.api_key:
            return None, self.error(401, "Invalid API key", "UNAUTHORIZED")
        return key, None

    def rate_limit(self, key: str, req: Request) -> tuple[Response | None, dict[str, str]]:
        allowed, limit, remaining, retry_after = self.limiter.hit(key)
        headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining)} if limit else {}
        if not self.assumptions.rate_limit_headers:
            headers = {}
        if not allowed:
            return self.too_many(max(1, math.ceil(retry_after))), headers
        return None, headers

    def too_many(self, retry_after: float) -> Response:
        """Without `rate_limit_headers` a 429 (limit or injected burst) says nothing about when to retry."""
        resp = super().too_many(retry_after)
        if not self.assumptions.rate_limit_headers:
            resp.headers.pop("Retry-After", None)
        return resp

    def reset_state(self) -> None:
        self.state = CoperniqState(self.state.clock)
        self.limiter.reset()

    def admin(self, req: Request) -> Response | None:
        handler, _ = self.admin_routes.match(req)
        return handler(req) if handler else None

    def set_rate_limits(self, per_second: int | None, per_day: int | None) -> None:
        """Daily limit first in headers (X-RateLimit-Limit is the daily limit, as documented)."""
        self.rate_limit_per_second, self.rate_limit_per_day = per_second, per_day
        self.limiter.set_windows([(per_second or 0, 1.0), (per_day or 0, 86400.0)])

    # --- output -------------------------------------------------------------------------------
    def _user_ref(self) -> dict[str, Any]:
        """Shared, never mutated (saves memory with 100k seeded records)."""
        return SANDBOX_USER

    def _current_phase(self, pid: int) -> list[Any] | None:
        instances = self.state.phase_instances.get(pid) or []
        current = None
        for inst in instances:
            if inst[2] == "IN_PROGRESS":
                return inst
            if inst[2] == "COMPLETED":
                current = inst
        return current

    def _phase_object(self, pid: int) -> dict[str, Any] | None:
        inst = self._current_phase(pid)
        if inst is None:
            return None
        tpl = self.state.phase_templates[inst[1]]
        days = max(0, (self.state.clock.now_us() - inst[3]) // DAY_US) if inst[3] is not None else 0
        obj: dict[str, Any] = {"instanceId": inst[0], "templateId": tpl["id"], "name": tpl["name"],
                               "status": inst[2], "type": tpl["type"]}
        if tpl["redSla"] is not None:
            obj["redSla"] = tpl["redSla"]
        if tpl["yellowSla"] is not None:
            obj["yellowSla"] = tpl["yellowSla"]
        obj["timeInStageDays"] = days
        obj["slaStatus"] = "VIOLATED" if tpl["redSla"] is not None and days > tpl["redSla"] else "NON_VIOLATED"
        return obj

    def _stage_object(self, pid: int) -> dict[str, Any] | None:
        """Workflows 1.0 `stage` (ProjectStage in the spec): no instance id, status or template id."""
        phase = self._phase_object(pid)
        if phase is None:
            return None
        stage: dict[str, Any] = {"id": phase["templateId"] + STAGE_ID_OFFSET, "name": phase["name"],
                                 "type": phase["type"], "scope": STAGE_SCOPE}
        for key in ("redSla", "yellowSla", "timeInStageDays", "slaStatus"):
            if key in phase:
                stage[key] = phase[key]
        return stage

    def _phase_instances_out(self, pid: int) -> list[dict[str, Any]]:
        out = []
        for inst in self.state.phase_instances.get(pid) or []:
            tpl = self.state.phase_templates[inst[1]]
            out.append({"id": inst[0], "name": tpl["name"], "status": inst[2], "position": tpl["position"],
                        "type": tpl["type"], "phaseTemplateId": tpl["id"],
                        "phaseTemplate": {"id": tpl["id"], "name": tpl["name"], "type": tpl["type"],
                                          "redSla": tpl["redSla"], "yellowSla": tpl["yellowSla"]},
                        "startedAt": iso(inst[3]) if inst[3] is not None else None,
                        "completedAt": iso(inst[4]) if inst[4] is not None else None})
        return out

    def project_out(self, p: dict[str, Any], detail: bool = False) -> dict[str, Any]:
        """List item (`phase`) or GET by id (+ `phaseInstances`). A Workflows 1.0 project has `stage` instead
        of `phase` and no phase instances: the reference documents no stage history at all."""
        out = public(p)
        if p.get("_v1"):
            stage = self._stage_object(p["id"])
            if stage is not None:
                out["stage"] = stage
            if detail:
                out["phaseInstances"] = []
            return out
        phase = self._phase_object(p["id"])
        if phase is not None:
            out["phase"] = phase
        if detail:
            out["phaseInstances"] = self._phase_instances_out(p["id"])
        return out

    def account_out(self, a: dict[str, Any], include_contacts: bool = False) -> dict[str, Any]:
        out = public(a)
        if include_contacts:
            out["contacts"] = [{"id": c["id"], "emails": list(c["emails"]), "phones": list(c["phones"])}
                               for cid in a["_contacts"] if (c := self.state.contacts.get(cid))]
        return out

    def contact_out(self, c: dict[str, Any]) -> dict[str, Any]:
        st = self.state
        out = public(c)
        out["accounts"] = [{"id": a["id"], "title": a["title"]} for i in c["_accounts"] if (a := st.accounts.get(i))]
        out["projects"] = [{"id": p["id"], "title": p["title"]} for i in c["_projects"] if (p := st.projects.get(i))]
        if out.get("title") is None:  # the schema types Contact.title as a non-null string
            out.pop("title", None)
        return out

    def invoice_out(self, inv: dict[str, Any]) -> dict[str, Any]:
        st = self.state
        out = public(inv)
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

    def payment_out(self, pay: dict[str, Any]) -> dict[str, Any]:
        return public(pay)

    def workflow_out(self, wf: dict[str, Any]) -> dict[str, Any]:
        out = public(wf)
        out["phases"] = [{k: self.state.phase_templates[t][k]
                          for k in ("id", "name", "type", "description", "redSla", "yellowSla")}
                         for t in wf["_phases"]]
        return out

    # --- listing ------------------------------------------------------------------------------
    def _list_ids(self, resource: str, records: dict[int, dict[str, Any]], params: ListParams,
                  base: list[int] | None = None, extra: tuple[Any, ...] = (),
                  pred: Callable[[dict[str, Any]], bool] | None = None, archived_key: str | None = None) -> list[int]:
        """Filtered, ordered ids, cached per (resource, filters, data version): paging 100k rows stays O(page)."""
        st = self.state
        key = (resource, extra, params.after, params.before, params.desc,
               params.include_archived if archived_key else None)
        version = st.versions[resource]
        hit = st.list_cache.get(key)
        if hit is not None and hit[0] == version:
            st.list_cache.move_to_end(key)
            return hit[1]
        after, before = params.after, params.before
        ids = []
        source: Iterable[int] = base if base is not None else records.keys()  # ids are created ascending
        for rid in source:
            rec = records.get(rid)
            if rec is None:
                continue
            u = rec["_u"]
            if after is not None and u <= after:
                continue
            if before is not None and u >= before:
                continue
            if archived_key and not params.include_archived and rec.get(archived_key) is False:
                continue
            if pred is not None and not pred(rec):
                continue
            ids.append(rid)
        if base is not None:
            ids.sort()
        if params.desc:
            ids.reverse()
        st.list_cache[key] = (version, ids)
        if len(st.list_cache) > 64:
            st.list_cache.popitem(last=False)
        return ids

    @staticmethod
    def _text_filters(req: Request, fields: tuple[str, ...]) -> tuple[tuple[Any, ...], Callable[[dict[str, Any]], bool] | None]:
        """`q` (substring over several fields) and per-field substring filters (title, primaryEmail, ...)."""
        wanted = {f: _fold(req.arg(f)) for f in ("title", "address", "primaryEmail", "primaryPhone") if req.arg(f)}
        q = _fold(req.arg("q"))
        if not wanted and not q:
            return (), None

        def text(rec: dict[str, Any], f: str) -> str:
            v = rec.get(f)
            if isinstance(v, list):
                return " ".join(x for x in v if isinstance(x, str)).casefold()
            return v.casefold() if isinstance(v, str) else ""

        def pred(rec: dict[str, Any]) -> bool:
            if any(w not in text(rec, f) for f, w in wanted.items()):
                return False
            return not q or any(q in text(rec, f) for f in fields)

        return (tuple(sorted(wanted.items())), q), pred

    # --- internal inserts (shared by HTTP handlers, admin helpers and the seeder) ---------------
    def _insert_workflow(self, name: str, phases: list[Any], description: str | None = None,
                         at_us: int | None = None) -> dict[str, Any]:
        st = self.state
        at = at_us if at_us is not None else st.clock.tick()
        wid = st.next_id("workflow")
        tpl_ids = []
        for pos, ph in enumerate(phases, start=1):
            spec = ph if isinstance(ph, dict) else {"name": ph}
            tid = st.next_id("phase_template")
            st.phase_templates[tid] = {
                "id": tid, "name": spec["name"],
                "type": spec.get("type") or re.sub(r"\W+", "_", spec["name"]).strip("_").upper(),
                "description": spec.get("description"), "redSla": spec.get("redSla", 14),
                "yellowSla": spec.get("yellowSla", 7), "position": pos, "workflowId": wid}
            tpl_ids.append(tid)
        wf = {"id": wid, "name": name, "description": description, "type": "PROJECT", "createdAt": iso(at),
              "updatedAt": iso(at), "createdBy": {k: SANDBOX_USER[k] for k in ("id", "firstName", "lastName", "avatarUrl")},
              "_u": at, "_phases": tpl_ids}
        st.workflows[wid] = wf
        st.touch("workflows")
        return wf

    def _insert_account(self, fields: dict[str, Any], at_us: int | None = None,
                        updated_us: int | None = None) -> dict[str, Any]:
        st = self.state
        at = at_us if at_us is not None else st.clock.tick()
        upd = updated_us if updated_us is not None else at
        aid = st.next_id("account")
        acc = {"id": aid, "number": st.next_id("account_number"), "title": fields["title"],
               "description": fields.get("description"), "address": list(fields.get("address") or []),
               "isActive": fields.get("isActive", True), "primaryEmail": fields.get("primaryEmail"),
               "primaryPhone": fields.get("primaryPhone"), "accountType": fields.get("accountType"),
               "custom": dict(fields.get("custom") or {}), "createdAt": iso(at), "updatedAt": iso(upd),
               "createdBy": self._user_ref(), "updatedBy": None, "_u": upd, "_contacts": []}
        st.accounts[aid] = acc
        for cid in fields.get("contacts") or []:
            self._link_contact(cid, account_id=aid)
        st.touch("accounts")
        return acc

    def _insert_contact(self, fields: dict[str, Any], at_us: int | None = None) -> dict[str, Any]:
        st = self.state
        at = at_us if at_us is not None else st.clock.tick()
        cid = st.next_id("contact")
        c: dict[str, Any] = {"id": cid, "companyId": 1, "name": fields["name"],
                             "emails": list(fields.get("emails") or []), "phones": list(fields.get("phones") or []),
                             "createdByUser": {"id": SANDBOX_USER["id"]}, "createdAt": iso(at),
                             "updatedAt": iso(at), "_u": at, "_accounts": [], "_projects": []}
        if fields.get("title") is not None:
            c["title"] = fields["title"]
        st.contacts[cid] = c
        for aid in fields.get("accountIds") or []:
            self._link_contact(cid, account_id=aid)
        for pid in fields.get("projectIds") or []:
            self._link_contact(cid, project_id=pid)
        st.touch("contacts")
        return c

    def _link_contact(self, cid: int, account_id: int | None = None, project_id: int | None = None) -> None:
        st = self.state
        c = st.contacts[cid]
        if account_id is not None and account_id not in c["_accounts"]:
            c["_accounts"] = c["_accounts"] + [account_id]
            acc = st.accounts[account_id]
            acc["_contacts"] = acc["_contacts"] + [cid]
        if project_id is not None and project_id not in c["_projects"]:
            c["_projects"] = c["_projects"] + [project_id]
        st.touch("contacts")

    def _insert_project(self, fields: dict[str, Any], account_id: int, workflow_id: int | None,
                        at_us: int | None = None, phase_index: int = 0, phase_starts: list[int] | None = None,
                        updated_us: int | None = None, workflows_v1: bool = False) -> dict[str, Any]:
        """Create a project; with a workflow, phases 0..phase_index-1 are completed and phase_index is in
        progress (`phase_starts[i]` = start of phase i; phase i completes when i+1 starts).

        `workflows_v1`: the project shows `stage` instead of `phase` (its progress is tracked the same way)."""
        st = self.state
        at = at_us if at_us is not None else st.clock.tick()
        pid = st.next_id("project")
        wf = st.workflows.get(workflow_id) if workflow_id is not None else None
        upd = updated_us if updated_us is not None else (max(at, phase_starts[phase_index]) if phase_starts else at)
        p = {"id": pid, "number": st.next_id("project_number"), "title": fields["title"],
             "description": fields.get("description"), "address": list(fields.get("address") or []),
             "isActive": fields.get("isActive", True), "status": fields.get("status") or "ACTIVE",
             "primaryEmail": fields.get("primaryEmail"), "primaryPhone": fields.get("primaryPhone"),
             "trades": list(fields.get("trades") or ["Solar"]), "value": fields.get("value"),
             "size": fields.get("size"), "workflowId": wf["id"] if wf else None,
             "workflowName": wf["name"] if wf else "", "accountId": account_id,
             "custom": dict(fields.get("custom") or {}), "createdAt": iso(at), "updatedAt": iso(upd),
             "createdBy": self._user_ref(), "updatedBy": None,
             "owner": _OWNER,
             "salesRep": None, "projectManager": None, "lastActivity": iso(upd), "_u": upd}
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
            self._link_contact(cid, project_id=pid)
        st.touch("projects")
        return p

    def _line(self, spec: dict[str, Any], section: str | None, lid: int) -> dict[str, Any]:
        """One invoice line as the API returns it (shared by replace and append PATCH semantics)."""
        item = self.state.catalog_items[spec["catalogItemId"]]
        return {"id": lid, "catalogItemId": item["id"], "quantity": spec["quantity"],
                "unitCost": float(spec["unitCost"]), "unitPrice": float(spec["unitPrice"]),
                "description": spec.get("description"), "sectionName": section,
                "catalogItem": {"id": item["id"], "name": item["name"], "manufacturer": item["manufacturer"],
                                "sku": item["sku"], "type": item["type"]}}

    def _build_lines(self, lines: list[tuple[dict[str, Any], str | None]],
                     existing: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The new set of lines; a line whose `id` is one of `existing` keeps it, every other gets a new id."""
        st = self.state
        keep = {li["id"] for li in existing or []}
        out = []
        for spec, section in lines:
            lid = spec.get("id")
            out.append(self._line(spec, section, lid if lid in keep else st.next_id("line_item")))
        return out

    def _merge_lines(self, lines: list[tuple[dict[str, Any], str | None]],
                     existing: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`invoice_patch_replaces_lines=False`: a line with an existing `id` updates that line in place, every
        other line is appended; lines not sent stay (so re-sending the full set without ids doubles it)."""
        st = self.state
        out = list(existing)
        index = {li["id"]: i for i, li in enumerate(out)}
        for spec, section in lines:
            lid = spec.get("id")
            if lid in index:
                out[index[lid]] = self._line(spec, section, lid)
            else:
                out.append(self._line(spec, section, st.next_id("line_item")))
        return out

    def _insert_invoice(self, record: tuple[str, int], calculation_method: str,
                        lines: list[tuple[dict[str, Any], str | None]], status: str = "DRAFT",
                        issue_us: int | None = None, due_us: int | None = None, description: str | None = None,
                        percentage: float | None = None, at_us: int | None = None) -> dict[str, Any]:
        st = self.state
        at = at_us if at_us is not None else st.clock.tick()
        iid = st.next_id("invoice")
        line_items = self._build_lines(lines) if calculation_method == "LINE_ITEMS" else []
        base_amount = None
        if calculation_method == "PERCENTAGE":
            base_amount = float(st.projects[record[1]].get("value") or 0.0) if record[0] == "project" else 0.0
            amount = round(base_amount * (percentage or 0.0) / 100.0, 2)
        else:
            amount = round(sum(li["quantity"] * li["unitPrice"] for li in line_items), 2)
        if status == "DRAFT":
            issue_us = None
        due = due_us if due_us is not None else (issue_us or at) + 30 * DAY_US
        inv = {"id": iid, "uid": st.next_id("invoice_uid"), "description": description, "type": "INVOICE",
               "status": status, "basedOnId": None, "basedOnUid": None,
               "issueDate": iso(issue_us) if issue_us is not None else None, "dueDate": iso(due),
               "amount": amount, "amountPaid": 0.0, "isArchived": False, "sharedWithPortal": False,
               "calculationMethod": calculation_method,
               "percentage": percentage if calculation_method == "PERCENTAGE" else None, "baseAmount": base_amount,
               "createdAt": iso(at), "updatedAt": iso(at), "account": None, "record": None,
               "lineItems": line_items, "_u": at, "_record": record}
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

    def _insert_payment(self, inv: dict[str, Any], amount: float, method: str, date_us: int,
                        reference: str | None = None, notes: str | None = None,
                        at_us: int | None = None) -> dict[str, Any]:
        """Record a payment and roll it into the invoice: amountPaid, status, updatedAt."""
        st = self.state
        at = at_us if at_us is not None else st.clock.tick()
        payments = st.payments.setdefault(inv["id"], [])
        pay = {"id": st.next_id("payment"), "invoiceNumber": len(payments) + 1, "amount": round(float(amount), 2),
               "status": "COMPLETED", "paymentMethod": method, "paymentDate": iso(date_us),
               "paymentReference": reference, "notes": notes, "isExternal": False, "createdAt": iso(at),
               "updatedAt": iso(at), "createdBy": {k: SANDBOX_USER[k] for k in ("id", "firstName", "lastName")}}
        st.payments[inv["id"]] = payments + [pay]
        paid = round(inv["amountPaid"] + pay["amount"], 2)
        inv["amountPaid"] = paid
        if paid >= inv["amount"] - 0.005:
            inv["status"] = "PAID"
        elif paid > 0:
            inv["status"] = "PARTIALLY_PAID"
        inv["updatedAt"], inv["_u"] = iso(at), at
        st.touch("invoices")
        return pay

    def _insert_catalog_item(self, fields: dict[str, Any], at_us: int | None = None) -> dict[str, Any]:
        st = self.state
        at = at_us if at_us is not None else st.clock.tick()
        cid = st.next_id("catalog_item")
        item = {"id": cid, "name": fields["name"], "catalog": fields.get("tradeGroup") or "OTHER",
                "type": fields["type"], "category": fields["category"], "manufacturer": fields.get("manufacturer"),
                "sku": fields.get("sku"), "code": fields.get("code"), "cost": float(fields["cost"]),
                "price": float(fields["price"]), "description": fields.get("description"), "image": None,
                "isArchived": False, "createdById": SANDBOX_USER["id"], "createdAt": iso(at), "updatedAt": iso(at),
                "preferredVendorId": None, "_u": at}
        st.catalog_items[cid] = item
        st.touch("catalog_items")
        return item

    # --- validation of write bodies -------------------------------------------------------------
    def _validate_record_body(self, body: dict[str, Any], *, create: bool, kind: str) -> dict[str, Any]:
        """Common fields of projects and accounts (AccountUpsert / ProjectCreate / *Update)."""
        fields: dict[str, Any] = {}
        if create:
            fields["title"] = req_str(body, "title")
        elif "title" in body:
            fields["title"] = req_str(body, "title")
        addr = address_field(body, required=create)
        if addr is not None:
            fields["address"] = addr
        for f in ("description", "primaryEmail", "primaryPhone"):
            if f in body:
                fields[f] = opt_str(body, f)
        if fields.get("primaryEmail") and "@" not in fields["primaryEmail"]:
            raise invalid("primaryEmail", "primaryEmail must be a valid email address")
        if "custom" in body:
            if not isinstance(body["custom"], dict):
                raise invalid("custom", "custom must be an object")
            fields["custom"] = body["custom"]
        if "contacts" in body and body["contacts"] is not None:
            if not isinstance(body["contacts"], list):
                raise invalid("contacts", "contacts must be an array of contact ids")
            ids = [as_int(c, "contacts") for c in body["contacts"]]
            missing = [c for c in ids if c not in self.state.contacts]
            if missing:
                raise invalid("contacts", f"contact {missing[0]} not found")
            fields["contacts"] = ids
        if kind == "account":
            if "accountType" in body:
                fields["accountType"] = enum(body, "accountType", ACCOUNT_TYPES)
            if "isActive" in body and not create:
                if not isinstance(body["isActive"], bool):
                    raise invalid("isActive", "isActive must be a boolean")
                fields["isActive"] = body["isActive"]
        else:
            if "trades" in body:
                fields["trades"] = str_list(body, "trades") or ["Solar"]
            for f in ("value", "size"):
                if f in body:
                    fields[f] = num_field(body, f)
            if "status" in body:
                fields["status"] = enum(body, "status", PROJECT_STATUSES)
        return fields

    def _match_params(self, req: Request) -> tuple[str, str]:
        match_by = req.arg("match_by") or "title"
        if match_by not in MATCH_BY:
            raise invalid("match_by", f"match_by must be one of: {', '.join(MATCH_BY)}")
        strategy = req.arg("match_found_strategy") or "skip"
        if strategy not in MATCH_STRATEGIES:
            raise invalid("match_found_strategy", f"match_found_strategy must be one of: {', '.join(MATCH_STRATEGIES)}")
        return match_by, strategy

    @staticmethod
    def _find_match(records: dict[int, dict[str, Any]], match_by: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        if match_by == "address":
            want = _fold((fields.get("address") or [""])[0])
            get: Callable[[dict[str, Any]], str] = lambda r: _fold((r.get("address") or [""])[0])  # noqa: E731
        elif match_by == "primaryPhone":
            want = _digits(fields.get("primaryPhone"))
            get = lambda r: _digits(r.get("primaryPhone"))  # noqa: E731
        else:
            want = _fold(fields.get(match_by))
            get = lambda r: _fold(r.get(match_by))  # noqa: E731
        if not want:
            return None
        return next((r for r in records.values() if get(r) == want), None)

    def _apply_update(self, rec: dict[str, Any], fields: dict[str, Any], resource: str, *,
                      enrich_only: bool = False) -> None:
        """Set fields (PATCH semantics; `null` clears). enrich_only fills only empty values."""
        changed = False
        for key, value in fields.items():
            if key == "contacts":
                for cid in value or []:
                    if resource == "accounts":
                        self._link_contact(cid, account_id=rec["id"])
                    else:
                        self._link_contact(cid, project_id=rec["id"])
                continue
            if key == "custom":
                merged = dict(rec["custom"])
                for k, v in value.items():
                    if enrich_only and merged.get(k) not in (None, "", []):
                        continue
                    if v is None:
                        merged.pop(k, None)
                    else:
                        merged[k] = v
                value = merged
            elif enrich_only and rec.get(key) not in (None, "", [], {}):
                continue
            if rec.get(key) != value:
                rec[key] = value
                changed = True
        if changed:
            now = self.state.clock.tick()
            rec["updatedAt"], rec["_u"] = iso(now), now
            rec["updatedBy"] = self._user_ref()
            if "lastActivity" in rec:
                rec["lastActivity"] = rec["updatedAt"]
        self.state.touch(resource)

    def _collect_lines(self, body: dict[str, Any]) -> list[tuple[dict[str, Any], str | None]]:
        """Validate `lineItems` + `sections[].lineItems` (InvoiceLineItemCreate), flattened."""
        flat: list[tuple[dict[str, Any], str | None, str]] = []
        if "lineItems" in body and body["lineItems"] is not None:
            if not isinstance(body["lineItems"], list):
                raise invalid("lineItems", "lineItems must be an array")
            flat += [(li, None, f"lineItems[{i}]") for i, li in enumerate(body["lineItems"])]
        if "sections" in body and body["sections"] is not None:
            if not isinstance(body["sections"], list):
                raise invalid("sections", "sections must be an array")
            for s, sec in enumerate(body["sections"]):
                if not isinstance(sec, dict) or not isinstance(sec.get("lineItems"), list) or not sec["lineItems"]:
                    raise invalid(f"sections[{s}].lineItems", "each section needs at least one line item")
                name = sec.get("name")
                if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 500):
                    raise invalid(f"sections[{s}].name", "section name must be 1-500 characters")
                flat += [(li, name, f"sections[{s}].lineItems[{i}]") for i, li in enumerate(sec["lineItems"])]
        seen: set[int] = set()
        out = []
        for li, section, where in flat:
            if not isinstance(li, dict):
                raise invalid(where, "line item must be an object")
            for f in ("catalogItemId", "quantity", "unitCost", "unitPrice"):
                if li.get(f) is None:
                    raise invalid(f"{where}.{f}", f"{f} is required")
            cat_id = as_int(li["catalogItemId"], f"{where}.catalogItemId")
            if cat_id not in self.state.catalog_items:
                raise invalid(f"{where}.catalogItemId", f"catalog item {cat_id} not found")
            if cat_id in seen:
                raise invalid(f"{where}.catalogItemId",
                              f"catalogItemId {cat_id} appears more than once; each catalog item may be used once")
            seen.add(cat_id)
            qty = li["quantity"]
            if not _is_num(qty) or float(qty) != int(qty) or qty < 1:
                raise invalid(f"{where}.quantity", "quantity must be a positive integer")
            for f in ("unitCost", "unitPrice"):
                if not _is_num(li[f]):
                    raise invalid(f"{where}.{f}", f"{f} must be a number")
            desc = li.get("description")
            if desc is not None and not isinstance(desc, str):
                raise invalid(f"{where}.description", "description must be a string")
            lid = li.get("id")
            out.append(({"id": as_int(lid, f"{where}.id") if lid is not None else 0, "catalogItemId": cat_id,
                         "quantity": int(qty), "unitCost": li["unitCost"], "unitPrice": li["unitPrice"],
                         "description": desc}, section))
        return out

    # --- routes -------------------------------------------------------------------------------
    def _register_routes(self) -> None:  # noqa: C901 - one flat table is the easiest to read
        r = self.route
        st = lambda: self.state  # noqa: E731 - state is replaced on reset

        # projects ----------------------------------------------------------------------------
        @r("GET", "/v1/projects/search")
        def search_projects(req: Request) -> Response:
            return Response(200, [self.project_out(p) for p in self._search(req, st().projects, "projects")])

        @r("GET", "/v1/projects")
        def list_projects(req: Request) -> Response:
            params = ListParams.parse(req)
            extra, pred = self._text_filters(req, ("title", "address", "primaryEmail", "primaryPhone"))
            ids = self._list_ids("projects", st().projects, params, extra=extra, pred=pred, archived_key="isActive")
            projects = st().projects
            return Response(200, [self.project_out(projects[i]) for i in params.window(ids)])

        @r("POST", "/v1/projects")
        def create_project(req: Request) -> Response:
            body = json_body(req)
            match_by, strategy = self._match_params(req)
            fields = self._validate_record_body(body, create=True, kind="project")
            account_id = None
            if body.get("accountId") is not None:
                account_id = as_int(body["accountId"], "accountId")
                if account_id not in st().accounts:
                    raise invalid("accountId", f"account {account_id} not found")
            workflow_id = None
            if body.get("workflowId") is not None:
                workflow_id = as_int(body["workflowId"], "workflowId")
                if workflow_id not in st().workflows:
                    raise invalid("workflowId", f"workflow {workflow_id} not found")
            existing = self._find_match(st().projects, match_by, fields)
            if existing is not None:
                if strategy != "skip":
                    self._apply_update(existing, fields, "projects", enrich_only=strategy == "enrich")
                return Response(200, self.project_out(existing))
            if workflow_id is None and st().workflows:
                workflow_id = min(st().workflows)
            if account_id is None:  # Coperniq files every project under an account: make one
                account_id = self._insert_account({k: fields.get(k) for k in
                                                   ("title", "address", "primaryEmail", "primaryPhone")})["id"]
            p = self._insert_project(fields, account_id, workflow_id)
            return Response(200, self.project_out(p))

        @r("GET", "/v1/projects/{projectId}")
        def get_project(req: Request) -> Response:
            p = self._get_visible(st().projects, req, "projectId", "Project")
            return Response(200, self.project_out(p, detail=True))

        @r("PATCH", "/v1/projects/{projectId}")
        def update_project(req: Request) -> Response:
            p = self._get(st().projects, req, "projectId", "Project")
            body = json_body(req)
            if "accountId" in body:
                raise invalid("accountId", "Changing the account of a project is not supported; "
                                           "delete and re-create the project under the new account")
            fields = self._validate_record_body(body, create=False, kind="project")
            if body.get("workflowId") is not None:
                wid = as_int(body["workflowId"], "workflowId")
                if wid not in st().workflows:
                    raise invalid("workflowId", f"workflow {wid} not found")
                if wid != p["workflowId"]:
                    self._restart_workflow(p, wid)
            self._apply_update(p, fields, "projects")
            return Response(200, self.project_out(p))

        @r("GET", "/v1/projects/{projectId}/invoices")
        def project_invoices(req: Request) -> Response:
            p = self._get(st().projects, req, "projectId", "Project")
            return self._invoice_page(req, st().invoices_by_project.get(p["id"], []), ("project", p["id"]))

        # accounts (+ the /clients alias) -----------------------------------------------------
        for base in ("/v1/accounts", "/v1/clients"):
            self._register_account_routes(base)

        # contacts ----------------------------------------------------------------------------
        @r("GET", "/v1/contacts")
        def list_contacts(req: Request) -> Response:
            params = ListParams.parse(req)
            q = _fold(req.arg("q"))
            def pred(c: dict[str, Any]) -> bool:
                return q in c["name"].casefold() or any(q in x.casefold() for x in c["emails"] + c["phones"])
            ids = self._list_ids("contacts", st().contacts, params, extra=(q,), pred=pred if q else None)
            return Response(200, [self.contact_out(st().contacts[i]) for i in params.window(ids)])

        @r("POST", "/v1/contacts")
        def create_contact(req: Request) -> Response:
            return Response(201, self.contact_out(self._insert_contact(self._validate_contact(json_body(req), True))))

        @r("GET", "/v1/contacts/{contactId}")
        def get_contact(req: Request) -> Response:
            return Response(200, self.contact_out(self._get(st().contacts, req, "contactId", "Contact")))

        @r("PATCH", "/v1/contacts/{contactId}")
        def update_contact(req: Request) -> Response:
            c = self._get(st().contacts, req, "contactId", "Contact")
            fields = self._validate_contact(json_body(req), False)
            for aid in fields.pop("accountIds", None) or []:
                self._link_contact(c["id"], account_id=aid)
            for pid in fields.pop("projectIds", None) or []:
                self._link_contact(c["id"], project_id=pid)
            self._apply_update(c, fields, "contacts")
            return Response(200, self.contact_out(c))

        # workflows ---------------------------------------------------------------------------
        @r("GET", "/v1/workflows")
        def list_workflows(req: Request) -> Response:
            params = ListParams.parse(req)
            ids = self._list_ids("workflows", st().workflows, params)
            return Response(200, [self.workflow_out(st().workflows[i]) for i in params.window(ids)])

        @r("GET", "/v1/workflows/{workflowId}")
        def get_workflow(req: Request) -> Response:
            return Response(200, self.workflow_out(self._get(st().workflows, req, "workflowId", "Workflow")))

        # catalog -----------------------------------------------------------------------------
        @r("GET", "/v1/catalog-items")
        def list_catalog(req: Request) -> Response:
            params = ListParams.parse(req)
            ids = self._list_ids("catalog_items", st().catalog_items, params)
            return Response(200, [public(st().catalog_items[i]) for i in params.window(ids)])

        @r("POST", "/v1/catalog-items")
        def create_catalog_item(req: Request) -> Response:
            return Response(201, public(self._insert_catalog_item(self._validate_catalog_item(json_body(req)))))

        @r("GET", "/v1/catalog-items/{catalogItemId}")
        def get_catalog_item(req: Request) -> Response:
            return Response(200, public(self._get(st().catalog_items, req, "catalogItemId", "Catalog item")))

        # invoices ----------------------------------------------------------------------------
        @r("GET", "/v1/invoices")
        def list_invoices(req: Request) -> Response:
            return self._invoice_page(req, None, ())

        @r("POST", "/v1/invoices")
        def create_invoice(req: Request) -> Response:
            return Response(201, self.invoice_out(self._create_invoice(json_body(req))))

        @r("GET", "/v1/invoices/{invoiceId}")
        def get_invoice(req: Request) -> Response:
            return Response(200, self.invoice_out(self._get(st().invoices, req, "invoiceId", "Invoice")))

        @r("PATCH", "/v1/invoices/{invoiceId}")
        def update_invoice(req: Request) -> Response:
            inv = self._get(st().invoices, req, "invoiceId", "Invoice")
            self._update_invoice(inv, json_body(req))
            return Response(200, self.invoice_out(inv))

        @r("DELETE", "/v1/invoices/{invoiceId}")
        def delete_invoice(req: Request) -> Response:
            inv = self._get(st().invoices, req, "invoiceId", "Invoice")
            s = st()
            del s.invoices[inv["id"]]
            s.payments.pop(inv["id"], None)
            for index in (s.invoices_by_project, s.invoices_by_account):
                for ids in index.values():
                    if inv["id"] in ids:
                        ids.remove(inv["id"])
            s.touch("invoices")
            return Response(200, None)

        @r("GET", "/v1/invoices/{invoiceId}/payments")
        def list_payments(req: Request) -> Response:
            inv = self._get(st().invoices, req, "invoiceId", "Invoice")
            return Response(200, [self.payment_out(p) for p in st().payments.get(inv["id"], [])])

        @r("POST", "/v1/invoices/{invoiceId}/payments")
        def create_payment(req: Request) -> Response:
            inv = self._get(st().invoices, req, "invoiceId", "Invoice")
            return Response(201, self.payment_out(self._create_payment(inv, json_body(req))))

        @r("GET", "/v1/invoices/{invoiceId}/payments/{paymentId}")
        def get_payment(req: Request) -> Response:
            inv = self._get(st().invoices, req, "invoiceId", "Invoice")
            pid = path_id(req, "paymentId")
            for pay in st().payments.get(inv["id"], []):
                if pay["id"] == pid:
                    return Response(200, self.payment_out(pay))
            raise not_found("Payment", pid)

    def _register_account_routes(self, base: str) -> None:
        r = self.route
        st = lambda: self.state  # noqa: E731

        @r("GET", base + "/search")
        def search_accounts(req: Request) -> Response:
            include = bool_arg(req, "include_contacts")
            return Response(200, [self.account_out(a, include) for a in self._search(req, st().accounts, "accounts")])

        @r("GET", base)
        def list_accounts(req: Request) -> Response:
            params = ListParams.parse(req)
            include = bool_arg(req, "include_contacts")
            extra, pred = self._text_filters(req, ("title", "address", "primaryEmail", "primaryPhone"))
            ids = self._list_ids("accounts", st().accounts, params, extra=extra, pred=pred, archived_key="isActive")
            return Response(200, [self.account_out(st().accounts[i], include) for i in params.window(ids)])

        @r("POST", base)
        def create_account(req: Request) -> Response:
            body = json_body(req)
            match_by, strategy = self._match_params(req)
            fields = self._validate_record_body(body, create=True, kind="account")
            existing = self._find_match(st().accounts, match_by, fields)
            if existing is not None:
                if strategy != "skip":
                    self._apply_update(existing, fields, "accounts", enrich_only=strategy == "enrich")
                return Response(200, self.account_out(existing))
            return Response(200, self.account_out(self._insert_account(fields)))

        @r("GET", base + "/{accountId}")
        def get_account(req: Request) -> Response:
            a = self._get_visible(st().accounts, req, "accountId", "Account")
            return Response(200, self.account_out(a, bool_arg(req, "include_contacts")))

        @r("PATCH", base + "/{accountId}")
        def update_account(req: Request) -> Response:
            a = self._get(st().accounts, req, "accountId", "Account")
            self._apply_update(a, self._validate_record_body(json_body(req), create=False, kind="account"), "accounts")
            return Response(200, self.account_out(a))

        @r("GET", base + "/{accountId}/invoices")
        def account_invoices(req: Request) -> Response:
            a = self._get(st().accounts, req, "accountId", "Account")
            return self._invoice_page(req, st().invoices_by_account.get(a["id"], []), ("account", a["id"]))

    # --- handler helpers ----------------------------------------------------------------------
    def _get(self, records: dict[int, dict[str, Any]], req: Request, param: str, what: str) -> dict[str, Any]:
        rid = path_id(req, param)
        rec = records.get(rid)
        if rec is None:
            raise not_found(what, rid)
        return rec

    def _get_visible(self, records: dict[int, dict[str, Any]], req: Request, param: str, what: str) -> dict[str, Any]:
        """GET by id: without `archived_visible_by_id` an archived record is 404 unless `include_archived=true`
        (the spec gives GET /projects/{id} and /accounts/{id} that parameter, default false)."""
        rec = self._get(records, req, param, what)
        if (not self.assumptions.archived_visible_by_id and rec.get("isActive") is False
                and not bool_arg(req, "include_archived")):
            raise not_found(what, rec["id"])
        return rec

    def _invoice_page(self, req: Request, base: list[int] | None, scope: tuple[Any, ...]) -> Response:
        params = ListParams.parse(req)
        ids = self._list_ids("invoices", self.state.invoices, params, base=list(base) if base is not None else None,
                             extra=scope)
        page = params.window(ids)
        return Response(200, {"items": [self.invoice_out(self.state.invoices[i]) for i in page], "page": params.page,
                              "page_size": params.page_size,
                              "has_more": params.page * params.page_size < len(ids)})

    _SEARCH_OPS = ("eq", "neq", "gt", "gte", "lt", "lte", "contains", "in", "nin", "between")

    def _search(self, req: Request, records: dict[int, dict[str, Any]], resource: str) -> list[dict[str, Any]]:
        """`/search?prop1=&op1=&value1=[&prop2=&op2=&value2=&logic=and|or]` over standard and custom fields."""
        params = ListParams.parse(req)
        conds = []
        for n in ("1", "2"):
            prop, op, value = req.arg("prop" + n), req.arg("op" + n), req.arg("value" + n)
            if n == "1" and (not prop or not op or value is None):
                raise invalid("prop1", "prop1, op1 and value1 are required")
            if prop is None:
                continue
            if op not in self._SEARCH_OPS:
                raise invalid("op" + n, f"op{n} must be one of: {', '.join(self._SEARCH_OPS)}")
            conds.append((prop if prop != "clientId" else "accountId", op, value or ""))
        logic = (req.arg("logic") or "and").lower()
        if logic not in ("and", "or"):
            raise invalid("logic", "logic must be and or or")

        def values(raw: str) -> list[str]:
            raw = raw.strip()
            if raw.startswith("["):
                try:
                    return [str(v) for v in json.loads(raw)]
                except ValueError:
                    raise invalid("value1", "invalid JSON array") from None
            return [v.strip().strip('"') for v in raw.split(",")]

        def check(rec: dict[str, Any], prop: str, op: str, raw: str) -> bool:
            v = rec["custom"].get(prop) if prop not in rec else rec[prop]
            if isinstance(v, list):
                v = v[0] if v else None
            sv = "" if v is None else str(v)
            try:
                a, b = float(sv), float(raw.split(",")[0])
                cmp_pair: tuple[Any, Any] = (a, b)
            except ValueError:
                cmp_pair = (sv.casefold(), raw.casefold())
            if op == "eq":
                return sv.casefold() == raw.casefold()
            if op == "neq":
                return sv.casefold() != raw.casefold()
            if op == "contains":
                return raw.casefold() in sv.casefold()
            if op in ("in", "nin"):
                hit = sv.casefold() in {x.casefold() for x in values(raw)}
                return hit if op == "in" else not hit
            if op == "between":
                lo, hi = (values(raw) + ["", ""])[:2]
                try:
                    return float(lo) <= float(sv) <= float(hi)
                except ValueError:
                    return lo <= sv <= hi
            x, y = cmp_pair
            return {"gt": x > y, "gte": x >= y, "lt": x < y, "lte": x <= y}[op]

        combine = all if logic == "and" else any
        hits = [rec for rec in records.values()
                if (params.include_archived or rec.get("isActive", True))
                and combine(check(rec, *c) for c in conds)]
        if params.desc:
            hits.reverse()
        start = (params.page - 1) * params.page_size
        return hits[start:start + params.page_size]

    def _validate_contact(self, body: dict[str, Any], create: bool) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if create or "name" in body:
            fields["name"] = req_str(body, "name")
        for f in ("emails", "phones"):
            if f in body:
                fields[f] = str_list(body, f) or []
        if "title" in body:
            fields["title"] = opt_str(body, "title")
        for f, records in (("accountIds", self.state.accounts), ("projectIds", self.state.projects)):
            if body.get(f) is not None:
                if not isinstance(body[f], list):
                    raise invalid(f, f"{f} must be an array of ids")
                ids = [as_int(x, f) for x in body[f]]
                missing = [x for x in ids if x not in records]
                if missing:
                    raise invalid(f, f"{f[:-3]} {missing[0]} not found")
                fields[f] = ids
        return fields

    def _validate_catalog_item(self, body: dict[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {"name": req_str(body, "name")}
        if body.get("type") is None:
            raise invalid("type", "type is required")
        fields["type"] = enum(body, "type", CATALOG_TYPES)
        if body.get("category") is None:
            raise invalid("category", "category is required")
        allowed = PRODUCT_CATEGORIES if fields["type"] == "PRODUCT" else SERVICE_CATEGORIES
        if body["category"] not in allowed:
            raise invalid("category", f"category {body['category']!r} is not valid for type {fields['type']}")
        fields["category"] = body["category"]
        fields["cost"] = num_field(body, "cost", required=True)
        fields["price"] = num_field(body, "price", required=True)
        if body.get("tradeGroup") is not None:
            fields["tradeGroup"] = enum(body, "tradeGroup", TRADE_GROUPS)
        for f in ("manufacturer", "sku", "code", "description"):
            fields[f] = opt_str(body, f)
        return fields

    def _create_invoice(self, body: dict[str, Any]) -> dict[str, Any]:
        st = self.state
        if body.get("recordId") is None:
            raise invalid("recordId", "recordId is required")
        rid = as_int(body["recordId"], "recordId")
        if rid in st.projects:
            record = ("project", rid)
        elif rid in st.accounts:
            record = ("account", rid)
        else:
            raise invalid("recordId", f"record {rid} not found (must be an existing project or account)")
        if body.get("calculationMethod") is None:
            raise invalid("calculationMethod", "calculationMethod is required")
        method = enum(body, "calculationMethod", CALCULATION_METHODS)
        status = body.get("status") or "DRAFT"
        if status not in INVOICE_CREATE_STATUSES:
            raise invalid("status", f"status must be one of: {', '.join(INVOICE_CREATE_STATUSES)} "
                                    "(DECLINED and OVERDUE cannot be set at creation)")
        issue = date_field(body, "issueDate")
        if status != "DRAFT" and issue is None:
            raise invalid("issueDate", f"issueDate is required when status is {status}")
        due = date_field(body, "dueDate")
        description = opt_str(body, "description")
        percentage = None
        lines: list[tuple[dict[str, Any], str | None]] = []
        if method == "LINE_ITEMS":
            if body.get("percentage") is not None:
                raise invalid("percentage", "percentage is only allowed when calculationMethod is PERCENTAGE")
            if body.get("lineItems") is None and body.get("sections") is None:
                raise invalid("lineItems", "lineItems or sections is required when calculationMethod is LINE_ITEMS")
            lines = self._collect_lines(body)
            if not lines:
                raise invalid("lineItems", "at least one line item is required")
        else:
            if body.get("lineItems") or body.get("sections"):
                raise invalid("lineItems", "lineItems and sections must be omitted when calculationMethod is PERCENTAGE")
            percentage = num_field(body, "percentage", required=True)
            assert percentage is not None
            if not 0 < percentage <= 100:
                raise invalid("percentage", "percentage must be greater than 0 and at most 100")
        return self._insert_invoice(record, method, lines, status, issue, due, description, percentage)

    def _update_invoice(self, inv: dict[str, Any], body: dict[str, Any]) -> None:
        """PATCH /invoices/{id}: status, lineItems/sections (replace the whole set, or add to it without
        `invoice_patch_replaces_lines`), dueDate, description."""
        if "calculationMethod" in body:
            raise invalid("calculationMethod", "calculationMethod cannot be changed after creation")
        is_lines = inv["calculationMethod"] == "LINE_ITEMS"
        status = enum(body, "status", INVOICE_STATUSES) if body.get("status") is not None else None
        due = date_field(body, "dueDate")
        issue = date_field(body, "issueDate")
        lines = None
        percentage = None
        if body.get("lineItems") is not None or body.get("sections") is not None:
            if not is_lines:
                raise invalid("lineItems", "lineItems and sections are only allowed on LINE_ITEMS invoices")
            lines = self._collect_lines(body)
            if not lines:
                raise invalid("lineItems", "at least one line item is required")
        if body.get("percentage") is not None:
            if is_lines:
                raise invalid("percentage", "percentage is only allowed on PERCENTAGE invoices")
            percentage = num_field(body, "percentage")
            assert percentage is not None
            if not 0 < percentage <= 100:
                raise invalid("percentage", "percentage must be greater than 0 and at most 100")
        description = opt_str(body, "description") if "description" in body else inv["description"]
        # all validated: apply atomically
        now = self.state.clock.tick()
        if lines is not None:
            inv["lineItems"] = (self._build_lines(lines, inv["lineItems"])
                                if self.assumptions.invoice_patch_replaces_lines
                                else self._merge_lines(lines, inv["lineItems"]))
            inv["amount"] = round(sum(li["quantity"] * li["unitPrice"] for li in inv["lineItems"]), 2)
        if percentage is not None:
            inv["percentage"] = percentage
            inv["amount"] = round((inv["baseAmount"] or 0.0) * percentage / 100.0, 2)
        if status is not None:
            inv["status"] = status
        if inv["status"] != "DRAFT" and (issue is not None or inv["issueDate"] is None):
            inv["issueDate"] = iso(issue if issue is not None else now)
        if due is not None:
            inv["dueDate"] = iso(due)
        inv["description"] = description
        inv["updatedAt"], inv["_u"] = iso(now), now
        self.state.touch("invoices")

    def _create_payment(self, inv: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        amount = num_field(body, "amount", required=True)
        assert amount is not None
        if amount <= 0:
            raise invalid("amount", "amount must be greater than 0")
        if body.get("paymentMethod") is None:
            raise invalid("paymentMethod", "paymentMethod is required")
        method = enum(body, "paymentMethod", PAYMENT_METHODS)
        assert method is not None
        date = date_field(body, "paymentDate", required=True)
        assert date is not None
        notes = opt_str(body, "notes")
        reference = opt_str(body, "paymentReference")
        balance = round(inv["amount"] - inv["amountPaid"], 2)
        if not self.allow_overpayment and round(amount, 2) > balance + 0.005:
            raise invalid("amount", f"amount {amount:.2f} exceeds the invoice balance {balance:.2f}")
        return self._insert_payment(inv, amount, method, date, reference, notes)

    def _restart_workflow(self, p: dict[str, Any], workflow_id: int) -> None:
        """Switching workflows starts the project over at the new workflow's first phase."""
        st = self.state
        wf = st.workflows[workflow_id]
        now = st.clock.tick()
        st.phase_instances[p["id"]] = [
            [st.next_id("phase_instance"), tid, "IN_PROGRESS" if i == 0 else "NOT_STARTED", now if i == 0 else None, None]
            for i, tid in enumerate(wf["_phases"])]
        p["workflowId"], p["workflowName"] = wf["id"], wf["name"]

    # --- admin helpers (Python) -----------------------------------------------------------------
    def _when(self, at: datetime | str | None) -> int | None:
        if at is None:
            return None
        return parse_iso(at if isinstance(at, str) else at.isoformat()) // 1000 * 1000

    def move_project_to_phase(self, project_id: int, phase: int | str) -> dict[str, Any]:
        """Simulate a user moving a project in the UI (the public API cannot).

        `phase` is a phase template id, or a phase name/type of the project's workflow (for a Workflows 1.0
        project also its `stage.id`). Forward: the current phase completes, skipped phases are recorded as
        completed, the target starts. Backward: the target restarts and later phases go back to NOT_STARTED.
        Bumps `updatedAt` (and `lastActivity`, `updatedBy`) unless `phase_change_bumps_updated_at` is off.
        """
        with self.lock:
            st = self.state
            p = st.projects.get(int(project_id))
            if p is None:
                raise not_found("Project", project_id)
            instances = st.phase_instances.get(p["id"]) or []
            target = None
            ids = ({int(phase)} if isinstance(phase, str) and phase.isdigit() else
                   {phase} if isinstance(phase, int) and not isinstance(phase, bool) else set())
            if p.get("_v1"):
                ids |= {i - STAGE_ID_OFFSET for i in ids}
            for idx, inst in enumerate(instances):
                tpl = st.phase_templates[inst[1]]
                if tpl["id"] in ids or (isinstance(phase, str) and _fold(phase) in (_fold(tpl["name"]),
                                                                                   _fold(tpl["type"]))):
                    target = idx
                    break
            if target is None:
                raise invalid("phase", f"phase {phase!r} is not in workflow {p['workflowName']!r} of project {p['id']}")
            current = next((i for i, inst in enumerate(instances) if inst[2] == "IN_PROGRESS"), None)
            if current == target:
                return self.project_out(p, detail=True)
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
            if self.assumptions.phase_change_bumps_updated_at:
                p["updatedAt"], p["_u"] = iso(now), now
                p["lastActivity"] = p["updatedAt"]
                p["updatedBy"] = self._user_ref()
            # cached list id orders depend on `_u` only; `phase` is rendered live, so lists show the move anyway
            st.touch("projects")
            return self.project_out(p, detail=True)

    def add_workflow(self, name: str, phases: list[Any], description: str | None = None) -> dict[str, Any]:
        """Create a workflow; phases are names or dicts {name, type?, redSla?, yellowSla?}."""
        with self.lock:
            return self.workflow_out(self._insert_workflow(name, phases, description))

    def add_account(self, title: str = "Test Account", *, address: str | list[str] = "1 Test St, Austin, TX 78701",
                    at: datetime | str | None = None, **fields: Any) -> dict[str, Any]:
        with self.lock:
            fields.update(title=title, address=[address] if isinstance(address, str) else address)
            return self.account_out(self._insert_account(fields, self._when(at)))

    def add_contact(self, name: str = "Test Contact", *, at: datetime | str | None = None,
                    **fields: Any) -> dict[str, Any]:
        with self.lock:
            fields["name"] = name
            return self.contact_out(self._insert_contact(fields, self._when(at)))

    def add_project(self, title: str = "Test Project", *, account_id: int | None = None,
                    workflow_id: int | None = None, workflow: str | None = None, phase: int | str | None = None,
                    address: str | list[str] = "1 Test St, Austin, TX 78701", at: datetime | str | None = None,
                    workflows_v1: bool = False, **fields: Any) -> dict[str, Any]:
        """Create a project (and an account, and a default workflow, if none given); optional start phase.

        `workflows_v1=True`: a Workflows 1.0 project (`stage` instead of `phase`), whatever the profile."""
        with self.lock:
            st = self.state
            if workflow is not None:
                workflow_id = next(w["id"] for w in st.workflows.values() if w["name"] == workflow)
            if workflow_id is None:
                if not st.workflows:
                    self._insert_workflow("Residential Solar", ["Sale", "Site Survey", "Design", "Permitting",
                                                                "Install", "Inspection", "PTO"])
                workflow_id = min(st.workflows)
            if account_id is None:
                account_id = self._insert_account({"title": title, "address": [address] if isinstance(address, str)
                                                   else address}, self._when(at))["id"]
            fields.update(title=title, address=[address] if isinstance(address, str) else address)
            p = self._insert_project(fields, account_id, workflow_id, self._when(at), workflows_v1=workflows_v1)
        if phase is not None:
            return self.move_project_to_phase(p["id"], phase)
        return self.project_out(p, detail=True)

    def add_catalog_item(self, name: str = "Test Item", *, type: str = "PRODUCT", category: str = "OTHER",  # noqa: A002
                         cost: float = 10.0, price: float = 20.0, **fields: Any) -> dict[str, Any]:
        with self.lock:
            fields.update(name=name, type=type, category=category, cost=cost, price=price)
            return public(self._insert_catalog_item(fields))

    def add_invoice(self, record_id: int, lines: list[dict[str, Any]] | None = None, *, status: str = "SENT",
                    issue_date: str | None = None, due_date: str | None = None, description: str | None = None,
                    at: datetime | str | None = None) -> dict[str, Any]:
        """Invoice on a project/account through the same validation as POST /invoices.

        `lines` default to one line of a (created on demand) catalog item; a line may omit catalogItemId.
        """
        with self.lock:
            body_lines = []
            for li in lines or [{"quantity": 1, "unitCost": 500.0, "unitPrice": 1000.0}]:
                li = dict(li)
                if "catalogItemId" not in li:
                    li["catalogItemId"] = self._insert_catalog_item(
                        {"name": li.pop("name", f"Item {len(self.state.catalog_items) + 1}"), "type": "SERVICE",
                         "category": "INSTALLATION", "cost": li["unitCost"], "price": li["unitPrice"]})["id"]
                li.pop("name", None)
                body_lines.append(li)
            at_us = self._when(at)
            body: dict[str, Any] = {"recordId": record_id, "calculationMethod": "LINE_ITEMS", "status": status,
                                    "lineItems": body_lines, "description": description, "dueDate": due_date,
                                    "issueDate": issue_date or (iso(at_us) if at_us else iso(self.state.clock.now_us()))}
            if at_us is not None:
                inv = self._create_invoice(body)
                inv["createdAt"] = inv["updatedAt"] = iso(at_us)
                inv["_u"] = at_us
            else:
                inv = self._create_invoice(body)
            return self.invoice_out(inv)

    def add_payment(self, invoice_id: int, amount: float | None = None, *, method: str = "ACH",
                    payment_date: str | None = None, reference: str | None = None,
                    notes: str | None = None) -> dict[str, Any]:
        """Payment through the same validation as POST /invoices/{id}/payments (default: the full balance)."""
        with self.lock:
            inv = self.state.invoices.get(invoice_id)
            if inv is None:
                raise not_found("Invoice", invoice_id)
            body = {"amount": amount if amount is not None else round(inv["amount"] - inv["amountPaid"], 2),
                    "paymentMethod": method, "paymentDate": payment_date or iso(self.state.clock.now_us()),
                    "paymentReference": reference, "notes": notes}
            return self.payment_out(self._create_payment(inv, body))

    def seed(self, projects: int = 50, seed: int = 42, **options: Any) -> dict[str, int]:
        """Deterministic demo data, see sandbox.seed.seed_coperniq."""
        from sandbox.seed import seed_coperniq

        return seed_coperniq(self, projects=projects, seed=seed, **options)

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return self.state.summary()

    # --- admin HTTP -----------------------------------------------------------------------------
    def _register_admin_routes(self) -> None:
        r = self.admin_routes.route

        @r("POST", "/__admin/projects/{projectId}/phase")
        def admin_move(req: Request) -> Response:
            body = json_body(req)
            if body.get("phase") is None:
                raise invalid("phase", "phase is required (template id or name)")
            return Response(200, self.move_project_to_phase(path_id(req, "projectId"), body["phase"]))

        @r("POST", "/__admin/seed")
        def admin_seed(req: Request) -> Response:
            body = json_body(req)
            return Response(200, self.seed(**body))

        @r("GET", "/__admin/state/summary")
        def admin_summary(req: Request) -> Response:
            return Response(200, self.state.summary())

        @r("POST", "/__admin/clock")
        def admin_clock(req: Request) -> Response:
            body = json_body(req)
            if body.get("set"):
                self.state.clock.set(body["set"])
            if body.get("advance"):
                self.state.clock.advance(float(body["advance"]))
            return Response(200, {"now": iso(self.state.clock.now_us())})

        @r("POST", "/__admin/profile")
        def admin_profile(req: Request) -> Response:
            body = json_body(req)
            self.assumptions = resolve(CoperniqAssumptions, body.pop("profile", None), **body)
            return Response(200, asdict(self.assumptions))

        @r("POST", "/__admin/rate-limit")
        def admin_rate_limit(req: Request) -> Response:
            body = json_body(req)
            self.set_rate_limits(body.get("per_second", self.rate_limit_per_second),
                                 body.get("per_day", self.rate_limit_per_day))
            self.limiter.reset()
            return Response(200, {"per_second": self.rate_limit_per_second, "per_day": self.rate_limit_per_day})

        makers: dict[str, Callable[..., dict[str, Any]]] = {
            "accounts": self.add_account, "contacts": self.add_contact, "projects": self.add_project,
            "catalog-items": self.add_catalog_item, "invoices": self.add_invoice, "workflows": self.add_workflow}
        for name, fn in makers.items():
            def make(req: Request, fn: Callable[..., dict[str, Any]] = fn) -> Response:
                return Response(201, fn(**json_body(req)))
            r("POST", f"/__admin/{name}")(make)

        @r("POST", "/__admin/invoices/{invoiceId}/payments")
        def admin_payment(req: Request) -> Response:
            return Response(201, self.add_payment(path_id(req, "invoiceId"), **json_body(req)))


# --- CLI -----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.coperniq", description="Coperniq API emulator")
    parser.add_argument("--host", default="127.0.0.1", help="loopback only")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default="sandbox-coperniq-key")
    parser.add_argument("--seed", type=int, default=None, help="seed demo data with this random seed")
    parser.add_argument("--projects", type=int, default=None, help="number of demo projects (default 50 with --seed)")
    parser.add_argument("--rate-limit-per-second", type=int, default=100)
    parser.add_argument("--rate-limit-per-day", type=int, default=5000)
    parser.add_argument("--profile", choices=PROFILES, default="optimistic",
                        help="API behaviours the docs leave open (sandbox/profiles.py); seeding follows it too")
    args = parser.parse_args(argv)
    app = CoperniqApp(api_key=args.api_key, rate_limit_per_second=args.rate_limit_per_second,
                      rate_limit_per_day=args.rate_limit_per_day, profile=args.profile)
    try:
        server = SandboxServer(app, args.host, args.port)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.seed is not None or args.projects is not None:
        app.seed(projects=args.projects if args.projects is not None else 50,
                 seed=args.seed if args.seed is not None else 42)
    print(f"Coperniq sandbox listening on {server.root_url}{API_PREFIX} (profile {args.profile}, "
          f"{json.dumps(app.summary())})", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
