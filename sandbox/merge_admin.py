"""Merge sandbox `/__admin/` routes: the HTTP face of MergeApp's admin helpers ("things done directly in
QuickBooks"), for the demo and for tests in other processes. Apart from sandbox/merge.py to keep that module the
helpers themselves."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from sandbox._server import Request, Response
from sandbox.merge_seed import seed_merge

if TYPE_CHECKING:
    from sandbox.merge import MergeApp


def admin_response(app: MergeApp, req: Request) -> Response | None:
    """HTTP equivalents of the admin helpers (used by the demo and by tests in other processes); None: not an
    admin route of the Merge sandbox."""
    sub = req.path[len("/__admin/") :].strip("/")
    if req.method == "GET" and sub == "summary":
        return Response(
            200,
            {name: len(table) for name, table in app.state.data.tables.items()}
            | {"pending_sync": len(app.state.pending), "voids": len(app.state.data.voids)},
        )
    if req.method == "GET" and sub == "assumptions":
        return Response(200, {"profile": app.profile_name} | asdict(app.assumptions))
    if req.method == "GET" and sub == "company":
        return Response(200, app.company())
    if req.method == "GET" and sub == "voids":
        return Response(200, {"voids": app.voids()})
    if req.method == "GET" and sub == "refund-receipts":
        return Response(200, {"refund_receipts": app.state.qbo.refund_receipts.all()})
    if req.method == "GET" and sub == "purchases":
        return Response(200, {"purchases": app.state.qbo.purchases.all()})
    if req.method == "GET" and sub.count("/") == 1 and sub.split("/")[0] in app.state.data.tables:
        try:
            return Response(200, app.record(*sub.split("/")))
        except KeyError as exc:
            return Response(404, {"message": f"not found: {exc}"})
    if req.method != "POST":
        return None
    body = req.json() or {}
    try:
        if sub == "contacts":
            return Response(201, app.add_contact(**body))
        if sub == "employees":
            return Response(201, app.add_employee(**body))
        if sub == "linked-account-status":
            return Response(200, app.set_linked_account_status(body["status"], body.get("account_token")))
        if sub == "items":
            return Response(201, app.add_item(**body))
        if sub == "accounts":
            return Response(201, app.add_account(**body))
        if sub == "tracking-categories":
            return Response(201, app.add_tracking_category(**body))
        if sub == "invoices":
            return Response(201, app.create_invoice(**body))
        if sub == "payments":
            body["applied_to"] = [tuple(x) for x in body.get("applied_to") or []]
            return Response(201, app.create_payment(**body))
        if sub.startswith("invoices/") and sub.endswith("/void"):
            return Response(200, app.void_invoice(sub.split("/")[1]))
        if sub.startswith("payments/") and sub.endswith("/void"):
            return Response(200, app.void_payment(sub.split("/")[1]))
        if sub.startswith("payments/") and sub.endswith("/deposit"):
            return Response(200, app.deposit_payment(sub.split("/")[1]))
        if sub == "company":
            return Response(200, app.set_company(body.get("company_tax"), body.get("currency")))
        if sub == "delete":
            return Response(200, app.delete(body["model"], body["id"]))
        if sub == "update":
            return Response(200, app.update(body["model"], body["id"], **body.get("fields", {})))
        if sub == "sync":
            return Response(200, {"synced": app.sync()})
        if sub == "seed":
            return Response(
                200, seed_merge(app, customers=int(body.get("customers", 10)), seed=int(body.get("seed", 1)))
            )
        if sub == "rate-limit":
            app.set_rate_limit(int(body["per_minute"]))
            return Response(200, {"per_minute": app.rate_limit_per_minute})
    except KeyError as exc:
        return Response(404, {"message": f"not found: {exc}"})
    except (ValueError, TypeError) as exc:
        return Response(400, {"message": str(exc)})
    return None
