"""Coperniq REST API emulator (`/v1`), faithful to docs/coperniq_api.md and coperniq-openapi.yml.

Why an emulator: the tap, the reverse target and the e2e/bench suites need a Coperniq that answers
with the real wire formats (auth header, bare-array vs. envelope pagination, error bodies, rate-limit
headers) and that tests can steer (move a project to a phase, inject faults, advance the clock).
Every behaviour the public docs leave open is listed as an ASSUMPTION in sandbox/README.md.

Run: `python -m sandbox.coperniq --port 8765 [--seed 42 --projects 50] [--profile pessimistic]`.

This module is the app (auth, rate limits, admin helpers and `/__admin/`, CLI); the rest is one layer down and
never imports it: `coperniq_state` (ids, time, the data), `coperniq_params` (request fields), `coperniq_writes`
(inserts and changes), `coperniq_views` (response shapes), `coperniq_listing` (lists, search, GET by id),
`coperniq_records` (what projects and accounts share), and the routes of each resource: `coperniq_projects`,
`coperniq_accounts` (+ `/clients`), `coperniq_contacts`, `coperniq_catalog` (workflows, catalog items),
`coperniq_invoices`, `coperniq_payments`. The seeder (sandbox/seed.py) builds on state and writes only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sandbox import coperniq_views as views
from sandbox._server import App, RateLimiter, Request, Response, SandboxApp, SandboxServer
from sandbox.coperniq_accounts import register_account_routes
from sandbox.coperniq_catalog import (
    CATALOG_TYPES,
    PRODUCT_CATEGORIES,
    SERVICE_CATEGORIES,
    TRADE_GROUPS,
    register_catalog_routes,
    register_workflow_routes,
)
from sandbox.coperniq_contacts import register_contact_routes
from sandbox.coperniq_invoices import (
    CALCULATION_METHODS,
    INVOICE_CREATE_STATUSES,
    INVOICE_STATUSES,
    create_invoice,
    register_invoice_routes,
)
from sandbox.coperniq_params import ListParams, invalid, json_body, not_found, path_id
from sandbox.coperniq_payments import PAYMENT_METHODS, create_payment, register_payment_routes
from sandbox.coperniq_projects import register_project_routes
from sandbox.coperniq_records import ACCOUNT_TYPES, MATCH_BY, MATCH_STRATEGIES, PROJECT_STATUSES
from sandbox.coperniq_state import (
    API_PREFIX,
    DAY_US,
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
    SANDBOX_USER,
    STAGE_ID_OFFSET,
    STAGE_SCOPE,
    START_IDS,
    Clock,
    CoperniqState,
    iso,
    parse_iso,
    public,
)
from sandbox.coperniq_writes import (
    insert_account,
    insert_catalog_item,
    insert_contact,
    insert_project,
    insert_workflow,
    move_to_phase,
)
from sandbox.profiles import PROFILES, CoperniqAssumptions, resolve
from sandbox.seed import seed_coperniq

#: Names this module had before the split and still serves (the request-field helpers are in coperniq_params).
__all__ = [
    "ACCOUNT_TYPES",
    "API_PREFIX",
    "CALCULATION_METHODS",
    "CATALOG_TYPES",
    "DAY_US",
    "INVOICE_CREATE_STATUSES",
    "INVOICE_STATUSES",
    "MATCH_BY",
    "MATCH_STRATEGIES",
    "PAGE_SIZE_DEFAULT",
    "PAGE_SIZE_MAX",
    "PAYMENT_METHODS",
    "PRODUCT_CATEGORIES",
    "PROJECT_STATUSES",
    "SANDBOX_USER",
    "SERVICE_CATEGORIES",
    "STAGE_ID_OFFSET",
    "STAGE_SCOPE",
    "START_IDS",
    "TRADE_GROUPS",
    "Clock",
    "CoperniqApp",
    "CoperniqState",
    "ListParams",
    "invalid",
    "iso",
    "json_body",
    "main",
    "not_found",
    "parse_iso",
    "path_id",
    "public",
]


# --- the app -------------------------------------------------------------------------------------
class CoperniqApp(SandboxApp):
    """Coperniq `/v1` emulator: state in `self.state`, admin helpers as methods and under `/__admin/`."""

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
        self._register_admin_routes()

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
        """An invoice as the API returns it."""
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
    ) -> dict[str, Any]:
        """Invoice on a project/account through the same validation as POST /invoices.

        `lines` default to one line of a (created on demand) catalog item; a line may omit catalogItemId.
        """
        with self.lock:
            body_lines = []
            for given in lines or [{"quantity": 1, "unitCost": 500.0, "unitPrice": 1000.0}]:
                li = dict(given)
                if "catalogItemId" not in li:
                    li["catalogItemId"] = insert_catalog_item(
                        self.state,
                        {
                            "name": li.pop("name", f"Item {len(self.state.catalog_items) + 1}"),
                            "type": "SERVICE",
                            "category": "INSTALLATION",
                            "cost": li["unitCost"],
                            "price": li["unitPrice"],
                        },
                    )["id"]
                li.pop("name", None)
                body_lines.append(li)
            at_us = self._when(at)
            body: dict[str, Any] = {
                "recordId": record_id,
                "calculationMethod": "LINE_ITEMS",
                "status": status,
                "lineItems": body_lines,
                "description": description,
                "dueDate": due_date,
                "issueDate": issue_date or (iso(at_us) if at_us else iso(self.state.clock.now_us())),
            }
            if at_us is not None:
                inv = create_invoice(self.state, body)
                inv["createdAt"] = inv["updatedAt"] = iso(at_us)
                inv["_u"] = at_us
            else:
                inv = create_invoice(self.state, body)
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

    def seed(self, projects: int = 50, seed: int = 42, **options: Any) -> dict[str, int]:
        """Deterministic demo data, see sandbox.seed.seed_coperniq."""
        return seed_coperniq(self, projects=projects, seed=seed, **options)

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return self.state.summary()

    # --- admin HTTP -----------------------------------------------------------------------------
    def _register_admin_routes(self) -> None:
        r = self.admin_routes.route

        @r("POST", "/__admin/projects/{projectId}/phase")
        def admin_move(req: Request) -> Response:
            body = json_body(req)
            if body.get("phase") is None:
                raise invalid("phase", "phase is required (template id or name)")
            return Response(200, self.move_project_to_phase(path_id(req, "projectId"), body["phase"]))

        @r("POST", "/__admin/seed")
        def admin_seed(req: Request) -> Response:
            body = json_body(req)
            return Response(200, self.seed(**body))

        @r("GET", "/__admin/state/summary")
        def admin_summary(req: Request) -> Response:
            return Response(200, self.state.summary())

        @r("POST", "/__admin/clock")
        def admin_clock(req: Request) -> Response:
            body = json_body(req)
            if body.get("set"):
                self.state.clock.set(body["set"])
            if body.get("advance"):
                self.state.clock.advance(float(body["advance"]))
            return Response(200, {"now": iso(self.state.clock.now_us())})

        @r("POST", "/__admin/profile")
        def admin_profile(req: Request) -> Response:
            body = json_body(req)
            self.assumptions = resolve(CoperniqAssumptions, body.pop("profile", None), **body)
            return Response(200, asdict(self.assumptions))

        @r("POST", "/__admin/rate-limit")
        def admin_rate_limit(req: Request) -> Response:
            body = json_body(req)
            self.set_rate_limits(
                body.get("per_second", self.rate_limit_per_second), body.get("per_day", self.rate_limit_per_day)
            )
            self.limiter.reset()
            return Response(200, {"per_second": self.rate_limit_per_second, "per_day": self.rate_limit_per_day})

        makers: dict[str, Callable[..., dict[str, Any]]] = {
            "accounts": self.add_account,
            "contacts": self.add_contact,
            "projects": self.add_project,
            "catalog-items": self.add_catalog_item,
            "invoices": self.add_invoice,
            "workflows": self.add_workflow,
        }
        for name, fn in makers.items():

            def make(req: Request, fn: Callable[..., dict[str, Any]] = fn) -> Response:
                return Response(201, fn(**json_body(req)))

            r("POST", f"/__admin/{name}")(make)

        @r("POST", "/__admin/invoices/{invoiceId}/payments")
        def admin_payment(req: Request) -> Response:
            return Response(201, self.add_payment(path_id(req, "invoiceId"), **json_body(req)))


# --- CLI -----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.coperniq", description="Coperniq API emulator")
    parser.add_argument("--host", default="127.0.0.1", help="loopback only")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default="sandbox-coperniq-key")
    parser.add_argument("--seed", type=int, default=None, help="seed demo data with this random seed")
    parser.add_argument("--projects", type=int, default=None, help="number of demo projects (default 50 with --seed)")
    parser.add_argument("--rate-limit-per-second", type=int, default=100)
    parser.add_argument("--rate-limit-per-day", type=int, default=5000)
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="optimistic",
        help="API behaviours the docs leave open (sandbox/profiles.py); seeding follows it too",
    )
    args = parser.parse_args(argv)
    app = CoperniqApp(
        api_key=args.api_key,
        rate_limit_per_second=args.rate_limit_per_second,
        rate_limit_per_day=args.rate_limit_per_day,
        profile=args.profile,
    )
    try:
        server = SandboxServer(app, args.host, args.port)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.seed is not None or args.projects is not None:
        seed_coperniq(
            app,
            projects=args.projects if args.projects is not None else 50,
            seed=args.seed if args.seed is not None else 42,
        )
    print(
        f"Coperniq sandbox listening on {server.root_url}{API_PREFIX} (profile {args.profile}, "
        f"{json.dumps(app.summary())})",
        flush=True,
    )
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
