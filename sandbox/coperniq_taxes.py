"""Coperniq sandbox taxes: `/v1/taxes` (the company's tax rates, read-only) and an invoice's `taxId`.

Why a module of its own: a tax is reference data like a catalog item, but two callers validate a tax id against it
(`POST`/`PATCH /invoices` and the admin helper that sets a tax as the UI would), so the lookup and its 400s are
written once. The spec's `GET /taxes` is a bare array with `page`, `page_size` and `include_archived` (archived
taxes hidden by default); CompanyTax `rate` is a percentage as a four-place decimal string ("7.2500").
"""

from __future__ import annotations

from typing import Any

from sandbox._server import Request, Response
from sandbox.coperniq_listing import list_ids
from sandbox.coperniq_params import ListParams, as_int, invalid
from sandbox.coperniq_state import CoperniqHost, CoperniqState, public


def tax_for_invoice(st: CoperniqState, value: Any, *, allow_archived: bool = False) -> dict[str, Any] | None:
    """The tax an invoice's `taxId` names (None: no tax). An unknown id, or an archived tax unless
    `allow_archived` (the admin helper: an invoice taxed before its tax was archived), is 400 `field=taxId`."""
    if value is None:
        return None
    tax_id = as_int(value, "taxId")
    tax = st.taxes.get(tax_id)
    if tax is None:
        raise invalid("taxId", f"tax {tax_id} not found")
    if tax["isArchived"] and not allow_archived:
        raise invalid("taxId", f"tax {tax_id} is archived")
    return tax


def register_tax_routes(app: CoperniqHost) -> None:
    """Add `GET /v1/taxes` to `app` (taxes are created by the admin helpers and the seeder only)."""

    @app.route("GET", "/v1/taxes")
    def list_taxes(req: Request) -> Response:
        st = app.state
        params = ListParams.parse(req)
        ids = list_ids(
            st,
            "taxes",
            st.taxes,
            params,
            extra=(params.include_archived,),
            pred=None if params.include_archived else lambda tax: not tax["isArchived"],
        )
        return Response(200, [public(st.taxes[i]) for i in params.window(ids)])
