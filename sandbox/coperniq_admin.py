"""Coperniq sandbox `/__admin/` routes: the HTTP face of the app's admin helpers (move a project, seed, add records,
set an invoice's tax, set the clock, the profile and the rate limits), plus what those helpers share.

Why the helpers stay methods of `CoperniqApp` and only the route table lives here: a wrong body reaches the helper
as keyword arguments, and the 400 then carries Python's own message, which names the method
("CoperniqApp.add_project() got an unexpected keyword argument ..."); tests and clients see that text, so the
methods must stay on the app class. Like the `/v1` route modules, this one never imports the app: it needs only
the `CoperniqAdminHost` protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Protocol

from sandbox._server import App, RateLimiter, Request, Response
from sandbox.coperniq_params import invalid, json_body, path_id
from sandbox.coperniq_state import CoperniqHost, CoperniqState, iso
from sandbox.coperniq_writes import insert_catalog_item
from sandbox.profiles import CoperniqAssumptions, resolve


class CoperniqAdminHost(CoperniqHost, Protocol):
    """What the admin routes use of `CoperniqApp`: its admin helpers, the profile and the rate limits."""

    assumptions: CoperniqAssumptions  # replaced by POST /__admin/profile
    admin_routes: App
    limiter: RateLimiter
    rate_limit_per_second: int | None
    rate_limit_per_day: int | None

    def set_rate_limits(self, per_second: int | None, per_day: int | None) -> None: ...

    def move_project_to_phase(self, project_id: int, phase: int | str) -> dict[str, Any]: ...

    def seed(self, *args: Any, **kwargs: Any) -> dict[str, int]: ...

    def add_account(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def add_contact(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def add_project(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def add_catalog_item(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def add_invoice(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def add_workflow(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def add_payment(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def add_tax(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def set_invoice_tax(self, invoice_id: int, tax_id: int | None) -> dict[str, Any]: ...

    def delete_payment(self, invoice_id: int, payment_id: int) -> dict[str, Any]: ...

    def set_payment_status(self, invoice_id: int, payment_id: int, status: str) -> dict[str, Any]: ...


def admin_invoice_lines(st: CoperniqState, lines: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """`CoperniqApp.add_invoice`'s lines as POST /invoices takes them: one line of 500/1000 by default, and a
    line without `catalogItemId` gets a new SERVICE item (named after its `name`, which the line then drops)."""
    body_lines = []
    for given in lines or [{"quantity": 1, "unitCost": 500.0, "unitPrice": 1000.0}]:
        li = dict(given)
        if "catalogItemId" not in li:
            li["catalogItemId"] = insert_catalog_item(
                st,
                {
                    "name": li.pop("name", f"Item {len(st.catalog_items) + 1}"),
                    "type": "SERVICE",
                    "category": "INSTALLATION",
                    "cost": li["unitCost"],
                    "price": li["unitPrice"],
                },
            )["id"]
        li.pop("name", None)
        body_lines.append(li)
    return body_lines


def register_admin_routes(app: CoperniqAdminHost) -> None:
    """Add the `/__admin/` routes to `app.admin_routes`, in the order the app always registered them."""
    r = app.admin_routes.route

    @r("POST", "/__admin/projects/{projectId}/phase")
    def admin_move(req: Request) -> Response:
        body = json_body(req)
        if body.get("phase") is None:
            raise invalid("phase", "phase is required (template id or name)")
        return Response(200, app.move_project_to_phase(path_id(req, "projectId"), body["phase"]))

    @r("POST", "/__admin/seed")
    def admin_seed(req: Request) -> Response:
        body = json_body(req)
        return Response(200, app.seed(**body))

    @r("GET", "/__admin/state/summary")
    def admin_summary(req: Request) -> Response:
        return Response(200, app.state.summary())

    @r("POST", "/__admin/clock")
    def admin_clock(req: Request) -> Response:
        body = json_body(req)
        if body.get("set"):
            app.state.clock.set(body["set"])
        if body.get("advance"):
            app.state.clock.advance(float(body["advance"]))
        return Response(200, {"now": iso(app.state.clock.now_us())})

    @r("POST", "/__admin/profile")
    def admin_profile(req: Request) -> Response:
        body = json_body(req)
        app.assumptions = resolve(CoperniqAssumptions, body.pop("profile", None), **body)
        return Response(200, asdict(app.assumptions))

    @r("POST", "/__admin/rate-limit")
    def admin_rate_limit(req: Request) -> Response:
        body = json_body(req)
        app.set_rate_limits(
            body.get("per_second", app.rate_limit_per_second), body.get("per_day", app.rate_limit_per_day)
        )
        app.limiter.reset()
        return Response(200, {"per_second": app.rate_limit_per_second, "per_day": app.rate_limit_per_day})

    makers: dict[str, Callable[..., dict[str, Any]]] = {
        "accounts": app.add_account,
        "contacts": app.add_contact,
        "projects": app.add_project,
        "catalog-items": app.add_catalog_item,
        "invoices": app.add_invoice,
        "workflows": app.add_workflow,
        "taxes": app.add_tax,
    }
    for name, fn in makers.items():

        def make(req: Request, fn: Callable[..., dict[str, Any]] = fn) -> Response:
            return Response(201, fn(**json_body(req)))

        r("POST", f"/__admin/{name}")(make)

    @r("POST", "/__admin/invoices/{invoiceId}/payments")
    def admin_payment(req: Request) -> Response:
        return Response(201, app.add_payment(path_id(req, "invoiceId"), **json_body(req)))

    @r("DELETE", "/__admin/invoices/{invoiceId}/payments/{paymentId}")
    def admin_delete_payment(req: Request) -> Response:
        return Response(200, app.delete_payment(path_id(req, "invoiceId"), path_id(req, "paymentId")))

    @r("POST", "/__admin/invoices/{invoiceId}/payments/{paymentId}/status")
    def admin_payment_status(req: Request) -> Response:
        status = json_body(req).get("status")
        if not isinstance(status, str) or not status:
            raise invalid("status", "status is required (e.g. REFUNDED)")
        return Response(200, app.set_payment_status(path_id(req, "invoiceId"), path_id(req, "paymentId"), status))

    @r("POST", "/__admin/invoices/{invoiceId}/tax")
    def admin_invoice_tax(req: Request) -> Response:
        body = json_body(req)
        if "taxId" not in body:
            raise invalid("taxId", "taxId is required (a tax id, or null to clear the invoice's tax)")
        return Response(200, app.set_invoice_tax(path_id(req, "invoiceId"), body["taxId"]))
