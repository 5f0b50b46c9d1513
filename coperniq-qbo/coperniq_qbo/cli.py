"""`coperniq-qbo`: the operator CLI (connect, status, disconnect, log, runs, doctor, verify, review, link, retry,
dismiss, undismiss, ui).

Run it through Meltano (`meltano invoke coperniq-qbo status`), which passes the utility's settings as
COPERNIQ_QBO_* env vars, or directly; flags override env vars, env vars override the project's `.env`.
Every line it prints goes through `redact()` with the configured secrets, so output is safe to paste.

This module only parses arguments and dispatches: the commands live in their own modules and import their shared
pieces (errors, settings, console) from small modules of their own, never from here, so there is no import circle.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TextIO

from coperniq_qbo.actions import add_parsers as add_action_parsers
from coperniq_qbo.connect import cmd_connect, cmd_disconnect
from coperniq_qbo.console import Console
from coperniq_qbo.doctor import run_doctor
from coperniq_qbo.errors import EXIT_API, EXIT_USAGE, CliError, api_message, is_api_error
from coperniq_qbo.log import cmd_log, cmd_runs
from coperniq_qbo.settings import Settings, resolve_settings
from coperniq_qbo.status import cmd_status
from coperniq_qbo.ui import add_ui_parser
from coperniq_qbo.verify import add_arguments as add_verify_arguments
from coperniq_qbo.verify import run_verify
from sync_ledger.ledger_core import LOG_ACTIONS


def build_parser() -> argparse.ArgumentParser:
    """Every command with its flags; the connection flags are shared through a parent parser."""
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("connection (default: COPERNIQ_QBO_* env vars, then the project's .env)")
    g.add_argument("--base-url", dest="base_url", help="Merge Accounting API base URL (region)")
    g.add_argument(
        "--merge-api-key", dest="merge_api_key", help="Merge API key (prefer the env var: flags show up in `ps`)"
    )
    g.add_argument("--account-token", dest="account_token", help="linked-account token (prefer the env var)")
    g.add_argument("--ledger-path", dest="ledger_path", help="sync ledger DuckDB file")
    g.add_argument(
        "--ledger-url",
        dest="ledger_url",
        help="sync ledger on PostgreSQL, postgresql://user:password@host:5432/db (wins over --ledger-path); a "
        "secret: prefer the env var COPERNIQ_QBO_LEDGER_URL (flags show up in `ps`)",
    )
    g.add_argument(
        "--company", dest="company", help="the company (tenant) in the ledger (default: the default company)"
    )
    g.add_argument("--env-file", dest="env_file", help="dotenv file connect writes to (default <project>/.env)")
    g.add_argument(
        "--lock-timeout",
        dest="lock_timeout",
        type=float,
        help="seconds to wait for the ledger lock (a running sync holds it)",
    )
    g.add_argument("--debug", action="store_true", help="show (redacted) tracebacks on unexpected errors")

    parser = argparse.ArgumentParser(
        prog="coperniq-qbo",
        description="Operate the Coperniq <-> QuickBooks Online (Merge) sync: connect, status, disconnect, "
        "integration log, doctor, verify, and decide single rows (review queue, link, retry, dismiss).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("connect", parents=[common], help="link a QuickBooks Online company through Merge Link")
    p.add_argument("--no-browser", action="store_true", help="print the local URL instead of opening a browser")
    p.add_argument("--port", type=int, default=0, help="local port for the Link page (default: any free port)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for Merge Link (default 600)")
    p.add_argument("--link-js-url", dest="link_js_url", help="Merge Link script URL")
    p.add_argument("--integration", default="quickbooks-online", help="Merge integration slug")
    p.add_argument("--end-user-email-address", dest="end_user_email_address")
    p.add_argument("--end-user-organization-name", dest="end_user_organization_name")
    p.add_argument(
        "--end-user-origin-id",
        dest="end_user_origin_id",
        help="your id for this company (default: slug of the organization name)",
    )
    p.set_defaults(func=cmd_connect)

    p = sub.add_parser(
        "status", parents=[common], help="Connected/Disconnected, company, last syncs (exit 1 if not connected)"
    )
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "disconnect",
        parents=[common],
        help="delete the Merge linked account and stop syncing (keeps the ledger and data)",
    )
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_disconnect)

    p = sub.add_parser("log", parents=[common], help="recent integration log rows (newest first)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--run", help="only this run id")
    which.add_argument("--last", action="store_true", help="only the most recent run")
    p.add_argument("--action", choices=sorted(LOG_ACTIONS))
    p.add_argument("--stream", help="e.g. projects, invoices, payments")
    p.add_argument("--direction", choices=["forward", "reverse"])
    p.add_argument("--failed", action="store_true", help="failed rows only")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.set_defaults(func=cmd_log)

    p = sub.add_parser("runs", parents=[common], help="recent sync runs with counts")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("doctor", parents=[common], help="check configuration, ledger and connection")
    p.add_argument(
        "--config",
        dest="target_config",
        help="target-quickbooks-merge config JSON (default: TARGET_QUICKBOOKS_MERGE_* env vars, "
        "else `meltano config print target-quickbooks-merge`)",
    )
    p.add_argument("--offline", action="store_true", help="skip the call to Merge")
    p.add_argument("--no-meltano", action="store_true", help="never shell out to meltano for the target config")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=run_doctor)

    p = sub.add_parser(
        "verify",
        parents=[common],
        help="live pre-flight against the real Merge and Coperniq accounts: run it once before the "
        "first sync (read-only unless --write-probe)",
    )
    add_verify_arguments(p)
    p.set_defaults(func=run_verify)
    add_action_parsers(sub, common)
    add_ui_parser(sub, common)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    environ: dict[str, str] | None = None,
) -> int:
    """Entry point; returns the exit code (0 ok, 1 not connected / checks failed, 2 usage, 3 API error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    con = Console(out=stdout, err=stderr)
    try:
        settings = resolve_settings(args, environ)
        for secret in settings.secrets:
            con.add_secret(secret)
        func: Callable[[argparse.Namespace, Settings, Console], int] = args.func
        args.environ = environ
        return func(args, settings, con)
    except CliError as exc:
        con.warn(f"coperniq-qbo {args.command}: {exc}")
        return exc.code
    except KeyboardInterrupt:
        con.warn("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - never let a traceback leak a secret
        if is_api_error(exc):
            con.warn(f"coperniq-qbo {args.command}: Merge API error: {api_message(exc)}")
            return EXIT_API
        if getattr(args, "debug", False):
            con.warn(traceback.format_exc())
        con.warn(f"coperniq-qbo {args.command}: unexpected error: {type(exc).__name__}: {exc}")
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
