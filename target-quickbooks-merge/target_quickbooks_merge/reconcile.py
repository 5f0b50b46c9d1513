"""The forward-leg reconcile pass: staged Coperniq snapshot -> QuickBooks (through Merge), in dependency order.

Why a separate pass instead of writing from the sinks: records arrive in any order and across runs (phase instances
before projects, an invoice in a run where its project is absent), and the trigger decision needs several streams.
Sinks only stage; this pass runs once at the end of the input over everything pending, failed or waiting.

Order: projects (trigger -> customer -> job) -> remaining accounts (updates of synced clients) -> invoices -> payments.
Every create is wrapped in a write-ahead intent and carries a deterministic Idempotency-Key, so a crash between the
API call and the ledger commit is recovered next run by a natural-key lookup instead of a duplicate. The rules live
one module per kind (customers, jobs, invoices, payments); the row pipeline they write through (outcomes, journal,
batched writer) is sync_ledger's, shared with target-coperniq.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial
from typing import Any

from sync_ledger import Ledger, fingerprint
from sync_ledger.rows import PlanRow, RowFailure, Wait, apply_operator_actions

from .context import DIRECTION, QBO, SRC, Context, Result
from .customers import CustomerSync
from .errors import ConfigRefused, Disconnected, Unreachable
from .invoices import InvoiceSync
from .jobs import JobSync
from .merge_client import MergeClient
from .merge_index import ContactIndex, InvoiceIndex, ItemIndex, NameBook
from .payments import PaymentSync
from .phases import ProjectTriggers
from .settings import Settings
from .taxes import TaxBook, check_currency

__all__ = [
    "DIRECTION",
    "QBO",
    "SRC",
    "ConfigRefused",
    "Disconnected",
    "PlanRow",
    "Reconciler",
    "Result",
    "RowFailure",
    "Unreachable",
    "Wait",
]


class Reconciler:
    """One reconcile pass. Construct per run; call run()."""

    def __init__(
        self,
        ledger: Ledger,
        client: MergeClient,
        settings: Settings,
        run_id: str,
        *,
        logger: logging.Logger,
        first_run_at: datetime | None = None,
        run_started_at: datetime | None = None,
    ) -> None:
        self.ctx = Context(ledger, client, settings, run_id, logger)
        self.first_run_at = first_run_at
        self.run_started_at = run_started_at

    def run(self) -> Result:
        ctx = self.ctx
        home_currency = check_currency(ctx.client, ctx.s)  # before anything is written: never converted
        workflows = [p for _, p, _, _ in ctx.ledger.iter_staged(SRC, "workflows")]  # read once, used twice
        self._wake_on_new_settings(workflows)
        if not ctx.dry:
            apply_operator_actions(ctx.ledger, SRC, ctx.rows)
        if not ctx.dry and (healed := ctx.ledger.heal_waits(SRC)):
            ctx.log.info("%d waiting rows whose dependency is already synced are evaluated again", healed)
        if ctx.leftover:
            ctx.log.warning(
                "Found %d write intent(s) left by an interrupted run; they will be checked against "
                "QuickBooks before anything is created again.",
                len(ctx.leftover),
            )
        triggers = ProjectTriggers(
            ctx.ledger,
            ctx.s,
            workflows,
            first_run_at=self.first_run_at,
            run_started_at=self.run_started_at,
            warn=ctx.warn,
        )
        contacts = ContactIndex(ctx.client, ctx.log)
        names = NameBook(ctx.ledger, contacts, dry=ctx.dry)
        customers = CustomerSync(ctx, contacts, names)
        jobs = JobSync(ctx, contacts, names, customers, triggers)
        taxes = TaxBook(ctx.client, ctx.s, home_currency)
        listed = InvoiceIndex(ctx.client, ctx.log, partial(ctx.links.linked_targets, "invoice"))
        invoices = InvoiceSync(ctx, jobs, ItemIndex(ctx.client, ctx.s), listed, taxes)
        payments = PaymentSync(ctx, invoices)
        payments.check_settings()  # before anything is written
        try:
            customers.sync_decided()
            jobs.sync_projects()
            customers.sync_remaining()
            invoices.sync()
            payments.sync()
        finally:
            ctx.journal.flush()
            ctx.writer.close()
        for message in triggers.unreached_warnings(ctx.links, dry=ctx.dry):
            ctx.warn(message)
        if not ctx.dry and (queued := len(ctx.ledger.review_items(status="open", source_system=SRC))):
            ctx.log.warning(
                "WARNING: %d client(s) wait in the review queue for a person to choose their QuickBooks customer: "
                "`coperniq-qbo review`",
                queued,
            )
        ctx.ledger.flush()
        return Result(ctx.rows.counts, ctx.rows.plan, ctx.warnings, evaluated=ctx.guard.processed)

    def _wake_on_new_settings(self, workflows: list[dict[str, Any]]) -> None:
        """Skipped and waiting rows are re-evaluated only when they or what they wait on change; a change of a
        setting that decides them (or the first run of this version) re-evaluates them all, once."""
        ctx = self.ctx
        decisions = decisions_fingerprint(ctx.s, [fingerprint(p) for p in workflows])
        streams = ("projects", "accounts", "invoices", "payments")
        if woken := ctx.wake_on_change(DECISIONS_META, decisions, streams, ("skipped", "waiting")):
            ctx.log.info(
                "Settings that decide what syncs changed (or first run of this version): %d skipped or "
                "waiting rows are evaluated again",
                woken,
            )


#: Ledger meta key: the fingerprint of the settings that decide which rows sync and how.
DECISIONS_META = "forward:decisions"


def decisions_fingerprint(settings: Settings, workflows: list[str]) -> str:
    """What a skipped or waiting row's verdict depends on besides the row itself and the links: the settings, and
    the workflows the trigger phases are resolved against (their phase order)."""
    return fingerprint(
        {
            "version": 1,
            "workflows": sorted(workflows),
            "trigger_phases": [[str(t.workflow), str(t.phase)] for t in settings.trigger_phases],
            "backfill": settings.backfill,
            "trigger_since": settings.trigger_since.isoformat() if settings.trigger_since else None,
            "invoice_sync": settings.invoice_sync,
            "invoice_statuses": list(settings.invoice_statuses),
            "matching_strategy": settings.matching_strategy,
            "ambiguous_match": settings.ambiguous_match,
            "item_mapping": dict(settings.item_mapping),
            "default_item": settings.default_item,
            "payment_account": settings.payment_account,
            "customer_name_template": settings.customer_name_template,
            "job_name_template": settings.job_name_template,
            "invoice_number_prefix": settings.invoice_number_prefix,
            "void_policy": settings.void_policy,  # an invoice left (leave) is voided once the policy says so
            "base_url": settings.base_url,
            # a refund of credit skipped for want of refund_account is recorded once it is set (keys only when set,
            # so a ledger of a company without them keeps its fingerprint)
            **({"refund_account": settings.refund_account} if settings.refund_account else {}),
            **({"receivable_account": settings.receivable_account} if settings.receivable_account else {}),
        }
    )
