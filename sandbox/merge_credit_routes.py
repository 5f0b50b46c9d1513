"""Merge sandbox credit-note routes beyond the generic ones: the list filters and `POST /credit-notes/{id}/application`.

Why apart from merge_credit_notes: those are the data rules (imported by the views, below the state); these read
the request and the app's state, one layer up. List, get, create, update and meta go through the generic model
handlers (merge_endpoints), so paging, expand, Idempotency-Key and fault injection (lost answers included) work on
credit notes exactly as on invoices.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from sandbox._server import Request, Response
from sandbox.merge_credit_notes import TABLE, apply_credit_note
from sandbox.merge_query import Filters, parse_time
from sandbox.merge_schema import WriteError, problem
from sandbox.merge_state import MergeHost, detail, write_errors
from sandbox.merge_store import Row, dt_us


def _date_beyond(bound: int, direction: int, row: Row) -> bool:
    return row["transaction_date"] is not None and (dt_us(row["transaction_date"]) - bound) * direction > 0


def _no_company(_: Row) -> bool:
    return False  # a QuickBooks linked account has one company, and Merge leaves `company` null


def credit_note_filters(req: Request) -> Filters:
    """The filters Merge's `GET /credit-notes` has beyond the common ones: `transaction_date_after`/`_before` and
    `company_id`. There is no `number` and no `contact_id`: a client finds a credit note by its dates' window."""
    checks: list[Callable[[Row], bool]] = []
    for arg, direction in (("transaction_date_after", 1), ("transaction_date_before", -1)):
        bound = parse_time(req, arg)
        if bound is not None:
            checks.append(partial(_date_beyond, bound, direction))
    if req.arg("company_id"):
        checks.append(_no_company)
    return checks, None


def application(req: Request, app: MergeHost) -> Response:
    """POST /credit-notes/{id}/application: an ApplyCreditNoteRequest (not wrapped in `model`) -> 201
    CreditNoteResponse with the credit note as it is after the application."""
    app.state.linked_account(req)
    data = app.state.data
    credit = data.live(TABLE, req.path_params["id"])
    if credit is None:
        return detail(404, "Not found.")
    try:
        body = req.json()
    except ValueError:
        return write_errors(
            [problem("", "Invalid JSON", "The request body is not valid JSON.", "INCORRECT_FIELD_TYPE")]
        )
    try:
        apply_credit_note(data, credit, body)
    except WriteError as exc:
        return write_errors(exc.errors, exc.warnings)
    return Response(201, {"model": data.serialize(TABLE, credit), "warnings": [], "errors": []})
