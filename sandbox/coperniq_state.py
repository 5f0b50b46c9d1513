"""Coperniq sandbox ground floor: ids, the sandbox user, time, and the in-memory company data.

Why a module of its own: the app, its route modules and the seeder (sandbox/seed.py) all build on this state,
and none of them may import the app, so the dependency runs one way (sandbox.coperniq -> routes -> here).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sandbox._server import Handler
from sandbox.profiles import CoperniqAssumptions

API_PREFIX = "/v1"
PAGE_SIZE_DEFAULT = 20
PAGE_SIZE_MAX = 100
DAY_US = 86_400_000_000
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)

#: The user the sandbox API key belongs to (a key acts as the user who created it).
SANDBOX_USER: dict[str, Any] = {
    "id": 77,
    "firstName": "Sandbox",
    "lastName": "Admin",
    "email": "admin@sandbox.example",
    "avatarUrl": None,
}

#: `owner` of every project: the sandbox user, shared (never mutated) across 100k seeded records.
OWNER: dict[str, Any] = {
    "id": SANDBOX_USER["id"],
    "firstName": SANDBOX_USER["firstName"],
    "lastName": SANDBOX_USER["lastName"],
    "email": SANDBOX_USER["email"],
    "phone": None,
}

#: First id of each kind: distinct ranges so an id used with the wrong resource fails loudly.
START_IDS = {
    "account": 9001,
    "account_number": 401,
    "contact": 30001,
    "project": 48001,
    "project_number": 1001,
    "workflow": 301,
    "phase_template": 5001,
    "phase_instance": 900001,
    "invoice": 66001,
    "invoice_uid": 1001,
    "line_item": 880001,
    "payment": 51001,
    "catalog_item": 4201,
    "tax": 7001,
}

#: A Workflows 1.0 `stage.id` is this plus the phase template id the sandbox tracks it with: a 1.0 stage is not
#: a phase template (GET /workflows lists phases, not stages), so a client must not find it among `phases[].id`.
STAGE_ID_OFFSET = 2000
#: `stage.scope` of a project's stage (the spec types scope as a free string; 1.0 stages were per record kind).
STAGE_SCOPE = "PROJECT"


# --- time --------------------------------------------------------------------------------------
def iso(us: int) -> str:
    """Microseconds since epoch -> ISO 8601 UTC with milliseconds, e.g. 2025-06-10T18:22:41.123Z."""
    return (_EPOCH_UTC + timedelta(microseconds=us)).isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


def parse_iso(value: Any) -> int:
    """ISO 8601 (date or date-time, Z/offset/naive=UTC) -> microseconds since epoch; ValueError if bad."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("not a date-time string")
    text = value.strip()
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
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

    def latest_us(self) -> int:
        """Now as the stamps see it: `now_us()`, or the last tick when ticks ran ahead of a frozen clock."""
        with self._lock:
            return max(self.now_us(), self._last_us)

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
        self.taxes: dict[int, dict[str, Any]] = {}  # CompanyTax, GET /taxes
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
        return {
            "accounts": len(self.accounts),
            "contacts": len(self.contacts),
            "projects": len(self.projects),
            "workflows": len(self.workflows),
            "invoices": len(self.invoices),
            "payments": sum(len(v) for v in self.payments.values()),
            "catalog_items": len(self.catalog_items),
            "taxes": len(self.taxes),
            "phase_instances": sum(len(v) for v in self.phase_instances.values()),
        }


def public(rec: dict[str, Any]) -> dict[str, Any]:
    """Shallow copy without private keys: responses are encoded outside the lock."""
    return {k: v for k, v in rec.items() if k[0] != "_"}


class CoperniqHost(Protocol):
    """What the route modules and the seeder use of `CoperniqApp`, so they need not import it.

    Read through properties: the app replaces `state` on reset and `assumptions` on POST /__admin/profile, so
    handlers must look them up on every call instead of keeping a reference.
    """

    @property
    def state(self) -> CoperniqState: ...

    @property
    def assumptions(self) -> CoperniqAssumptions: ...

    @property
    def lock(self) -> AbstractContextManager[Any]: ...

    @property
    def allow_overpayment(self) -> bool: ...

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]: ...
