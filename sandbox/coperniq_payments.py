"""Coperniq sandbox `/v1/invoices/{invoiceId}/payments` routes and the payment rules.

Coperniq has no global `GET /payments`: payments exist only under their invoice, and recording one rolls it into
the invoice (amountPaid, status, updatedAt), so a new payment also shows as a change of its invoice.
"""

from __future__ import annotations

from typing import Any

from sandbox._server import Request, Response
from sandbox.coperniq_listing import get_record
from sandbox.coperniq_params import date_field, enum, invalid, json_body, not_found, num_field, opt_str, path_id
from sandbox.coperniq_state import CoperniqHost, CoperniqState
from sandbox.coperniq_views import payment_out
from sandbox.coperniq_writes import insert_payment

PAYMENT_METHODS = ("CASH", "ACH", "CREDIT_CARD", "KLARNA", "AFFIRM", "CHECK")


def create_payment(
    st: CoperniqState, inv: dict[str, Any], body: dict[str, Any], *, allow_overpayment: bool
) -> dict[str, Any]:
    """POST .../payments (and `add_payment`): PaymentCreate validated; more than the balance is a 400 unless
    the app allows overpayment."""
    amount = num_field(body, "amount", required=True)
    assert amount is not None
    if amount <= 0:
        raise invalid("amount", "amount must be greater than 0")
    if body.get("paymentMethod") is None:
        raise invalid("paymentMethod", "paymentMethod is required")
    method = enum(body, "paymentMethod", PAYMENT_METHODS)
    assert method is not None
    date = date_field(body, "paymentDate", required=True)
    assert date is not None
    notes = opt_str(body, "notes")
    reference = opt_str(body, "paymentReference")
    balance = round(inv["amount"] - inv["amountPaid"], 2)
    if not allow_overpayment and round(amount, 2) > balance + 0.005:
        raise invalid("amount", f"amount {amount:.2f} exceeds the invoice balance {balance:.2f}")
    return insert_payment(st, inv, amount, method, date, reference, notes)


def register_payment_routes(app: CoperniqHost) -> None:
    """Add the payment routes to `app`."""
    r = app.route

    @r("GET", "/v1/invoices/{invoiceId}/payments")
    def list_payments(req: Request) -> Response:
        st = app.state
        inv = get_record(st.invoices, req, "invoiceId", "Invoice")
        return Response(200, [payment_out(p) for p in st.payments.get(inv["id"], [])])

    @r("POST", "/v1/invoices/{invoiceId}/payments")
    def create_payment_route(req: Request) -> Response:
        st = app.state
        inv = get_record(st.invoices, req, "invoiceId", "Invoice")
        return Response(
            201, payment_out(create_payment(st, inv, json_body(req), allow_overpayment=app.allow_overpayment))
        )

    @r("GET", "/v1/invoices/{invoiceId}/payments/{paymentId}")
    def get_payment(req: Request) -> Response:
        st = app.state
        inv = get_record(st.invoices, req, "invoiceId", "Invoice")
        pid = path_id(req, "paymentId")
        for pay in st.payments.get(inv["id"], []):
            if pay["id"] == pid:
                return Response(200, payment_out(pay))
        raise not_found("Payment", pid)
