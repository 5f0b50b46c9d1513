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
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from sync_ledger import DEFAULT_LEDGER_PATH, ApiClient, ApiError, Ledger
from sync_ledger.rows import Journal, Outcome, RowLog, overall
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
from target_coperniq.invoice_update import InvoiceUpdateError
from target_coperniq.invoices import InvoiceRules
from target_coperniq.lookups import Lookups
from target_coperniq.payments import CENT, VOID_STATUSES, PaymentRules

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
Handler = Callable[[str, dict[str, Any], bool], list[Outcome]]


class FatalTargetError(Exception):
    """Stop the run: retrying record by record cannot help (bad credentials, wrong URL)."""


class Reconciler:
    """Owns the ledger, the Coperniq client and the run; sinks call stage() and reconcile()."""

    def __init__(self, config: Mapping[str, Any], logger: logging.Logger) -> None:
        settings = Settings.from_config(config)
        self.logger = logger
        path = Path(str(config.get("ledger_path") or DEFAULT_LEDGER_PATH))
        path.parent.mkdir(parents=True, exist_ok=True)
        ledger = Ledger(path, lock_timeout=float(config.get("ledger_lock_timeout") or 120))
        api_key = str(config["api_key"])
        self.client = ApiClient(
            str(config.get("api_url") or "https://api.coperniq.io/v1"),
            headers={"x-api-key": api_key, "Accept": "application/json"},
            max_requests_per_second=float(config["max_requests_per_second"])
            if config.get("max_requests_per_second")
            else None,
            secrets=[api_key],
        )
        api = CoperniqApi(self.client, create_catalog_items=bool(config.get("create_catalog_items", True)))
        self.run_id = ledger.start_run(DIRECTION, dry_run=settings.dry_run)
        self.rows = RowLog(ledger, self.run_id, DIRECTION, logger, dry=settings.dry_run)
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
        """Process staged invoices, then payments (a payment needs its invoice's Coperniq id)."""
        ledger = self.ctx.ledger
        for stream, handler in self._handlers:
            # waiting rows (status `waiting`; `skipped` with the WAIT prefix in ledgers from before it) are tried
            # again in the final pass of every run: what they wait on is written by the forward leg
            statuses = ("pending", "failed", "waiting", "skipped") if final else ("pending", "failed")
            try:
                for rid, payload, status, attempts in ledger.iter_staged(SOURCE, stream, status=statuses):
                    if status == "failed" and attempts >= self.ctx.settings.max_attempts:
                        continue
                    if status == "skipped":
                        _, _, last_error = ledger.staged_status(SOURCE, stream, rid) or ("", 0, None)
                        if not (last_error or "").startswith(WAIT):
                            continue
                    self._process(stream, rid, payload, status, handler, final)
            finally:
                self.ctx.journal.flush()  # payments look up the invoices' links; a stopped run keeps what it wrote
        ledger.flush()

    def finish(self, status: str = "success") -> dict[str, dict[str, int]]:
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
        self.client.close()
        self.ctx.ledger.close()
        return counts

    # ------------------------------------------------------------------ bookkeeping

    def _process(
        self,
        stream: str,
        rid: str,
        payload: dict[str, Any],
        status: str,
        handler: Handler,
        final: bool,
    ) -> None:
        try:
            outcomes = handler(rid, payload, final)
        except ApiError as exc:
            if exc.status in (401, 403):
                raise FatalTargetError(
                    f"Coperniq rejected the API key (HTTP {exc.status}): check the `api_key` setting (and `api_url`)."
                ) from None
            if exc.status == 429:  # after ApiClient's backoff: every further row would wait the same and fail
                raise FatalTargetError(
                    f"Coperniq kept answering 429 Too Many Requests after {self.client.max_retries} retries "
                    "with backoff: the daily cap of 5,000 calls per API key is probably spent. Run again later; "
                    "staged records are kept and retried."
                ) from None
            outcomes = [Outcome("failed", rid, "failed", exc.message, request_id=exc.request_id)]
        except InvoiceUpdateError as exc:
            outcomes = [Outcome("failed", rid, "failed", str(exc))]
        except (LookupError, ValueError, TypeError, ArithmeticError) as exc:
            outcomes = [Outcome("failed", rid, "failed", f"{type(exc).__name__}: {exc}")]
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
