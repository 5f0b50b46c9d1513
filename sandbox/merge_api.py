"""The emulated Merge Accounting API as its clients see it: configuration, auth, rate limits, the route table.

Why apart from sandbox/merge.py: that module adds the sandbox-only surface (admin helpers, `/__admin/`, the CLI)
on top of this class, so each stays small and what a client can reach is all in one place here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from sandbox._server import Faults, RateLimiter, Request, Response, SandboxApp
from sandbox.merge_credit_notes import write_credit_note
from sandbox.merge_credit_routes import application, credit_note_filters
from sandbox.merge_endpoints import ModelEndpoints, Writer
from sandbox.merge_linking import AccountEndpoints, LinkFlow
from sandbox.merge_models import MergeData
from sandbox.merge_qbo import QboCompany
from sandbox.merge_query import (
    Filters,
    contact_filters,
    invoice_filters,
    payment_filters,
    simple_filters,
    tax_rate_filters,
)
from sandbox.merge_seed import seed_assumed_company
from sandbox.merge_state import API, LINKED_ACCOUNT_STATUSES, TRANSACTION_TABLES, LinkedAccount, MergeState, detail
from sandbox.merge_store import Row
from sandbox.merge_tax import TaxSetup, tax_setup
from sandbox.merge_tracking import CLASS_TRACKING, tracking_category_filters
from sandbox.merge_voids import QboTransactions
from sandbox.profiles import MergeAssumptions, resolve

#: Paths (under API) that take the organization key alone, without an X-Account-Token.
ORG_LEVEL = ("/link-token", "/account-token/", "/linked-accounts")


class MergeApi(SandboxApp):
    """Merge Accounting API as its clients see it: configuration, state reset, auth, rate limits, the routes.

    `MergeApp` (sandbox/merge.py) adds the sandbox-only admin surface on top.
    """

    name = "merge"

    def __init__(
        self,
        api_key: str = "sandbox-merge-key",
        account_token: str = "sandbox-account-token",
        rate_limit_per_minute: int = 600,
        company_name: str = "Sandbox Solar Co",
        *,
        realm_id: str = "9341453050298937",
        passthrough_visible_after_sync: bool | None = None,
        passthrough_sync_delay: float | None = None,
        unique_invoice_numbers: bool = True,
        max_name_length: int = 100,
        profile: str | MergeAssumptions | None = None,
        company_tax: str = "us_manual",
        currency: str | None = None,
        class_tracking: str = "per_line",
        **switch_overrides: Any,
    ) -> None:
        """`profile` ("optimistic" = default, "pessimistic" or a `MergeAssumptions`) picks how the sandbox reads
        what Merge's docs leave open; `switch_overrides` (e.g. `idempotency_keys=True`) change single switches.
        `passthrough_visible_after_sync` overrides that switch: a customer created/changed via passthrough shows
        up in /contacts only after POST /sync-status/resync (or `app.sync()`), or after `passthrough_sync_delay`
        seconds when that is set (Merge's periodic sync; setting it defers too, voids included).
        `company_tax` ("us_manual" = default, "us_ast", "non_us") and `currency` (USD; non_us: CAD or GBP) describe
        the QuickBooks company itself (sandbox/merge_tax.py), every linked account's company alike; so does
        `class_tracking` ("per_line" = default, "per_txn": where QuickBooks keeps an invoice's class,
        sandbox/merge_tracking.py)."""
        super().__init__()
        if class_tracking not in CLASS_TRACKING:
            raise ValueError(f"class_tracking must be one of {', '.join(CLASS_TRACKING)}")
        self.class_tracking = class_tracking
        self.tax_setup: TaxSetup = tax_setup(company_tax, currency)
        self.assumptions = resolve(
            MergeAssumptions, profile, passthrough_visible_after_sync=passthrough_visible_after_sync, **switch_overrides
        )
        if self.assumptions.linked_account_status not in LINKED_ACCOUNT_STATUSES:
            raise ValueError(f"linked_account_status must be one of {', '.join(LINKED_ACCOUNT_STATUSES)}")
        self.profile_name = profile if isinstance(profile, str) else "custom" if profile else "optimistic"
        self.faults = Faults(max_concurrent=self.assumptions.max_concurrent)  # the profile's, also after a reset
        self.api_key = api_key
        self.default_account_token = account_token
        self.company_name = company_name
        self.realm_id = realm_id
        self.deferred_passthrough = (
            self.assumptions.passthrough_visible_after_sync or passthrough_sync_delay is not None
        )
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
        qbo = QboCompany(
            self.realm_id,
            max_name_length=self.max_name_length,
            separate_id_spaces=self.assumptions.separate_id_spaces,
            employees=self.assumptions.employees_hold_names,
        )
        data = MergeData(
            qbo,
            company_name=self.company_name,
            unique_invoice_numbers=self.unique_invoice_numbers,
            tax=self.tax_setup,
        )
        data.payment_amount_patch_ignored = self.assumptions.payment_amount_patch_ignored
        data.class_tracking = self.class_tracking
        self.state = MergeState(data)
        qbo.on_change = self._on_qbo_change
        qbo.transactions = QboTransactions(
            data,
            refuse_with_payments=self.assumptions.void_refused_with_payments,
            before_change=self._before_passthrough_void,
        )
        self.state.accounts[self.default_account_token] = LinkedAccount(
            token=self.default_account_token,
            end_user_origin_id="sandbox-org",
            end_user_organization_name=self.company_name,
            end_user_email_address="owner@sandbox.example",
            status=self.assumptions.linked_account_status,
        )
        seed_assumed_company(data, self.assumptions)
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

    @property
    def deferred_voids(self) -> bool:
        """Passthrough voids reach the common models at Merge's next sync (the switch, or a periodic sync)."""
        return self.assumptions.passthrough_void_visible_after_sync or self.passthrough_sync_delay is not None

    def _before_passthrough_void(self, table: str, row: Row) -> None:
        """QuickBooks is about to void (or unapply) `row` through passthrough: when Merge sees that only at its next
        sync, keep what Merge shows now and put the record on the sync's list."""
        if not self.deferred_voids:
            return
        self.state.data.hold_merge_copy(row)
        entity = next(e for e, t in TRANSACTION_TABLES.items() if t == table)
        due = time.monotonic() + self.passthrough_sync_delay if self.passthrough_sync_delay is not None else None
        self.state.pending.setdefault((entity, str(row["remote_id"])), due)

    def set_company(self, company_tax: str | None = None, currency: str | None = None) -> dict[str, Any]:
        """Make the emulated company another kind of company (tax setup, currency): it is rebuilt empty, as after
        a reset. Returns `company()`."""
        setup = tax_setup(company_tax or self.tax_setup.company_tax, currency)
        with self.lock:
            self.tax_setup = setup
            self.reset_state()
        return self.company()

    def company(self) -> dict[str, Any]:
        """The company's settings: kind of tax setup, home currency, country, AST rate."""
        setup = self.tax_setup
        ast = sum(float(r["RateValue"]) for r in setup.components(setup.ast_code)) if setup.ast_code else None
        return {
            "company_tax": setup.company_tax,
            "currency": setup.currency,
            "country": setup.country,
            "ast_rate": ast,
            "partner_tax_enabled": setup.preferences()["TaxPrefs"]["PartnerTaxEnabled"],
        }

    def sync(self, *, only_due: bool = False) -> int:
        """Run a 'Merge sync': copy pending QBO changes into the common models. Returns how many."""
        return self.state.sync_pending(only_due=only_due)

    # --- hooks ------------------------------------------------------------------------------------
    def error(self, status: int, message: str, code: str = "ERROR", **extra: Any) -> Response:
        text = {404: "Not found.", 405: "Method not allowed."}.get(status, message)
        return detail(status, text)

    def too_many(self, retry_after: float) -> Response:
        return detail(429, "Request was throttled.", {"Retry-After": str(max(1, math.ceil(retry_after)))})

    def fault_target(self, req: Request) -> str:
        """What `Faults.only_paths` is matched against: the path, and for passthrough also the QBO path inside
        (so `only_paths=["operation=void"]` injects faults into voids alone)."""
        if not req.path.endswith("/passthrough"):
            return req.path
        try:
            body = req.json()
        except ValueError:
            return req.path
        inner = body.get("path") if isinstance(body, dict) else None
        return f"{req.path} {inner}" if isinstance(inner, str) else req.path

    def concurrency_key(self, key: str) -> str | None:
        """QuickBooks limits concurrent requests per company: only calls scoped to a linked account count."""
        return key if key.startswith("acct:") else None

    def too_many_concurrent(self, limit: int) -> Response:
        """QuickBooks' concurrency throttle as Merge relays it: the rate limit's 429 (Retry-After included), its
        detail naming the concurrency limit."""
        resp = self.too_many(self.faults.retry_after)
        resp.body = {
            "detail": f"Request was throttled: QuickBooks is already serving {limit} concurrent requests for this "
            "company (ThrottleExceeded)."
        }
        return resp

    def authenticate(self, req: Request) -> tuple[str | None, Response | None]:
        if req.path.startswith("/link/"):
            return "link", None
        auth = req.headers.get("authorization", "")
        if not auth:
            return None, detail(401, "Authentication credentials were not provided.")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "bearer" or key.strip() != self.api_key:
            return None, detail(401, "Invalid token.")
        sub = req.path.removeprefix(API)
        if any(sub.startswith(p) for p in ORG_LEVEL):
            return f"org:{self.api_key}", None
        token = req.headers.get("x-account-token", "").strip()
        if not token:
            return None, detail(401, "Missing X-Account-Token header: this endpoint is scoped to a linked account.")
        account = self.state.accounts.get(token)
        if account is None or account.deleted:
            return None, detail(401, "Linked account has been deleted or could not be found for this X-Account-Token.")
        return f"acct:{account.id}", None

    def rate_limit(self, key: str, req: Request) -> tuple[Response | None, dict[str, str]]:
        if key == "link":
            return None, {}
        allowed, limit, remaining, retry_after = self.limiter.hit(key)
        headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining)}
        if not allowed:
            return self.too_many(retry_after), headers
        return None, headers

    # --- routes -----------------------------------------------------------------------------------
    def _register_routes(self) -> None:
        """Common models (one generic handler per verb, per-model filters and writers), then Merge's own."""
        models, accounts, link = ModelEndpoints(self), AccountEndpoints(self), LinkFlow(self)
        filters: dict[str, Callable[[Request], Filters]] = {
            "contacts": lambda req: contact_filters(self.state, req),
            "invoices": invoice_filters,
            "payments": payment_filters,
            "items": simple_filters("name", "status", "type"),
            "accounts": simple_filters("name", "classification", "account_type", "status"),
            "company-info": simple_filters("name"),
            "tax-rates": tax_rate_filters,
            "tracking-categories": tracking_category_filters,
            "credit-notes": credit_note_filters,
        }
        writers: dict[str, Writer] = {
            "contacts": MergeData.write_contact,
            "invoices": MergeData.write_invoice,
            "payments": MergeData.write_payment,
            "items": MergeData.write_item,
            "credit-notes": write_credit_note,
        }
        for model, flt in filters.items():
            self.route("GET", f"{API}/{model}")(partial(models.list_rows, model=model, extra=flt))
            if model in writers:
                self.route("GET", f"{API}/{model}/meta/post")(partial(models.meta, op="POST", model_name=model))
                self.route("GET", f"{API}/{model}/meta/patch/{{id}}")(
                    partial(models.meta, op="PATCH", model_name=model)
                )
                self.route("POST", f"{API}/{model}")(partial(models.write, model=model, writer=writers[model]))
                self.route("PATCH", f"{API}/{model}/{{id}}")(
                    partial(models.write, model=model, writer=writers[model], patch=True)
                )
            self.route("GET", f"{API}/{model}/{{id}}")(partial(models.get_row, model=model))
        self.route("POST", f"{API}/credit-notes/{{id}}/application")(partial(application, app=self))
        self.route("GET", f"{API}/account-details")(accounts.account_details)
        self.route("POST", f"{API}/delete-account")(accounts.delete_account)
        self.route("GET", f"{API}/sync-status")(accounts.sync_status)
        self.route("POST", f"{API}/sync-status/resync")(accounts.resync)
        self.route("GET", f"{API}/linked-accounts")(accounts.linked_accounts)
        self.route("POST", f"{API}/link-token")(link.link_token)
        self.route("GET", f"{API}/account-token/{{public_token}}")(link.account_token)
        self.route("POST", f"{API}/passthrough")(models.passthrough)
        self.route("GET", f"{API}/available-actions")(accounts.available_actions)
        self.route("GET", "/link/initialize.js")(link.link_js)
        self.route("GET", "/link/app")(link.link_app)
        self.route("POST", "/link/api/public-token")(link.mint_public_token)
