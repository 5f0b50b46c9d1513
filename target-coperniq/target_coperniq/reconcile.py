"""The reverse leg's conductor: which staged QuickBooks records become which Coperniq writes.

Sinks only stage records into the ledger; everything here works from the ledger, so records may arrive
in any order and in any run. The rules live in invoices.py and payments.py (on lookups.py, catalog.py and
the run context of context.py); this module runs them row by row and keeps each row's bookkeeping.
Each record ends as one of:
  done     written (created/updated/linked/deleted; `planned` in a dry run) or already up to date;
  skipped  deliberately not written (echo of the forward leg, bill, void policy, ...), logged once;
  waiting  depends on something not synced (yet): its customer, invoice or item. Stays `pending` while
           the run is in progress; the end-of-run pass marks it `waiting` with a `waiting:` reason and
           re-evaluates it silently on later runs, so a customer linked later still brings its invoices
           (what it waits on is written by the forward leg, in another process: tried in every final pass).
           An item still missing in the end-of-run pass does not hold the invoice: that line gets the default
           catalog item;
  failed   an API error, an invoice update that did not come out as QuickBooks has it, or a record that
           cannot be read (LookupError, ValueError, ...); retried on the next runs up to `max_attempts`.
           HTTP 401/403, and 429 after the client's retries, stop the run instead (FatalTargetError).

Writes go through the shared batched writer (sync_ledger.writer): the rules still decide row by row on this
thread, and return either outcomes or `Write`s (writes.py). The writer makes a batch's create intents durable in
one commit, sends the calls `max_parallel_writes` at a time, then applies the answers here in plan order: each
create's link is committed as its answer is applied (the forward leg's echo check reads links only), then the
row's bookkeeping runs, once its last write is in. The writer is flushed at the end of each stream, because payments
need their invoices' Coperniq ids. A payment this run created is claimed when its answer is applied, so it is never
the "twin" of a later one of the same amount (one planned and not sent yet is not in Coperniq to be mistaken).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from singer_sdk.exceptions import ConfigValidationError

from sync_ledger import DEFAULT_LEDGER_PATH, ApiClient, Ledger
from sync_ledger.alerts import AlertSettings, RunOutcome
from sync_ledger.alerts import evaluate as evaluate_alerts
from sync_ledger.rows import Journal, Outcome, RowLog, apply_operator_actions, overall
from sync_ledger.util import ledger_place, url_secrets
from sync_ledger.writer import BatchWriter, PlannedWrite
from target_coperniq.catalog import ADJUSTMENT_ITEM_NAME, Catalog
from target_coperniq.context import (
    DEFAULT_LINE_ITEM_NAME,
    DIRECTION,
    FORWARD_ECHO,
    INTENT_PREFIX,
    NOT_SYNCED,
    SOURCE,
    TARGET,
    Context,
    Intents,
    Settings,
)
from target_coperniq.coperniq import CoperniqApi
from target_coperniq.invoices import InvoiceRules
from target_coperniq.lookups import Lookups
from target_coperniq.payments import CENT, VOID_STATUSES, PaymentRules
from target_coperniq.writes import Decision, FatalTargetError, PendingRow, Write, failure

# the names this module had before the rules moved out stay importable from here
__all__ = [
    "ADJUSTMENT_ITEM_NAME",
    "CENT",
    "DEFAULT_LEDGER_PATH",
    "DEFAULT_LINE_ITEM_NAME",
    "DIRECTION",
    "FORWARD_ECHO",
    "INTENT_PREFIX",
    "NOT_SYNCED",
    "PROGRESS_EVERY",
    "SOURCE",
    "TARGET",
    "VOID_STATUSES",
    "WAIT",
    "FatalTargetError",
    "Reconciler",
]

WAIT = "waiting: "
PROGRESS_EVERY = 100

#: What a row handler gets (id, staged payload, final pass?) and what it decides.
Handler = Callable[[str, dict[str, Any], bool], list[Decision]]


class Reconciler:
    """Owns the ledger, the Coperniq client and the run; sinks call stage() and reconcile()."""

    def __init__(self, config: Mapping[str, Any], logger: logging.Logger) -> None:
        settings = Settings.from_config(config)
        self.logger = logger
        try:
            place, company = ledger_place(config)
        except ValueError as exc:
            raise ConfigValidationError(str(exc), errors=[str(exc)]) from None
        errors: list[str] = []
        self.alerts = AlertSettings.from_config(config, errors)
        if errors:
            raise ConfigValidationError("Config validation failed", errors=errors)
        self.company = company
        ledger = Ledger(place, company=company, lock_timeout=float(config.get("ledger_lock_timeout") or 120))
        api_key = str(config["api_key"])
        self.secrets = (api_key, *url_secrets(place), *self.alerts.secrets)
        self.client = ApiClient(
            str(config.get("api_url") or "https://api.coperniq.io/v1"),
            headers={"x-api-key": api_key, "Accept": "application/json"},
            max_requests_per_second=float(config["max_requests_per_second"])
            if config.get("max_requests_per_second")
            else None,
            secrets=[api_key],
            connections=settings.max_parallel_writes,
        )
        api = CoperniqApi(self.client, create_catalog_items=bool(config.get("create_catalog_items", True)))
        self.run_id = ledger.start_run(DIRECTION, dry_run=settings.dry_run)
        self.rows = RowLog(ledger, self.run_id, DIRECTION, logger, dry=settings.dry_run)
        if not settings.dry_run:
            apply_operator_actions(ledger, SOURCE, self.rows)  # retry / dismiss asked with coperniq-qbo
        # batch=1: each create's link is durable at once, because the forward leg's echo check reads links only
        # (a Coperniq invoice this leg created but had not linked yet would be pushed back to QuickBooks)
        journal = Journal(ledger, SOURCE, dry=settings.dry_run, batch=1)
        self.sinks: list[Any] = []
        self.counts: Counter[str] = Counter()
        intents = Intents(journal, {key for key, _ in ledger.pending_intents(INTENT_PREFIX)})
        if intents:
            logger.warning(
                "%d writes were interrupted by a crash; looking them up in Coperniq before re-creating",
                len(intents),
            )
        self.ctx = Context(settings, ledger, journal, api, intents)
        lookups = Lookups(ledger)
        invoices = InvoiceRules(self.ctx, lookups, Catalog(api, ledger, settings))
        payments = PaymentRules(self.ctx, lookups)
        self._handlers: tuple[tuple[str, Handler], ...] = (
            ("invoices", invoices.invoice),
            ("payments", payments.payment),
        )
        self._finished = False

    # ------------------------------------------------------------------ entry points

    def stage(self, stream: str, records: Iterable[dict[str, Any]]) -> int:
        rows = [(str(r["id"]), r) for r in records if r.get("id")]
        self.ctx.ledger.stage(SOURCE, stream, rows)
        return len(rows)

    def reconcile(self, *, final: bool = False) -> None:
        """Process staged invoices, then payments (a payment needs its invoice's Coperniq id). A pass that stops
        sends nothing more: the writes it had planned have no durable intent yet, and their rows stay pending."""
        ledger = self.ctx.ledger
        writer = BatchWriter(
            self.ctx.journal,
            _apply,
            workers=self.ctx.settings.max_parallel_writes,
            logger=self.logger,
            end=self.ctx.intents.end,
        )
        try:
            for stream, handler in self._handlers:
                # waiting rows (status `waiting`; `skipped` with the WAIT prefix in ledgers from before it) are
                # tried again in the final pass of every run: what they wait on is written by the forward leg
                statuses = ("pending", "failed", "waiting", "skipped") if final else ("pending", "failed")
                try:
                    for rid, payload, status, attempts in ledger.iter_staged(SOURCE, stream, status=statuses):
                        if status == "failed" and attempts >= self.ctx.settings.max_attempts:
                            continue
                        if status == "skipped":
                            _, _, last_error = ledger.staged_status(SOURCE, stream, rid) or ("", 0, None)
                            if not (last_error or "").startswith(WAIT):
                                continue
                        self._process(writer, Row(stream, rid, status, final), payload, handler)
                    writer.flush_all()  # before the next stream: payments look up the invoices' links
                finally:
                    self.ctx.journal.flush()  # a stopped run keeps what it wrote
        finally:
            writer.close()
        ledger.flush()

    def finish(
        self, status: str = "success", *, reason: str | None = None, alert: bool = True
    ) -> dict[str, dict[str, int]]:
        """Close the run with `status`, send its webhook alerts (unless `alert` is off), release the ledger."""
        if self._finished:
            return {}
        self._finished = True
        self.ctx.journal.flush()
        counts = self.ctx.ledger.finish_run(self.run_id, status)
        summary = (
            "; ".join(f"{s}: " + ", ".join(f"{a}={n}" for a, n in sorted(c.items())) for s, c in sorted(counts.items()))
            or "nothing to do"
        )
        self.logger.info(
            "Reverse run %s %s%s: %s", self.run_id, status, " (dry run)" if self.ctx.settings.dry_run else "", summary
        )
        if alert:
            failed = sum(n for stream, c in counts.items() if stream != "run" for a, n in c.items() if a == "failed")
            evaluate_alerts(
                self.ctx.ledger,
                self.alerts,
                RunOutcome(DIRECTION, self.run_id, status, failed, reason),
                company=self.company,
                secrets=self.secrets,
                dry_run=self.ctx.settings.dry_run,
                logger=self.logger,
            )
        self.client.close()
        self.ctx.ledger.close()
        return counts

    # ------------------------------------------------------------------ bookkeeping

    def _process(self, writer: BatchWriter, row: Row, payload: dict[str, Any], handler: Handler) -> None:
        """Decide the row now; book it now, or plan its writes and book it when the last one is applied."""
        fail = partial(failure, row.rid, retries=self.client.max_retries)
        try:
            decided = handler(row.rid, payload, row.final)
        except Exception as exc:  # noqa: BLE001 - the row's failure; a fatal or unknown error propagates from fail
            decided = [fail(exc)]
        writes = [(i, d) for i, d in enumerate(decided) if isinstance(d, Write)]
        if not writes:
            self._book(row, [d for d in decided if isinstance(d, Outcome)])
            return
        pending = PendingRow(decided, fail, partial(self._book, row))
        for i, write in writes:
            key, intent = write.intent or (None, {})
            if key is not None:
                self.ctx.intents.announce(key)
            finish, on_error = partial(pending.finish, i, write), partial(pending.failed, i, write)
            writer.plan(PlannedWrite(row.stream, row.rid, key, intent, write.send, finish, on_error))

    def _book(self, row: Row, outcomes: list[Outcome]) -> None:
        """The row's log lines, status and progress, once all its outcomes are known."""
        stream, rid, status, final = row.stream, row.rid, row.status, row.final
        status_of_row = overall(outcomes)
        for outcome in outcomes:
            if outcome.kind == "wait":
                if final and status not in ("skipped", "waiting"):  # logged once, when the run gives up waiting
                    self.rows.outcome(stream, outcome, "skipped")
            elif outcome.action:
                self.rows.outcome(stream, outcome)
        if status_of_row == "wait":
            if final:
                reason = next(o.reason for o in outcomes if o.kind == "wait")
                self.ctx.journal.mark(stream, rid, "waiting", WAIT + reason)
        elif status_of_row == "failed":
            self.ctx.journal.mark(stream, rid, "failed", next(o.reason for o in outcomes if o.kind == "failed"))
        elif status_of_row == "skipped":
            self.ctx.journal.mark(stream, rid, "skipped", outcomes[0].reason if outcomes else "")
        else:
            self.ctx.journal.mark(stream, rid, "done")
        self.counts[status_of_row] += 1
        if sum(self.counts.values()) % PROGRESS_EVERY == 0:
            self.logger.info("Reverse leg progress: %s", dict(self.counts))


@dataclass(frozen=True)
class Row:
    """A staged row as the pass found it: what its bookkeeping needs when its writes are applied later."""

    stream: str
    rid: str
    status: str
    final: bool


def _apply(stream: str, source_id: str, step: Callable[[], None]) -> None:
    """The writer's guard: PendingRow already turns a write's failure into the row's outcome, so what gets here
    (a fatal error, a bug) stops the run, after the writer has applied the rest of the batch."""
    step()
