"""Coperniq sandbox `/v1/invoices` routes and their write rules (line items, sections, percentage invoices, tax).

Why the rules live here and not in the handlers: `add_invoice` (admin helper) creates invoices through the same
`create_invoice`, so a test that builds data in Python meets the same 400s as the target does over HTTP.
"""

from __future__ import annotations

from typing import Any

from sandbox._server import Request, Response
from sandbox.coperniq_listing import get_record, invoice_page
from sandbox.coperniq_params import as_int, date_field, enum, invalid, is_num, json_body, num_field, opt_str, req_enum
from sandbox.coperniq_state import CoperniqHost, CoperniqState, iso
from sandbox.coperniq_taxes import tax_for_invoice
from sandbox.coperniq_views import invoice_out
from sandbox.coperniq_writes import apply_invoice_tax, build_lines, insert_invoice, merge_lines

INVOICE_STATUSES = ("DRAFT", "SENT", "DECLINED", "PAID", "PARTIALLY_PAID", "OVERDUE")
INVOICE_CREATE_STATUSES = ("DRAFT", "SENT", "PARTIALLY_PAID", "PAID")
CALCULATION_METHODS = ("LINE_ITEMS", "PERCENTAGE")


def collect_lines(st: CoperniqState, body: dict[str, Any]) -> list[tuple[dict[str, Any], str | None]]:
    """Validate `lineItems` + `sections[].lineItems` (InvoiceLineItemCreate), flattened."""
    flat: list[tuple[dict[str, Any], str | None, str]] = []
    if "lineItems" in body and body["lineItems"] is not None:
        if not isinstance(body["lineItems"], list):
            raise invalid("lineItems", "lineItems must be an array")
        flat += [(li, None, f"lineItems[{i}]") for i, li in enumerate(body["lineItems"])]
    if "sections" in body and body["sections"] is not None:
        if not isinstance(body["sections"], list):
            raise invalid("sections", "sections must be an array")
        for s, sec in enumerate(body["sections"]):
            if not isinstance(sec, dict) or not isinstance(sec.get("lineItems"), list) or not sec["lineItems"]:
                raise invalid(f"sections[{s}].lineItems", "each section needs at least one line item")
            name = sec.get("name")
            if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 500):
                raise invalid(f"sections[{s}].name", "section name must be 1-500 characters")
            flat += [(li, name, f"sections[{s}].lineItems[{i}]") for i, li in enumerate(sec["lineItems"])]
    seen: set[int] = set()
    out = []
    for li, section, where in flat:
        if not isinstance(li, dict):
            raise invalid(where, "line item must be an object")
        for f in ("catalogItemId", "quantity", "unitCost", "unitPrice"):
            if li.get(f) is None:
                raise invalid(f"{where}.{f}", f"{f} is required")
        cat_id = as_int(li["catalogItemId"], f"{where}.catalogItemId")
        if cat_id not in st.catalog_items:
            raise invalid(f"{where}.catalogItemId", f"catalog item {cat_id} not found")
        if cat_id in seen:
            raise invalid(
                f"{where}.catalogItemId",
                f"catalogItemId {cat_id} appears more than once; each catalog item may be used once",
            )
        seen.add(cat_id)
        qty = li["quantity"]
        if not is_num(qty) or float(qty) != int(qty) or qty < 1:
            raise invalid(f"{where}.quantity", "quantity must be a positive integer")
        for f in ("unitCost", "unitPrice"):
            if not is_num(li[f]):
                raise invalid(f"{where}.{f}", f"{f} must be a number")
        desc = li.get("description")
        if desc is not None and not isinstance(desc, str):
            raise invalid(f"{where}.description", "description must be a string")
        lid = li.get("id")
        out.append(
            (
                {
                    "id": as_int(lid, f"{where}.id") if lid is not None else 0,
                    "catalogItemId": cat_id,
                    "quantity": int(qty),
                    "unitCost": li["unitCost"],
                    "unitPrice": li["unitPrice"],
                    "description": desc,
                },
                section,
            )
        )
    return out


def create_invoice(
    st: CoperniqState, body: dict[str, Any], *, tax_fields: bool, allow_archived_tax: bool = False
) -> dict[str, Any]:
    """POST /invoices (and `add_invoice`): InvoiceCreate validated, then inserted. `tax_fields` (the profile's
    `invoice_tax_fields`): `taxId` is taken (an existing tax; archived only with `allow_archived_tax`), else it is
    ignored like any field InvoiceCreate does not list."""
    if body.get("recordId") is None:
        raise invalid("recordId", "recordId is required")
    rid = as_int(body["recordId"], "recordId")
    if rid in st.projects:
        record = ("project", rid)
    elif rid in st.accounts:
        record = ("account", rid)
    else:
        raise invalid("recordId", f"record {rid} not found (must be an existing project or account)")
    method = req_enum(body, "calculationMethod", CALCULATION_METHODS)
    status = body.get("status") or "DRAFT"
    if status not in INVOICE_CREATE_STATUSES:
        raise invalid(
            "status",
            f"status must be one of: {', '.join(INVOICE_CREATE_STATUSES)} "
            "(DECLINED and OVERDUE cannot be set at creation)",
        )
    issue = date_field(body, "issueDate")
    if status != "DRAFT" and issue is None:
        raise invalid("issueDate", f"issueDate is required when status is {status}")
    due = date_field(body, "dueDate")
    description = opt_str(body, "description")
    percentage = None
    lines: list[tuple[dict[str, Any], str | None]] = []
    if method == "LINE_ITEMS":
        if body.get("percentage") is not None:
            raise invalid("percentage", "percentage is only allowed when calculationMethod is PERCENTAGE")
        if body.get("lineItems") is None and body.get("sections") is None:
            raise invalid("lineItems", "lineItems or sections is required when calculationMethod is LINE_ITEMS")
        lines = collect_lines(st, body)
        if not lines:
            raise invalid("lineItems", "at least one line item is required")
    else:
        if body.get("lineItems") or body.get("sections"):
            raise invalid("lineItems", "lineItems and sections must be omitted when calculationMethod is PERCENTAGE")
        percentage = num_field(body, "percentage", required=True)
        assert percentage is not None
        if not 0 < percentage <= 100:
            raise invalid("percentage", "percentage must be greater than 0 and at most 100")
    tax = tax_for_invoice(st, body.get("taxId"), allow_archived=allow_archived_tax) if tax_fields else None
    return insert_invoice(st, record, method, lines, status, issue, due, description, percentage, tax=tax)


