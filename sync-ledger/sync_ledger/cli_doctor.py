"""`coperniq-qbo doctor`: the troubleshooting checklist, runnable before (or between) syncs.

The target repeats the data-level checks at the start of every run; doctor runs them on demand from the
target's configuration and the ledger, so an operator can fix meltano.yml without waiting for a sync.
Only the connection check talks to Merge (skip it with --offline).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sync_ledger.triggers import TriggerRule, parse_trigger_phases, resolve_rules, rule_for
from sync_ledger.cli import (
    DISCONNECTED_META,
    EXIT_NOT_CONNECTED,
    EXIT_OK,
    CliError,
    Console,
    Settings,
    _api_message,
    _api_status,
    _counts_summary,
    _is_api_error,
    merge_client,
    open_ledger,
)

TARGET = "target-quickbooks-merge"
TARGET_ENV = "TARGET_QUICKBOOKS_MERGE_"
LEVELS = ("PASS", "INFO", "WARN", "FAIL")


@dataclass
class Check:
    name: str
    level: str  # PASS | INFO | WARN | FAIL
    message: str
    hint: str = ""


def _norm(value: Any) -> str:
    return " ".join(str(value or "").split()).casefold()


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _parse_env_value(raw: str) -> Any:
    """Meltano writes arrays/objects/booleans to env vars as JSON; plain strings stay strings."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def load_target_config(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> tuple[dict[str, Any], str]:
    """(config, where it came from): --config file, else `meltano config print`, else TARGET_* env vars."""
    env = dict(os.environ if environ is None else environ)
    if args.target_config:
        path = Path(args.target_config)
        try:
            return json.loads(path.read_text(encoding="utf-8")), f"--config {path}"
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read --config {path}: {exc}") from exc
    root = Path(env.get("MELTANO_PROJECT_ROOT") or os.getcwd())
    meltano = shutil.which("meltano")
    if not args.no_meltano and meltano and (root / "meltano.yml").exists():
        cmd = [meltano]
        if env.get("MELTANO_ENVIRONMENT"):
            cmd.append(f"--environment={env['MELTANO_ENVIRONMENT']}")
        cmd += ["config", "print", TARGET, "--format", "json"]  # safe by default: secrets come back masked
        try:
            proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=120, env=env, check=False)
            if proc.returncode == 0:
                return json.loads(proc.stdout), "meltano config print " + TARGET
        except (OSError, subprocess.TimeoutExpired, ValueError):
            pass
    config = {k[len(TARGET_ENV):].lower(): _parse_env_value(v) for k, v in env.items()
              if k.startswith(TARGET_ENV) and v != ""}
    return config, f"{TARGET_ENV}* environment variables" if config else "nothing (no --config, meltano or env vars)"


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def check_triggers(config: Mapping[str, Any], ledger: Any | None) -> list[Check]:
    """Trigger phases configured, well-formed, present in the workflows Coperniq sent, and ever reached (the same
    parsing and rule as the plugins: sync_ledger.triggers)."""
    raw = config.get("trigger_phases")
    if isinstance(raw, str):
        raw = _parse_env_value(raw)
    if not raw:
        return [Check("trigger phases", "FAIL", "no trigger phase configured: no project will ever sync to QuickBooks",
                      'set SYNC_TRIGGER_PHASES (or trigger_phases on target-quickbooks-merge), e.g. '
                      '[{"workflow": "Residential Solar", "phase": "Install"}]')]
    specs, errors = parse_trigger_phases(raw)
    out = [Check("trigger phases", "FAIL", message, "configure one {workflow, phase} object per workflow")
           for message in errors]
    if specs:
        out.append(Check("trigger phases", "PASS", f"{len(specs)} configured: "
                         + "; ".join(f"{s.workflow} -> {s.phase}" for s in specs)))
    if ledger is None or not specs:
        return out

    workflows = [p for _, p, _, _ in ledger.iter_staged("coperniq", "workflows")]
    if not workflows:
        out.append(Check("trigger phases vs workflows", "INFO",
                         "no Coperniq workflows in the ledger yet: cannot check the phase names"))
        return out
    rules, _ = resolve_rules(specs, workflows)
    projects = [p for _, p, _, _ in ledger.iter_staged("coperniq", "projects")]
    for rule in rules:
        wf = _workflow_of(rule, workflows)
        if wf is None:
            names = ", ".join(sorted(str(w.get("name")) for w in workflows))
            out.append(Check("trigger phases vs workflows", "FAIL",
                             f"workflow {rule.spec.workflow!r} is not among Coperniq's workflows ({names}): "
                             "projects never reach it", "fix the workflow name or id in trigger_phases"))
            continue
        if not rule.resolved:
            names = ", ".join(str(p.get("name")) for p in wf.get("phases") or [])
            out.append(Check("trigger phases vs workflows", "FAIL",
                             f"phase {rule.spec.phase!r} is not a phase of workflow {wf.get('name')!r} ({names}): "
                             "projects can never reach it", "fix the phase name or id in trigger_phases"))
            continue
        in_wf = [p for p in projects if rule.matches_project(p)]
        reached = [p for p in in_wf if rule.project_reached(p)]
        label = f"{wf.get('name')} -> {rule.phase_label}"
        if in_wf and not reached:
            out.append(Check("projects reaching trigger phases", "WARN",
                             f"{len(in_wf)} project(s) in workflow {rule.spec.workflow!r}, none has reached "
                             f"{label!r} yet", "check that this is the phase where projects should reach QuickBooks"))
        else:
            out.append(Check("projects reaching trigger phases", "PASS",
                             f"{label}: {len(reached)} of {len(in_wf)} project(s) at or past it"))
    untriggered = {p.get("workflowName") or str(p.get("workflowId")) for p in projects
                   if rule_for(rules, p) is None}
    if untriggered:
        out.append(Check("workflows without trigger", "INFO",
                         f"projects in {', '.join(sorted(map(str, untriggered)))} never sync (no trigger phase)"))
    return out


