"""`coperniq-qbo`: the operator CLI (connect, status, disconnect, log, runs, doctor, verify).

Run it through Meltano (`meltano invoke coperniq-qbo status`), which passes the utility's settings as
COPERNIQ_QBO_* env vars, or directly; flags override env vars, env vars override the project's `.env`.
Every line it prints goes through `redact()` with the configured secrets, so output is safe to paste.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import webbrowser
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from sync_ledger.util import DEFAULT_LEDGER_PATH

DEFAULT_BASE_URL = "https://api.merge.dev/api/accounting/v1"
ENV_PREFIX = "COPERNIQ_QBO_"
# Every plugin that needs the account token, so one `connect` re-links the tap, the target and this CLI.
TOKEN_ENV_VARS = ("TARGET_QUICKBOOKS_MERGE_ACCOUNT_TOKEN", "TAP_QUICKBOOKS_MERGE_ACCOUNT_TOKEN",
                  "COPERNIQ_QBO_ACCOUNT_TOKEN")
# Where a secret may also live when the CLI runs outside Meltano (e.g. only the target's vars are set).
_FALLBACK_PREFIXES = ("TARGET_QUICKBOOKS_MERGE_", "TAP_QUICKBOOKS_MERGE_")
DISCONNECTED_META = "disconnected"

EXIT_OK, EXIT_NOT_CONNECTED, EXIT_USAGE, EXIT_API = 0, 1, 2, 3


class CliError(Exception):
    """An expected failure: printed as one line (redacted), no traceback."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Settings:
    """Resolved configuration; secrets are only ever held here and in request headers."""

    merge_api_key: str | None = None
    account_token: str | None = None
    base_url: str = DEFAULT_BASE_URL
    ledger_path: Path = Path(DEFAULT_LEDGER_PATH)
    link_js_url: str = "https://cdn.merge.dev/initialize.js"
    env_file: Path = Path(".env")
    end_user_email_address: str | None = None
    end_user_organization_name: str | None = None
    end_user_origin_id: str | None = None
    lock_timeout: float = 10.0
    extra_secrets: list[str] = field(default_factory=list)

    @property
    def secrets(self) -> list[str]:
        return [s for s in (self.merge_api_key, self.account_token, *self.extra_secrets) if s]


def _project_root(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("MELTANO_PROJECT_ROOT") or os.getcwd())