def update_invoice(
    st: CoperniqState, inv: dict[str, Any], body: dict[str, Any], *, replaces_lines: bool, tax_fields: bool
) -> None:
    """PATCH /invoices/{id}: status, lineItems/sections (replace the whole set, or add to it without
    `invoice_patch_replaces_lines`, i.e. `replaces_lines=False`), dueDate, description, and with `tax_fields`
    `taxId` (an active tax; `null` clears it; absent: unchanged; without `tax_fields` ignored)."""
    if "calculationMethod" in body:
        raise invalid("calculationMethod", "calculationMethod cannot be changed after creation")
    is_lines = inv["calculationMethod"] == "LINE_ITEMS"
    status = enum(body, "status", INVOICE_STATUSES) if body.get("status") is not None else None
    due = date_field(body, "dueDate")
    issue = date_field(body, "issueDate")
    lines = None
    percentage = None
    if body.get("lineItems") is not None or body.get("sections") is not None:
        if not is_lines:
            raise invalid("lineItems", "lineItems and sections are only allowed on LINE_ITEMS invoices")
        lines = collect_lines(st, body)
        if not lines:
            raise invalid("lineItems", "at least one line item is required")
    if body.get("percentage") is not None:
        if is_lines:
            raise invalid("percentage", "percentage is only allowed on PERCENTAGE invoices")
        percentage = num_field(body, "percentage")
        assert percentage is not None
        if not 0 < percentage <= 100:
            raise invalid("percentage", "percentage must be greater than 0 and at most 100")
    description = opt_str(body, "description") if "description" in body else inv["description"]
    set_tax = tax_fields and "taxId" in body
    tax = tax_for_invoice(st, body["taxId"]) if set_tax else None
    # all validated: apply atomically
    now = st.clock.tick()
    if set_tax:
        apply_invoice_tax(inv, tax)
    if lines is not None:
        inv["lineItems"] = (
            build_lines(st, lines, inv["lineItems"]) if replaces_lines else merge_lines(st, lines, inv["lineItems"])
        )
        inv["amount"] = round(sum(li["quantity"] * li["unitPrice"] for li in inv["lineItems"]), 2)
    if percentage is not None:
        inv["percentage"] = percentage
        inv["amount"] = round((inv["baseAmount"] or 0.0) * percentage / 100.0, 2)
    if status is not None:
        inv["status"] = status
    if inv["status"] != "DRAFT" and (issue is not None or inv["issueDate"] is None):
        inv["issueDate"] = iso(issue if issue is not None else now)
    if due is not None:
        inv["dueDate"] = iso(due)
    inv["description"] = description
    inv["updatedAt"], inv["_u"] = iso(now), now
    st.touch("invoices")


def register_invoice_routes(app: CoperniqHost) -> None:
    """Add the invoice routes to `app` (an invoice's payments are in sandbox/coperniq_payments.py)."""
    r = app.route

    @r("GET", "/v1/invoices")
    def list_invoices(req: Request) -> Response:
        return invoice_page(app.state, req, None, (), tax_fields=app.assumptions.invoice_tax_fields)

    @r("POST", "/v1/invoices")
    def create_invoice_route(req: Request) -> Response:
        st, tax_fields = app.state, app.assumptions.invoice_tax_fields
        inv = create_invoice(st, json_body(req), tax_fields=tax_fields)
        return Response(201, invoice_out(st, inv, tax_fields=tax_fields))

    @r("GET", "/v1/invoices/{invoiceId}")
    def get_invoice(req: Request) -> Response:
        st = app.state
        inv = get_record(st.invoices, req, "invoiceId", "Invoice")
        return Response(200, invoice_out(st, inv, tax_fields=app.assumptions.invoice_tax_fields))

    @r("PATCH", "/v1/invoices/{invoiceId}")
    def update_invoice_route(req: Request) -> Response:
        st, assumptions = app.state, app.assumptions
        inv = get_record(st.invoices, req, "invoiceId", "Invoice")
        update_invoice(
            st,
            inv,
            json_body(req),
            replaces_lines=assumptions.invoice_patch_replaces_lines,
            tax_fields=assumptions.invoice_tax_fields,
        )
        return Response(200, invoice_out(st, inv, tax_fields=assumptions.invoice_tax_fields))

    @r("DELETE", "/v1/invoices/{invoiceId}")
    def delete_invoice(req: Request) -> Response:
        s = app.state
        inv = get_record(s.invoices, req, "invoiceId", "Invoice")
        del s.invoices[inv["id"]]
        s.payments.pop(inv["id"], None)
        for index in (s.invoices_by_project, s.invoices_by_account):
            for ids in index.values():
                if inv["id"] in ids:
                    ids.remove(inv["id"])
        s.touch("invoices")
        return Response(200, None)
