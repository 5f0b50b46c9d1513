"""target-quickbooks-merge: Coperniq clients, projects, invoices and payments -> QuickBooks Online via Merge.

Life cycle of a run:
1. first SCHEMA: open the ledger, fail fast if the linked account is disconnected, start a ledger run;
2. RECORDs: sinks stage them into the ledger (bulk, durable);
3. end of input: drain the sinks, run the reconcile pass, flush the ledger, and only then let the SDK emit STATE.
"""

from __future__ import annotations

import sys
import time
import typing as t
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from singer_sdk import Target
from singer_sdk.sinks import Sink

from sync_ledger import ApiError, Ledger
from sync_ledger.alerts import RunOutcome, quota_stopped_streams
from sync_ledger.alerts import evaluate as evaluate_alerts
from sync_ledger.util import quiet_sdk_metrics

from .merge_client import MergeClient
from .reconcile import DIRECTION, SRC, ConfigRefused, Disconnected, Reconciler, Result, Unreachable
from .report import plan_table, summary_table
from .settings import CONFIG_JSONSCHEMA, Settings, parse_dt
from .sinks import INVALID_KEY, StagingSink

#: Linked-account statuses the sync cannot write through, and why (Merge's LinkedAccount.status values).
CANNOT_SYNC_STATUSES = {
    "RELINK_NEEDED": "QuickBooks refused Merge's credentials",
    "DISCONNECTED": "the link was removed",
    "INCOMPLETE": "the Merge Link flow was never finished",
}

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

#: Ledger meta key: the Merge linked account (its id) whose records this company's links point at.
LINKED_ACCOUNT_META = "merge_linked_account_id"
RECONNECT_HINT = "Run `coperniq-qbo connect` to link the QuickBooks company again, then re-run the pipeline."


class TargetError(Exception):
    """A run-level problem the operator must fix (disconnected account, unreachable Merge, failed rows)."""


class AccountDisconnected(TargetError):
    """Merge rejected the linked account, or the ledger is flagged disconnected (alert `account_disconnected`)."""


