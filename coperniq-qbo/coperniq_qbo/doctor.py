"""`coperniq-qbo doctor`: the troubleshooting checklist, runnable before (or between) syncs.

The target repeats the data-level checks at the start of every run; doctor runs them on demand from the
target's configuration and the ledger, so an operator can fix meltano.yml without waiting for a sync. The config is
judged by the target's own settings validation (coperniq_qbo.target_config) and the trigger phases by the rules both
plugins use (sync_ledger.triggers). Only the connection check talks to Merge (skip it with --offline).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from coperniq_qbo.console import Console
from coperniq_qbo.errors import EXIT_NOT_CONNECTED, EXIT_OK, api_message, api_status, is_api_error
from coperniq_qbo.ledger_access import DISCONNECTED_META, counts_summary, open_ledger
from coperniq_qbo.merge_api import merge_client
from coperniq_qbo.settings import Settings
from coperniq_qbo.target_config import TARGET, TargetView, load_target_config, setting_of, validate_target_config
from sync_ledger import Ledger
from sync_ledger.triggers import TriggerRule, parse_trigger_phases, resolve_rules, rule_for
from sync_ledger.util import url_secrets


@dataclass
class Check:
    """One line of the checklist; the hint is printed under WARN and FAIL lines."""

    name: str
    level: str  # PASS | INFO | WARN | FAIL
    message: str
    hint: str = ""


def check_target_settings(target: TargetView) -> list[Check]:
    """What the target would stop on before reading a record (trigger phases have their own check below)."""
    return [
        Check(
            "target settings",
            "FAIL",
            message,
            f"the target refuses to start with this: fix it on {TARGET} (meltano.yml or its env vars)",
        )
        for message in target.errors
        if setting_of(message) != "trigger_phases"
    ]


def check_triggers(config: Mapping[str, Any], ledger: Ledger | None) -> list[Check]:
    """Trigger phases configured, well-formed, present in the workflows Coperniq sent, and ever reached (the same
    parsing and rule as the plugins: sync_ledger.triggers)."""
    raw = config.get("trigger_phases")
    if not raw:
        return [
            Check(
                "trigger phases",
                "FAIL",
                "no trigger phase configured: no project will ever sync to QuickBooks",
                "set SYNC_TRIGGER_PHASES (or trigger_phases on target-quickbooks-merge), e.g. "
                '[{"workflow": "Residential Solar", "phase": "Install"}]',
            )
        ]
    specs, errors = parse_trigger_phases(raw)
    out = [
        Check("trigger phases", "FAIL", message, "configure one {workflow, phase} object per workflow")
        for message in errors
    ]
    if specs:
        out.append(
            Check(
                "trigger phases",
                "PASS",
                f"{len(specs)} configured: " + "; ".join(f"{s.workflow} -> {s.phase}" for s in specs),
            )
        )
    if ledger is None or not specs:
        return out

    workflows = [p for _, p, _, _ in ledger.iter_staged("coperniq", "workflows")]
    if not workflows:
        out.append(
            Check(
                "trigger phases vs workflows",
                "INFO",
                "no Coperniq workflows in the ledger yet: cannot check the phase names",
            )
        )
        return out
    rules, _ = resolve_rules(specs, workflows)
    projects = [p for _, p, _, _ in ledger.iter_staged("coperniq", "projects")]
    for rule in rules:
        wf = _workflow_of(rule, workflows)
        if wf is None:
            names = ", ".join(sorted(str(w.get("name")) for w in workflows))
            out.append(
                Check(
                    "trigger phases vs workflows",
                    "FAIL",
                    f"workflow {rule.spec.workflow!r} is not among Coperniq's workflows ({names}): "
                    "projects never reach it",
                    "fix the workflow name or id in trigger_phases",
                )
            )
            continue
        if not rule.resolved:
            names = ", ".join(str(p.get("name")) for p in wf.get("phases") or [])
            out.append(
                Check(
                    "trigger phases vs workflows",
                    "FAIL",
                    f"phase {rule.spec.phase!r} is not a phase of workflow {wf.get('name')!r} ({names}): "
                    "projects can never reach it",
                    "fix the phase name or id in trigger_phases",
                )
            )
            continue
        in_wf = [p for p in projects if rule.matches_project(p)]
        reached = [p for p in in_wf if rule.project_reached(p)]
        label = f"{wf.get('name')} -> {rule.phase_label}"
        if in_wf and not reached:
            out.append(
                Check(
                    "projects reaching trigger phases",
                    "WARN",
                    f"{len(in_wf)} project(s) in workflow {rule.spec.workflow!r}, none has reached {label!r} yet",
                    "check that this is the phase where projects should reach QuickBooks",
                )
            )
        else:
            out.append(
                Check(
                    "projects reaching trigger phases",
                    "PASS",
                    f"{label}: {len(reached)} of {len(in_wf)} project(s) at or past it",
                )
            )
    untriggered = {p.get("workflowName") or str(p.get("workflowId")) for p in projects if rule_for(rules, p) is None}
    if untriggered:
        out.append(
            Check(
                "workflows without trigger",
                "INFO",
                f"projects in {', '.join(sorted(map(str, untriggered)))} never sync (no trigger phase)",
            )
        )
    return out


def _workflow_of(rule: TriggerRule, workflows: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The workflow a rule belongs to, matched by the rule itself (id, else normalized name)."""
    return next(
        (w for w in workflows if rule.matches_project({"workflowId": w.get("id"), "workflowName": w.get("name")})), None
    )


