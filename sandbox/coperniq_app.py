"""The Coperniq sandbox app: `CoperniqApp` (auth, rate limits, the `/v1` route table, the admin helpers).

Why a module apart from sandbox/coperniq.py: that one is the entry point (`python -m sandbox.coperniq`, the CLI)
and serves every name the app had before the split; this one is the class. Its admin helpers stay methods (see
sandbox/coperniq_admin.py for why), their `/__admin/` routes are in `coperniq_admin`, and the routes of each
resource in their own module, none of which imports this one.
"""

from __future__ import annotations

import math
from datetime import datetime
from email.utils import formatdate
from typing import Any

from sandbox import coperniq_views as views
from sandbox._server import App, RateLimiter, Request, Response, SandboxApp
from sandbox.coperniq_accounts import register_account_routes
from sandbox.coperniq_admin import admin_invoice_lines, register_admin_routes
from sandbox.coperniq_catalog import register_catalog_routes, register_workflow_routes
from sandbox.coperniq_contacts import register_contact_routes
from sandbox.coperniq_invoice_writes import remove_payment, take_back_payment
from sandbox.coperniq_invoices import create_invoice, register_invoice_routes
from sandbox.coperniq_params import invalid, not_found, req_str
from sandbox.coperniq_payments import create_payment, register_payment_routes
from sandbox.coperniq_projects import register_project_routes
from sandbox.coperniq_state import Clock, CoperniqState, iso, parse_iso, public
from sandbox.coperniq_taxes import register_tax_routes, tax_for_invoice
from sandbox.coperniq_writes import (
    insert_account,
    insert_catalog_item,
    insert_contact,
    insert_project,
    insert_tax,
    insert_workflow,
    move_to_phase,
    set_invoice_tax,
    tax_rate_text,
)
from sandbox.profiles import CoperniqAssumptions, resolve
from sandbox.seed import seed_coperniq


