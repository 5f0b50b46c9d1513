"""Spending the Coperniq key's 5,000 calls a day well: which payment reads are worth a call, and when to stop.

The list endpoints cost one call per 100 rows; the calls that scale with data are `GET /invoices/{id}/payments`
(one per invoice) and `GET /projects/{id}` (phase history, one per project). So:
- `PaymentPlanner` reads payments only for paid invoices (`amountPaid > 0`) that changed this run and whose project
  can sync (it has reached its trigger phase, the same `trigger_phases` rule as the target). Paid invoices of
  projects that have not reached it are remembered in the state and read when the project gets there.
- `QuotaGovernor` keeps `daily_call_reserve` calls for the company's other integrations: from
  `X-RateLimit-Remaining` when Coperniq sends it, else from the tap's own count of its calls over 24 h (kept in the
  state). When the next call would dip into the reserve it raises `QuotaReached`; the streams stop cleanly and the
  next run resumes where this one stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

from sync_ledger.money import to_decimal
from sync_ledger.triggers import TriggerRule, parse_trigger_phases, resolve_rules, rule_for

#: Calls left for other integrations of the company, by default (a fifth of the documented 5,000/day).
DEFAULT_DAILY_CALL_RESERVE = 1000
#: Without X-RateLimit-* headers this is the daily budget the tap counts against.
DEFAULT_DAILY_CALL_LIMIT = 5000
#: Seconds between full project-list reads (sweeps): 10,000 projects = 100 pages, 6 sweeps a day = 600 calls.
DEFAULT_PHASE_SWEEP_INTERVAL = 4 * 3600
#: Paid invoices of not-yet-triggered projects remembered in the state; beyond this, payments are read at once
#: (more calls, never a lost payment).
MAX_DEFERRED = 50_000
#: X-RateLimit-Limit below this is a short window (Coperniq documents 100/s), not the daily cap.
MIN_DAILY_LIMIT = 1000
#: The pseudo-bookmark holding the tap's own hourly call counts ({"calls": {"YYYY-MM-DDTHH": n}}).
QUOTA_STATE_KEY = "_coperniq_api"
#: Payments state: the deferred invoices by project, packed into one string (`pack_deferred`). One string, not a
#: dict of up to 50,000 entries: the SDK deep-copies and re-serializes the whole state for every STATE message.
DEFERRED_KEY = "deferred_by_project"
#: The format before: {invoice: project}. Still read; replaced by DEFERRED_KEY at the first store.
LEGACY_DEFERRED_KEY = "deferred"


class QuotaReached(Exception):  # a stop signal, not an error
    """The next call would use calls kept for other integrations: stop cleanly, resume next run."""


def _hour(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H")


class QuotaGovernor:
    """Decides before every call whether the daily quota allows it; counts calls by hour into the state."""

    def __init__(
        self, *, reserve: int, daily_limit: int, counts: MutableMapping[str, Any], logger: logging.Logger
    ) -> None:
        self.reserve = max(0, reserve)
        self.daily_limit = daily_limit
        self.counts = counts  # {"YYYY-MM-DDTHH": calls}: a dict inside the tap state, written with every STATE
        self.logger = logger
        self.remaining_header: int | None = None
        self.stopped = False
        self._prune(datetime.now(UTC))

    def _prune(self, now: datetime) -> None:
        floor = _hour(now - timedelta(hours=24))
        for key in [k for k in self.counts if k <= floor]:
            del self.counts[key]

    @property
    def used_last_24h(self) -> int:
        return sum(int(v) for v in self.counts.values())

    @property
    def remaining(self) -> int | None:
        """Calls left today as far as we know: Coperniq's header when it sends one, else our own count (None:
        not counting, `daily_call_limit` 0)."""
        if self.remaining_header is not None:
            return self.remaining_header
        if self.daily_limit <= 0:
            return None
        return self.daily_limit - self.used_last_24h

    def before_call(self) -> None:
        if self.stopped:
            raise QuotaReached
        remaining = self.remaining
        if remaining is not None and remaining <= self.reserve:
            self.stopped = True
            source = (
                "X-RateLimit-Remaining"
                if self.remaining_header is not None
                else f"this tap's own count against daily_call_limit {self.daily_limit}"
            )
            self.logger.warning(
                "Coperniq daily quota reached: %d calls left (%s), %d kept for other integrations "
                "(daily_call_reserve); stopping cleanly, resuming next run",
                remaining,
                source,
                self.reserve,
            )
            raise QuotaReached

    def exhausted(self, why: str) -> None:
        """Coperniq itself says the day's calls are spent: stop like at the reserve."""
        self.stopped = True
        self.logger.warning("Coperniq daily quota reached: 0 calls left (%s); stopping cleanly, resuming next run", why)

    def after_call(self, remaining_header: int | None, limit_header: int | None = None) -> None:
        now = datetime.now(UTC)
        key = _hour(now)
        self.counts[key] = int(self.counts.get(key, 0)) + 1
        # ASSUMPTION: the headers describe the daily window when their limit looks daily. A server may report its
        # tightest window instead (100/s): such figures say nothing about the day, so they are ignored.
        if remaining_header is not None and (limit_header is None or limit_header >= MIN_DAILY_LIMIT):
            self.remaining_header = remaining_header


