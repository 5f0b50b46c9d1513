"""Merge sandbox linked accounts and the Link flow: account details, sync status, link and public tokens.

Why separate from the model endpoints: these are Merge's own objects (linked accounts, tokens, syncs), not
QuickBooks data, and half of them are organization-level (no X-Account-Token) or served to the Link page.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

from sandbox._server import Request, Response
from sandbox.merge_schema import REQUIRED, SUPPORTED
from sandbox.merge_state import INTEGRATION, RELINK_NEEDED, LinkedAccount, MergeHost, detail
from sandbox.merge_store import iso

LINK_DIR = Path(__file__).with_name("merge_link")
SYNC_MODELS = ["Account", "CompanyInfo", "Contact", "Invoice", "Item", "Payment"]
CATEGORIES = {"hris", "ats", "accounting", "ticketing", "crm", "mktg", "filestorage", "knowledgebase"}


def account_details(account: LinkedAccount, realm_id: str, company_name: str) -> dict[str, Any]:
    """GET /account-details for `account` (also what the admin linked-account-status call answers)."""
    return {
        "id": account.id,
        "integration": INTEGRATION["name"],
        "integration_slug": INTEGRATION["slug"],
        "category": "accounting",
        "end_user_origin_id": account.end_user_origin_id,
        "end_user_organization_name": account.end_user_organization_name,
        "end_user_email_address": account.end_user_email_address,
        "status": account.status,
        "webhook_listener_url": account.webhook_listener_url,
        "is_duplicate": None,
        "account_type": "PRODUCTION",
        "completed_at": account.completed_at,
        "instance_id": realm_id,
        "instance_display_value": company_name,
    }


class AccountEndpoints:
    """Linked-account handlers of one app; they read `app.state` on every call."""

    def __init__(self, app: MergeHost) -> None:
        self.app = app

    def details(self, account: LinkedAccount) -> dict[str, Any]:
        """`account_details` with this app's realm and company name."""
        return account_details(account, self.app.realm_id, self.app.company_name)

    def account_details(self, req: Request) -> Response:
        """GET /account-details."""
        return Response(200, self.details(self.app.state.linked_account(req)))

    def delete_account(self, req: Request) -> Response:
        """POST /delete-account: the account stops authenticating."""
        self.app.state.linked_account(req).deleted = True
        return Response(200, None)

    def sync_rows(self, status: str, result: str = "DONE") -> list[dict[str, Any]]:
        """One sync-status row per synced model, all with the same last/next sync times."""
        last = iso(self.app.state.last_sync_us)
        nxt = iso(self.app.state.last_sync_us + 3600 * 1_000_000)
        return [
            {
                "model_name": m,
                "model_id": f"accounting.{m}",
                "last_sync_start": last,
                "next_sync_start": nxt,
                "last_sync_result": result,
                "last_sync_finished": last,
                "status": status,
                "is_initial_sync": False,
                "selective_sync_configurations_usage": "IN_LAST_SYNC",
            }
            for m in SYNC_MODELS
        ]

    def sync_status(self, req: Request) -> Response:
        """GET /sync-status."""
        account = self.app.state.linked_account(req)
        failing = account.status == RELINK_NEEDED  # ASSUMPTION: syncs fail without credentials
        rows = self.sync_rows("FAILED", "FAILED") if failing else self.sync_rows("DONE")
        return Response(200, {"next": None, "previous": None, "results": rows})

    def resync(self, req: Request) -> Response:
        """POST /sync-status/resync: runs every pending sync now (unless the account needs relinking)."""
        account = self.app.state.linked_account(req)
        if account.status == RELINK_NEEDED:  # Merge cannot reach QuickBooks: nothing new arrives
            return Response(200, self.sync_rows("FAILED", "FAILED"))
        self.app.state.sync_pending()
        return Response(200, self.sync_rows("SYNCING"))

    def linked_accounts(self, req: Request) -> Response:
        """GET /linked-accounts (organization level), with its equality filters."""
        rows = []
        for account in self.app.state.accounts.values():
            if account.deleted:
                continue
            item = self.details(account)
            item.pop("integration_slug")
            item.pop("instance_id")
            item.pop("instance_display_value")
            item.update(
                status_detail="",
                subdomain="",
                integration_specific_fields={},
                integration={
                    **{k: INTEGRATION[k] for k in ("name", "categories", "image", "square_image", "color", "slug")},
                    "passthrough_available": True,
                    "available_model_operations": [],
                },
            )
            rows.append(item)
        for arg in (
            "end_user_origin_id",
            "end_user_email_address",
            "end_user_organization_name",
            "id",
            "status",
            "category",
        ):
            value = req.arg(arg)
            if value:
                rows = [r for r in rows if str(r.get(arg)) == value]
        return Response(200, {"next": None, "previous": None, "results": rows})

    def available_actions(self, req: Request) -> Response:
        """GET /available-actions: what can be fetched and written for QuickBooks Online."""
        self.app.state.linked_account(req)
        writable = (("Contact", "contacts"), ("Invoice", "invoices"), ("Payment", "payments"), ("Item", "items"))
        ops = [
            {
                "model_name": model,
                "available_operations": ["FETCH", "CREATE", "UPDATE"],
                "required_post_parameters": REQUIRED.get(f"POST {table}", []),
                "supported_fields": SUPPORTED[f"POST {table}"],
            }
            for model, table in writable
        ]
        ops.extend(
            {
                "model_name": model,
                "available_operations": ["FETCH"],
                "required_post_parameters": [],
                "supported_fields": [],
            }
            for model in ("Account", "CompanyInfo")
        )
        return Response(
            200,
            {
                "integration": {
                    k: INTEGRATION[k] for k in ("name", "categories", "image", "square_image", "color", "slug")
                },
                "passthrough_available": True,
                "available_model_operations": ops,
            },
        )