def resolve_settings(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Settings:
    """Flags > env (COPERNIQ_QBO_*, then the target's/tap's vars) > the project's .env file > defaults.

    Reading `.env` ourselves makes a direct run (`coperniq-qbo status`) see the token `connect` just wrote,
    exactly as Meltano would.
    """
    from sync_ledger.cli_env import read_env_file

    env = dict(os.environ if environ is None else environ)
    root = _project_root(env)
    env_file = Path(getattr(args, "env_file", None) or env.get(ENV_PREFIX + "ENV_FILE") or root / ".env")
    dotenv = read_env_file(env_file)

    def pick(name: str, *, fallbacks: bool = False) -> str | None:
        flag = getattr(args, name, None)
        if flag not in (None, ""):
            return str(flag)
        for source in (env, dotenv):
            names = [ENV_PREFIX + name.upper()]
            if fallbacks:
                names += [p + name.upper() for p in _FALLBACK_PREFIXES]
            for key in names:
                if source.get(key):
                    return source[key]
        return None

    ledger = pick("ledger_path") or str(root / DEFAULT_LEDGER_PATH)
    return Settings(
        merge_api_key=pick("merge_api_key", fallbacks=True),
        account_token=pick("account_token", fallbacks=True),
        base_url=(pick("base_url", fallbacks=True) or DEFAULT_BASE_URL).rstrip("/"),
        ledger_path=Path(os.path.expandvars(ledger)),
        link_js_url=pick("link_js_url") or "https://cdn.merge.dev/initialize.js",
        env_file=env_file,
        end_user_email_address=pick("end_user_email_address"),
        end_user_organization_name=pick("end_user_organization_name"),
        end_user_origin_id=pick("end_user_origin_id"),
        lock_timeout=float(pick("lock_timeout") or 10.0),
    )


# ----------------------------------------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------------------------------------
class Console:
    """stdout/stderr writer that masks every configured secret (and auth headers) in everything it prints."""

    def __init__(self, secrets: Iterable[str] = (), out: TextIO | None = None, err: TextIO | None = None) -> None:
        self._secrets: list[str] = [s for s in secrets if s]
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def add_secret(self, value: str | None) -> None:
        if value and value not in self._secrets:
            self._secrets.append(value)

    def clean(self, text: str) -> str:
        from sync_ledger.util import redact

        return redact(text, self._secrets)

    def say(self, text: str = "") -> None:
        self.out.write(self.clean(text) + "\n")
        self.out.flush()

    def warn(self, text: str) -> None:
        self.err.write(self.clean(text) + "\n")
        self.err.flush()


def _fmt_time(value: Any) -> str:
    """Timestamps as ISO-8601 UTC seconds, whatever shape (str from Merge, datetime from DuckDB) they arrive in."""
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _utcnow_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------------------------------------
# Merge and ledger access
# ----------------------------------------------------------------------------------------------------------
def merge_client(settings: Settings, *, account: bool) -> Any:
    """ApiClient for org-level (`account=False`) or linked-account calls; few retries: a human is waiting."""
    from sync_ledger import ApiClient

    if not settings.merge_api_key:
        raise CliError("no Merge API key: set merge_api_key (meltano config set coperniq-qbo merge_api_key ...) "
                       "or COPERNIQ_QBO_MERGE_API_KEY")
    headers = {"Authorization": f"Bearer {settings.merge_api_key}", "Accept": "application/json"}
    if account:
        if not settings.account_token:
            raise CliError("no account token: run `coperniq-qbo connect` first", EXIT_NOT_CONNECTED)
        headers["X-Account-Token"] = settings.account_token
    return ApiClient(settings.base_url, headers=headers, max_retries=2, backoff_base=0.2, backoff_max=5.0,
                     timeout=30.0, secrets=settings.secrets)


def _api_status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def _api_message(exc: BaseException) -> str:
    return str(getattr(exc, "message", None) or exc)


def _is_api_error(exc: BaseException) -> bool:
    import requests

    from sync_ledger import ApiError

    return isinstance(exc, (ApiError, requests.RequestException))


def open_ledger(settings: Settings, *, read_only: bool) -> Any | None:
    """The ledger, or None when read-only and it does not exist yet (nothing has synced)."""
    path = settings.ledger_path
    if read_only and not path.exists():
        return None
    from sync_ledger import Ledger

    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    from sync_ledger import LedgerError

    try:
        return Ledger(path, lock_timeout=settings.lock_timeout, read_only=read_only)
    except LedgerError as exc:  # locked by a running sync, not a ledger, newer schema: one clear line
        raise CliError(str(exc), EXIT_API) from exc


def fetch_sync_status(client: Any, max_pages: int = 20) -> list[dict[str, Any]]:
    """All pages of GET /sync-status (a handful of models; pages are small)."""
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(max_pages):
        params = {"page_size": 100}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/sync-status", params=params) or {}
        rows.extend(page.get("results") or [])
        nxt = page.get("next")
        if not nxt:
            break
        cursor = nxt.split("cursor=")[-1].split("&")[0] if "cursor=" in str(nxt) else str(nxt)
    return rows


def summarize_sync_status(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Last finished Merge sync (DONE only: last_sync_start/finished may describe different syncs)."""
    done = [r.get("last_sync_finished") for r in rows
            if r.get("last_sync_finished") and str(r.get("last_sync_result") or r.get("status")).upper() == "DONE"]
    failed = sorted(r.get("model_name") or r.get("model_id") or "?" for r in rows
                    if str(r.get("last_sync_result") or "").upper() == "FAILED"
                    or str(r.get("status") or "").upper() == "FAILED")
    syncing = sum(1 for r in rows if str(r.get("status") or "").upper() == "SYNCING")
    nexts = [r.get("next_sync_start") for r in rows if r.get("next_sync_start")]
    return {"last_sync_finished": max(done) if done else None, "models": len(rows), "failed_models": failed,
            "syncing_models": syncing, "next_sync_start": min(nexts) if nexts else None}


def _counts_summary(counts: Any) -> str:
    """{stream: {action: n}} -> "created 3, updated 1, failed 2" (totals over streams)."""
    if isinstance(counts, str):
        try:
            counts = json.loads(counts)
        except ValueError:
            return counts
    totals: dict[str, int] = {}
    if isinstance(counts, dict):
        for value in counts.values():
            if isinstance(value, dict):
                for action, n in value.items():
                    totals[action] = totals.get(action, 0) + int(n or 0)
            elif isinstance(value, (int, float)):
                pass
        if not totals and all(isinstance(v, (int, float)) for v in counts.values()):
            totals = {k: int(v) for k, v in counts.items()}
    return ", ".join(f"{k} {v}" for k, v in sorted(totals.items())) or "no records"


def last_run(settings: Settings) -> dict[str, Any] | None:
    ledger = open_ledger(settings, read_only=True)
    if ledger is None:
        return None
    try:
        runs = ledger.runs(limit=1)
    finally:
        ledger.close()
    return runs[0] if runs else None


# ----------------------------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace, settings: Settings, con: Console) -> int:
    """Connected/Disconnected from Merge's account-details + sync-status, plus the ledger's last run."""
    result: dict[str, Any] = {"connected": False}
    flag: str | None = None
    try:
        ledger = open_ledger(settings, read_only=True)
    except CliError as exc:  # a running sync holds the lock: the Merge side is still worth reporting
        ledger = None
        result["ledger_error"] = str(exc)
    if ledger is not None:
        try:
            flag = ledger.get_meta(DISCONNECTED_META)
            runs = ledger.runs(limit=1)
            success = ledger.last_run(successful=True)
        finally:
            ledger.close()
        result["last_run"] = _jsonable(runs[0]) if runs else None
        result["last_successful_run"] = _jsonable(success) if success else None
    hint = None
    if not settings.account_token:
        result["reason"] = "no account token configured"
        hint = "run `coperniq-qbo connect` (or `meltano invoke coperniq-qbo connect`)"
    else:
        client = merge_client(settings, account=True)
        try:
            details = client.get("/account-details") or {}
        except Exception as exc:
            if not _is_api_error(exc):
                raise
            status = _api_status(exc)
            if status in (401, 403, 404):
                result["reason"] = f"Merge rejected the account token (HTTP {status}): the linked account was " \
                                   f"deleted or the token is wrong"
                hint = "run `coperniq-qbo connect` to link QuickBooks Online again"
            else:
                raise CliError(f"could not reach Merge at {settings.base_url}: {_api_message(exc)}", EXIT_API) from exc
        else:
            account_status = str(details.get("status") or "COMPLETE").upper()
            result.update({
                "company": details.get("end_user_organization_name"),
                "integration": details.get("integration") or details.get("integration_slug"),
                "linked_account_id": details.get("id"),
                "account_status": account_status,
                "end_user_email_address": details.get("end_user_email_address"),
            })
            if account_status in ("COMPLETE", "IDLE"):
                result["connected"] = True
                try:
                    result["merge_sync"] = summarize_sync_status(fetch_sync_status(client))
                except Exception as exc:
                    if not _is_api_error(exc):
                        raise
                    result["merge_sync"] = {"error": _api_message(exc)}
            else:
                result["reason"] = f"linked account status is {account_status}"
                hint = "re-authenticate with `coperniq-qbo connect`"
    if result["connected"] and flag:
        result["connected"] = False
        result["reason"] = f"disconnected with `coperniq-qbo disconnect` at {flag}; syncing is blocked"
        hint = "run `coperniq-qbo connect` to link again (it clears the flag)"
    if flag:
        result["disconnected_at"] = flag
    if hint:
        result["hint"] = hint

    if args.format == "json":
        con.say(json.dumps(result, indent=2, default=str))
    else:
        _print_status(result, con)
    return EXIT_OK if result["connected"] else EXIT_NOT_CONNECTED


def _print_status(result: dict[str, Any], con: Console) -> None:
    if result["connected"]:
        con.say("Connected")
        con.say(f"  QuickBooks company: {result.get('company') or '-'} ({result.get('integration') or '-'})")
        con.say(f"  Linked account:     {result.get('linked_account_id') or '-'} "
                f"(status {result.get('account_status')})")
        sync = result.get("merge_sync") or {}
        if "error" in sync:
            con.say(f"  Merge last sync:    unknown ({sync['error']})")
        else:
            line = f"  Merge last sync:    {_fmt_time(sync.get('last_sync_finished'))}"
            if sync.get("failed_models"):
                line += f"  (FAILED: {', '.join(sync['failed_models'])})"
            if sync.get("syncing_models"):
                line += f"  ({sync['syncing_models']} model(s) syncing now)"
            con.say(line)
    else:
        con.say("Disconnected")
        if result.get("reason"):
            con.say(f"  Reason: {result['reason']}")
    run = result.get("last_run")
    if result.get("ledger_error"):
        con.say(f"  Last sync run:      unknown ({result['ledger_error']})")
    elif run:
        ok = result.get("last_successful_run")
        con.say("  Last successful sync: " + (f"{ok.get('run_id')} {ok.get('direction', '')}, finished "
                                                f"{_fmt_time(ok.get('finished_at'))} "
                                                f"({_counts_summary(ok.get('counts'))})" if ok else "none yet"))
        con.say(f"  Last attempt:       {run.get('run_id')} {run.get('direction', '')} {run.get('status', '')}, "
                f"finished {_fmt_time(run.get('finished_at'))} ({_counts_summary(run.get('counts'))})")
    elif "last_run" in result:
        con.say("  Last sync run:      none recorded in the ledger yet")
    else:
        con.say("  Last sync run:      no ledger yet")
    if result.get("hint"):
        con.say(f"  Hint: {result['hint']}")


def cmd_disconnect(args: argparse.Namespace, settings: Settings, con: Console) -> int:
    """Delete the Merge linked account and flag the ledger, keeping every id mapping and log row."""
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError("refusing to disconnect without confirmation: pass --yes (no terminal to ask on)")
        con.out.write("Disconnect QuickBooks Online? Syncing stops until you run `coperniq-qbo connect`; "
                      "the ledger and all synced data stay. [y/N] ")
        con.out.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            con.say("Cancelled: nothing changed.")
            return EXIT_USAGE
    client = merge_client(settings, account=True)
    already = False
    try:
        client.request("POST", "/delete-account")
    except Exception as exc:
        if not _is_api_error(exc):
            raise
        if _api_status(exc) in (401, 404):
            already = True
        else:
            raise CliError(f"Merge did not delete the linked account: {_api_message(exc)}; nothing changed",
                           EXIT_API) from exc
    stamp = _utcnow_iso()
    ledger = open_ledger(settings, read_only=False)
    try:
        ledger.set_meta(DISCONNECTED_META, stamp)
    finally:
        ledger.close()
    if already:
        con.say("Merge already rejects this account token (deleted earlier); marked the ledger disconnected.")
    else:
        con.say("Disconnected: Merge deleted the linked QuickBooks Online account.")
    con.say(f"Syncing is stopped: the ledger {settings.ledger_path} is flagged disconnected at {stamp} and "
            f"target runs fail fast until you run `coperniq-qbo connect`.")
    con.say("The ledger (id map, integration log) and everything already synced are kept.")
    return EXIT_OK


def cmd_connect(args: argparse.Namespace, settings: Settings, con: Console) -> int:
    """Link token -> local Merge Link page -> public token -> account token -> .env (value never shown)."""
    from sync_ledger.cli_connect import LinkPageServer
    from sync_ledger.cli_env import update_env_file

    email = settings.end_user_email_address
    org = settings.end_user_organization_name
    if not email or not org:
        raise CliError("connect needs the end user's email and organization name: set end_user_email_address and "
                       "end_user_organization_name (or --end-user-email-address / --end-user-organization-name)")
    origin = settings.end_user_origin_id or _slug(org)
    org_client = merge_client(settings, account=False)
    body = {"end_user_email_address": email, "end_user_organization_name": org, "end_user_origin_id": origin,
            "categories": ["accounting"], "integration": args.integration}
    try:
        created = org_client.post("/link-token", json=body) or {}
    except Exception as exc:
        if not _is_api_error(exc):
            raise
        raise CliError(f"Merge did not create a link token: {_api_message(exc)}", EXIT_API) from exc
    link_token = created.get("link_token")
    if not link_token:
        raise CliError("Merge answered without a link_token", EXIT_API)
    con.add_secret(link_token)

    server = LinkPageServer(link_token, settings.link_js_url, port=args.port).start()
    try:
        con.say(f"Open this page to connect QuickBooks Online: {server.url}")
        if args.no_browser:
            con.say("(--no-browser: open the URL above in a browser on this machine)")
        else:
            try:
                webbrowser.open(server.url)
            except Exception:  # noqa: BLE001 - no browser is fine, the URL is printed
                pass
        con.say(f"Waiting up to {int(args.timeout)} s for Merge Link...")
        result = server.wait_for_token(args.timeout)
        if result is None:
            server.finish(False, "timed out")
            raise CliError(f"timed out after {int(args.timeout)} s waiting for Merge Link to finish; nothing was "
                           f"changed. Run `coperniq-qbo connect` again (use --timeout to wait longer).",
                           EXIT_NOT_CONNECTED)
        public_token = result.public_token or ""
        con.add_secret(public_token)
        try:
            exchanged = org_client.get(f"/account-token/{public_token}") or {}
        except Exception as exc:
            if not _is_api_error(exc):
                raise
            server.finish(False, "Merge did not exchange the public token")
            raise CliError(f"Merge did not exchange the public token: {_api_message(exc)}", EXIT_API) from exc
        account_token = exchanged.get("account_token")
        if not account_token:
            server.finish(False, "Merge answered without an account token")
            raise CliError("Merge answered without an account_token", EXIT_API)
        con.add_secret(account_token)
        settings.account_token = account_token

        update_env_file(settings.env_file, {name: account_token for name in TOKEN_ENV_VARS})
        integration = exchanged.get("integration") or {}
        integration_name = integration.get("name") if isinstance(integration, dict) else str(integration)
        company = org
        try:
            details = merge_client(settings, account=True).get("/account-details") or {}
            company = details.get("end_user_organization_name") or company
            integration_name = details.get("integration") or integration_name
        except Exception as exc:  # noqa: BLE001 - the token is saved; details are only for the message
            if not _is_api_error(exc):
                raise
        if settings.ledger_path.exists():
            ledger = open_ledger(settings, read_only=False)
            try:
                if ledger.get_meta(DISCONNECTED_META):
                    ledger.set_meta(DISCONNECTED_META, None)
                    con.say("Cleared the ledger's disconnected flag: syncing is enabled again.")
            finally:
                ledger.close()
        server.finish(True, f"{company} ({integration_name or 'QuickBooks Online'}) is connected.")
    finally:
        server.stop()
    con.say(f"Connected: {company} ({integration_name or 'QuickBooks Online'}), linked account "
            f"{exchanged.get('id') or '-'}")
    con.say(f"account token saved to {settings.env_file} as {', '.join(TOKEN_ENV_VARS[:-1])} and "
            f"{TOKEN_ENV_VARS[-1]} (value hidden)")
    return EXIT_OK


def _slug(text: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "-" for c in text).strip("-")
    while "--" in out:
        out = out.replace("--", "-")
    return (out or "coperniq")[:100]


def cmd_log(args: argparse.Namespace, settings: Settings, con: Console) -> int:
    """Recent integration log rows, newest first, from a read-only ledger."""
    from sync_ledger.cli_log import LOG_COLUMNS, render

    ledger = open_ledger(settings, read_only=True)
    if ledger is None:
        con.warn(f"no ledger at {settings.ledger_path} yet: nothing has synced")
        return EXIT_NOT_CONNECTED
    try:
        run_id = args.run
        if args.last:
            runs = ledger.runs(limit=1)
            if not runs:
                con.warn("no runs recorded in the ledger yet")
                return EXIT_NOT_CONNECTED
            run_id = runs[0]["run_id"]
        action = args.action
        failed_only = args.failed or action == "failed"
        rows = ledger.log_rows(run_id=run_id, action=None if failed_only else action, stream=args.stream,
                               failed_only=failed_only, limit=args.limit, direction=args.direction or None)
    finally:
        ledger.close()
    con.say(render(rows, LOG_COLUMNS, args.format, empty="no matching log rows"))
    # As documented: 1 = nothing to show. So `log --last --failed` exits 0 exactly when the last run had failures.
    return EXIT_OK if rows else EXIT_NOT_CONNECTED


def cmd_runs(args: argparse.Namespace, settings: Settings, con: Console) -> int:
    """Recent runs with their per-action counts."""
    from sync_ledger.cli_log import RUN_COLUMNS, render

    ledger = open_ledger(settings, read_only=True)
    if ledger is None:
        con.warn(f"no ledger at {settings.ledger_path} yet: nothing has synced")
        return EXIT_NOT_CONNECTED
    try:
        runs = ledger.runs(limit=args.limit)
    finally:
        ledger.close()
    for run in runs:
        counts = run.pop("counts_json", None)
        run.setdefault("counts", counts)
        if args.format == "table":
            run["counts"] = _counts_summary(run.get("counts"))
    con.say(render(runs, RUN_COLUMNS, args.format, empty="no runs recorded yet"))
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace, settings: Settings, con: Console) -> int:
    from sync_ledger.cli_doctor import run_doctor

    return run_doctor(args, settings, con)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (_fmt_time(v) if isinstance(v, datetime) else v) for k, v in row.items() if k != "counts_json"}


# ----------------------------------------------------------------------------------------------------------
# argument parsing
# ----------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("connection (default: COPERNIQ_QBO_* env vars, then the project's .env)")
    g.add_argument("--base-url", dest="base_url", help="Merge Accounting API base URL (region)")
    g.add_argument("--merge-api-key", dest="merge_api_key",
                   help="Merge API key (prefer the env var: flags show up in `ps`)")
    g.add_argument("--account-token", dest="account_token", help="linked-account token (prefer the env var)")
    g.add_argument("--ledger-path", dest="ledger_path", help="sync ledger DuckDB file")
    g.add_argument("--env-file", dest="env_file", help="dotenv file connect writes to (default <project>/.env)")
    g.add_argument("--lock-timeout", dest="lock_timeout", type=float,
                   help="seconds to wait for the ledger lock (a running sync holds it)")
    g.add_argument("--debug", action="store_true", help="show (redacted) tracebacks on unexpected errors")

    parser = argparse.ArgumentParser(
        prog="coperniq-qbo",
        description="Operate the Coperniq <-> QuickBooks Online (Merge) sync: connect, status, disconnect, "
                    "integration log, doctor, verify.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("connect", parents=[common], help="link a QuickBooks Online company through Merge Link")
    p.add_argument("--no-browser", action="store_true", help="print the local URL instead of opening a browser")
    p.add_argument("--port", type=int, default=0, help="local port for the Link page (default: any free port)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for Merge Link (default 600)")
    p.add_argument("--link-js-url", dest="link_js_url", help="Merge Link script URL")
    p.add_argument("--integration", default="quickbooks-online", help="Merge integration slug")
    p.add_argument("--end-user-email-address", dest="end_user_email_address")
    p.add_argument("--end-user-organization-name", dest="end_user_organization_name")
    p.add_argument("--end-user-origin-id", dest="end_user_origin_id",
                   help="your id for this company (default: slug of the organization name)")
    p.set_defaults(func=cmd_connect)

    p = sub.add_parser("status", parents=[common], help="Connected/Disconnected, company, last syncs (exit 1 if not connected)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("disconnect", parents=[common],
                       help="delete the Merge linked account and stop syncing (keeps the ledger and data)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_disconnect)

    p = sub.add_parser("log", parents=[common], help="recent integration log rows (newest first)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--run", help="only this run id")
    which.add_argument("--last", action="store_true", help="only the most recent run")
    p.add_argument("--action", choices=["created", "updated", "linked", "skipped", "failed", "deleted", "planned"])
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
    p.add_argument("--config", dest="target_config",
                   help="target-quickbooks-merge config JSON (default: TARGET_QUICKBOOKS_MERGE_* env vars, "
                        "else `meltano config print target-quickbooks-merge`)")
    p.add_argument("--offline", action="store_true", help="skip the call to Merge")
    p.add_argument("--no-meltano", action="store_true", help="never shell out to meltano for the target config")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_doctor)

    from sync_ledger.cli_verify import add_arguments as add_verify_arguments, run_verify

    p = sub.add_parser("verify", parents=[common],
                       help="live pre-flight against the real Merge and Coperniq accounts: run it once before the "
                            "first sync (read-only unless --write-probe)")
    add_verify_arguments(p)
    p.set_defaults(func=run_verify)
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None,
         environ: dict[str, str] | None = None) -> int:
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
        if _is_api_error(exc):
            con.warn(f"coperniq-qbo {args.command}: Merge API error: {_api_message(exc)}")
            return EXIT_API
        if getattr(args, "debug", False):
            con.warn(traceback.format_exc())
        con.warn(f"coperniq-qbo {args.command}: unexpected error: {type(exc).__name__}: {exc}")
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