def _id_order(value: str) -> tuple[int, str]:
    return len(value), value  # numeric ids in numeric order


def _pack_id(value: str) -> str:
    return value if value.isdigit() else quote(value, safe="")  # Coperniq ids are numbers; anything else escaped


def _unpack_id(token: str) -> str:
    return unquote(token) if "%" in token else token


def pack_deferred(by_project: Mapping[str, Iterable[str]]) -> str:
    """`{project: invoices}` as `"project:invoice,invoice;project:invoice"` (sorted, so the same set packs the same)."""
    groups = []
    for pid in sorted(by_project, key=_id_order):
        invoices = sorted(by_project[pid], key=_id_order)
        if invoices:
            groups.append(f"{_pack_id(pid)}:{','.join(_pack_id(i) for i in invoices)}")
    return ";".join(groups)


def unpack_deferred_by_project(packed: str) -> dict[str, set[str]]:
    """The inverse of `pack_deferred`."""
    out: dict[str, set[str]] = {}
    for group in packed.split(";") if packed else ():
        pid, _, invoices = group.partition(":")
        tokens = invoices.split(",")
        if "%" in group:  # an escaped id (not a Coperniq number)
            pid, tokens = _unpack_id(pid), [_unpack_id(token) for token in tokens]
        out.setdefault(pid, set()).update(token for token in tokens if token)
    return out


def unpack_deferred(packed: str) -> dict[str, str]:
    """The inverse of `pack_deferred`, as {invoice: project}."""
    return {invoice: pid for pid, invoices in unpack_deferred_by_project(packed).items() for invoice in invoices}


def _paid(invoice: Mapping[str, Any]) -> bool | None:
    """amountPaid > 0; None when the invoice does not say (then its payments are read, to be safe)."""
    paid = to_decimal(invoice.get("amountPaid"))
    return None if paid is None else paid > 0


def nothing_paid(invoice: Mapping[str, Any]) -> bool:
    """amountPaid says exactly 0 (a credit's may be below 0): the invoice's payment list is empty, known without a
    call (the payment_sets stream and the invoice sweep's unpaidIds)."""
    return to_decimal(invoice.get("amountPaid")) == 0


def edited_since_created(invoice: Mapping[str, Any]) -> bool:
    """`updatedAt` after `createdAt` (True when either is missing or unreadable: then its payments are read)."""
    try:
        created = datetime.fromisoformat(str(invoice["createdAt"]))
        updated = datetime.fromisoformat(str(invoice["updatedAt"]))
    except (KeyError, TypeError, ValueError):
        return True
    return updated > created