class LinkFlow:
    """The Link flow: link token (backend), the Link page and script, public token, account token exchange."""

    def __init__(self, app: MergeHost) -> None:
        self.app = app

    def link_token(self, req: Request) -> Response:
        """POST /link-token: validates the end user and categories like Merge (DRF field errors)."""
        body = req.json()
        if not isinstance(body, dict):
            return Response(400, {"non_field_errors": ["Invalid data. Expected a dictionary."]})
        errors: dict[str, list[str]] = {}
        for name in ("end_user_email_address", "end_user_organization_name", "end_user_origin_id"):
            value = body.get(name)
            if value in (None, ""):
                errors[name] = ["This field is required."]
            elif not isinstance(value, str) or len(value) > 100:
                errors[name] = ["Ensure this field has no more than 100 characters."]
        cats = body.get("categories")
        if not cats:
            errors["categories"] = ["This field is required."]
        elif not isinstance(cats, list) or any(c not in CATEGORIES for c in cats):
            errors["categories"] = ["Each category must be one of: " + ", ".join(sorted(CATEGORIES)) + "."]
        elif "accounting" not in cats:
            errors["categories"] = ["This sandbox links accounting integrations only."]
        integration = body.get("integration")
        if integration not in (None, "", INTEGRATION["slug"]):
            errors["integration"] = [f"The sandbox only offers {INTEGRATION['slug']}."]
        magic = bool(body.get("should_create_magic_link_url"))
        expiry = body.get("link_expiry_mins", 30)
        if not isinstance(expiry, int) or isinstance(expiry, bool) or not 30 <= expiry <= (10080 if magic else 720):
            errors["link_expiry_mins"] = [f"Ensure this value is between 30 and {10080 if magic else 720}."]
        if errors:
            return Response(400, errors)
        token = secrets.token_urlsafe(24)
        self.app.state.link_tokens[token] = {"details": body, "expires": time.time() + expiry * 60, "used": False}
        root = f"http://{req.headers.get('host', '127.0.0.1')}"
        out = {"link_token": token, "integration_name": INTEGRATION["name"]}
        if magic:  # the spec types magic_link_url as a string: only present when asked for
            out["magic_link_url"] = f"{root}/link/app?link_token={token}"
        return Response(200, out)

    def account_token(self, req: Request) -> Response:
        """GET /account-token/{public_token}: the exchange the backend does after Link finishes."""
        token = self.app.state.public_tokens.get(req.path_params["public_token"])
        account = self.app.state.accounts.get(token or "")
        if account is None or account.deleted:
            return detail(404, "Not found.")
        return Response(200, {"account_token": account.token, "integration": dict(INTEGRATION), "id": account.id})

    def mint_public_token(self, req: Request) -> Response:
        """What Merge Link's backend does when the end user finishes: linked account + public token."""
        body = req.json() or {}
        link_token = body.get("link_token") if isinstance(body, dict) else None
        entry = self.app.state.link_tokens.get(link_token or "")
        if entry is None:
            return detail(400, "Invalid link token.")
        if entry["used"]:
            return detail(400, "This link token was already used. Create a new one.")
        if time.time() > entry["expires"]:
            return detail(400, "This link token has expired.")
        entry["used"] = True
        details = entry["details"]
        account = next(
            (
                a
                for a in self.app.state.accounts.values()
                if not a.deleted and a.end_user_origin_id == details["end_user_origin_id"]
            ),
            None,
        )
        if account is None:  # relinking the same end user keeps its account token
            account = LinkedAccount(
                token=secrets.token_urlsafe(30),
                end_user_origin_id=details["end_user_origin_id"],
                end_user_organization_name=details["end_user_organization_name"],
                end_user_email_address=details["end_user_email_address"],
            )
            self.app.state.accounts[account.token] = account
        account.status = "COMPLETE"  # a finished (re)link repairs a RELINK_NEEDED account
        public = secrets.token_urlsafe(24)
        self.app.state.public_tokens[public] = account.token
        return Response(
            200,
            {
                "public_token": public,
                "integration": {"name": INTEGRATION["name"], "slug": INTEGRATION["slug"], "categories": ["accounting"]},
                "linked_account_id": account.id,
            },
        )

    @staticmethod
    def static(name: str, content_type: str, replacements: dict[str, str] | None = None) -> Response:
        """A file of sandbox/merge_link/ with its placeholders filled, served `no-store`."""
        text = (LINK_DIR / name).read_text()
        for key, value in (replacements or {}).items():
            text = text.replace(key, value)
        return Response(200, text, {"Cache-Control": "no-store"}, content_type)

    def link_js(self, req: Request) -> Response:
        """GET /link/initialize.js: the stand-in for Merge's Link script."""
        return self.static("initialize.js", "application/javascript; charset=utf-8")

    def link_app(self, req: Request) -> Response:
        """GET /link/app: the Link page, or why its link token cannot be used."""
        token = req.arg("link_token") or ""
        entry = self.app.state.link_tokens.get(token)
        problem_text = (
            ""
            if entry and not entry["used"] and time.time() <= entry["expires"]
            else "This link token is invalid, expired or already used."
        )
        return self.static(
            "app.html",
            "text/html; charset=utf-8",
            {
                "__LINK_TOKEN__": json.dumps(token),
                "__PROBLEM__": json.dumps(problem_text),
                "__COMPANY__": self.app.company_name.replace("<", "&lt;"),
            },
        )