def check_invoices(target: TargetView, ledger: Ledger | None) -> list[Check]:
    """Invoice sync off while Coperniq invoices arrive is the classic "why are my invoices missing"."""
    if target.settings is None:
        return [Check("invoice sync", "INFO", "not checked: the target cannot read its config (see above)")]
    on = target.settings.invoice_sync
    n = sum(1 for _ in ledger.iter_staged("coperniq", "invoices")) if ledger is not None else 0
    if on:
        return [Check("invoice sync", "PASS", f"on ({n} Coperniq invoice(s) received)")]
    if n:
        return [
            Check(
                "invoice sync",
                "WARN",
                f"off while {n} Coperniq invoice(s) arrived: they are not pushed",
                "set invoice_sync: true on target-quickbooks-merge if invoices should reach QuickBooks",
            )
        ]
    return [Check("invoice sync", "INFO", "off (no Coperniq invoices received so far)")]


def check_ledger(settings: Settings, ledger: Ledger | None) -> list[Check]:
    """Presence, the disconnect flag, crash leftovers, failed rows of the last run and failed staged rows."""
    if ledger is None:
        return [
            Check(
                "ledger",
                "WARN",
                f"no ledger at {settings.ledger_display}: nothing has synced yet",
                "run the sync once, or point ledger_path (or ledger_url and company) at the targets' ones",
            )
        ]
    out = [Check("ledger", "PASS", settings.ledger_display)]
    flag = ledger.get_meta(DISCONNECTED_META)
    if flag:
        out.append(
            Check(
                "disconnected",
                "FAIL",
                f"disconnected with `coperniq-qbo disconnect` at {flag}: syncs fail fast",
                "run `coperniq-qbo connect` to link QuickBooks Online again",
            )
        )
    intents = ledger.pending_intents()
    if intents:
        out.append(
            Check(
                "interrupted writes",
                "WARN",
                f"{len(intents)} write-ahead intent(s) left by an interrupted run",
                "the next run checks QuickBooks for them before writing again",
            )
        )
    runs = ledger.runs(limit=1)
    if not runs:
        out.append(Check("last run", "INFO", "no runs recorded yet"))
    else:
        run = runs[0]
        failed = ledger.log_rows(run_id=run["run_id"], failed_only=True, limit=100000)
        msg = f"{run['run_id']} ({run.get('direction')}, {run.get('status')}): {counts_summary(run.get('counts'))}"
        if failed or str(run.get("status")) not in ("success", "ok", "done"):
            out.append(
                Check(
                    "last run",
                    "WARN",
                    f"{msg}; {len(failed)} failed row(s)",
                    f"coperniq-qbo log --run {run['run_id']} --failed",
                )
            )
        else:
            out.append(Check("last run", "PASS", msg))
    stuck = 0
    for stream in ("accounts", "projects", "invoices", "payments"):
        stuck += sum(1 for _ in ledger.iter_staged("coperniq", stream, status="failed"))
    if stuck:
        out.append(
            Check(
                "failed rows",
                "WARN",
                f"{stuck} Coperniq record(s) are waiting in staging as failed",
                "they are retried on the next run; `coperniq-qbo log --failed` shows why",
            )
        )
    return out


