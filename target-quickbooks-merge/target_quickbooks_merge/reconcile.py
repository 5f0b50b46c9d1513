"""The forward-leg reconcile pass: staged Coperniq snapshot -> QuickBooks (through Merge), in dependency order.

Why a separate pass instead of writing from the sinks: records arrive in any order and across runs (phase instances
before projects, an invoice in a run where its project is absent), and the trigger decision needs several streams.
Sinks only stage; this pass runs once at the end of the input over everything pending, failed or waiting.

Order: projects (trigger -> customer -> job) -> remaining accounts (updates of synced clients) -> invoices -> payments.
Every create is wrapped in a write-ahead intent and carries a deterministic Idempotency-Key, so a crash between the
API call and the ledger commit is recovered next run by a natural-key lookup instead of a duplicate.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from sync_ledger import ApiError, Ledger, Link, fingerprint
from sync_ledger.util import PAYMENT_DATE_SLACK, closest_by_day, day_of
from sync_ledger.triggers import current_phase

from .mapping import (
    conflicting_contact,
    customer_payload,
    describe_patch,
    invoice_fingerprint,
    invoice_number,
    diff_for_strategy,
    invoice_line,
    invoice_payload,
    job_contact_patch,
    job_payload,
    name_candidates,
    normalize_email,
    normalize_name,
    payment_payload,
    render_name,
    with_clears,
)
from .merge_client import MergeClient, WriteError, WriteResult
from .settings import Settings, parse_dt
from .triggers import SNAPSHOT_STREAM, TriggerIndex, TriggerRule, first_reached_seen, observe

SRC = "coperniq"
QBO = "quickbooks"
DIRECTION = "forward"
IDEMPOTENCY_NS = uuid.UUID("6f1c2a7e-6a57-4f0e-9d0c-2b8f5f4d9a11")
SKIP_PAYMENT_STATUSES = {"FAILED", "DECLINED", "CANCELLED", "CANCELED", "VOIDED", "REFUNDED", "PENDING"}


class Wait(Exception):
    """The record depends on something not synced/visible yet; retried on the next run (logged as skipped)."""


class RowFailure(Exception):
    """A record that cannot be synced as it stands (bad data, missing mapping, QuickBooks refused it)."""

    def __init__(self, reason: str, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request_id = request_id


class Disconnected(Exception):
    """Merge says the linked account is gone (401/404): stop the run, the operator must reconnect."""


class ConfigRefused(Exception):
    """The configuration cannot sync anything (no trigger matches a workflow or phase): stop before writing."""


class Unreachable(Exception):
    """Merge kept failing to answer (connection errors, 5xx after retries) for `unreachable_timeout` seconds."""


@dataclass
class PlanRow:
    stream: str
    source_id: str
    action: str
    name: str
    reason: str


@dataclass
class Result:
    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    plan: list[PlanRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(c["failed"] for c in self.counts.values())


def _definitely_not_created(exc: BaseException) -> bool:
    """A 4xx refusal means the create did not happen; a 5xx, a timeout or a 409/429 may hide one that did, and so
    may a 4xx answering a retry of an attempt that got a 5xx or no answer (`ambiguous`)."""
    status = getattr(exc, "status", None)
    return isinstance(exc, (WriteError, ApiError)) and isinstance(status, int) and 400 <= status < 500 \
        and status not in (408, 409, 429) and not getattr(exc, "ambiguous", True)


def written_note(write: WriteResult) -> str:
    """What the log adds to a create's reason: how it was confirmed, and what Merge warned about."""
    note = "; the answer was lost, found by its natural key (no duplicate)" if write.recovered else ""
    if write.warnings:
        note += "; Merge warned: " + "; ".join(write.warnings)
    return note


#: Names tried when matching: the base name and the first suffixed names this sync picks on a collision.
OWN_NAME_TRIES = 6
def remote_id_of(model: Mapping[str, Any]) -> str | None:
    """The QuickBooks Id of a Merge model (None until Merge knows it)."""
    return str(model["remote_id"]) if model.get("remote_id") else None


def idempotency_key(kind: str, source_id: str, fp: str) -> str:
    """Same record + same payload -> same key, so Merge replays instead of creating twice."""
    return str(uuid.uuid5(IDEMPOTENCY_NS, f"{kind}:{source_id}:{fp}"))


@dataclass
class _ContactIndex:
    """Existing QBO customers/jobs (Merge Contacts), indexed for matching and collision checks."""

    by_name: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, contact: dict[str, Any]) -> None:
        if contact.get("id"):
            self.by_id[str(contact["id"])] = contact
        key = normalize_name(contact.get("name"))
        if key:
            self.by_name[key].append(contact)


#: Links are written to the ledger in batches of this size (or after this many seconds), see _save_links.
LINK_BATCH = 200
LINK_BATCH_SECONDS = 2.0
#: Creates (customers, jobs, invoices, payments) are planned in batches of this size: one commit makes all their
#: intents durable, then they are sent max_parallel_writes at a time (see _flush_creates).
WRITE_BATCH = 50


@dataclass
class _PlannedCreate:
    """A create decided on the main thread; only `send` (the HTTP call) runs on a worker thread."""

    stream: str
    source_id: str
    intent_key: str
    intent: dict[str, Any]
    send: Callable[[], Any]
    finish: Callable[[Any], None]
    on_error: Callable[[Exception], None] | None = None  # default: the record fails with the error


