"""`coperniq-qbo status`: Connected or Disconnected, from Merge's account details and the ledger's disconnect flag.

Merge alone cannot say the sync is stopped (`disconnect` flags the ledger), and the ledger alone cannot say the token
still works, so status asks both and prints the last runs beside the answer.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from coperniq_qbo.console import Console, fmt_time
from coperniq_qbo.errors import EXIT_API, EXIT_NOT_CONNECTED, EXIT_OK, CliError, api_message, api_status, is_api_error
from coperniq_qbo.ledger_access import DISCONNECTED_META, counts_summary, open_ledger, run_jsonable
from coperniq_qbo.merge_api import fetch_sync_status, merge_client, summarize_sync_status
from coperniq_qbo.settings import Settings


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
            result["review_queue"] = len(ledger.review_items(status="open"))
        finally:
            ledger.close()
        result["last_run"] = run_jsonable(runs[0]) if runs else None
        result["last_successful_run"] = run_jsonable(success) if success else None
    hint = None
    if not settings.account_token:
        result["reason"] = "no account token configured"
        hint = "run `coperniq-qbo connect` (or `meltano invoke coperniq-qbo connect`)"
    else:
        client = merge_client(settings, account=True)
        try:
            details = client.get("/account-details") or {}
        except Exception as exc:
            if not is_api_error(exc):
                raise
            status = api_status(exc)
            if status in (401, 403, 404):
                result["reason"] = (
                    f"Merge rejected the account token (HTTP {status}): the linked account was "
                    "deleted or the token is wrong"
                )
                hint = "run `coperniq-qbo connect` to link QuickBooks Online again"
            else:
                raise CliError(f"could not reach Merge at {settings.base_url}: {api_message(exc)}", EXIT_API) from exc
        else:
            account_status = str(details.get("status") or "COMPLETE").upper()
            result.update(
                {
                    "company": details.get("end_user_organization_name"),
                    "integration": details.get("integration") or details.get("integration_slug"),
                    "linked_account_id": details.get("id"),
                    "account_status": account_status,
                    "end_user_email_address": details.get("end_user_email_address"),
                }
            )
            if account_status in ("COMPLETE", "IDLE"):
                result["connected"] = True
                try:
                    result["merge_sync"] = summarize_sync_status(fetch_sync_status(client))
                except Exception as exc:
                    if not is_api_error(exc):
                        raise
                    result["merge_sync"] = {"error": api_message(exc)}
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
        print_status(result, con)
    return EXIT_OK if result["connected"] else EXIT_NOT_CONNECTED


def print_status(result: dict[str, Any], con: Console) -> None:
    """The status result for people (json output prints `result` as it is)."""
    if result["connected"]:
        con.say("Connected")
        con.say(f"  QuickBooks company: {result.get('company') or '-'} ({result.get('integration') or '-'})")
        con.say(
            f"  Linked account:     {result.get('linked_account_id') or '-'} (status {result.get('account_status')})"
        )
        sync = result.get("merge_sync") or {}
        if "error" in sync:
            con.say(f"  Merge last sync:    unknown ({sync['error']})")
        else:
            line = f"  Merge last sync:    {fmt_time(sync.get('last_sync_finished'))}"
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
        con.say(
            "  Last successful sync: "
            + (
                f"{ok.get('run_id')} {ok.get('direction', '')}, finished "
                f"{fmt_time(ok.get('finished_at'))} "
                f"({counts_summary(ok.get('counts'))})"
                if ok
                else "none yet"
            )
        )
        con.say(
            f"  Last attempt:       {run.get('run_id')} {run.get('direction', '')} {run.get('status', '')}, "
            f"finished {fmt_time(run.get('finished_at'))} ({counts_summary(run.get('counts'))})"
        )
    elif "last_run" in result:
        con.say("  Last sync run:      none recorded in the ledger yet")
    else:
        con.say("  Last sync run:      no ledger yet")
    if result.get("review_queue"):
        con.say(f"  Review queue:       {result['review_queue']} row(s) wait for a person: `coperniq-qbo review`")
    if result.get("hint"):
        con.say(f"  Hint: {result['hint']}")