def _workflow_of(rule: TriggerRule, workflows: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return next((w for w in workflows
                 if rule.matches_project({"workflowId": w.get("id"), "workflowName": w.get("name")})), None)


def check_invoices(config: Mapping[str, Any], ledger: Any | None) -> list[Check]:
    """Invoice sync off while Coperniq invoices arrive is the classic "why are my invoices missing"."""
    on = _truthy(config.get("invoice_sync", False))
    n = sum(1 for _ in ledger.iter_staged("coperniq", "invoices")) if ledger is not None else 0
    if on:
        return [Check("invoice sync", "PASS", f"on ({n} Coperniq invoice(s) received)")]
    if n:
        return [Check("invoice sync", "WARN", f"off while {n} Coperniq invoice(s) arrived: they are not pushed",
                      "set invoice_sync: true on target-quickbooks-merge if invoices should reach QuickBooks")]
    return [Check("invoice sync", "INFO", "off (no Coperniq invoices received so far)")]


def check_ledger(settings: Settings, ledger: Any | None) -> list[Check]:
    """Presence, the disconnect flag, crash leftovers, failed rows of the last run and failed staged rows."""
    if ledger is None:
        return [Check("ledger", "WARN", f"no ledger at {settings.ledger_path}: nothing has synced yet",
                      "run the sync once, or point ledger_path at the targets' ledger_path")]
    out = [Check("ledger", "PASS", f"{settings.ledger_path}")]
    flag = ledger.get_meta(DISCONNECTED_META)
    if flag:
        out.append(Check("disconnected", "FAIL", f"disconnected with `coperniq-qbo disconnect` at {flag}: syncs fail fast",
                         "run `coperniq-qbo connect` to link QuickBooks Online again"))
    intents = ledger.pending_intents()
    if intents:
        out.append(Check("interrupted writes", "WARN", f"{len(intents)} write-ahead intent(s) left by an interrupted "
                         "run", "the next run checks QuickBooks for them before writing again"))
    runs = ledger.runs(limit=1)
    if not runs:
        out.append(Check("last run", "INFO", "no runs recorded yet"))
    else:
        run = runs[0]
        failed = ledger.log_rows(run_id=run["run_id"], failed_only=True, limit=100000)
        msg = f"{run['run_id']} ({run.get('direction')}, {run.get('status')}): {_counts_summary(run.get('counts'))}"
        if failed or str(run.get("status")) not in ("success", "ok", "done"):
            out.append(Check("last run", "WARN", f"{msg}; {len(failed)} failed row(s)",
                             f"coperniq-qbo log --run {run['run_id']} --failed"))
        else:
            out.append(Check("last run", "PASS", msg))
    stuck = 0
    for stream in ("accounts", "projects", "invoices", "payments"):
        stuck += sum(1 for _ in ledger.iter_staged("coperniq", stream, status="failed"))
    if stuck:
        out.append(Check("failed rows", "WARN", f"{stuck} Coperniq record(s) are waiting in staging as failed",
                         "they are retried on the next run; `coperniq-qbo log --failed` shows why"))
    return out


def check_connection(settings: Settings, offline: bool) -> list[Check]:
    if not settings.merge_api_key or not settings.account_token:
        missing = " and ".join(n for n, v in (("merge_api_key", settings.merge_api_key),
                                              ("account_token", settings.account_token)) if not v)
        return [Check("credentials", "FAIL", f"{missing} not set", "run `coperniq-qbo connect`; set merge_api_key "
                      "via `meltano config set coperniq-qbo merge_api_key` or .env")]
    out = [Check("credentials", "PASS", "merge_api_key and account_token are set (values hidden)")]
    if offline:
        out.append(Check("connection", "INFO", "skipped (--offline)"))
        return out
    try:
        details = merge_client(settings, account=True).get("/account-details") or {}
    except Exception as exc:
        if not _is_api_error(exc):
            raise
        status = _api_status(exc)
        if status in (401, 403, 404):
            out.append(Check("connection", "FAIL", f"Merge rejects the account token (HTTP {status}): disconnected",
                             "run `coperniq-qbo connect`"))
        else:
            out.append(Check("connection", "FAIL", f"cannot reach Merge at {settings.base_url}: {_api_message(exc)}"))
        return out
    out.append(Check("connection", "PASS", f"connected to {details.get('end_user_organization_name') or '?'} "
                     f"({details.get('integration') or '?'}, status {details.get('status') or '?'})"))
    return out


def run_doctor(args: argparse.Namespace, settings: Settings, con: Console) -> int:
    config, source = load_target_config(args, getattr(args, "environ", None))
    checks: list[Check] = [Check("target config", "INFO" if config else "WARN", f"read from {source}")]
    ledger = open_ledger(settings, read_only=True)
    try:
        checks += check_triggers(config, ledger)
        checks += check_invoices(config, ledger)
        checks += check_ledger(settings, ledger)
    finally:
        if ledger is not None:
            ledger.close()
    checks += check_connection(settings, args.offline)
    _emit(checks, args.format, con)
    return EXIT_NOT_CONNECTED if any(c.level == "FAIL" for c in checks) else EXIT_OK


def _emit(checks: Iterable[Check], fmt: str, con: Console) -> None:
    checks = list(checks)
    if fmt == "json":
        con.say(json.dumps([c.__dict__ for c in checks], indent=2))
        return
    for c in checks:
        con.say(f"[{c.level}] {c.name}: {c.message}")
        if c.hint and c.level in ("WARN", "FAIL"):
            con.say(f"       -> {c.hint}")
    fails = sum(c.level == "FAIL" for c in checks)
    warns = sum(c.level == "WARN" for c in checks)
    con.say(f"doctor: {fails} failure(s), {warns} warning(s)")