def check_connection(settings: Settings, offline: bool) -> list[Check]:
    """Both credentials set, and (unless offline) Merge accepts them for the linked account."""
    if not settings.merge_api_key or not settings.account_token:
        missing = " and ".join(
            n
            for n, v in (("merge_api_key", settings.merge_api_key), ("account_token", settings.account_token))
            if not v
        )
        return [
            Check(
                "credentials",
                "FAIL",
                f"{missing} not set",
                "run `coperniq-qbo connect`; set merge_api_key "
                "via `meltano config set coperniq-qbo merge_api_key` or .env",
            )
        ]
    out = [Check("credentials", "PASS", "merge_api_key and account_token are set (values hidden)")]
    if offline:
        out.append(Check("connection", "INFO", "skipped (--offline)"))
        return out
    try:
        details = merge_client(settings, account=True).get("/account-details") or {}
    except Exception as exc:
        if not is_api_error(exc):
            raise
        status = api_status(exc)
        if status in (401, 403, 404):
            out.append(
                Check(
                    "connection",
                    "FAIL",
                    f"Merge rejects the account token (HTTP {status}): disconnected",
                    "run `coperniq-qbo connect`",
                )
            )
        else:
            out.append(Check("connection", "FAIL", f"cannot reach Merge at {settings.base_url}: {api_message(exc)}"))
        return out
    out.append(
        Check(
            "connection",
            "PASS",
            f"connected to {details.get('end_user_organization_name') or '?'} "
            f"({details.get('integration') or '?'}, status {details.get('status') or '?'})",
        )
    )
    return out


def run_doctor(args: argparse.Namespace, settings: Settings, con: Console) -> int:
    """Every check, printed; exit 1 when any FAILs (so it can gate a deploy), else 0."""
    config, source = load_target_config(args, getattr(args, "environ", None))
    for secret in url_secrets(str(config.get("ledger_url") or "")):  # the target's ledger_url, should it be echoed
        con.add_secret(secret)
    target = validate_target_config(config)
    checks: list[Check] = [Check("target config", "INFO" if config else "WARN", f"read from {source}")]
    checks += check_target_settings(target)
    ledger = open_ledger(settings, read_only=True)
    try:
        checks += check_triggers(config, ledger)
        checks += check_invoices(target, ledger)
        checks += check_ledger(settings, ledger)
    finally:
        if ledger is not None:
            ledger.close()
    checks += check_connection(settings, args.offline)
    _emit(checks, args.format, con)
    return EXIT_NOT_CONNECTED if any(c.level == "FAIL" for c in checks) else EXIT_OK


def _emit(checks: Iterable[Check], fmt: str, con: Console) -> None:
    """The checklist as text lines with a summary, or as a JSON list."""
    checks = list(checks)
    if fmt == "json":
        con.say(json.dumps([asdict(c) for c in checks], indent=2))
        return
    for c in checks:
        con.say(f"[{c.level}] {c.name}: {c.message}")
        if c.hint and c.level in ("WARN", "FAIL"):
            con.say(f"       -> {c.hint}")
    fails = sum(c.level == "FAIL" for c in checks)
    warns = sum(c.level == "WARN" for c in checks)
    con.say(f"doctor: {fails} failure(s), {warns} warning(s)")