class CoperniqApp(SandboxApp):
    """Coperniq `/v1` emulator: state in `self.state`, admin helpers as methods and under `/__admin/`
    (the route table of those is in sandbox/coperniq_admin.py)."""

    name = "coperniq"

    def __init__(
        self,
        api_key: str = "sandbox-coperniq-key",
        rate_limit_per_second: int | None = 100,
        rate_limit_per_day: int | None = 5000,
        *,
        allow_overpayment: bool = False,
        clock: Clock | None = None,
        profile: str | CoperniqAssumptions | None = None,
        **switch_overrides: Any,
    ) -> None:
        """`profile` ("optimistic" = default, "pessimistic" or a CoperniqAssumptions), then single switches
        (`phase_change_bumps_updated_at=False`, ...) on top: see sandbox/profiles.py."""
        super().__init__()
        self.api_key = api_key
        self.allow_overpayment = allow_overpayment
        self.assumptions = resolve(CoperniqAssumptions, profile, **switch_overrides)
        self.state = CoperniqState(clock)
        self.limiter = RateLimiter([])
        self.set_rate_limits(rate_limit_per_second, rate_limit_per_day)
        self.admin_routes = App()
        self._register_routes()
        register_admin_routes(self)

    # --- SandboxApp hooks ---------------------------------------------------------------------
    def authenticate(self, req: Request) -> tuple[str | None, Response | None]:
        key = req.headers.get("x-api-key")
        if not key or key != self.api_key:
            return None, self.error(401, "Invalid API key", "UNAUTHORIZED")
        return key, None

    def rate_limit(self, key: str, req: Request) -> tuple[Response | None, dict[str, str]]:
        allowed, limit, remaining, retry_after = self.limiter.hit(key)
        headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining)} if limit else {}
        if not self.assumptions.rate_limit_headers:
            headers = {}
        if not allowed:
            return self.too_many(max(1, math.ceil(retry_after))), headers
        return None, headers

    def too_many(self, retry_after: float) -> Response:
        """Without `rate_limit_headers` a 429 (limit or injected burst) says nothing about when to retry."""
        resp = super().too_many(retry_after)
        if not self.assumptions.rate_limit_headers:
            resp.headers.pop("Retry-After", None)
        return resp

    def http_date(self) -> str:
        """`Date`: the clock that stamps `updatedAt` (moved by tests), `date_header_skew_s` ahead of it."""
        return formatdate(self.state.clock.latest_us() / 1e6 + self.assumptions.date_header_skew_s, usegmt=True)

    def reset_state(self) -> None:
        self.state = CoperniqState(self.state.clock)
        self.limiter.reset()

    def admin(self, req: Request) -> Response | None:
        handler, _ = self.admin_routes.match(req)
        return handler(req) if handler else None

    def set_rate_limits(self, per_second: int | None, per_day: int | None) -> None:
        """Daily limit first in headers (X-RateLimit-Limit is the daily limit, as documented)."""
        self.rate_limit_per_second, self.rate_limit_per_day = per_second, per_day
        self.limiter.set_windows([(per_second or 0, 1.0), (per_day or 0, 86400.0)])

    # --- output (the shapes live in sandbox/coperniq_views.py) ----------------------------------
    def project_out(self, p: dict[str, Any], detail: bool = False) -> dict[str, Any]:
        """List item (`phase`/`stage`) or, with `detail`, GET by id (+ `phaseInstances`)."""
        return views.project_out(self.state, p, detail)

    def account_out(self, a: dict[str, Any], include_contacts: bool = False) -> dict[str, Any]:
        """An account as the API returns it."""
        return views.account_out(self.state, a, include_contacts)

    def contact_out(self, c: dict[str, Any]) -> dict[str, Any]:
        """A contact as the API returns it."""
        return views.contact_out(self.state, c)

    def invoice_out(self, inv: dict[str, Any]) -> dict[str, Any]:
        """An invoice as the API returns it, with its tax (`taxId`, `taxRate`) whatever `invoice_tax_fields`
        says: the admin helpers show what Coperniq holds."""
        return views.invoice_out(self.state, inv)

    def payment_out(self, pay: dict[str, Any]) -> dict[str, Any]:
        """A payment as the API returns it."""
        return views.payment_out(pay)

    def workflow_out(self, wf: dict[str, Any]) -> dict[str, Any]:
        """A workflow as the API returns it."""
        return views.workflow_out(self.state, wf)

    # --- routes -------------------------------------------------------------------------------
    def _register_routes(self) -> None:
        """The `/v1` table, one module per resource, in the order the app always registered them."""
        register_project_routes(self)
        for base in ("/v1/accounts", "/v1/clients"):
            register_account_routes(self, base)
        register_contact_routes(self)
        register_workflow_routes(self)
        register_catalog_routes(self)
        register_invoice_routes(self)
        register_payment_routes(self)
        register_tax_routes(self)

    # --- admin helpers (Python) -----------------------------------------------------------------
    def _when(self, at: datetime | str | None) -> int | None:
        """An admin helper's `at=` as whole-millisecond µs, like every timestamp the API hands out."""
        if at is None:
            return None
        return parse_iso(at if isinstance(at, str) else at.isoformat()) // 1000 * 1000

    def move_project_to_phase(self, project_id: int, phase: int | str) -> dict[str, Any]:
        """Simulate a user moving a project in the UI (the public API cannot).

        `phase` is a phase template id, or a phase name/type of the project's workflow (for a Workflows 1.0
        project also its `stage.id`). Forward: the current phase completes, skipped phases are recorded as
        completed, the target starts. Backward: the target restarts and later phases go back to NOT_STARTED.
        Bumps `updatedAt` (and `lastActivity`, `updatedBy`) unless `phase_change_bumps_updated_at` is off.
        """
        with self.lock:
            p = self.state.projects.get(int(project_id))
            if p is None:
                raise not_found("Project", project_id)
            move_to_phase(self.state, p, phase, bump_updated_at=self.assumptions.phase_change_bumps_updated_at)
            return self.project_out(p, detail=True)

    def add_workflow(self, name: str, phases: list[Any], description: str | None = None) -> dict[str, Any]:
        """Create a workflow; phases are names or dicts {name, type?, redSla?, yellowSla?}."""
        with self.lock:
            return self.workflow_out(insert_workflow(self.state, name, phases, description))

    def add_account(
        self,
        title: str = "Test Account",
        *,
        address: str | list[str] = "1 Test St, Austin, TX 78701",
        at: datetime | str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        with self.lock:
            fields.update(title=title, address=[address] if isinstance(address, str) else address)
            return self.account_out(insert_account(self.state, fields, self._when(at)))

    def add_contact(
        self, name: str = "Test Contact", *, at: datetime | str | None = None, **fields: Any
    ) -> dict[str, Any]:
        with self.lock:
            fields["name"] = name
            return self.contact_out(insert_contact(self.state, fields, self._when(at)))

    def add_project(
        self,
        title: str = "Test Project",
        *,
        account_id: int | None = None,
        workflow_id: int | None = None,
        workflow: str | None = None,
        phase: int | str | None = None,
        address: str | list[str] = "1 Test St, Austin, TX 78701",
        at: datetime | str | None = None,
        workflows_v1: bool = False,
        **fields: Any,
    ) -> dict[str, Any]:
        """Create a project (and an account, and a default workflow, if none given); optional start phase.

        `workflows_v1=True`: a Workflows 1.0 project (`stage` instead of `phase`), whatever the profile."""
        with self.lock:
            st = self.state
            if workflow is not None:
                workflow_id = next(w["id"] for w in st.workflows.values() if w["name"] == workflow)
            if workflow_id is None:
                if not st.workflows:
                    insert_workflow(
                        st,
                        "Residential Solar",
                        ["Sale", "Site Survey", "Design", "Permitting", "Install", "Inspection", "PTO"],
                    )
                workflow_id = min(st.workflows)
            if account_id is None:
                account_id = insert_account(
                    st, {"title": title, "address": [address] if isinstance(address, str) else address}, self._when(at)
                )["id"]
            fields.update(title=title, address=[address] if isinstance(address, str) else address)
            p = insert_project(st, fields, account_id, workflow_id, self._when(at), workflows_v1=workflows_v1)
        if phase is not None:
            return self.move_project_to_phase(p["id"], phase)
        return self.project_out(p, detail=True)

    def add_catalog_item(
        self,
        name: str = "Test Item",
        *,
        type: str = "PRODUCT",  # noqa: A002 - the API's field name
        category: str = "OTHER",
        cost: float = 10.0,
        price: float = 20.0,
        **fields: Any,
    ) -> dict[str, Any]:
        with self.lock:
            fields.update(name=name, type=type, category=category, cost=cost, price=price)
            return public(insert_catalog_item(self.state, fields))

    def add_invoice(
        self,
        record_id: int,
        lines: list[dict[str, Any]] | None = None,
        *,
        status: str = "SENT",
        issue_date: str | None = None,
        due_date: str | None = None,
        description: str | None = None,
        at: datetime | str | None = None,
        tax_id: int | None = None,
        based_on: int | None = None,
    ) -> dict[str, Any]:
        """Invoice on a project/account through the same validation as POST /invoices.

        `lines` default to one line of a (created on demand) catalog item; a line may omit catalogItemId; a
        negative `unitPrice` is a credit line (a credit is an invoice whose total is negative).
        `tax_id`: the invoice's tax, set as in the UI (in every profile; an archived tax too).
        `based_on`: the invoice it is based on (`basedOnId`/`basedOnUid`, set in the UI: InvoiceCreate has neither).
        """
        with self.lock:
            body_lines = admin_invoice_lines(self.state, lines)
            at_us = self._when(at)
            body: dict[str, Any] = {
                "recordId": record_id,
                "calculationMethod": "LINE_ITEMS",
                "status": status,
                "lineItems": body_lines,
                "description": description,
                "dueDate": due_date,
                "issueDate": issue_date or (iso(at_us) if at_us else iso(self.state.clock.now_us())),
                "taxId": tax_id,
            }
            inv = create_invoice(self.state, body, tax_fields=True, allow_archived_tax=True)
            if based_on is not None:
                base = self.state.invoices.get(int(based_on))
                if base is None:
                    raise ValueError(f"invoice {based_on} not found")
                inv["basedOnId"], inv["basedOnUid"] = base["id"], base["uid"]
            if at_us is not None:
                inv["createdAt"] = inv["updatedAt"] = iso(at_us)
                inv["_u"] = at_us
            return self.invoice_out(inv)

    def add_tax(self, name: str = "Sales Tax", rate: float | str = 8.25, *, archived: bool = False) -> dict[str, Any]:
        """A company tax (GET /taxes), as set up in Coperniq's settings; `rate` a percentage (8.25 or "8.2500")."""
        fields: dict[str, Any] = {"name": name}  # checked as a body: the admin route passes JSON as it came
        req_str(fields, "name")
        try:
            rate_text = None if isinstance(rate, bool) else tax_rate_text(rate)
        except ArithmeticError:
            rate_text = None
        if rate_text is None or not 0 <= float(rate_text) <= 100:
            raise invalid("rate", "rate must be a percentage between 0 and 100")
        with self.lock:
            return public(insert_tax(self.state, name, rate_text, archived=bool(archived)))

    def set_invoice_tax(self, invoice_id: int, tax_id: int | None) -> dict[str, Any]:
        """Set (or, with None, clear) an invoice's tax as a user would in the UI, in every profile (an archived tax
        too: an invoice taxed before its tax was archived). Bumps `updatedAt` when the tax really changes."""
        with self.lock:
            inv = self.state.invoices.get(int(invoice_id))
            if inv is None:
                raise not_found("Invoice", invoice_id)
            set_invoice_tax(self.state, inv, tax_for_invoice(self.state, tax_id, allow_archived=True))
            return self.invoice_out(inv)

    def add_payment(
        self,
        invoice_id: int,
        amount: float | None = None,
        *,
        method: str = "ACH",
        payment_date: str | None = None,
        reference: str | None = None,
        notes: str | None = None,
    ) -> dict[str, Any]:
        """Payment through the same validation as POST /invoices/{id}/payments (default: the full balance)."""
        with self.lock:
            inv = self.state.invoices.get(invoice_id)
            if inv is None:
                raise not_found("Invoice", invoice_id)
            body = {
                "amount": amount if amount is not None else round(inv["amount"] - inv["amountPaid"], 2),
                "paymentMethod": method,
                "paymentDate": payment_date or iso(self.state.clock.now_us()),
                "paymentReference": reference,
                "notes": notes,
            }
            return self.payment_out(create_payment(self.state, inv, body, allow_overpayment=self.allow_overpayment))

    def delete_payment(self, invoice_id: int, payment_id: int) -> dict[str, Any]:
        """A payment deleted in Coperniq's UI (the API has no payment delete); the invoice as it is then. Its
        `updatedAt` moves unless `payment_delete_bumps_invoice` is off."""
        with self.lock:
            inv = self.state.invoices.get(int(invoice_id))
            if inv is None:
                raise not_found("Invoice", invoice_id)
            bump = self.assumptions.payment_delete_bumps_invoice
            if not remove_payment(self.state, inv, int(payment_id), bump_updated_at=bump):
                raise not_found("Payment", payment_id)
            return self.invoice_out(inv)

    def set_payment_status(self, invoice_id: int, payment_id: int, status: str) -> dict[str, Any]:
        """A payment refunded, voided or failed in Coperniq's UI (the API has no payment update); the invoice as it
        is then. Its amount leaves `amountPaid` unless `taken_back_payment_stays_in_amount_paid` is on."""
        with self.lock:
            inv = self.state.invoices.get(int(invoice_id))
            if inv is None:
                raise not_found("Invoice", invoice_id)
            counted = self.assumptions.taken_back_payment_stays_in_amount_paid
            if not take_back_payment(self.state, inv, int(payment_id), str(status), counted=counted):
                raise not_found("Payment", payment_id)
            return self.invoice_out(inv)

    def seed(self, projects: int = 50, seed: int = 42, **options: Any) -> dict[str, int]:
        """Deterministic demo data, see sandbox.seed.seed_coperniq."""
        return seed_coperniq(self, projects=projects, seed=seed, **options)

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return self.state.summary()