class PaymentPlanner:
    """Which invoices' payments to read this run. State (a dict in the tap state): `deferred_by_project` (packed,
    `pack_deferred`; `deferred` {invoice: project} before) for paid invoices of projects that have not reached
    their trigger phase, `queued` [invoice] chosen but not read yet (a quota stop between the invoices and payments
    streams must not lose them). `queued` is the state's own list; the deferred invoices are written into the state
    by `store`, which the tap calls before every STATE message."""

    SYNCS, WAITING, NEVER = "syncs", "waiting", "never"

    def __init__(self, config: Mapping[str, Any], state: MutableMapping[str, Any], *, first_run: bool) -> None:
        self.specs, self.errors = parse_trigger_phases(config.get("trigger_phases"))
        self.backfill = bool(config.get("backfill", False))
        self.first_run = first_run
        self._state = state
        self._dirty = not isinstance(state.get(DEFERRED_KEY), str) or LEGACY_DEFERRED_KEY in state
        self._deferred: dict[str, str] | None = None  # unpacked on first use: a quiet run never needs them
        self._by_project: dict[str, set[str]] = {}
        self.queued: list[str] = state.setdefault("queued", [])
        self._queued_set = set(self.queued)
        self._workflows: list[Mapping[str, Any]] = []
        self._rules: list[TriggerRule] | None = None
        self.projects: dict[str, str] = {}  # project id -> SYNCS / WAITING / NEVER, for projects read this run
        self.skipped_unpaid = 0
        self.unpaid_read = 0
        self.skipped_not_syncing = 0
        #: this run's full payment-id list of each invoice whose payments were read (PaymentSetsStream)
        self.listed: dict[str, list[str]] = {}
        #: invoices read this run that show nothing paid (their list is empty, known without a call); not kept on
        #: a first run, where nothing was pushed that could have gone
        self.unpaid: list[str] = []

    @property
    def deferred(self) -> dict[str, str]:
        """{invoice: project} of the deferred invoices."""
        if self._deferred is None:
            self._deferred = self._load_deferred()
        return self._deferred

    @property
    def _deferred_by_project(self) -> dict[str, set[str]]:
        """The same, by project (a sweep sees every project)."""
        _ = self.deferred
        return self._by_project

    def _load_deferred(self) -> dict[str, str]:
        packed, legacy = self._state.get(DEFERRED_KEY), self._state.get(LEGACY_DEFERRED_KEY)
        if isinstance(packed, str):  # beside it an old `deferred` is a leftover (a state merged into an older one)
            self._by_project = unpack_deferred_by_project(packed)
        elif isinstance(legacy, Mapping):  # an older tap's state (kept there until the first store)
            for invoice_id, pid in legacy.items():
                self._by_project.setdefault(str(pid), set()).add(str(invoice_id))
        return {invoice: pid for pid, invoices in self._by_project.items() for invoice in invoices}

    @property
    def filtering(self) -> bool:
        """Payments are filtered by trigger only when the tap knows the triggers."""
        return bool(self.specs)

    def add_workflow(self, workflow: Mapping[str, Any]) -> None:
        self._workflows.append(workflow)
        self._rules = None

    def rules(self) -> list[TriggerRule]:
        if self._rules is None:
            self._rules, _ = resolve_rules(self.specs, self._workflows)
        return self._rules

    def project_reached(self, project: Mapping[str, Any]) -> bool:
        """Has it reached its trigger phase? (Without configured triggers every project counts.)"""
        if not self.filtering:
            return True
        rule = rule_for(self.rules(), project)
        return rule is not None and rule.project_reached(project)

    def see_project(self, project: Mapping[str, Any]) -> bool:
        """Record a project read this run; a project now at/past its trigger releases its deferred invoices."""
        pid = str(project.get("id"))
        reached = self.project_reached(project)
        if not reached:
            self.projects[pid] = self.WAITING
        elif self.first_run and not self.backfill and self.filtering:
            # Backfill off: at/past its trigger when the sync starts, so it never syncs; its payments are noise.
            self.projects[pid] = self.NEVER
        else:
            self.projects[pid] = self.SYNCS
            for invoice_id in sorted(self._deferred_by_project.pop(pid, ())):
                self.deferred.pop(invoice_id, None)
                self._dirty = True
                self._queue(invoice_id)
        return reached

    def _undefer(self, invoice_id: str) -> None:
        pid = self.deferred.pop(invoice_id, None)
        if pid is not None:
            self._dirty = True
            self._deferred_by_project.get(pid, set()).discard(invoice_id)

    def see_invoice(self, invoice: Mapping[str, Any]) -> None:
        """An invoice read this run (it changed): queue, defer or skip its payments read."""
        invoice_id = str(invoice.get("id"))
        record = invoice.get("record") or {}
        pid = None if record.get("id") is None else str(record.get("id"))
        status = self.projects.get(pid) if self.filtering and pid is not None else self.SYNCS
        if _paid(invoice) is False:
            self._undefer(invoice_id)
            if not self.first_run and nothing_paid(invoice):
                self.unpaid.append(invoice_id)
                if edited_since_created(invoice) and status != self.NEVER:
                    # A payment refunded or voided in Coperniq may no longer count in amountPaid yet still be listed
                    # with its new status: read, or the empty set would take it for a delete (ASSUMPTIONS 2).
                    self.unpaid_read += 1
                    self._queue(invoice_id)
                    return
            self.skipped_unpaid += 1
            return
        if status == self.NEVER:
            self.skipped_not_syncing += 1
        elif status == self.WAITING and len(self.deferred) < MAX_DEFERRED:
            self._undefer(invoice_id)  # it may have moved to another project
            self.deferred[invoice_id] = str(pid)
            self._deferred_by_project.setdefault(str(pid), set()).add(invoice_id)
            self._dirty = True
            self.skipped_not_syncing += 1
        else:
            # Syncs, or its project was not read this run (it may well be synced): read. Costs, never loses.
            self._undefer(invoice_id)
            self._queue(invoice_id)

    def _queue(self, invoice_id: str) -> None:
        if invoice_id not in self._queued_set:
            self._queued_set.add(invoice_id)
            self.queued.append(invoice_id)

    def store(self) -> None:
        """Write the deferred invoices into the state (packed) if they changed since the last store."""
        if not self._dirty:
            return
        self._state[DEFERRED_KEY] = pack_deferred(self._deferred_by_project)
        self._state.pop(LEGACY_DEFERRED_KEY, None)
        self._dirty = False

    def keep_queued(self, remaining: list[str]) -> None:
        """After the payments stream: what is still to read (a quota stop) stays in the state for the next run."""
        self.queued[:] = remaining
        self._queued_set = set(remaining)