class TargetQuickbooksMerge(Target):
    """Singer target for QuickBooks Online through the Merge Accounting API."""

    @classmethod
    @override
    def invoke(cls, *args: Any, **kwargs: Any) -> None:
        """A TargetError (bad configuration, unreachable or disconnected Merge) ends the CLI with its one-line
        message and exit code 1; the traceback is only logged at DEBUG."""
        try:
            super().invoke(*args, **kwargs)
        except TargetError as exc:
            cls.logger.debug("run stopped", exc_info=True)
            cls.logger.error("%s", exc)
            raise SystemExit(1) from None

    name = "target-quickbooks-merge"
    config_jsonschema = CONFIG_JSONSCHEMA
    default_sink_class = StagingSink

    def __init__(self, *args: t.Any, client: MergeClient | None = None, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        quiet_sdk_metrics(self)
        self.settings = Settings.from_config(self.config)
        self.max_parallelism = 1  # one linked account, one rate budget: no parallel drains
        self._client = client
        self._ledger: Ledger | None = None
        self._run_id: str | None = None
        self._first_run_at: datetime | None = None
        self._run_started_at: datetime | None = None
        self._state_seen = False
        self._tap_state: Any = None  # the tap's last STATE value (the coperniq_quota alert reads it)
        self._sinks: list[Sink] = []
        self.result: Result | None = None
        self._staged_count = 0
        self._started_at = self._progress_at = time.monotonic()

    # ------------------------------------------------------------------ start
    @property
    def client(self) -> MergeClient:
        if self._client is None:
            s = self.settings
            self._client = MergeClient(
                s.base_url,
                api_key=s.merge_api_key,
                account_token=s.account_token,
                max_requests_per_minute=s.max_requests_per_minute,
                connections=s.max_parallel_writes,
            )
        return self._client

    @property
    def ledger(self) -> Ledger:
        self.start()
        assert self._ledger is not None
        return self._ledger

    @property
    def run_id(self) -> str:
        self.start()
        assert self._run_id is not None
        return self._run_id

    def start(self) -> None:
        """Idempotent run start: pre-flight checks before any record is read."""
        if self._ledger is not None:
            return
        s = self.settings
        ledger = Ledger(s.ledger_place, company=s.company)
        try:
            self._preflight(ledger)
        except TargetError as exc:
            run_id = ledger.refuse_run(DIRECTION, str(exc), dry_run=s.dry_run)  # `runs` and `status` show it
            gone = str(exc) if isinstance(exc, AccountDisconnected) else None
            self._alert(ledger, run_id, "refused", reason=str(exc), disconnected=gone)
            ledger.close()
            raise
        except BaseException:
            ledger.close()
            raise
        self._ledger = ledger
        now = self._run_started_at = datetime.now(UTC)
        first = ledger.get_meta("first_run_at")
        if first:
            self._first_run_at = parse_dt(first)
        else:
            self._first_run_at = now
            if not s.dry_run:
                ledger.set_meta("first_run_at", now.isoformat().replace("+00:00", "Z"))
        self._run_id = ledger.start_run(DIRECTION, dry_run=s.dry_run)
        self.logger.info(
            "Run %s started (ledger %s%s)",
            self._run_id,
            ledger.where,
            ", DRY RUN: nothing will be written to QuickBooks" if s.dry_run else "",
        )
        if not s.backfill:
            since = s.trigger_since or self._first_run_at
            self.logger.info(
                "backfill is off: projects count only if they reached their trigger phase after %s", since.isoformat()
            )

    def _preflight(self, ledger: Ledger) -> None:
        if not self.settings.trigger_phases:
            raise TargetError(
                "trigger_phases is not set, so no client or project could ever sync to QuickBooks. Set it once for "
                'both plugins, e.g. SYNC_TRIGGER_PHASES=\'[{"workflow": "Residential Solar", "phase": "Install"}]\' '
                "(`coperniq-qbo doctor` lists the workflows and phases Coperniq sent)."
            )
        flag = ledger.get_meta("disconnected")
        if flag:
            raise AccountDisconnected(
                f"The QuickBooks account is marked disconnected in the sync ledger ({flag}). {RECONNECT_HINT}"
            )
        try:
            details = self.client.account_details()
        except ApiError as exc:
            if exc.status in (401, 403, 404):
                raise AccountDisconnected(
                    f"Merge rejected the linked account (HTTP {exc.status}): it is disconnected or "
                    f"the account_token/merge_api_key is wrong. {RECONNECT_HINT}"
                ) from None
            raise TargetError(f"Cannot reach Merge at {self.settings.base_url}: {exc.message}") from None
        status = str(details.get("status") or "").upper()
        if status in CANNOT_SYNC_STATUSES:
            raise AccountDisconnected(
                f"Merge reports the QuickBooks link as {status}: {CANNOT_SYNC_STATUSES[status]}. {RECONNECT_HINT}"
            )
        if status not in ("", "COMPLETE"):
            self.logger.warning(
                "WARNING: Merge reports the QuickBooks link as %s (not COMPLETE): writes go on, but "
                "what Merge lists of QuickBooks may be out of date (matching reads it)",
                status,
            )
        self._check_company(ledger, details)
        self.logger.info(
            "Linked account OK: %s (%s, status %s)",
            details.get("end_user_organization_name") or "?",
            details.get("integration") or "QuickBooks Online",
            status or "not reported",
        )

    def _check_company(self, ledger: Ledger, details: Mapping[str, Any]) -> None:
        """A company's ledger rows belong to one Merge linked account (its ids are that account's): the first
        run records it; a later run with another account's token is refused when `company` is set, so one
        company's run can never read or write another's links. Without `company` (one company per ledger), a
        new link (after disconnect and connect) takes over, with a warning."""
        account = str(details.get("id") or "")
        if not account:
            return
        bound = ledger.get_meta(LINKED_ACCOUNT_META)
        if bound and bound != account:
            if self.settings.company is not None:
                raise TargetError(
                    f"company {self.settings.company!r} belongs to Merge linked account {bound} in the sync ledger, "
                    f"but account_token is for linked account {account} "
                    f"({details.get('end_user_organization_name') or '?'}): set `company` and account_token of the "
                    "same company (each QuickBooks company is its own company here)."
                )
            self.logger.warning(
                "WARNING: the sync ledger was written for Merge linked account %s; this run's account_token is for "
                "%s, which takes over",
                bound,
                account,
            )
        if bound != account and not self.settings.dry_run:
            ledger.set_meta(LINKED_ACCOUNT_META, account)

    @override
    def _process_state_message(self, message_dict: dict) -> None:
        self._state_seen = True
        self._tap_state = message_dict.get("value")
        super()._process_state_message(message_dict)

    # ------------------------------------------------------------------ called by sinks
    def register_sink(self, sink: Sink) -> None:
        self.start()
        self._sinks.append(sink)

    def stage(self, stream: str, records: list[tuple[str, dict]]) -> None:
        """Bulk-stage a batch; schema-invalid rows are staged as failed with the validation message."""
        self.ledger.stage(SRC, stream, records)
        self._staged_count += len(records)
        now = time.monotonic()
        if now - self._progress_at >= self.settings.progress_interval:
            self._progress_at = now
            elapsed = max(now - self._started_at, 1e-6)
            self.logger.info(
                "progress: %d records staged so far (%.0f/s), latest batch: %s",
                self._staged_count,
                self._staged_count / elapsed,
                stream,
            )
        for record_id, record in records:
            if INVALID_KEY in record:
                self.record_failure(stream, record_id, f"schema validation failed: {record[INVALID_KEY]}")
                self.ledger.mark_staged(SRC, stream, record_id, "failed", str(record[INVALID_KEY]))

    def record_failure(self, stream: str, record_id: str | None, reason: str) -> None:
        self.logger.warning("%s %s failed: %s", stream, record_id, reason)
        self.ledger.log(
            self.run_id, direction=DIRECTION, stream=stream, source_id=record_id, action="failed", reason=reason
        )
        if self.result is None:
            self.result = Result()
        self.result.counts[stream]["failed"] += 1

    # ------------------------------------------------------------------ end of input
    def process_endofpipe(self) -> None:
        """Stage what is buffered, reconcile, make the ledger durable, and only then emit STATE (super)."""
        self.start()
        for sink in self._sinks:
            self.drain_one(sink)
        ledger = self.ledger
        pre = self.result or Result()
        status = "success"
        try:
            reconciler = Reconciler(
                ledger,
                self.client,
                self.settings,
                self.run_id,
                logger=self.logger,
                first_run_at=self._first_run_at,
                run_started_at=self._run_started_at,
            )
            self.result = reconciler.run()
        except Disconnected as exc:
            ledger.finish_run(self.run_id, "failed")
            message = f"Merge rejected the linked account mid-run ({exc}). {RECONNECT_HINT}"
            self._alert(ledger, self.run_id, "failed", reason=message, disconnected=message)
            ledger.close()
            raise AccountDisconnected(message) from None
        except (ConfigRefused, Unreachable) as exc:
            ledger.log(self.run_id, direction=DIRECTION, stream="run", source_id=None, action="failed", reason=str(exc))
            status = "refused" if isinstance(exc, ConfigRefused) else "failed"
            ledger.finish_run(self.run_id, status)
            self._alert(ledger, self.run_id, status, reason=str(exc))
            ledger.close()
            raise TargetError(str(exc)) from None
        except BaseException as exc:
            ledger.finish_run(self.run_id, "failed")
            if isinstance(exc, Exception):  # not on Ctrl-C / SIGTERM: no webhook wait on the way out
                self._alert(ledger, self.run_id, "failed", reason=f"{type(exc).__name__}: {exc}")
            ledger.close()
            raise
        for stream, counter in pre.counts.items():
            self.result.counts[stream].update(counter)
        failed = self.result.failed
        if failed:
            status = "partial"
        if not self._state_seen:
            # The tap sent no STATE at all: it failed (or was stopped) before finishing one stream. What arrived was
            # synced, but this is no successful sync: Meltano fails the run, and `status` must not say otherwise.
            status = "no-input"
            self.logger.warning(
                "WARNING: the tap sent no STATE (it failed or was stopped early); run %s is recorded "
                "`no-input`, not as a successful sync",
                self._run_id,
            )
        ledger.finish_run(self.run_id, status)
        ledger.flush()
        self._report()
        super().process_endofpipe()  # STATE goes out only now, after the ledger is durable
        self._alert(ledger, self.run_id, status, failed=failed, disconnected="")  # connected: preflight passed
        ledger.close()
        self._ledger = None
        if failed and self.settings.fail_on_error:
            raise TargetError(
                f"{failed} row(s) failed (fail_on_error is on); state and ledger were saved, the "
                "failed rows are retried next run. See `coperniq-qbo log --failed`."
            )

    def _alert(
        self,
        ledger: Ledger,
        run_id: str | None,
        status: str,
        *,
        failed: int | None = None,
        reason: str | None = None,
        disconnected: str | None = None,
    ) -> None:
        """The run's webhook alerts (sync_ledger.alerts), while the ledger is open; never raises."""
        s = self.settings
        quota = None if self._tap_state is None else quota_stopped_streams(self._tap_state)
        outcome = RunOutcome(DIRECTION, run_id, status, failed, reason, disconnected, quota)
        evaluate_alerts(
            ledger, s.alerts, outcome, company=s.company, secrets=s.secrets, dry_run=s.dry_run, logger=self.logger
        )

    def _report(self) -> None:
        assert self.result is not None
        if self.settings.dry_run:
            self.logger.info("DRY RUN plan (nothing was written to QuickBooks):\n%s", plan_table(self.result.plan))
        self.logger.info(
            "Run summary %s (forward: Coperniq -> QuickBooks; %d staged rows evaluated):\n%s",
            self._run_id,
            self.result.evaluated,
            summary_table(self.result.counts),
        )
        calls = self.client.api.calls
        self.logger.info("Merge API calls: %s; retries: %d", dict(calls) or "none", self.client.api.retries)
        failed = self.result.failed
        if failed:
            self.logger.warning(
                "WARNING: %d row(s) failed in run %s and will be retried next run; see `coperniq-qbo log --failed`.",
                failed,
                self._run_id,
            )
        for message in self.result.warnings:
            self.logger.warning("WARNING: %s", message)
