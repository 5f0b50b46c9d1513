"""`coperniq-qbo connect` and `disconnect`: link the QuickBooks Online company through Merge Link, and unlink it.

connect writes the account token to the project's `.env` under every plugin's name (never printing it) and clears
the ledger's disconnect flag; disconnect deletes the linked account at Merge and sets the flag, so the targets fail
fast instead of syncing into a company nobody linked. Neither touches the id map or the integration log.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import webbrowser

from coperniq_qbo.console import Console, utc_now_text
from coperniq_qbo.env import update_env_file
from coperniq_qbo.errors import (
    EXIT_API,
    EXIT_NOT_CONNECTED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    api_message,
    api_status,
    is_api_error,
)
from coperniq_qbo.ledger_access import DISCONNECTED_META, open_ledger
from coperniq_qbo.link_page import LinkPageServer
from coperniq_qbo.merge_api import merge_client
from coperniq_qbo.settings import TOKEN_ENV_VARS, Settings


def cmd_connect(args: argparse.Namespace, settings: Settings, con: Console) -> int:
    """Link token -> local Merge Link page -> public token -> account token -> .env (value never shown)."""
    email = settings.end_user_email_address
    org = settings.end_user_organization_name
    if not email or not org:
        raise CliError(
            "connect needs the end user's email and organization name: set end_user_email_address and "
            "end_user_organization_name (or --end-user-email-address / --end-user-organization-name)"
        )
    origin = settings.end_user_origin_id or origin_slug(org)
    org_client = merge_client(settings, account=False)
    body = {
        "end_user_email_address": email,
        "end_user_organization_name": org,
        "end_user_origin_id": origin,
        "categories": ["accounting"],
        "integration": args.integration,
    }
    try:
        created = org_client.post("/link-token", json=body) or {}
    except Exception as exc:
        if not is_api_error(exc):
            raise
        raise CliError(f"Merge did not create a link token: {api_message(exc)}", EXIT_API) from exc
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
            with contextlib.suppress(Exception):  # no browser is fine, the URL is printed
                webbrowser.open(server.url)
        con.say(f"Waiting up to {int(args.timeout)} s for Merge Link...")
        result = server.wait_for_token(args.timeout)
        if result is None:
            server.finish(False, "timed out")
            raise CliError(
                f"timed out after {int(args.timeout)} s waiting for Merge Link to finish; nothing was "
                f"changed. Run `coperniq-qbo connect` again (use --timeout to wait longer).",
                EXIT_NOT_CONNECTED,
            )
        public_token = result.public_token or ""
        con.add_secret(public_token)
        try:
            exchanged = org_client.get(f"/account-token/{public_token}") or {}
        except Exception as exc:
            if not is_api_error(exc):
                raise
            server.finish(False, "Merge did not exchange the public token")
            raise CliError(f"Merge did not exchange the public token: {api_message(exc)}", EXIT_API) from exc
        account_token = exchanged.get("account_token")
        if not account_token:
            server.finish(False, "Merge answered without an account token")
            raise CliError("Merge answered without an account_token", EXIT_API)
        con.add_secret(account_token)
        settings.account_token = account_token

        update_env_file(settings.env_file, dict.fromkeys(TOKEN_ENV_VARS, account_token))
        integration = exchanged.get("integration") or {}
        integration_name = integration.get("name") if isinstance(integration, dict) else str(integration)
        company = org
        try:
            details = merge_client(settings, account=True).get("/account-details") or {}
            company = details.get("end_user_organization_name") or company
            integration_name = details.get("integration") or integration_name
        except Exception as exc:
            if not is_api_error(exc):
                raise
        clear_disconnected(settings, con)
        server.finish(True, f"{company} ({integration_name or 'QuickBooks Online'}) is connected.")
    finally:
        server.stop()
    con.say(
        f"Connected: {company} ({integration_name or 'QuickBooks Online'}), linked account {exchanged.get('id') or '-'}"
    )
    con.say(
        f"account token saved to {settings.env_file} as {', '.join(TOKEN_ENV_VARS[:-1])} and "
        f"{TOKEN_ENV_VARS[-1]} (value hidden)"
    )
    return EXIT_OK


def clear_disconnected(settings: Settings, con: Console) -> None:
    """Clear the ledger's disconnect flag, if the ledger (this company in it) exists and has it set.

    The flag is read from a read-only open (a DuckDB file or a PostgreSQL ledger alike), so connecting never
    creates a ledger, or a company in it, where nothing has synced; the ledger is opened for writing only to clear it.
    """
    ledger = open_ledger(settings, read_only=True)
    if ledger is None:
        return
    try:
        flagged = ledger.get_meta(DISCONNECTED_META)
    finally:
        ledger.close()
    if not flagged:
        return
    writable = open_ledger(settings, read_only=False)
    try:
        writable.set_meta(DISCONNECTED_META, None)
    finally:
        writable.close()
    con.say("Cleared the ledger's disconnected flag: syncing is enabled again.")


def origin_slug(text: str) -> str:
    """Merge's end_user_origin_id when none is configured: a stable slug of the organization name."""
    out = "".join(c.lower() if c.isalnum() else "-" for c in text).strip("-")
    while "--" in out:
        out = out.replace("--", "-")
    return (out or "coperniq")[:100]


def cmd_disconnect(args: argparse.Namespace, settings: Settings, con: Console) -> int:
    """Delete the Merge linked account and flag the ledger, keeping every id mapping and log row."""
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError("refusing to disconnect without confirmation: pass --yes (no terminal to ask on)")
        con.out.write(
            "Disconnect QuickBooks Online? Syncing stops until you run `coperniq-qbo connect`; "
            "the ledger and all synced data stay. [y/N] "
        )
        con.out.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            con.say("Cancelled: nothing changed.")
            return EXIT_USAGE
    client = merge_client(settings, account=True)
    # The ledger first: one we cannot flag (locked, PostgreSQL unreachable) must not leave the account deleted at
    # Merge while the targets still think they may sync.
    try:
        ledger = open_ledger(settings, read_only=False)
    except CliError as exc:
        raise CliError(f"{exc}; nothing changed (the linked account is still there)", exc.code) from exc
    already = False
    try:
        try:
            client.request("POST", "/delete-account")
        except Exception as exc:
            if not is_api_error(exc):
                raise
            if api_status(exc) in (401, 404):
                already = True
            else:
                raise CliError(
                    f"Merge did not delete the linked account: {api_message(exc)}; nothing changed", EXIT_API
                ) from exc
        stamp = utc_now_text()
        ledger.set_meta(DISCONNECTED_META, stamp)
    finally:
        ledger.close()
    if already:
        con.say("Merge already rejects this account token (deleted earlier); marked the ledger disconnected.")
    else:
        con.say("Disconnected: Merge deleted the linked QuickBooks Online account.")
    con.say(
        f"Syncing is stopped: the ledger {settings.ledger_display} is flagged disconnected at {stamp} and "
        f"target runs fail fast until you run `coperniq-qbo connect`."
    )
    con.say("The ledger (id map, integration log) and everything already synced are kept.")
    return EXIT_OK