class Reconciler:
    """One reconcile pass. Construct per run; call run()."""

    def __init__(self, ledger: Ledger, client: MergeClient, settings: Settings, run_id: str, *,
                 logger: logging.Logger, first_run_at: datetime | None = None,
                 run_started_at: datetime | None = None) -> None:
        self.ledger = ledger
        self.client = client
        self.s = settings
        self.run_id = run_id
        self.log = logger
        self.dry = settings.dry_run
        self.first_run_at = first_run_at
        self.run_started_at = run_started_at
        self._snapshots: dict[str, dict[str, Any]] = {}
        self.result = Result()
        self.links: dict[tuple[str, str], Link] = {}
        self.linked_targets: set[str] = set()
        self.leftover_intents: dict[str, dict[str, Any]] = {}
        self._contacts: _ContactIndex | None = None
        self._items: dict[str, str] | None = None
        self._deposit_account: str | None = None
        self._resolved_jobs: dict[str, str | None] = {}
        self._done_accounts: set[str] = set()
        self._progress_at = time.monotonic()
        self._started = time.monotonic()
        self._processed = 0
        self._dry_seq = 0
        self._unsaved: dict[tuple[str, str], Link] = {}
        self._unsaved_intents: list[str] = []
        self._unsaved_marks: list[tuple[str, str, str, str | None]] = []
        self._saved_at = time.monotonic()
        self._planned: list[_PlannedCreate] = []
        self._pool: ThreadPoolExecutor | None = None
        self._invoice_pages: Iterator[dict[str, Any]] | None = None
        self._invoices_by_number: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._invoice_list_complete = False
        self._invoice_list_broken = False
        self._pending_customers: set[str] = set()
        self._unreachable_since: float | None = None
        self._customer_failures: dict[str, Exception] = {}

    # ================================================================== driver
    def run(self) -> Result:
        for link in self.ledger.links(SRC):
            if link.target_system == QBO:
                self.links[(link.source_type, link.source_id)] = link
                if link.target_id:
                    self.linked_targets.add(link.target_id)
        self.leftover_intents = dict(self.ledger.pending_intents("forward:"))
        if self.leftover_intents:
            self.log.warning("Found %d write intent(s) left by an interrupted run; they will be checked against "
                             "QuickBooks before anything is created again.", len(self.leftover_intents))

        triggers = self._build_triggers()
        try:
            self._sync_projects(triggers)
            self._sync_accounts()
            self._sync_invoices()
            self._sync_payments()
        finally:
            self._save_links()
            if self._pool is not None:
                self._pool.shutdown(wait=True)
        for rule in triggers.rules:
            if not triggers.reached_any(rule) and not self._rule_has_synced_project(rule):
                self._warn(f"No project of workflow {rule.spec.workflow!r} has reached phase "
                           f"{rule.phase_label or rule.spec.phase!r} (trigger_phases); nothing of it synced yet.")
        self.ledger.flush()
        return self.result

    # ================================================================== helpers
    def _warn(self, message: str) -> None:
        self.result.warnings.append(message)
        self.log.warning("WARNING: %s", message)

    def _progress(self, stream: str) -> None:
        self._processed += 1
        now = time.monotonic()
        if now - self._progress_at >= self.s.progress_interval:
            self._progress_at = now
            elapsed = max(now - self._started, 1e-6)
            calls = sum(self.client.api.calls.values())
            self.log.info("progress: %s, %d records reconciled (%.0f/s), %d API calls (%.0f/min), %d retries",
                          stream, self._processed, self._processed / elapsed, calls, calls * 60 / elapsed,
                          self.client.api.retries)

    def _record(self, stream: str, source_id: str | None, action: str, reason: str = "", *,
                target_id: str | None = None, request_id: str | None = None, name: str = "",
                write: WriteResult | None = None) -> None:
        """Count + integration log (+ plan row in dry run, where writes are logged as `planned`). `write`: the
        create's answer, whose notes join the reason (a lost answer recovered, Merge's warnings)."""
        if write is not None:
            reason += written_note(write)
            request_id = request_id or write.request_id
        self.result.counts[stream][action] += 1
        logged_action = action
        if self.dry and action in {"created", "updated", "linked"}:
            self.result.plan.append(PlanRow(stream, str(source_id), action, name, reason))
            logged_action = "planned"
            reason = f"would be {action}: {reason}" if reason else f"would be {action}"
        elif self.dry and action in {"skipped", "failed"}:
            self.result.plan.append(PlanRow(stream, str(source_id), action, name, reason))
        # One line per record only at DEBUG (the integration log has them all); failures are events worth a line.
        level = logging.WARNING if action == "failed" else logging.DEBUG
        self.log.log(level, "%s %s %s%s", stream, source_id, logged_action, f": {reason}" if reason else "")
        self.ledger.log(self.run_id, direction=DIRECTION, stream=stream, source_id=source_id,
                        action=logged_action, reason=reason, target_id=target_id, request_id=request_id)

    def _mark(self, stream: str, source_id: str, status: str, error: str | None = None) -> None:
        """A status is written only after the links queued before it: a row must never be `done` in the ledger
        while its link is not (after a crash, the re-run would skip it and never recover the link)."""
        if self.dry:
            return
        if self._unsaved or self._unsaved_intents:
            self._unsaved_marks.append((stream, source_id, status, error))
        else:
            self.ledger.mark_staged(SRC, stream, source_id, status, error)

    def _save_link(self, link: Link) -> None:
        self.links[(link.source_type, link.source_id)] = link
        if link.target_id:
            self.linked_targets.add(link.target_id)
        if not self.dry:
            self._queue_link(link)

    def _queue_link(self, link: Link, intent_key: str | None = None) -> None:
        self._unsaved[(link.source_type, link.source_id)] = link
        if intent_key:
            self._unsaved_intents.append(intent_key)
        if len(self._unsaved) >= LINK_BATCH or time.monotonic() - self._saved_at > LINK_BATCH_SECONDS:
            self._save_links()

    def _save_links(self) -> None:
        """Write queued links and clear their intents in one ledger transaction (a DuckDB commit costs ~5 ms, one
        per record dominated big runs). Safe because each create's intent was made durable *before* the API
        call: after a crash the next run finds those records by natural key (or Merge replays the
        Idempotency-Key) instead of creating them again."""
        if self._unsaved or self._unsaved_intents:
            with self.ledger.transaction():
                if self._unsaved:
                    self.ledger.upsert_links(list(self._unsaved.values()))
                self.ledger.end_intents(self._unsaved_intents)
        self._unsaved.clear()
        self._unsaved_intents.clear()
        for stream, source_id, status, error in self._unsaved_marks:
            self.ledger.mark_staged(SRC, stream, source_id, status, error)
        self._unsaved_marks.clear()
        self._saved_at = time.monotonic()

    def _fake_id(self, kind: str) -> str:
        self._dry_seq += 1
        return f"dry-run-{kind}-{self._dry_seq}"

    def _end(self, key: str) -> None:
        """Clear an intent together with the next batch of links (never before the link it protects)."""
        self.leftover_intents.pop(key, None)
        if not self.dry:
            self._unsaved_intents.append(key)

    def _commit_create(self, link: Link, intent_key: str) -> None:
        """Link + intent clear (batched by _save_links): after that the create can never be repeated."""
        self.links[(link.source_type, link.source_id)] = link
        if link.target_id:
            self.linked_targets.add(link.target_id)
        if self.dry:
            return
        self.leftover_intents.pop(intent_key, None)
        self._queue_link(link, intent_key)

    def _create_model(self, kind: str, source_id: str, desired: dict[str, Any], fp: str, intent_key: str,
                      intent: Mapping[str, Any] | None, done: Callable[[Link, WriteResult], None],
                      find: Callable[[], dict[str, Any] | None]) -> None:
        """Plan one Merge invoice/payment create under a durable intent and a deterministic Idempotency-Key, so
        neither a retry nor a crash can create it twice; `find` (its natural-key lookup) covers a lost answer when
        Merge does not honour the key. It is sent with its batch (_flush_creates); `done` then logs it, after its
        link is queued for the ledger."""
        ikey = idempotency_key(kind, source_id, fp)

        def send() -> WriteResult:
            if self.dry:  # dry runs send nothing and run on this thread
                return WriteResult({"id": self._fake_id(kind)})
            return self.client.create(f"{kind}s", desired, idempotency_key=ikey, find_existing=find)

        def finish(res: WriteResult) -> None:
            link = Link(SRC, kind, source_id, QBO, kind, str(res.model["id"]), remote_id_of(res.model), fp,
                        origin=SRC)
            self._commit_create(link, intent_key)
            done(link, res)

        self._plan(_PlannedCreate(f"{kind}s", source_id, intent_key,  # stream = Merge model path: invoices, payments
                                  {"kind": kind, **(intent or {}), "idempotency_key": ikey}, send, finish))

    def _plan(self, create: _PlannedCreate, *, durable_now: bool = False) -> None:
        """Queue a create for the next batch (sent when WRITE_BATCH are planned, or at the end of a stage).
        `durable_now`: a create planned again under a new DisplayName rewrites its intent at once, so a crash before
        the next batch can never leave the old name (held by an unrelated record) to be "recovered"."""
        if create.intent_key in self._unsaved_intents:  # planned again (next DisplayName): keep the new intent
            self._unsaved_intents.remove(create.intent_key)
        if durable_now and not self.dry:
            self.ledger.begin_intent(create.intent_key, create.intent)
        self._planned.append(create)
        if len(self._planned) >= WRITE_BATCH:
            self._flush_creates()

    def _flush_all(self) -> None:
        """Send everything planned, including creates planned again while applying a batch (name collisions)."""
        while self._planned:
            self._flush_creates()

    def _flush_creates(self) -> None:
        """Send the planned creates: all their intents in one commit first (each durable before its API call), then
        the calls, max_parallel_writes at a time; results are applied on this thread in plan order."""
        batch, self._planned = self._planned, []
        if not batch:
            return
        if not self.dry:
            self.ledger.begin_intents((p.intent_key, p.intent) for p in batch)

        def attempt(p: _PlannedCreate) -> tuple[Any, Exception | None]:
            try:
                return p.send(), None
            except Exception as exc:  # re-raised on the main thread, inside _guard
                return None, exc

        workers = 1 if self.dry else self.s.max_parallel_writes
        if workers > 1 and len(batch) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="merge-write")
            outcomes = list(self._pool.map(attempt, batch))
        else:
            outcomes = [attempt(p) for p in batch]
        stopped: Exception | None = None
        for p, (sent, exc) in zip(batch, outcomes):
            if stopped is not None and exc is not None:
                continue  # the run stops: only the creates that went through are still applied (links saved)

            def apply(p: _PlannedCreate = p, sent: Any = sent, exc: Exception | None = exc) -> None:
                if exc is None:
                    p.finish(sent)
                    return
                if _definitely_not_created(exc):
                    self._end(p.intent_key)  # refused: nothing to recover next run (kept after a 5xx/timeout)
                if p.on_error is not None:
                    p.on_error(exc)
                else:
                    raise exc
            try:
                self._guard(p.stream, p.source_id, apply, count=False)
            except Exception as exc:  # Disconnected or a bug: stop after applying what was created
                if stopped is None:
                    stopped = exc
                else:
                    self.log.error("Also while applying a batch: %s", exc)
        if stopped is not None:
            raise stopped

    def _guard(self, stream: str, source_id: str, fn: Callable[[], None], status: str = "pending", *,
               count: bool = True) -> None:
        """Run one record; turn its failure into a failed/skipped row so the run continues."""
        try:
            fn()
            self._unreachable_since = None
        except Wait as exc:
            if status == "skipped":
                return  # still waiting for the same thing: no new log line every run
            self._record(stream, source_id, "skipped", str(exc))
            self._mark(stream, source_id, "skipped", str(exc))
        except (RowFailure, WriteError) as exc:
            if isinstance(exc, WriteError) and exc.disconnected:
                raise Disconnected(exc.detail) from exc
            reason = exc.reason if isinstance(exc, RowFailure) else f"QuickBooks/Merge refused: {exc.detail}"
            rid = exc.request_id
            self._record(stream, source_id, "failed", reason, request_id=rid)
            self._mark(stream, source_id, "failed", reason)
        except ApiError as exc:
            if exc.status in (401, 403):
                raise Disconnected(exc.message) from exc
            self._check_reachable(exc)
            reason = f"Merge API error: {exc.message}"
            self._record(stream, source_id, "failed", reason, request_id=exc.request_id)
            self._mark(stream, source_id, "failed", reason)
        finally:
            if count:
                self._progress(stream)

    def _check_reachable(self, exc: ApiError) -> None:
        """Rows failing because Merge does not answer (no response, or 5xx after the client's retries) fail the
        run once that has lasted `unreachable_timeout` seconds: grinding through every record helps nobody."""
        if exc.status not in (0, 502, 503, 504) and exc.status < 500:
            self._unreachable_since = None
            return
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = now
        elif now - self._unreachable_since >= self.s.unreachable_timeout:
            raise Unreachable(f"Merge at {self.s.base_url} has not answered for {now - self._unreachable_since:.0f} s "
                              f"(unreachable_timeout): last error {exc.message}. The run stopped; its failed rows "
                              "are retried next run.") from exc

    # ================================================================== triggers
    def _build_triggers(self) -> TriggerIndex:
        workflows = [p for _, p, _, _ in self.ledger.iter_staged(SRC, "workflows")]
        triggers = TriggerIndex.build(self.s.trigger_phases, workflows)
        if workflows and triggers.rules and not any(rule.resolved for rule in triggers.rules):
            raise ConfigRefused("trigger_phases matches no phase of any Coperniq workflow, so nothing can sync: "
                                + "; ".join(triggers.warnings) + ". Fix the names or ids (run `coperniq-qbo doctor`).")
        for message in triggers.warnings:
            self._warn(message)
        if triggers.rules:
            for _, instance, _, _ in self.ledger.iter_staged(SRC, "project_phase_instances"):
                triggers.add_instance(instance)
        return triggers

    def _rule_has_synced_project(self, rule: TriggerRule) -> bool:
        """Projects synced in earlier runs also count as "entered" (they are no longer re-evaluated)."""
        for (source_type, source_id) in self.links:
            if source_type == "project":
                project = self.ledger.staged(SRC, "projects", source_id)
                if project is not None and rule.matches_project(project):
                    return True
        return False

    def _threshold(self) -> datetime | None:
        if self.s.backfill:
            return None
        if self.s.trigger_since:
            return self.s.trigger_since
        if self.first_run_at is not None:
            return self.first_run_at
        first = self.ledger.get_meta("first_run_at")
        return parse_dt(first) if first else None

    # ================================================================== projects -> customer + job
    def _observe_phases(self, triggers: TriggerIndex) -> dict[str, dict[str, Any]]:
        """Snapshot every unlinked project's current phase before anything is written: with backfill off, a project
        already at/past its trigger phase when first seen by the first run was there before the sync was enabled.
        Saved first, so a crash later in the run cannot make the next run take those projects for new arrivals."""
        snapshots = {pid: snap for pid, snap, _, _ in self.ledger.iter_staged(SRC, SNAPSHOT_STREAM)}
        if not triggers.rules or self.s.backfill:
            return snapshots
        seen_at = (self.run_started_at or datetime.now(timezone.utc)).isoformat().replace("+00:00", "Z")
        changed: list[tuple[str, dict[str, Any]]] = []
        for pid, project, _, _ in self.ledger.iter_staged(SRC, "projects", status=("pending", "failed", "skipped")):
            if ("project", pid) in self.links or "__invalid__" in project:
                continue
            new = observe(snapshots.get(pid), project, seen_at)
            if new is not None:
                snapshots[pid] = new
                changed.append((pid, new))
        if changed and not self.dry:
            self.ledger.stage(SRC, SNAPSHOT_STREAM, changed)
            self.ledger.flush()
        return snapshots

    def _sync_projects(self, triggers: TriggerIndex) -> None:
        """Projects go in chunks: first the customers the chunk needs (creates sent together), then its jobs."""
        threshold = self._threshold()
        self._snapshots = self._observe_phases(triggers)
        statuses = ("pending", "failed", "skipped")
        chunk: list[tuple[str, Mapping[str, Any], str]] = []
        for pid, project, status, _ in self.ledger.iter_staged(SRC, "projects", status=statuses):
            if "__invalid__" in project:
                continue
            self._guard("projects", pid,
                        lambda: self._project_customer(pid, project, status, triggers, threshold, chunk), status)
            if len(chunk) >= WRITE_BATCH:
                self._project_jobs(chunk)
                chunk = []
        self._project_jobs(chunk)

    def _project_customer(self, pid: str, project: Mapping[str, Any], status: str, triggers: TriggerIndex,
                          threshold: datetime | None, chunk: list[tuple[str, Mapping[str, Any], str]]) -> None:
        """Stage 1 of a project: is it triggered, and its customer (a create is only planned here)."""
        link = self.links.get(("project", pid))
        if link is None:
            rule = triggers.rule_for(project)
            reason = self._not_triggered_reason(project, rule, triggers, threshold)
            if reason:
                if status != "skipped":  # log a skip once per version of the record, not every run
                    self._record("projects", pid, "skipped", reason, name=str(project.get("title") or ""))
                    self._mark("projects", pid, "skipped", reason)
                return
        account_id = project.get("accountId")
        if account_id in (None, ""):
            raise RowFailure("project has no accountId (client); QuickBooks jobs need a parent customer")
        self._ensure_customer(str(account_id))
        chunk.append((pid, project, status))

    def _project_jobs(self, chunk: list[tuple[str, Mapping[str, Any], str]]) -> None:
        """Stage 2: send the chunk's planned customers, then plan and send its jobs."""
        self._flush_all()
        for pid, project, status in chunk:
            self._guard("projects", pid, lambda: self._project_job(pid, project), status, count=False)
        self._flush_all()

    def _project_job(self, pid: str, project: Mapping[str, Any]) -> None:
        account_id = str(project.get("accountId"))
        failure = self._customer_failures.get(account_id)
        if failure is not None:
            raise failure  # its customer could not be created: the project fails with that reason
        customer = self.links.get(("account", account_id))
        if customer is None:
            raise Wait(f"client (account {account_id}) is not synced to QuickBooks yet")
        if self._ensure_job(pid, project, customer) is not None:
            self._mark("projects", pid, "done")  # else a create is planned; it marks the project when done

    def _not_triggered_reason(self, project: Mapping[str, Any], rule: TriggerRule | None, triggers: TriggerIndex,
                              threshold: datetime | None) -> str | None:
        wf = project.get("workflowName") or project.get("workflowId")
        if not triggers.rules:
            return "no trigger_phases configured"
        if rule is None:
            return f"workflow {wf!r} has no trigger phase configured"
        label = rule.phase_label or str(rule.spec.phase)
        if not rule.project_reached(project):
            phase, _, _ = current_phase(project)
            return (f"has not reached trigger phase {label!r} of workflow {wf!r} "
                    f"(current phase: {phase.get('name') or 'none'})")
        triggers.count_reached(rule)
        if project.get("isActive") is False:
            return f"archived in Coperniq (at/past {label}); archived projects are not synced"
        if threshold is None:
            return None  # backfill
        entered = triggers.history_entered_at(project, rule)
        if entered is not None:
            if entered < threshold:
                return (f"entered {label} before the sync was enabled (set backfill: true); entered "
                        f"{entered:%Y-%m-%d %H:%M}Z, enabled {threshold:%Y-%m-%d %H:%M}Z")
            return None
        seen = first_reached_seen(self._snapshots.get(str(project.get("id"))), project, rule)
        # Seen there by the first run: it may have been there for years (trigger_since earlier than the first run
        # needs the phase history to tell), so only a later sighting counts.
        cutoff = max(threshold, self.first_run_at) if self.first_run_at is not None else threshold
        if seen is None or seen <= cutoff:
            return (f"already at/past {label} when the sync was enabled ({threshold:%Y-%m-%d %H:%M}Z; "
                    "set backfill: true to sync it)")
        return None

    # ---------------------------------------------------------------- customers
    def _contact_index(self) -> _ContactIndex:
        """All Merge Contacts, fetched once per run and only when a match/collision check needs them."""
        if self._contacts is None:
            index = _ContactIndex()
            for contact in self.client.iter_list("/contacts", {"expand": "addresses,phone_numbers"}):
                if not contact.get("remote_was_deleted"):
                    index.add(contact)
            self._contacts = index
            self.log.info("Prefetched %d QuickBooks contacts for matching", len(index.by_id))
        return self._contacts

    def _stored_name(self, kind: str, source_id: str, base: str) -> str:
        """The DisplayName we chose earlier (a suffixed one after a collision), if the base is unchanged."""
        raw = self.ledger.get_meta(f"qbo_name:{kind}:{source_id}")
        if raw:
            data = json.loads(raw)
            if data.get("base") == base:
                return str(data["name"])
        return base

    def _remember_name(self, kind: str, source_id: str, base: str, name: str) -> None:
        if self.dry:
            return
        key = f"qbo_name:{kind}:{source_id}"
        if name != base:
            self.ledger.set_meta(key, json.dumps({"base": base, "name": name}))
        elif self.ledger.get_meta(key):
            self.ledger.set_meta(key, None)

    def _ensure_customer(self, account_id: str) -> Link | None:
        """The account's customer link; None when its create is planned (sent with the batch)."""
        link = self.links.get(("account", account_id))
        if account_id in self._done_accounts and link is not None:
            return link
        if account_id in self._pending_customers:
            return None
        if account_id in self._customer_failures:
            raise self._customer_failures[account_id]  # failed earlier in this run: not sent again
        account = self.ledger.staged(SRC, "accounts", account_id)
        if account is None or "__invalid__" in account:
            if link is not None:
                return link
            raise Wait(f"client (account {account_id}) has not been received from Coperniq yet")
        base = render_name(self.s.customer_name_template, title=account.get("title"),
                           number=account.get("number"), id=account_id)
        if link is not None:
            self._update_customer(account_id, account, link, base)
        elif self._create_or_match_customer(account_id, account, base) is None:
            return None
        self._done_accounts.add(account_id)
        self._mark("accounts", account_id, "done")
        return self.links[("account", account_id)]

    def _update_customer(self, account_id: str, account: Mapping[str, Any], link: Link, base: str) -> None:
        name = self._stored_name("customer", account_id, base)
        desired = customer_payload(account, name)
        fp = fingerprint(desired)
        if link.fingerprint == fp:
            return  # unchanged: zero API calls
        if link.origin == QBO and self.s.matching_strategy == "skip":
            self._save_link(replace(link, fingerprint=fp))
            self._record("accounts", account_id, "skipped", "matched QuickBooks customer; matching_strategy skip "
                         "leaves it unchanged", target_id=link.target_id, name=name)
            return
        # replace: fields emptied in Coperniq are cleared in QuickBooks too; enrich never blanks anything out
        patch = with_clears(desired) if self.s.matching_strategy == "replace" else dict(desired)
        if link.origin == QBO and self.s.matching_strategy != "replace":
            patch.pop("name", None)  # a matched record keeps its QuickBooks name
        patch.pop("is_supplier", None)
        if not link.target_id:
            raise Wait("customer has no Merge id yet")
        rid = None
        if not self.dry:
            rid, name = self._patch_with_free_name(link, patch, base, str(account.get("number") or account_id))
            if "name" in patch and name != desired["name"]:
                self._remember_name("customer", account_id, base, name)
                fp = fingerprint(customer_payload(account, name))
        self._save_link(replace(link, fingerprint=fp))
        self._record("accounts", account_id, "updated", f"client changed in Coperniq ({', '.join(sorted(patch))})",
                     target_id=link.target_id, request_id=rid, name=name)

    def _patch_with_free_name(self, link: Link, patch: dict[str, Any], base: str, key: str) -> tuple[str | None, str]:
        """PATCH a synced customer; a rename QuickBooks refuses as a duplicate (6240: the new name is held by
        another customer, vendor or employee) moves to the next suffixed name, as a create does."""
        name = str(patch.get("name") or "")
        tried: set[str] = set()
        while True:
            try:
                return self.client.update("contacts", str(link.target_id), patch).request_id, name
            except WriteError as exc:
                if "name" not in patch:
                    raise
                following = self._next_name(exc, name, base, key, tried)
                if following is None:
                    raise
                name = following
                patch = {**patch, "name": name}

    def _candidates(self, base: str, key: str) -> Iterator[dict[str, Any]]:
        """Unlinked, active Merge customers named `base` or one of the suffixed names this sync chooses on a
        collision (tried first: a name like "Base (#1042)" was made by us)."""
        index = self._contact_index().by_name
        names = list(itertools.islice(name_candidates(base, key), OWN_NAME_TRIES))
        for name in [*names[1:], names[0]]:
            for candidate in index.get(normalize_name(name), []):
                if not candidate.get("id") or str(candidate.get("id")) in self.linked_targets:
                    continue  # a name reserved in this run, or the twin of another Coperniq record
                if not candidate.get("is_customer") or str(candidate.get("status") or "ACTIVE") == "ARCHIVED":
                    continue  # a vendor/employee holding the name, or an inactive customer: never linked
                yield candidate

    def _qbo_customer(self, candidate: Mapping[str, Any]) -> dict[str, Any] | None:
        """The QuickBooks Customer behind a Merge Contact (Job, ParentRef, Active), through passthrough: Merge's
        Contact has no hierarchy. None when passthrough cannot answer."""
        if self.dry and not candidate.get("remote_id"):
            return None
        rows = self.client.query_customers_by_name(str(candidate.get("name") or ""))
        if rows is None:
            return None
        return next((r for r in rows if str(r.get("Id")) == str(candidate.get("remote_id"))), {})

    def _own_name(self, kind: str, source_id: str, base: str, match: Mapping[str, Any]) -> str:
        """A match under one of our suffixed names keeps that name (remembered, as if we had just chosen it)."""
        name = str(match.get("name") or base)
        if normalize_name(name) != normalize_name(base):
            self._remember_name(kind, source_id, base, name)
            return name
        return base

    def _customer_match(self, account: Mapping[str, Any], base: str, key: str) -> dict[str, Any] | None:
        """A top-level, active QuickBooks customer with the client's name (or a suffixed name of ours) and no
        conflicting evidence (mapping.conflicting_contact). A job of some customer holding the name is another
        party: never linked as a client."""
        desired = customer_payload(account, base)
        for candidate in self._candidates(base, key):
            if conflicting_contact(desired, candidate):
                continue  # same name, different person: the client gets a suffixed customer of its own
            row = self._qbo_customer(candidate)
            if row is not None and (row.get("Job") or row.get("Active") is False):
                continue  # a sub-customer (job) of another customer, or inactive in QuickBooks
            return candidate
        return None

    def _free_name(self, base: str, key: str, exclude: set[str] | None = None) -> str:
        taken = self._contact_index().by_name
        for candidate in name_candidates(base, key):
            if normalize_name(candidate) not in taken and candidate not in (exclude or set()):
                return candidate
        raise RowFailure(f"could not find a free QuickBooks DisplayName for {base!r}")

    def _create_or_match_customer(self, account_id: str, account: Mapping[str, Any], base: str) -> Link | None:
        intent_key = f"forward:account:{account_id}"
        if intent_key in self.leftover_intents:
            desired = customer_payload(account, base)
            recovered = self._recover_contact(intent_key, "account", account_id, "customer",
                                              lambda name: self._own_customer_ids(name, desired))
            if recovered:
                return recovered
        key = str(account.get("number") or account_id)
        match = self._customer_match(account, base, key)
        if match is not None:
            name = self._own_name("customer", account_id, base, match)
            return self._link_existing_contact("accounts", "account", account_id, "customer", match,
                                               customer_payload(account, name), base)
        self._plan_customer(account_id, account, base, key, self._free_name(base, key), set())
        return None

    def _next_name(self, exc: Exception, name: str, base: str, key: str, tried: set[str]) -> str | None:
        """After QuickBooks refused `name` as a duplicate (6240: a vendor/employee Merge does not list holds it), the
        next suffix to try; None if `exc` is no such refusal or 5 names were tried. RowFailure: no free name left."""
        if not (isinstance(exc, WriteError) and exc.duplicate_name and len(tried) < 5):
            return None
        tried.add(name)
        return self._free_name(base, key, tried)

    def _reserve_name(self, name: str) -> None:
        """Hold a DisplayName for a planned create, so the next record of the batch picks another."""
        self._contact_index().by_name[normalize_name(name)].append({"name": name})

    def _plan_customer(self, account_id: str, account: Mapping[str, Any], base: str, key: str, name: str,
                       tried: set[str]) -> None:
        intent_key = f"forward:account:{account_id}"
        desired = customer_payload(account, name)
        fp = fingerprint(desired)
        ikey = idempotency_key("account", account_id, fp)
        self._reserve_name(name)
        self._pending_customers.add(account_id)

        def send() -> WriteResult:
            if self.dry:
                return WriteResult({"id": self._fake_id("customer"), "remote_id": None, "name": name})
            return self.client.create("contacts", desired, idempotency_key=ikey,
                                      find_existing=lambda: self._find_own_customer(name, desired))

        def finish(res: WriteResult) -> None:
            model = res.model
            self._pending_customers.discard(account_id)
            link = Link(SRC, "account", account_id, QBO, "customer", str(model["id"]), remote_id_of(model), fp,
                        origin=SRC)
            self._commit_create(link, intent_key)
            self._remember_name("customer", account_id, base, name)
            self._contact_index().add({**desired, **model})
            self._done_accounts.add(account_id)
            reason = "client of a triggered project"
            if name != base:
                reason += f"; DisplayName {base!r} is used by an unrelated QuickBooks record, used {name!r}"
            self._record("accounts", account_id, "created", reason, target_id=link.target_id, name=name, write=res)
            self._mark("accounts", account_id, "done")

        def failed(exc: Exception) -> None:
            self._pending_customers.discard(account_id)
            try:
                following = self._next_name(exc, name, base, key, tried)
            except RowFailure as no_name:
                following, exc = None, no_name
            if following is not None:
                self._plan_customer(account_id, account, base, key, following, tried)
                return
            self._customer_failures[account_id] = exc  # its projects fail with this reason (_project_job)

        self._plan(_PlannedCreate("accounts", account_id, intent_key,
                                  {"kind": "customer", "name": name, "idempotency_key": ikey}, send, finish, failed),
                   durable_now=bool(tried))

    def _recover_contact(self, intent_key: str, source_type: str, source_id: str, target_type: str,
                         find: Callable[[str], tuple[str | None, str | None] | None]) -> Link | None:
        """A create may have happened before a crash: find it (`find(name)` -> (Merge id, QBO Id)) by the
        DisplayName its intent recorded before creating again."""
        intent = self.leftover_intents.get(intent_key) or {}
        name = intent.get("name")
        found = find(str(name)) if name else None
        self._end(intent_key)
        if found is None:
            return None
        merge_id, remote = found
        link = Link(SRC, source_type, source_id, QBO, target_type, merge_id, remote, intent.get("fingerprint"),
                    origin=SRC)
        self._save_link(link)
        stream = "accounts" if source_type == "account" else "projects"
        self._record(stream, source_id, "linked", f"recovered {target_type} {name!r} created by an interrupted "
                     "run (no duplicate created)", target_id=merge_id or remote, name=str(name))
        return link

    def _own_customer_ids(self, name: str, desired: Mapping[str, Any]) -> tuple[str | None, str | None] | None:
        contact = self._find_own_customer(name, desired)
        return (str(contact["id"]), remote_id_of(contact)) if contact is not None else None

    def _own_job_ids(self, name: str, parent: str) -> tuple[str | None, str | None] | None:
        row = self._find_own_job(name, parent)
        if row is None:
            return None
        found = self.client.contact_by_remote_id(str(row["Id"]))  # None until Merge has synced it
        return (str(found["id"]) if found and found.get("id") else None), str(row["Id"])

    def _find_own_customer(self, name: str, desired: Mapping[str, Any]) -> dict[str, Any] | None:
        """The customer a create of ours under `name` made when its answer was lost (or the run crashed): the
        customer holding that DisplayName (QuickBooks keeps them unique), linked to no other record, with the
        email we sent if we sent one. A vendor or employee holding the name is somebody else's."""
        email = normalize_email(desired.get("email_address"))
        for contact in self.client.find_contacts(name=name, is_customer="true"):
            if normalize_name(contact.get("name")) != normalize_name(name) or not contact.get("is_customer") or \
                    str(contact.get("id")) in self.linked_targets:
                continue
            other = normalize_email(contact.get("email_address"))
            if email and other and email != other:
                continue
            return contact
        return None

    def _find_own_job(self, name: str, parent: str) -> dict[str, Any] | None:
        """The QBO job a create of ours under `name` made: `Job` true, `ParentRef` = our customer, linked to no
        other project. Asked of QuickBooks through passthrough: Merge may list a passthrough write only after its
        next sync."""
        linked = {link.target_remote_id for link in self.links.values() if link.target_type == "job"}
        for row in self.client.query_customers_by_name(name) or []:
            if row.get("Job") and str((row.get("ParentRef") or {}).get("value")) == str(parent) and \
                    str(row.get("Id")) not in linked and normalize_name(row.get("DisplayName")) == normalize_name(name):
                return row
        return None

    def _link_existing_contact(self, stream: str, source_type: str, source_id: str, target_type: str,
                               match: dict[str, Any], desired: dict[str, Any], base: str) -> Link:
        strategy = self.s.matching_strategy
        wanted = with_clears(desired) if strategy == "replace" and target_type == "customer" else desired
        patch = diff_for_strategy({k: v for k, v in wanted.items() if k not in {"is_supplier", "name"}},
                                  match, strategy)
        if strategy == "replace" and match.get("name") != desired.get("name"):
            patch["name"] = desired["name"]
        rid = None
        if patch and not self.dry:
            rid = self.client.update("contacts", str(match["id"]), patch).request_id
        # fingerprint of what Coperniq wants, so an unchanged record costs nothing next run
        fp = fingerprint({**desired, "name": match.get("name") if strategy != "replace" else desired["name"]})
        link = Link(SRC, source_type, source_id, QBO, target_type, str(match["id"]),
                    remote_id_of(match), fp, origin=QBO)
        self._save_link(link)
        if strategy != "replace":
            self._remember_name(target_type, source_id, base, str(match.get("name") or base))
        what = f"updated {describe_patch(patch, match)}" if patch else "left unchanged"
        self._record(stream, source_id, "linked", f"matched existing QuickBooks {target_type} "
                     f"{match.get('name')!r} by name ({strategy}: {what})", target_id=link.target_id,
                     request_id=rid, name=str(match.get("name")))
        return link

    # ---------------------------------------------------------------- jobs
    def _ensure_job(self, pid: str, project: Mapping[str, Any], customer: Link) -> Link | None:
        """The project's job link; None when its create is planned (sent with the batch)."""
        parent_remote = customer.target_remote_id
        if not parent_remote:
            if self.dry and customer.target_id and customer.target_id.startswith("dry-run"):
                parent_remote = "dry-run"
            else:
                contact = self.client.api.get(f"/contacts/{customer.target_id}") or {}
                parent_remote = contact.get("remote_id")
                if not parent_remote:
                    raise Wait("parent customer has no QuickBooks Id yet")
                customer = replace(customer, target_remote_id=str(parent_remote))
                self._save_link(customer)
        account = self.ledger.staged(SRC, "accounts", str(project.get("accountId"))) or {}
        title = project.get("title") or account.get("title") or f"Project {pid}"
        base = render_name(self.s.job_name_template, title=title, number=project.get("number"), id=pid,
                           client=account.get("title"))
        link = self.links.get(("project", pid))
        if link is not None:
            self._update_job(pid, project, link, base, str(parent_remote))
            return link
        return self._create_or_match_job(pid, project, base, str(parent_remote))

    def _update_job(self, pid: str, project: Mapping[str, Any], link: Link, base: str, parent: str) -> None:
        name = self._stored_name("job", pid, base)
        desired = job_payload(project, name, parent)
        fp = fingerprint(desired)
        if link.fingerprint == fp:
            return
        if link.origin == QBO and self.s.matching_strategy == "skip":
            self._save_link(replace(link, fingerprint=fp))
            return
        merge_id = link.target_id or self._resolve_job(link)
        if not merge_id:
            raise Wait(f"job (QBO Id {link.target_remote_id}) is not visible in Merge yet; update retried next run")
        patch = job_contact_patch(desired)
        if link.origin == QBO and self.s.matching_strategy != "replace":
            patch.pop("name", None)
        rid = None if self.dry else self.client.update("contacts", merge_id, patch).request_id
        self._save_link(replace(link, target_id=merge_id, fingerprint=fp))
        self._record("projects", pid, "updated", f"project changed in Coperniq ({', '.join(sorted(patch))})",
                     target_id=merge_id, request_id=rid, name=name)

    def _resolve_job(self, link: Link) -> str | None:
        """Merge id of a job created by passthrough: visible once Merge synced it (GET /contacts?remote_id=)."""
        remote = link.target_remote_id
        if not remote:
            return None
        if remote not in self._resolved_jobs:
            found = None if self.dry else self.client.contact_by_remote_id(remote)
            self._resolved_jobs[remote] = str(found["id"]) if found and found.get("id") else None
            if self._resolved_jobs[remote]:
                self._save_link(replace(link, target_id=self._resolved_jobs[remote]))
        return self._resolved_jobs[remote]

    def _create_or_match_job(self, pid: str, project: Mapping[str, Any], base: str, parent: str) -> Link | None:
        intent_key = f"forward:project:{pid}"
        if intent_key in self.leftover_intents:
            recovered = self._recover_contact(intent_key, "project", pid, "job",
                                              lambda name: self._own_job_ids(name, parent))
            if recovered:
                return recovered
        key = str(project.get("number") or pid)
        for candidate in self._candidates(base, key):
            row = self._qbo_customer(candidate)
            # Only a job (Job true) under this project's customer: a top-level customer, or a job of another
            # customer, with the same name is somebody else (without passthrough nothing can be verified).
            if row and row.get("Job") and str((row.get("ParentRef") or {}).get("value")) == str(parent) \
                    and row.get("Active") is not False:
                name = self._own_name("job", pid, base, candidate)
                return self._link_existing_contact("projects", "project", pid, "job", candidate,
                                                   job_contact_patch(job_payload(project, name, parent)), base)
        self._plan_job(pid, project, base, parent, key, self._free_name(base, key), set())
        return None

    def _plan_job(self, pid: str, project: Mapping[str, Any], base: str, parent: str, key: str, name: str,
                  tried: set[str]) -> None:
        intent_key = f"forward:project:{pid}"
        body = job_payload(project, name, parent)
        fp = fingerprint(body)
        ikey = idempotency_key("project", pid, fp)
        self._reserve_name(name)

        def send() -> tuple[WriteResult, dict[str, Any] | None]:
            if self.dry:
                return WriteResult({"Id": None}), None
            res = self.client.create_sub_customer(body, idempotency_key=ikey,
                                                  find_existing=lambda: self._find_own_job(name, parent))
            found = None
            if res.model.get("Id"):
                try:  # its Merge id, if Merge has synced it already (else resolved when an invoice needs it)
                    found = self.client.contact_by_remote_id(str(res.model["Id"]))
                except ApiError:
                    found = None
            return res, found

        def finish(sent: tuple[WriteResult, dict[str, Any] | None]) -> None:
            res, found = sent
            remote = str(res.model["Id"]) if res.model.get("Id") else None
            merge_id: str | None = self._fake_id("job") if self.dry else None
            if remote and not self.dry:
                merge_id = str(found["id"]) if found and found.get("id") else None
                self._resolved_jobs[remote] = merge_id
            link = Link(SRC, "project", pid, QBO, "job", merge_id, remote, fp, origin=SRC)
            self._commit_create(link, intent_key)
            self._remember_name("job", pid, base, name)
            self._contact_index().add({"id": merge_id, "name": name})
            reason = f"reached its trigger phase; QBO sub-customer of customer {parent}"
            if name != base:
                reason += f"; DisplayName {base!r} is used by an unrelated QuickBooks record, used {name!r}"
            if not merge_id and not self.dry:
                reason += " (not visible in Merge yet: its invoices wait for Merge's next sync)"
            self._record("projects", pid, "created", reason, target_id=merge_id or remote, name=name, write=res)
            self._mark("projects", pid, "done")

        def failed(exc: Exception) -> None:
            following = self._next_name(exc, name, base, key, tried)
            if following is None:
                raise exc
            self._plan_job(pid, project, base, parent, key, following, tried)

        self._plan(_PlannedCreate("projects", pid, intent_key, {"kind": "job", "name": name, "idempotency_key": ikey,
                                                                "fingerprint": fp}, send, finish, failed),
                   durable_now=bool(tried))

    # ================================================================== accounts not reached through a project
    def _sync_accounts(self) -> None:
        for aid, account, status, _ in self.ledger.iter_staged(SRC, "accounts", status=("pending", "failed")):
            if "__invalid__" in account or aid in self._done_accounts:
                continue
            if ("account", aid) in self.links or aid in self._customer_failures:  # refused: fails with the reason
                self._guard("accounts", aid, lambda: self._ensure_customer(aid))
            else:
                self._record("accounts", aid, "skipped", "client has no triggered project yet",
                             name=str(account.get("title") or ""))
                self._mark("accounts", aid, "skipped", "client has no triggered project yet")

    # ================================================================== invoices
    def _invoice_contact(self, invoice: Mapping[str, Any]) -> str:
        record = invoice.get("record") or {}
        pid = str(record.get("id")) if record.get("id") is not None else None
        job = self.links.get(("project", pid)) if pid else None
        if job is not None:
            merge_id = job.target_id or self._resolve_job(job)
            if not merge_id:
                raise Wait(f"waiting for Merge to sync job (QBO Id {job.target_remote_id}) of project {pid}; "
                           "retried next run")
            return merge_id
        if pid and self.ledger.staged(SRC, "projects", pid) is not None:
            raise Wait(f"project {pid} is not synced to QuickBooks (not triggered)")
        account = invoice.get("account") or {}
        customer = self.links.get(("account", str(account.get("id")))) if account.get("id") is not None else None
        if customer is not None and customer.target_id and pid is None:  # account-level invoice
            return customer.target_id
        raise Wait(f"project {pid or '?'} of this invoice is not synced to QuickBooks (not triggered or not "
                   "received yet)")

    def _item_index(self) -> dict[str, str]:
        if self._items is None:
            index: dict[str, str] = {}
            for item in self.client.iter_list("/items"):
                if item.get("remote_was_deleted"):
                    continue
                mid = str(item["id"])
                index[f"id:{mid}"] = mid
                if item.get("remote_id"):
                    index[f"id:{item['remote_id']}"] = mid
                if item.get("name"):
                    index.setdefault(f"name:{normalize_name(item['name'])}", mid)
            self._items = index
        return self._items

    def _lookup_item(self, ref: str) -> str | None:
        index = self._item_index()
        return index.get(f"id:{ref}") or index.get(f"name:{normalize_name(ref)}")

    def _resolve_line_item(self, line: Mapping[str, Any]) -> str:
        catalog = line.get("catalogItem") or {}
        cid = line.get("catalogItemId") or catalog.get("id")
        cname = catalog.get("name")
        mapping = self.s.item_mapping
        for key in (str(cid) if cid is not None else None, cname):
            if key and key in mapping:
                found = self._lookup_item(mapping[key])
                if found:
                    return found
                raise RowFailure(f"item_mapping maps catalog item {key!r} to {mapping[key]!r}, which is not an "
                                 "item in QuickBooks")
        if cname and (found := self._lookup_item(cname)):
            return found  # same name in QuickBooks
        if self.s.default_item:
            found = self._lookup_item(self.s.default_item)
            if found:
                return found
            raise RowFailure(f"default_item {self.s.default_item!r} is not an item in QuickBooks")
        raise RowFailure(f"no QuickBooks item for catalog item {cname!r} (id {cid}): add it to item_mapping or set "
                         "default_item")

    def _sync_invoices(self) -> None:
        statuses = ("pending", "failed", "skipped")
        if not self.s.invoice_sync:
            arrived = 0
            for iid, inv, status, _ in self.ledger.iter_staged(SRC, "invoices", status=("pending", "failed")):
                arrived += 1
                self._record("invoices", iid, "skipped", "invoice_sync is off")
                self._mark("invoices", iid, "skipped", "invoice_sync is off")
            for pay_id, _, _, _ in self.ledger.iter_staged(SRC, "payments", status=("pending", "failed")):
                self._record("payments", pay_id, "skipped", "invoice_sync is off")
                self._mark("payments", pay_id, "skipped", "invoice_sync is off")
            if arrived:
                self._warn(f"invoice_sync is off but {arrived} invoice(s) arrived; nothing was written for them "
                           "(set invoice_sync: true to push invoices and payments)")
            return
        for iid, inv, status, _ in self.ledger.iter_staged(SRC, "invoices", status=statuses):
            if "__invalid__" in inv:
                continue
            self._guard("invoices", iid, lambda: self._invoice(iid, inv, status), status)
        self._flush_all()

    def _existing_invoices(self, number: str) -> list[dict[str, Any]]:
        """QuickBooks AR invoices with this number. Each lookup also reads the next page of the invoice list; once
        the list is complete, lookups are free. So a run pays at most twice the cheaper of "one GET per new invoice"
        and "read the whole list", without knowing in advance how many invoices QuickBooks holds."""
        if self._invoice_pages is None:
            self._invoice_pages = self.client.iter_pages("/invoices", {"type": "ACCOUNTS_RECEIVABLE"})
        if not self._invoice_list_complete and not self._invoice_list_broken:
            try:
                page = next(self._invoice_pages, None)
            except ApiError as exc:  # the list read failed (a cursor can expire in a long run): look up one by one
                self._invoice_list_broken = True
                self.log.warning("Reading the QuickBooks invoice list failed (%s); invoices are looked up by number "
                                 "one by one for the rest of the run", exc)
                return self.client.invoices_by_number(number)
            for inv in (page or {}).get("results") or []:
                if inv.get("number") not in (None, ""):
                    self._invoices_by_number[str(inv["number"])].append(inv)
            if page is None or not page.get("next"):
                self._invoice_list_complete = True
                self.log.info("Read all %d QuickBooks invoices for matching by number",
                              sum(map(len, self._invoices_by_number.values())))
        if self._invoice_list_complete:
            return list(self._invoices_by_number.get(str(number), []))
        return self.client.invoices_by_number(number)

    def _echo(self, stream: str, kind: str, source_id: str, status: str) -> bool:
        """A Coperniq record the reverse leg wrote from QuickBooks must not be pushed back (duplicate in QBO)."""
        if ((kind, source_id) in self.links or
                self.ledger.get_link_by_target(SRC, kind, source_id) is None):
            return False
        if status != "skipped":
            reason = f"{kind} was created from QuickBooks by the reverse leg: not echoed back"
            self._record(stream, source_id, "skipped", reason)
            self._mark(stream, source_id, "skipped", reason)
        return True

    def _invoice(self, iid: str, inv: Mapping[str, Any], status: str) -> None:
        if self._echo("invoices", "invoice", iid, status):
            return
        link = self.links.get(("invoice", iid))
        coperniq_status = str(inv.get("status") or "").upper()
        if coperniq_status not in self.s.invoice_statuses:
            if status != "skipped":  # once per version of the record
                pushed = ", ".join(self.s.invoice_statuses)
                reason = (f"invoice is {coperniq_status or 'without status'} in Coperniq; invoice_statuses pushes "
                          f"{pushed}")
                if link is not None:  # TODO(accounting issue): void/credit rules; until then never silent
                    reason = (f"invoice pushed to QuickBooks earlier is now {coperniq_status} in Coperniq; left "
                              "unchanged in QuickBooks (voiding is not automated yet): review it there")
                self._record("invoices", iid, "skipped", reason, target_id=link.target_id if link else None)
                self._mark("invoices", iid, "skipped", reason)
            return
        contact = self._invoice_contact(inv)
        lines = inv.get("lineItems") or []
        if not lines:
            raise RowFailure("invoice has no line items (QuickBooks needs at least one line)")
        desired = invoice_payload(inv, contact, [invoice_line(line, self._resolve_line_item(line)) for line in lines],
                                  number_prefix=self.s.invoice_number_prefix)
        fp = invoice_fingerprint(desired)
        number = desired["number"]
        if link is not None:
            # A pushed invoice keeps its number (the prefix, or a bookkeeper's renumbering, never renumbers it).
            legacy = {**desired, "number": invoice_number(inv)}
            if link.fingerprint in (fingerprint({**legacy, "status": "DRAFT"}), fingerprint(legacy)):
                self._save_link(replace(link, fingerprint=fp))  # synced by an older version, unchanged since
            elif link.fingerprint != fp:
                if link.origin == QBO and self.s.matching_strategy == "skip":
                    self._save_link(replace(link, fingerprint=fp))
                else:
                    update = {k: v for k, v in desired.items() if k != "number"}
                    rid = None if self.dry else self.client.update("invoices", str(link.target_id), update).request_id
                    self._save_link(replace(link, fingerprint=fp))
                    self._record("invoices", iid, "updated", "invoice changed in Coperniq", target_id=link.target_id,
                                 request_id=rid, name=f"#{number}")
            self._mark("invoices", iid, "done")
            return
        intent_key = f"forward:invoice:{iid}"
        existing = [i for i in self._existing_invoices(number)
                    if not i.get("remote_was_deleted") and str(i.get("id")) not in self.linked_targets]
        if not existing and number != invoice_number(inv) and self._invoice_list_complete:
            # Pushed without the prefix by an older version (and the ledger lost since): the same number on the
            # same customer/job is ours; on anybody else it is a bookkeeper's own invoice, the prefix's very point.
            # Checked only once the whole list is read (free then); never worth an extra call per invoice.
            existing = [i for i in self._invoices_by_number.get(invoice_number(inv), [])
                        if not i.get("remote_was_deleted") and str(i.get("id")) not in self.linked_targets
                        and str(i.get("contact")) == contact]
        if existing:
            found = next((i for i in existing if str(i.get("contact")) == contact), existing[0])
            recovered = intent_key in self.leftover_intents
            if str(found.get("contact")) != contact:
                if recovered:
                    self._end(intent_key)  # no invoice of ours with that number: the interrupted create never happened
                raise RowFailure(f"invoice number {number} is already used in QuickBooks by another customer's "
                                 f"invoice ({found.get('id')}); renumber one of them")
            strategy = "skip" if recovered else self.s.matching_strategy
            patch = diff_for_strategy({k: v for k, v in desired.items() if k not in {"line_items", "status", "number"}},
                                      found, strategy)
            rid = None
            if patch and not self.dry:
                rid = self.client.update("invoices", str(found["id"]), {**patch, "line_items": desired["line_items"]}
                                         if strategy == "replace" else patch).request_id
            link = Link(SRC, "invoice", iid, QBO, "invoice", str(found["id"]),
                        remote_id_of(found), fp,
                        origin=SRC if recovered else QBO)
            self._save_link(link)
            self._end(intent_key)
            why = ("recovered invoice created by an interrupted run (no duplicate created)" if recovered else
                   f"matched existing QuickBooks invoice number {found.get('number')} ({strategy}: "
                   f"{'updated ' + ', '.join(sorted(patch)) if patch else 'left unchanged'})")
            self._record("invoices", iid, "linked", why, target_id=link.target_id, request_id=rid, name=f"#{number}")
            self._mark("invoices", iid, "done")
            return
        if intent_key in self.leftover_intents:
            self._end(intent_key)  # nothing with that number exists: the interrupted create never happened
        def created(link: Link, res: WriteResult) -> None:
            self._record("invoices", iid, "created", f"invoice #{number} for synced project",
                         target_id=link.target_id, name=f"#{number}", write=res)
            self._mark("invoices", iid, "done")

        self._create_model("invoice", iid, desired, fp, intent_key, {"number": number}, created,
                           lambda: self._find_invoice(number, contact))

    # ================================================================== payments
    def _deposit_account_id(self) -> str:
        if self._deposit_account is None:
            wanted = self.s.payment_account
            for account in self.client.iter_list("/accounts"):
                if wanted in (str(account.get("id")), str(account.get("remote_id"))) or \
                        normalize_name(account.get("name")) == normalize_name(wanted):
                    self._deposit_account = str(account["id"])
                    break
            else:
                raise RowFailure(f"payment_account {wanted!r} is not an account in QuickBooks")
        return self._deposit_account

    def _sync_payments(self) -> None:
        if not self.s.invoice_sync:
            return
        for pay_id, pay, status, _ in self.ledger.iter_staged(SRC, "payments", status=("pending", "failed",
                                                                                        "skipped")):
            if "__invalid__" in pay:
                continue
            self._guard("payments", pay_id, lambda: self._payment(pay_id, pay, status), status)
        self._flush_all()

    def _payment(self, pay_id: str, pay: Mapping[str, Any], status: str) -> None:
        if self._echo("payments", "payment", pay_id, status):
            return
        pay_status = str(pay.get("status") or "").upper()
        if pay_status in SKIP_PAYMENT_STATUSES:
            if status != "skipped":
                self._record("payments", pay_id, "skipped", f"payment status is {pay_status}")
                self._mark("payments", pay_id, "skipped", f"payment status is {pay_status}")
            return
        inv_id = str(pay.get("invoiceId"))
        inv_link = self.links.get(("invoice", inv_id))
        if inv_link is None or not inv_link.target_id:
            raise Wait(f"invoice {inv_id} is not synced to QuickBooks yet")
        invoice = self.ledger.staged(SRC, "invoices", inv_id) or {}
        contact = self._invoice_contact(invoice)
        if not pay.get("paymentDate") and not pay.get("createdAt"):
            raise RowFailure("payment has no paymentDate (QuickBooks needs a transaction date)")
        if not pay.get("amount"):
            raise RowFailure("payment has no amount")
        desired = payment_payload(pay, contact_id=contact, account_id=self._deposit_account_id(),
                                  invoice_id=str(inv_link.target_id))
        fp = fingerprint(desired)
        link = self.links.get(("payment", pay_id))
        if link is not None:
            if link.fingerprint != fp:
                rid = None if self.dry else self.client.update("payments", str(link.target_id), desired).request_id
                self._save_link(replace(link, fingerprint=fp))
                self._record("payments", pay_id, "updated", "payment changed in Coperniq", target_id=link.target_id,
                             request_id=rid)
            self._mark("payments", pay_id, "done")
            return
        if inv_link.origin == QBO and self._link_twin_payment(pay_id, contact, desired, inv_id):
            return
        intent_key = f"forward:payment:{pay_id}"
        if intent_key in self.leftover_intents:
            found = self._find_payment(contact, desired)
            self._end(intent_key)
            if found is not None:
                link = Link(SRC, "payment", pay_id, QBO, "payment", str(found["id"]),
                            remote_id_of(found), fp, origin=SRC)
                self._save_link(link)
                self._record("payments", pay_id, "linked", "recovered payment created by an interrupted run "
                             "(no duplicate created)", target_id=link.target_id)
                self._mark("payments", pay_id, "done")
                return
        def created(link: Link, res: WriteResult) -> None:
            self._record("payments", pay_id, "created", f"applied to invoice {inv_id}", target_id=link.target_id,
                         write=res)
            self._mark("payments", pay_id, "done")

        self._create_model("payment", pay_id, desired, fp, intent_key, None, created,
                           lambda: self._find_payment(contact, desired))

    def _link_twin_payment(self, pay_id: str, contact: str, desired: Mapping[str, Any], inv_id: str) -> bool:
        """The invoice was matched in QuickBooks (not created by us), so QuickBooks may already show this payment:
        link its twin (same amount applied to the invoice, within PAYMENT_DATE_SLACK days) instead of paying it
        twice; a payment larger than the invoice's open balance there is a failed row, never an overpayment."""
        twin = self._find_payment(contact, desired, date_slack_days=PAYMENT_DATE_SLACK)
        if twin is not None:
            link = Link(SRC, "payment", pay_id, QBO, "payment", str(twin["id"]), remote_id_of(twin),
                        fingerprint(desired), origin=QBO)
            self._save_link(link)
            self._record("payments", pay_id, "linked", f"QuickBooks already shows this payment on the matched invoice "
                         f"({twin.get('total_amount')} on {str(twin.get('transaction_date') or '')[:10]}): linked, "
                         "not paid twice", target_id=link.target_id)
            self._mark("payments", pay_id, "done")
            return True
        invoice_id = desired["applied_to_lines"][0]["related_object_id"]
        invoice = None if self.dry else self.client.api.get(f"/invoices/{invoice_id}")
        balance = (invoice or {}).get("balance")
        if balance is not None and float(desired["total_amount"]) > round(float(balance), 2) + 0.004:
            raise RowFailure(f"payment of {desired['total_amount']} is more than the open balance {balance} QuickBooks "
                             f"shows on matched invoice {invoice.get('number') or invoice_id} (Coperniq invoice "
                             f"{inv_id}); it was probably recorded there differently: record it in one place")
        return False

    def _find_invoice(self, number: str, contact: str) -> dict[str, Any] | None:
        """Natural key of an invoice we created: its number, on the same customer/job, not linked to another one
        (thread-safe: reads Merge directly, not the run's invoice-list index)."""
        return next((i for i in self.client.invoices_by_number(number)
                     if not i.get("remote_was_deleted") and str(i.get("contact")) == contact
                     and str(i.get("id")) not in self.linked_targets), None)

    def _find_payment(self, contact: str, desired: Mapping[str, Any], *,
                      date_slack_days: int = 0) -> dict[str, Any] | None:
        """Natural key of a payment: same contact, amount, date (within `date_slack_days`; the closest wins) and
        applied invoice, not linked to another one."""
        invoice_id = desired["applied_to_lines"][0]["related_object_id"]
        same = []
        for payment in self.client.payments_for_contact(contact):
            if str(payment.get("id")) in self.linked_targets or payment.get("remote_was_deleted"):
                continue
            if round(float(payment.get("total_amount") or 0), 2) != round(float(desired["total_amount"]), 2):
                continue
            applied = payment.get("applied_to_lines") or []
            if applied and not any(isinstance(a, dict) and str(a.get("related_object_id")) == invoice_id
                                   for a in applied):
                continue
            same.append(payment)
        return closest_by_day(same, day_of(desired.get("transaction_date")), lambda p: p.get("transaction_date"),
                              date_slack_days)
