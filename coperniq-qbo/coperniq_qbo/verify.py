"""`coperniq-qbo verify`: a live pre-flight against the real Merge and Coperniq accounts, run before the first sync.

The sandboxes run every behaviour the public docs leave open in two readings (sandbox/profiles.py: optimistic and
pessimistic). The product is built to be correct under both, but which one is true decides how fast things
arrive, and a few answers (a linked account that needs re-linking, no passthrough on the Merge plan) mean the
sync cannot run at all. verify asks the real services the questions that can be asked safely and prints, per
assumption, what it saw and what the product will do about it.

Read-only unless `--write-probe` (one clearly named test customer, archived again). Coperniq calls are capped
(`--max-coperniq-calls`, default 25 of the key's 5,000 a day) and the number used is printed.

This module is the command: its flags, the order of the checks, the verdict and the exit code. The checks live
by service, verify_merge (linked account, passthrough, job visibility), verify_coperniq (its key, rate-limit
headers, phase starts) and verify_probe (the opt-in write), and the report (the `Finding` rows, the table, the
JSON) in verify_report, so each can be read, and grow, without the others.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from coperniq_qbo.console import Console
from coperniq_qbo.errors import EXIT_NOT_CONNECTED, EXIT_OK
from coperniq_qbo.merge_api import merge_client
from coperniq_qbo.settings import Settings
from coperniq_qbo.verify_coperniq import (
    DEFAULT_COPERNIQ_URL,
    DEFAULT_MAX_COPERNIQ_CALLS,
    CoperniqChecks,
    coperniq_client,
    coperniq_settings,
    missing_key_findings,
)
from coperniq_qbo.verify_merge import MergeChecks
from coperniq_qbo.verify_probe import WriteProbe, read_only_finding
from coperniq_qbo.verify_report import Finding, render_calls, render_json, render_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    """verify's own flags (the connection flags come from the parser every command shares)."""
    p.add_argument(
        "--write-probe",
        action="store_true",
        help="also create one test customer in QuickBooks (archived again) to see whether Merge "
        "honours Idempotency-Key",
    )
    p.add_argument(
        "--coperniq-api-url",
        dest="coperniq_api_url",
        help=f"Coperniq API base URL (default: COPERNIQ_QBO_COPERNIQ_API_URL, TAP_COPERNIQ_API_URL, "
        f"else {DEFAULT_COPERNIQ_URL})",
    )
    p.add_argument(
        "--coperniq-api-key",
        dest="coperniq_api_key",
        help="Coperniq API key (prefer TAP_COPERNIQ_API_KEY in .env: flags show up in `ps`)",
    )
    p.add_argument(
        "--max-coperniq-calls",
        dest="max_coperniq_calls",
        type=int,
        default=DEFAULT_MAX_COPERNIQ_CALLS,
        help=f"ceiling on Coperniq calls (default {DEFAULT_MAX_COPERNIQ_CALLS}; the key allows 5,000 a day)",
    )
    p.add_argument("--format", choices=["text", "json"], default="text")


def run_verify(args: argparse.Namespace, settings: Settings, con: Console) -> int:
    """All checks, the table, then exit 0 (the sync can run) or 1 with one line saying why it cannot."""
    merge = merge_client(settings, account=True)
    key, url = coperniq_settings(args, settings, getattr(args, "environ", None))
    con.add_secret(key)
    max_coperniq_calls = max(2, int(args.max_coperniq_calls))
    coperniq = CoperniqChecks(coperniq_client(key, url), max_calls=max_coperniq_calls) if key else None
    m = MergeChecks(settings, merge)
    checks: list[Callable[[], Finding | list[Finding]]] = [m.linked_account, m.passthrough, m.job_visibility]
    if coperniq is not None:
        checks.append(coperniq.run)
    findings: list[Finding] = []
    for check in checks:
        got = check()
        findings += got if isinstance(got, list) else [got]
    if coperniq is None:
        findings += missing_key_findings(settings.env_file)
    findings.append(WriteProbe(merge, can_write=m.can_write).run() if args.write_probe else read_only_finding())
    calls = {
        "coperniq": coperniq.calls() if coperniq is not None else 0,
        "coperniq_budget": max_coperniq_calls,
        "merge": sum(merge.calls.values()),
    }
    blockers = [f.blocker for f in findings if f.blocker]
    if args.format == "json":
        con.say(
            render_json(
                findings,
                blockers=blockers,
                calls=calls,
                coperniq_api_url=url,
                merge_base_url=settings.base_url,
            )
        )
    else:
        con.say(render_table(findings))
        con.say(render_calls(calls))
    if blockers:
        con.warn("coperniq-qbo verify: the sync cannot run: " + "; ".join(blockers))
        return EXIT_NOT_CONNECTED
    if args.format != "json":
        con.say("verify: the sync can run.")
    return EXIT_OK
