"""Merge.dev Accounting API sandbox with one QuickBooks Online linked account (plus any linked via Link).

Run: `python -m sandbox.merge --port 8766 [--profile pessimistic]` -> base URL http://127.0.0.1:8766/api/accounting/v1.
Wire formats follow /work/shared/reference/merge_api.md; the README "Merge" section lists every assumption, and
the ones the docs leave open are switches of `sandbox.profiles.MergeAssumptions` (`profile=` / `--profile`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sandbox._server import RateLimiter, Request, Response, SandboxApp, SandboxServer, is_loopback
from sandbox.merge_models import (EXPANDS, FIELD_SCHEMAS, REQUIRED, SUPPORTED, MergeData, Row, WriteError,
                                  problem)
from sandbox.merge_qbo import QboCompany, QboError
from sandbox.merge_seed import seed_assumed_company, seed_merge
from sandbox.merge_store import Table, dt_us, iso, now_us
from sandbox.profiles import PROFILES, MergeAssumptions, resolve

API = "/api/accounting/v1"
LINK_DIR = Path(__file__).with_name("merge_link")
ORG_LEVEL = ("/link-token", "/account-token/", "/linked-accounts")
INTEGRATION = {
    "name": "QuickBooks Online", "abbreviated_name": "QuickBooks", "categories": ["accounting"],
    "image": "https://merge-api-production.s3.amazonaws.com/media/quickbooks.png",
    "square_image": "https://merge-api-production.s3.amazonaws.com/media/quickbooks_square.png",
    "color": "#2CA01C", "slug": "quickbooks-online", "api_endpoints_to_documentation_urls": {},
    "webhook_setup_guide_url": None, "category_beta_status": {},
}
SYNC_MODELS = ["Account", "CompanyInfo", "Contact", "Invoice", "Item", "Payment"]
CATEGORIES = {"hris", "ats", "accounting", "ticketing", "crm", "mktg", "filestorage", "knowledgebase"}
PASSTHROUGH_METHODS = {"GET", "OPTIONS", "HEAD", "POST", "PUT", "PATCH", "DELETE"}
IDEMPOTENCY_TTL = 24 * 3600.0
#: AccountDetailsAndActionsStatusEnum in merge-accounting-openapi.yaml (also the `/linked-accounts?status=` options)
LINKED_ACCOUNT_STATUSES = ("COMPLETE", "INCOMPLETE", "RELINK_NEEDED", "IDLE")
RELINK_NEEDED = "RELINK_NEEDED"


@dataclass
class LinkedAccount:
    """One Merge linked account (all of them point at the same emulated QBO company)."""

    token: str
    end_user_origin_id: str
    end_user_organization_name: str
    end_user_email_address: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    completed_at: str = field(default_factory=lambda: iso(now_us()))
    deleted: bool = False
    status: str = "COMPLETE"  # one of LINKED_ACCOUNT_STATUSES
    webhook_listener_url: str = field(
        default_factory=lambda: f"https://api.merge.dev/api/integrations/webhook-listener/{secrets.token_hex(16)}")


@dataclass
class MergeState:
    """Everything the sandbox holds; `app.state` (tests assert on it)."""

    data: MergeData
    accounts: dict[str, LinkedAccount] = field(default_factory=dict)  # account token -> account
    link_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    public_tokens: dict[str, str] = field(default_factory=dict)  # public token -> account token
    idempotency: dict[tuple[str, str], tuple[str, int, Any, float]] = field(default_factory=dict)
    pending: dict[tuple[str, str], float | None] = field(default_factory=dict)  # (entity, QBO Id) -> due time
    last_sync_us: int = field(default_factory=now_us)

    @property
    def qbo(self) -> QboCompany:
        return self.data.qbo

    def table(self, name: str) -> Table:
        return self.data.t(name)

    @property
    def contacts(self) -> Table:
        return self.data.t("contacts")

    @property
    def invoices(self) -> Table:
        return self.data.t("invoices")

    @property
    def payments(self) -> Table:
        return self.data.t("payments")

    @property
    def items(self) -> Table:
        return self.data.t("items")


def detail(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """DRF-style error body, as Merge answers auth/404/429 errors."""
    return Response(status, {"detail": message}, headers or {})


def write_errors(errors: list[dict[str, Any]], warnings: list[dict[str, Any]] | None = None) -> Response:
    return Response(400, {"warnings": warnings or [], "errors": errors})


class MergeApp(SandboxApp):
    """Merge Accounting API + QBO linked account emulator (see README "Merge" for behaviour and assumptions)."""

    name = "merge"

    def __init__(self, api_key: str = "sandbox-merge-key", account_token: str = "sandbox-account-token",
                 rate_limit_per_minute: int = 600, company_name: str = "Sandbox Solar Co", *,
                 realm_id: str = "9341453050298937", passthrough_visible_after_sync: bool | None = None,
                 passthrough_sync_delay: float | None = None, unique_invoice_numbers: bool = True,
                 max_name_length: int = 100, profile: str | MergeAssumptions | None = None,
                 **switch_overrides: Any) -> None:
        """`profile` ("optimistic" = default, "pessimistic" or a `MergeAssumptions`) picks how the sandbox reads
        what Merge's docs leave open; `switch_overrides` (e.g. `idempotency_keys=True`) change single switches.
        `passthrough_visible_after_sync` overrides that switch: a customer created/changed via passthrough shows
        up in /contacts only after POST /sync-status/resync (or `app.sync()`), or after `passthrough_sync_delay`
        seconds when that is set (Merge's periodic sync; setting it defers too)."""
        super().__init__()
        self.assumptions = resolve(MergeAssumptions, profile,
                                   passthrough_visible_after_sync=passthrough_visible_after_sync,
                                   **switch_overrides)
        if self.assumptions.linked_account_status not in LINKED_ACCOUNT_STATUSES:
            raise ValueError(f"linked_account_status must be one of {', '.join(LINKED_ACCOUNT_STATUSES)}")
        self.profile_name = profile if isinstance(profile, str) else "custom" if profile else "optimistic"
        self.api_key = api_key
        self.default_account_token = account_token
        self.company_name = company_name
        self.realm_id = realm_id
        self.deferred_passthrough = self.assumptions.passthrough_visible_after_sync or \
            passthrough_sync_delay is not None
        self.passthrough_sync_delay = passthrough_sync_delay
        self.unique_invoice_numbers = unique_invoice_numbers
        self.max_name_length = max_name_length
        self.rate_limit_per_minute = rate_limit_per_minute
        self.limiter = RateLimiter([(rate_limit_per_minute, 60.0)])
        self.state: MergeState
        self.reset_state()
        self._register_routes()

    # --- state ------------------------------------------------------------------------------------
    def reset_state(self) -> None:
        """A fresh company as the switches describe it (id spaces, employees) and the default linked account."""
        qbo = QboCompany(self.realm_id, max_name_length=self.max_name_length,
                         separate_id_spaces=self.assumptions.separate_id_spaces,
                         employees=self.assumptions.employees_hold_names)
        data = MergeData(qbo, company_name=self.company_name, unique_invoice_numbers=self.unique_invoice_numbers)
        self.state = MergeState(data)
        qbo.on_change = self._on_qbo_change
        self.state.accounts[self.default_account_token] = LinkedAccount(
            token=self.default_account_token, end_user_origin_id="sandbox-org",
            end_user_organization_name=self.company_name, end_user_email_address="owner@sandbox.example",
            status=self.assumptions.linked_account_status)
        seed_assumed_company(self)
        self.limiter.reset()

    def set_linked_account_status(self, status: str, account_token: str | None = None) -> dict[str, Any]:
        """Admin: what Merge would report after e.g. a revoked QuickBooks connection (RELINK_NEEDED). Returns the
        account details; relinking through Link sets COMPLETE again."""
        if status not in LINKED_ACCOUNT_STATUSES:
            raise ValueError(f"status must be one of {', '.join(LINKED_ACCOUNT_STATUSES)}, not {status!r}")
        with self.lock:
            account = self.state.accounts.get(account_token or self.default_account_token)
            if account is None or account.deleted:
                raise KeyError(account_token or self.default_account_token)
            account.status = status
            return self._details(account)

    def set_rate_limit(self, per_minute: int) -> None:
        self.rate_limit_per_minute = per_minute
        self.limiter.set_windows([(per_minute, 60.0)])
        self.limiter.reset()

    def _on_qbo_change(self, entity: str, obj: dict[str, Any], created: bool) -> None:
        """A passthrough write reached QBO: Merge sees it now, or at its next sync (employees never: they are not
        accounting Contacts)."""
        if entity not in ("Customer", "Vendor"):
            return
        if not self.deferred_passthrough:
            self.state.data.sync_contact(entity, obj)
            return
        due = time.monotonic() + self.passthrough_sync_delay if self.passthrough_sync_delay is not None else None
        self.state.pending.setdefault((entity, obj["Id"]), due)

    def sync(self, *, only_due: bool = False) -> int:
        """Run a 'Merge sync': copy pending QBO changes into the common models. Returns how many."""
        now = time.monotonic()
        done = 0
        for key, due in list(self.state.pending.items()):
            if only_due and (due is None or due > now):
                continue
            del self.state.pending[key]
            obj = self.state.qbo.get(*key)
            if obj is not None:
                self.state.data.sync_contact(key[0], obj)
                done += 1
        if not only_due:
            self.state.last_sync_us = now_us()
        return done

    # --- hooks ------------------------------------------------------------------------------------
    def error(self, status: int, message: str, code: str = "ERROR", **extra: Any) -> Response:
        text = {404: "Not found.", 405: "Method not allowed."}.get(status, message)
        return detail(status, text)

    def too_many(self, retry_after: float) -> Response:
        return detail(429, "Request was throttled.", {"Retry-After": str(max(1, math.ceil(retry_after)))})

    def authenticate(self, req: Request) -> tuple[str | None, Response | None]:
        if req.path.startswith("/link/"):
            return "link", None
        auth = req.headers.get("authorization", "")
        if not auth:
            return None, detail(401, "Authentication credentials were not provided.")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "bearer" or key.strip() != self.api_key:
            return None, detail(401, "Invalid token.")
        sub = req.path[len(API):] if req.path.startswith(API) else req.path
        if any(sub.startswith(p) for p in ORG_LEVEL):
            return f"org:{self.api_key}", None
        token = req.headers.get("x-account-token", "").strip()
        if not token:
            return None, detail(401, "Missing X-Account-Token header: this endpoint is scoped to a linked account.")
        account = self.state.accounts.get(token)
        if account is None or account.deleted:
            return None, detail(401, "Linked account has been deleted or could not be found for this "
                                     "X-Account-Token.")
        return f"acct:{account.id}", None

    def rate_limit(self, key: str, req: Request) -> tuple[Response | None, dict[str, str]]:
        if key == "link":
            return None, {}
        allowed, limit, remaining, retry_after = self.limiter.hit(key)
        headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining)}
        if not allowed:
            return self.too_many(retry_after), headers
        return None, headers

    def _account(self, req: Request) -> LinkedAccount:
        """The linked account of an authenticated, account-scoped request; also runs a due periodic sync."""
        if self.state.pending:
            self.sync(only_due=True)
        return self.state.accounts[req.headers["x-account-token"].strip()]

    # --- query parsing ----------------------------------------------------------------------------
    @staticmethod
    def _bool(req: Request, name: str) -> bool | None:
        raw = req.arg(name)
        if raw in (None, ""):
            return None
        if raw.lower() in ("true", "1"):
            return True
        if raw.lower() in ("false", "0"):
            return False
        raise _BadParam(name, "Must be a valid boolean.")

    @staticmethod
    def _time(req: Request, name: str) -> int | None:
        raw = req.arg(name)
        if raw in (None, ""):
            return None
        try:
            return dt_us(raw)
        except ValueError:
            raise _BadParam(name, "Enter a valid date/time.") from None

    @staticmethod
    def _page_size(req: Request) -> int:
        """DRF semantics: invalid or non-positive -> default 30; above the maximum -> clamped to 100."""
        try:
            size = int(req.arg("page_size") or 30)
        except ValueError:
            return 30
        return 30 if size <= 0 else min(size, 100)

    @staticmethod
    def _expand(req: Request, model: str) -> set[str]:
        raw = req.arg("expand") or ""
        values = {v.strip() for v in raw.split(",") if v.strip()}
        bad = values - EXPANDS.get(model, set())
        if bad:
            raise _BadParam("expand", f"Select a valid choice. {sorted(bad)[0]} is not one of the available "
                                      f"choices.")
        return values

    # --- generic handlers -------------------------------------------------------------------------
    def _list(self, req: Request, model: str, extra: Callable[[Request], tuple[list[Callable[[Row], bool]],
                                                                                   list[int] | None]]) -> Response:
        self._account(req)
        table = self.state.table(model)
        try:
            include_deleted = self._bool(req, "include_deleted_data")
            remote_data = bool(self._bool(req, "include_remote_data"))
            remote_fields = bool(self._bool(req, "include_remote_fields"))
            expand = self._expand(req, model)
            mod_after, mod_before = self._time(req, "modified_after"), self._time(req, "modified_before")
            cr_after, cr_before = self._time(req, "created_after"), self._time(req, "created_before")
            checks, candidates = extra(req)
        except _BadParam as exc:
            return Response(400, {exc.name: [exc.message]})
        remote_id = req.arg("remote_id")
        if remote_id not in (None, ""):
            ids = [row["_pos"] for row in table.all_by_remote_id(remote_id)]  # customer and vendor may share it
            candidates = ids if candidates is None else [p for p in candidates if p in ids]
        if not include_deleted:
            checks.append(lambda r: not r["remote_was_deleted"])
        if mod_after is not None:
            checks.append(lambda r: r["_mod_us"] > mod_after)
        if mod_before is not None:
            checks.append(lambda r: r["_mod_us"] < mod_before)
        if cr_before is not None:
            checks.append(lambda r: r["_created_us"] < cr_before)
        try:
            rows, nxt, prev = table.page(cursor=req.arg("cursor") or None, page_size=self._page_size(req),
                                         predicate=lambda r: all(c(r) for c in checks), created_after=cr_after,
                                         modified_after=mod_after, candidates=candidates)
        except ValueError:
            return detail(404, "Invalid cursor")
        results = [self.state.data.serialize(model, r, expand=expand, remote_data=remote_data,
                                             remote_fields=remote_fields) for r in rows]
        return Response(200, {"next": nxt, "previous": prev, "results": results})

    def _get(self, req: Request, model: str) -> Response:
        self._account(req)
        row = self.state.table(model).get(req.path_params["id"])
        if row is None:
            return detail(404, "Not found.")
        try:
            expand = self._expand(req, model)
            remote_data = bool(self._bool(req, "include_remote_data"))
            remote_fields = bool(self._bool(req, "include_remote_fields"))
        except _BadParam as exc:
            return Response(400, {exc.name: [exc.message]})
        return Response(200, self.state.data.serialize(model, row, expand=expand, remote_data=remote_data,
                                                       remote_fields=remote_fields))

    def _write(self, req: Request, model: str, writer: Callable[..., tuple[Row, list[dict[str, Any]]]],
               patch: bool = False) -> Response:
        account = self._account(req)
        existing = None
        if patch:
            existing = self.state.table(model).get(req.path_params["id"])
            if existing is None or existing["remote_was_deleted"]:
                return detail(404, "Not found.")
        try:
            body = req.json()
        except ValueError:
            return write_errors([problem("model", "Invalid JSON", "The request body is not valid JSON.",
                                         "INCORRECT_FIELD_TYPE")])
        honoured = req.method == "POST" and self.assumptions.idempotency_keys
        key = req.headers.get("idempotency-key", "").strip() if honoured else ""
        fingerprint = hashlib.sha256(f"{req.method} {req.path}\n".encode() +
                                     json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
        if key:
            stored = self.state.idempotency.get((account.id, key))
            if stored is not None and time.monotonic() - stored[3] < IDEMPOTENCY_TTL:
                if stored[0] != fingerprint:
                    return write_errors([problem("Idempotency-Key", "Invalid Idempotency Key Reuse",
                                                 "This Idempotency-Key was already used with a different request. "
                                                 "Use a new key for a new request.", "ERROR")])
                return Response(stored[1], json.loads(stored[2]), {"Idempotent-Replayed": "true"})
        if account.status == RELINK_NEEDED:
            return write_errors([self._relink_problem()])
        if not isinstance(body, dict) or "model" not in body:
            return write_errors([problem("model", "Missing Required Field", "model is a required field.",
                                         "MISSING_REQUIRED_FIELD")])
        try:
            row, warnings = writer(body["model"], existing)
        except WriteError as exc:
            return write_errors(exc.errors, exc.warnings)
        out: dict[str, Any] = {"model": self.state.data.serialize(model, row), "warnings": warnings, "errors": []}
        if self._bool(req, "is_debug_mode"):
            log_id = str(uuid.uuid4())
            out["logs"] = [{"log_id": log_id, "dashboard_view": f"https://app.merge.dev/logs/{log_id}",
                            "log_summary": {"url": f"https://quickbooks.api.intuit.com/v3/company/{self.realm_id}/"
                                                   f"{model.rstrip('s')}", "method": "POST", "status_code": 200}}]
        status = 200 if patch else 201
        if key:
            self.state.idempotency[(account.id, key)] = (fingerprint, status, json.dumps(out), time.monotonic())
        return Response(status, out)

    @staticmethod
    def _relink_problem() -> dict[str, Any]:
        """ASSUMPTION: a write to an account whose QuickBooks credentials Merge can no longer refresh fails with
        the CREDENTIAL_REFRESH_FAILED problem type (merge_api.md §5.1 lists it; no page shows the exact body)."""
        return problem("model", "Credential Refresh Failed",
                       "The linked account's QuickBooks Online credentials could not be refreshed: the end user "
                       "must relink the account.", "CREDENTIAL_REFRESH_FAILED", block_merge_link=False)

    def _meta(self, req: Request, op: str, model_name: str) -> Response:
        account = self._account(req)
        if "id" in req.path_params:
            row = self.state.table(model_name).get(req.path_params["id"])
            if row is None or row["remote_was_deleted"]:
                return detail(404, "Not found.")
        fields = SUPPORTED[f"{op} {model_name}"]
        model_schema: dict[str, Any] = {"type": "object",
                                        "properties": {f: FIELD_SCHEMAS[f] for f in fields if f in FIELD_SCHEMAS}}
        required = REQUIRED.get(f"{op} {model_name}", [])
        if required:
            model_schema["required"] = required
        return Response(200, {
            "request_schema": {"type": "object", "properties": {"model": model_schema}, "required": ["model"]},
            "remote_field_classes": {},
            "status": {"linked_account_status": account.status, "can_make_request": account.status != RELINK_NEEDED},
            "has_conditional_params": False, "has_required_linked_account_params": False})

    # --- per-model filters ------------------------------------------------------------------------
    def _contact_filters(self, req: Request) -> tuple[list[Callable[[Row], bool]], list[int] | None]:
        checks: list[Callable[[Row], bool]] = []
        candidates = None
        for name in ("is_customer", "is_supplier"):
            value = self._bool(req, name)
            if value is not None:
                checks.append(lambda r, n=name, v=value: bool(r[n]) is v)
        name = req.arg("name")
        if name:
            key = " ".join(name.split()).casefold()
            checks.append(lambda r: " ".join(str(r["name"] or "").split()).casefold() == key)
            holder = self.state.qbo.names.get(key)  # an employee's name holder has no Contact
            row = self.state.contacts.by_remote_id(holder[1], holder[0]) if holder else None
            candidates = [row["_pos"]] if row else []
        email = req.arg("email_address")
        if email:
            checks.append(lambda r: str(r["email_address"] or "").casefold() == email.strip().casefold())
        status = req.arg("status")
        if status:
            checks.append(lambda r: r["status"] == status)
        return checks, candidates

    def _invoice_filters(self, req: Request) -> tuple[list[Callable[[Row], bool]], list[int] | None]:
        checks: list[Callable[[Row], bool]] = []
        for arg, key in (("contact_id", "contact"), ("number", "number"), ("type", "type"), ("status", "status"),
                         ("company_id", "company")):
            value = req.arg(arg)
            if value:
                checks.append(lambda r, k=key, v=value: r[k] == v)
        for arg, cmp in (("issue_date_after", 1), ("issue_date_before", -1)):
            bound = self._time(req, arg)
            if bound is not None:
                checks.append(lambda r, b=bound, c=cmp: r["issue_date"] is not None and
                              (dt_us(r["issue_date"]) - b) * c > 0)
        return checks, None

    def _payment_filters(self, req: Request) -> tuple[list[Callable[[Row], bool]], list[int] | None]:
        checks: list[Callable[[Row], bool]] = []
        for arg, key in (("contact_id", "contact"), ("account_id", "account"), ("company_id", "company")):
            value = req.arg(arg)
            if value:
                checks.append(lambda r, k=key, v=value: r[k] == v)
        for arg, cmp in (("transaction_date_after", 1), ("transaction_date_before", -1)):
            bound = self._time(req, arg)
            if bound is not None:
                checks.append(lambda r, b=bound, c=cmp: r["transaction_date"] is not None and
                              (dt_us(r["transaction_date"]) - b) * c > 0)
        return checks, None

    @staticmethod
    def _simple_filters(*names: str) -> Callable[[Request], tuple[list[Callable[[Row], bool]], None]]:
        def build(req: Request) -> tuple[list[Callable[[Row], bool]], None]:
            checks: list[Callable[[Row], bool]] = []
            for name in names:
                value = req.arg(name)
                if value:
                    if name == "name":
                        checks.append(lambda r, v=value: str(r["name"] or "").casefold() == v.strip().casefold())
                    else:
                        checks.append(lambda r, k=name, v=value: r.get(k) == v)
            return checks, None
        return build

    # --- routes -----------------------------------------------------------------------------------
    def _register_routes(self) -> None:
        filters = {"contacts": self._contact_filters, "invoices": self._invoice_filters,
                   "payments": self._payment_filters,
                   "items": self._simple_filters("name", "status", "type"),
                   "accounts": self._simple_filters("name", "classification", "account_type", "status"),
                   "company-info": self._simple_filters("name")}
        writers = {"contacts": lambda m, e: self.state.data.write_contact(m, e),
                   "invoices": lambda m, e: self.state.data.write_invoice(m, e),
                   "payments": lambda m, e: self.state.data.write_payment(m, e),
                   "items": lambda m, e: self.state.data.write_item(m, e)}
        for model, flt in filters.items():
            self.route("GET", f"{API}/{model}")(lambda req, m=model, f=flt: self._list(req, m, f))
            if model in writers:
                self.route("GET", f"{API}/{model}/meta/post")(lambda req, m=model: self._meta(req, "POST", m))
                self.route("GET", f"{API}/{model}/meta/patch/{{id}}")(
                    lambda req, m=model: self._meta(req, "PATCH", m))
                self.route("POST", f"{API}/{model}")(lambda req, m=model: self._write(req, m, writers[m]))
                self.route("PATCH", f"{API}/{model}/{{id}}")(
                    lambda req, m=model: self._write(req, m, writers[m], patch=True))
            self.route("GET", f"{API}/{model}/{{id}}")(lambda req, m=model: self._get(req, m))
        self.route("GET", f"{API}/account-details")(self._account_details)
        self.route("POST", f"{API}/delete-account")(self._delete_account)
        self.route("GET", f"{API}/sync-status")(self._sync_status)
        self.route("POST", f"{API}/sync-status/resync")(self._resync)
        self.route("GET", f"{API}/linked-accounts")(self._linked_accounts)
        self.route("POST", f"{API}/link-token")(self._link_token)
        self.route("GET", f"{API}/account-token/{{public_token}}")(self._account_token)
        self.route("POST", f"{API}/passthrough")(self._passthrough)
        self.route("GET", f"{API}/available-actions")(self._available_actions)
        self.route("GET", "/link/initialize.js")(self._link_js)
        self.route("GET", "/link/app")(self._link_app)
        self.route("POST", "/link/api/public-token")(self._mint_public_token)

    # --- linked account endpoints -----------------------------------------------------------------
    def _details(self, account: LinkedAccount) -> dict[str, Any]:
        return {"id": account.id, "integration": INTEGRATION["name"], "integration_slug": INTEGRATION["slug"],
                "category": "accounting", "end_user_origin_id": account.end_user_origin_id,
                "end_user_organization_name": account.end_user_organization_name,
                "end_user_email_address": account.end_user_email_address, "status": account.status,
                "webhook_listener_url": account.webhook_listener_url, "is_duplicate": None,
                "account_type": "PRODUCTION", "completed_at": account.completed_at, "instance_id": self.realm_id,
                "instance_display_value": self.company_name}

    def _account_details(self, req: Request) -> Response:
        return Response(200, self._details(self._account(req)))

    def _delete_account(self, req: Request) -> Response:
        self._account(req).deleted = True
        return Response(200, None)

    def _sync_rows(self, status: str, result: str = "DONE") -> list[dict[str, Any]]:
        last = iso(self.state.last_sync_us)
        nxt = iso(self.state.last_sync_us + 3600 * 1_000_000)
        return [{"model_name": m, "model_id": f"accounting.{m}", "last_sync_start": last, "next_sync_start": nxt,
                 "last_sync_result": result, "last_sync_finished": last, "status": status,
                 "is_initial_sync": False, "selective_sync_configurations_usage": "IN_LAST_SYNC"}
                for m in SYNC_MODELS]

    def _sync_status(self, req: Request) -> Response:
        failing = self._account(req).status == RELINK_NEEDED  # ASSUMPTION: syncs fail without credentials
        rows = self._sync_rows("FAILED", "FAILED") if failing else self._sync_rows("DONE")
        return Response(200, {"next": None, "previous": None, "results": rows})

    def _resync(self, req: Request) -> Response:
        if self._account(req).status == RELINK_NEEDED:  # Merge cannot reach QuickBooks: nothing new arrives
            return Response(200, self._sync_rows("FAILED", "FAILED"))
        self.sync()
        return Response(200, self._sync_rows("SYNCING"))

    def _linked_accounts(self, req: Request) -> Response:
        rows = []
        for account in self.state.accounts.values():
            if account.deleted:
                continue
            item = self._details(account)
            item.pop("integration_slug")
            item.pop("instance_id")
            item.pop("instance_display_value")
            item.update(status_detail="", subdomain="", integration_specific_fields={},
                        integration={**{k: INTEGRATION[k] for k in ("name", "categories", "image",
                                                                      "square_image", "color", "slug")},
                                     "passthrough_available": True, "available_model_operations": []})
            rows.append(item)
        for arg in ("end_user_origin_id", "end_user_email_address", "end_user_organization_name", "id", "status",
                    "category"):
            value = req.arg(arg)
            if value:
                rows = [r for r in rows if str(r.get(arg)) == value]
        return Response(200, {"next": None, "previous": None, "results": rows})

    def _available_actions(self, req: Request) -> Response:
        self._account(req)
        ops = []
        for model, table in (("Contact", "contacts"), ("Invoice", "invoices"), ("Payment", "payments"),
                             ("Item", "items")):
            ops.append({"model_name": model, "available_operations": ["FETCH", "CREATE", "UPDATE"],
                        "required_post_parameters": REQUIRED.get(f"POST {table}", []),
                        "supported_fields": SUPPORTED[f"POST {table}"]})
        for model in ("Account", "CompanyInfo"):
            ops.append({"model_name": model, "available_operations": ["FETCH"], "required_post_parameters": [],
                        "supported_fields": []})
        return Response(200, {"integration": {k: INTEGRATION[k] for k in ("name", "categories", "image",
                                                                          "square_image", "color", "slug")},
                              "passthrough_available": True, "available_model_operations": ops})

    # --- link flow --------------------------------------------------------------------------------
    def _link_token(self, req: Request) -> Response:
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
        self.state.link_tokens[token] = {"details": body, "expires": time.time() + expiry * 60, "used": False}
        root = f"http://{req.headers.get('host', '127.0.0.1')}"
        out = {"link_token": token, "integration_name": INTEGRATION["name"]}
        if magic:  # the spec types magic_link_url as a string: only present when asked for
            out["magic_link_url"] = f"{root}/link/app?link_token={token}"
        return Response(200, out)

    def _account_token(self, req: Request) -> Response:
        token = self.state.public_tokens.get(req.path_params["public_token"])
        account = self.state.accounts.get(token or "")
        if account is None or account.deleted:
            return detail(404, "Not found.")
        return Response(200, {"account_token": account.token, "integration": dict(INTEGRATION), "id": account.id})

    def _mint_public_token(self, req: Request) -> Response:
        """What Merge Link's backend does when the end user finishes: linked account + public token."""
        body = req.json() or {}
        link_token = body.get("link_token") if isinstance(body, dict) else None
        entry = self.state.link_tokens.get(link_token or "")
        if entry is None:
            return detail(400, "Invalid link token.")
        if entry["used"]:
            return detail(400, "This link token was already used. Create a new one.")
        if time.time() > entry["expires"]:
            return detail(400, "This link token has expired.")
        entry["used"] = True
        details = entry["details"]
        account = next((a for a in self.state.accounts.values() if not a.deleted and
                        a.end_user_origin_id == details["end_user_origin_id"]), None)
        if account is None:  # relinking the same end user keeps its account token
            account = LinkedAccount(token=secrets.token_urlsafe(30),
                                    end_user_origin_id=details["end_user_origin_id"],
                                    end_user_organization_name=details["end_user_organization_name"],
                                    end_user_email_address=details["end_user_email_address"])
            self.state.accounts[account.token] = account
        account.status = "COMPLETE"  # a finished (re)link repairs a RELINK_NEEDED account
        public = secrets.token_urlsafe(24)
        self.state.public_tokens[public] = account.token
        return Response(200, {"public_token": public, "integration": {"name": INTEGRATION["name"],
                                                                       "slug": INTEGRATION["slug"],
                                                                       "categories": ["accounting"]},
                              "linked_account_id": account.id})

    @staticmethod
    def _static(name: str, content_type: str, replacements: dict[str, str] | None = None) -> Response:
        text = (LINK_DIR / name).read_text()
        for key, value in (replacements or {}).items():
            text = text.replace(key, value)
        return Response(200, text, {"Cache-Control": "no-store"}, content_type)

    def _link_js(self, req: Request) -> Response:
        return self._static("initialize.js", "application/javascript; charset=utf-8")

    def _link_app(self, req: Request) -> Response:
        token = req.arg("link_token") or ""
        entry = self.state.link_tokens.get(token)
        problem_text = "" if entry and not entry["used"] and time.time() <= entry["expires"] else \
            "This link token is invalid, expired or already used."
        return self._static("app.html", "text/html; charset=utf-8",
                            {"__LINK_TOKEN__": json.dumps(token), "__PROBLEM__": json.dumps(problem_text),
                             "__COMPANY__": self.company_name.replace("<", "&lt;")})

    # --- passthrough ------------------------------------------------------------------------------
    def _passthrough(self, req: Request) -> Response:
        account = self._account(req)
        body = req.json()
        if not isinstance(body, dict):
            return Response(400, {"non_field_errors": ["Invalid data. Expected a dictionary."]})
        errors = {}
        method = str(body.get("method") or "").upper()
        if not method:
            errors["method"] = ["This field is required."]
        elif method not in PASSTHROUGH_METHODS:
            errors["method"] = [f'"{body.get("method")}" is not a valid choice.']
        path = body.get("path")
        if not isinstance(path, str) or not path:
            errors["path"] = ["This field is required."]
        data = body.get("data")
        if data is not None and not isinstance(data, str):
            errors["data"] = ["Not a valid string."]
        if errors:
            return Response(400, errors)
        if account.status == RELINK_NEEDED:  # ASSUMPTION: the call reaches QBO with a dead token
            status, response = 401, QboError("3200", "AuthenticationFailed",
                                             "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                                             fault_type="AUTHENTICATION", status=401).fault()
        else:
            status, response = self.state.qbo.passthrough(method, path, data)
        headers = {str(k): v for k, v in (body.get("headers") or {}).items()} if isinstance(
            body.get("headers"), dict) else {}
        headers["Authorization"] = "<redacted>"
        return Response(200, {"method": method, "path": path, "status": status, "response": response,
                              "response_headers": {"Content-Type": "application/json;charset=UTF-8",
                                                   "intuit_tid": str(uuid.uuid4())},
                              "response_type": "JSON", "headers": headers})

    # --- admin (sandbox only) ---------------------------------------------------------------------
    def _contact_ref(self, ref: str | None) -> Row | None:
        if ref is None:
            return None
        table = self.state.contacts
        return table.get(str(ref)) or table.by_remote_id(str(ref))

    def add_contact(self, name: str, *, email: str | None = None, is_customer: bool = True,
                    is_supplier: bool = False, parent: str | None = None, bill_with_parent: bool = False,
                    qbo_id: str | None = None, **qbo_fields: Any) -> dict[str, Any]:
        """A customer (or job, with `parent` = Merge id or QBO Id; a vendor with is_supplier and not is_customer)
        created directly in QuickBooks; synced. `qbo_id` picks its QBO Id, e.g. a vendor sharing a customer's Id
        under `separate_id_spaces` (refused when the Id is taken in that id space)."""
        with self.lock:
            body: dict[str, Any] = {"DisplayName": name, **qbo_fields}
            if email:
                body["PrimaryEmailAddr"] = {"Address": email}
            if parent is not None:
                parent_row = self._contact_ref(parent)
                body.update(Job=True, ParentRef={"value": parent_row["remote_id"] if parent_row else str(parent)},
                            BillWithParent=bill_with_parent)
            entity = "Vendor" if is_supplier and not is_customer else "Customer"
            try:
                obj = self.state.qbo.create(entity, body, notify=False,
                                            qbo_id=str(qbo_id) if qbo_id is not None else None)
            except QboError as exc:
                raise ValueError(str(exc)) from None
            return self.state.data.serialize("contacts", self.state.data.sync_contact(entity, obj))

    def add_employee(self, name: str, *, qbo_id: str | None = None, **qbo_fields: Any) -> dict[str, Any]:
        """A QuickBooks employee (only with `employees_hold_names`): its DisplayName is taken for customers and
        vendors too, and it never becomes a Merge Contact. Returns the QBO Employee object."""
        if not self.assumptions.employees_hold_names:
            raise ValueError("this company has no employees (switch employees_hold_names is off)")
        with self.lock:
            try:
                obj = self.state.qbo.create("Employee", {"DisplayName": name, **qbo_fields}, notify=False,
                                            qbo_id=str(qbo_id) if qbo_id is not None else None)
            except QboError as exc:
                raise ValueError(str(exc)) from None
            return dict(obj)

    def add_item(self, name: str, **fields: Any) -> dict[str, Any]:
        with self.lock:
            try:
                return self.state.data.serialize("items", self.state.data.add_item(name, **fields))
            except WriteError as exc:
                raise ValueError(str(exc)) from None

    def add_account(self, name: str, **fields: Any) -> dict[str, Any]:
        with self.lock:
            return self.state.data.serialize("accounts", self.state.data.add_account(name, **fields))

    def create_invoice(self, contact: str, line_items: list[dict[str, Any]] | None = None, *,
                       amount: float | None = None, **fields: Any) -> dict[str, Any]:
        """An invoice entered in QuickBooks (same QBO rules as the API). `amount` = one "Services" line."""
        with self.lock:
            row = self._contact_ref(contact)
            lines = line_items if line_items is not None else [{"description": "Services", "total_amount": amount}]
            model = {"type": "ACCOUNTS_RECEIVABLE", "contact": row["id"] if row else contact, "line_items": lines,
                     **fields}
            try:
                inv, _ = self.state.data.write_invoice(model)
            except WriteError as exc:
                raise ValueError(str(exc)) from None
            return self.state.data.serialize("invoices", inv)

    def create_payment(self, contact: str, total_amount: float, *,
                       applied_to: list[tuple[str, float]] | None = None, account: str | None = None,
                       transaction_date: str | None = None, **fields: Any) -> dict[str, Any]:
        """A payment received in QuickBooks; `applied_to` = [(invoice id, amount)]. Default account: Undeposited
        Funds; default date: today."""
        with self.lock:
            row = self._contact_ref(contact)
            deposit = account or self.state.data.find("accounts", "Undeposited Funds")["id"]
            model = {"contact": row["id"] if row else contact, "account": deposit, "total_amount": total_amount,
                     "transaction_date": transaction_date or time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime()),
                     "applied_to_lines": [{"related_object_id": inv, "related_object_type": "INVOICE",
                                           "applied_amount": f"{amt:.2f}"} for inv, amt in (applied_to or [])],
                     **fields}
            try:
                pay, _ = self.state.data.write_payment(model)
            except WriteError as exc:
                raise ValueError(str(exc)) from None
            return self.state.data.serialize("payments", pay)

    def void_invoice(self, invoice_id: str) -> dict[str, Any]:
        with self.lock:
            return self.state.data.serialize("invoices", self.state.data.void_invoice(invoice_id))

    def delete(self, model: str, id_: str) -> dict[str, Any]:
        """Deleted in QuickBooks: Merge keeps the row with remote_was_deleted=true."""
        with self.lock:
            return self.state.data.serialize(model, self.state.data.delete(model, id_))

    def update(self, model: str, id_: str, **fields: Any) -> dict[str, Any]:
        """An edit made in QuickBooks (Merge common-model field names), e.g. update("contacts", id, name=...)."""
        with self.lock:
            row = self.state.table(model).get(id_)
            if row is None:
                raise KeyError(id_)
            writer = {"contacts": self.state.data.write_contact, "invoices": self.state.data.write_invoice,
                      "payments": self.state.data.write_payment, "items": self.state.data.write_item}[model]
            try:
                writer(fields, row)
            except WriteError as exc:
                raise ValueError(str(exc)) from None
            return self.state.data.serialize(model, row)

    def admin(self, req: Request) -> Response | None:
        """HTTP equivalents of the admin helpers (used by the demo and by tests in other processes)."""
        sub = req.path[len("/__admin/"):].strip("/")
        if req.method == "GET" and sub == "summary":
            return Response(200, {name: len(table) for name, table in self.state.data.tables.items()} |
                            {"pending_sync": len(self.state.pending)})
        if req.method == "GET" and sub == "assumptions":
            return Response(200, {"profile": self.profile_name} | asdict(self.assumptions))
        if req.method != "POST":
            return None
        body = req.json() or {}
        try:
            if sub == "contacts":
                return Response(201, self.add_contact(**body))
            if sub == "employees":
                return Response(201, self.add_employee(**body))
            if sub == "linked-account-status":
                return Response(200, self.set_linked_account_status(body["status"], body.get("account_token")))
            if sub == "items":
                return Response(201, self.add_item(**body))
            if sub == "accounts":
                return Response(201, self.add_account(**body))
            if sub == "invoices":
                return Response(201, self.create_invoice(**body))
            if sub == "payments":
                body["applied_to"] = [tuple(x) for x in body.get("applied_to") or []]
                return Response(201, self.create_payment(**body))
            if sub.startswith("invoices/") and sub.endswith("/void"):
                return Response(200, self.void_invoice(sub.split("/")[1]))
            if sub == "delete":
                return Response(200, self.delete(body["model"], body["id"]))
            if sub == "update":
                return Response(200, self.update(body["model"], body["id"], **body.get("fields", {})))
            if sub == "sync":
                return Response(200, {"synced": self.sync()})
            if sub == "seed":
                return Response(200, seed_merge(self, customers=int(body.get("customers", 10)),
                                                seed=int(body.get("seed", 1))))
            if sub == "rate-limit":
                self.set_rate_limit(int(body["per_minute"]))
                return Response(200, {"per_minute": self.rate_limit_per_minute})
        except KeyError as exc:
            return Response(404, {"message": f"not found: {exc}"})
        except (ValueError, TypeError) as exc:
            return Response(400, {"message": str(exc)})
        return None


class _BadParam(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name, self.message = name, message


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.merge", description="Merge Accounting API sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--rate-limit-per-minute", type=int, default=600)
    parser.add_argument("--api-key", default="sandbox-merge-key")
    parser.add_argument("--account-token", default="sandbox-account-token")
    parser.add_argument("--company-name", default="Sandbox Solar Co")
    parser.add_argument("--seed", type=int, default=None, help="seed pre-existing QBO customers (with --customers)")
    parser.add_argument("--customers", type=int, default=0)
    parser.add_argument("--profile", choices=PROFILES, default="optimistic",
                        help="how to read what Merge's docs leave open (sandbox/profiles.py)")
    parser.add_argument("--passthrough-visible-after-sync", action="store_true", default=None,
                        help="override that switch of the profile (on)")
    args = parser.parse_args(argv)
    if not is_loopback(args.host):
        parser.error(f"refusing to bind to non-loopback host {args.host!r}")
    app = MergeApp(api_key=args.api_key, account_token=args.account_token,
                   rate_limit_per_minute=args.rate_limit_per_minute, company_name=args.company_name,
                   passthrough_visible_after_sync=args.passthrough_visible_after_sync, profile=args.profile)
    if args.customers or args.seed is not None:
        seed_merge(app, customers=args.customers or 10, seed=args.seed if args.seed is not None else 1)
    server = SandboxServer(app, args.host, args.port)
    print(f"Merge sandbox on {server.root_url}{API} (profile {args.profile}; "
          f"Link: {server.root_url}/link/initialize.js)", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
