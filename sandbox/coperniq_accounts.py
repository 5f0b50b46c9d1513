"""Coperniq sandbox `/v1/accounts` routes, registered a second time under `/v1/clients` (the API's older name).

Both prefixes serve the same records with the same handlers, so a client that still says "clients" sees exactly
what one saying "accounts" sees.
"""

from __future__ import annotations

from sandbox._server import Request, Response
from sandbox.coperniq_listing import get_record, get_visible, invoice_page, list_ids, search, text_filters
from sandbox.coperniq_params import ListParams, bool_arg, json_body
from sandbox.coperniq_records import find_match, match_params, validate_record_body
from sandbox.coperniq_state import CoperniqHost
from sandbox.coperniq_views import account_out
from sandbox.coperniq_writes import apply_update, insert_account


def register_account_routes(app: CoperniqHost, base: str) -> None:
    """Add the account routes under `base` ("/v1/accounts" or "/v1/clients")."""
    r = app.route

    @r("GET", base + "/search")
    def search_accounts(req: Request) -> Response:
        st = app.state
        include = bool_arg(req, "include_contacts")
        return Response(200, [account_out(st, a, include) for a in search(req, st.accounts)])

    @r("GET", base)
    def list_accounts(req: Request) -> Response:
        st = app.state
        params = ListParams.parse(req)
        include = bool_arg(req, "include_contacts")
        extra, pred = text_filters(req, ("title", "address", "primaryEmail", "primaryPhone"))
        ids = list_ids(st, "accounts", st.accounts, params, extra=extra, pred=pred, archived_key="isActive")
        return Response(200, [account_out(st, st.accounts[i], include) for i in params.window(ids)])

    @r("POST", base)
    def create_account(req: Request) -> Response:
        st = app.state
        body = json_body(req)
        match_by, strategy = match_params(req)
        fields = validate_record_body(st, body, create=True, kind="account")
        existing = find_match(st.accounts, match_by, fields)
        if existing is not None:
            if strategy != "skip":
                apply_update(st, existing, fields, "accounts", enrich_only=strategy == "enrich")
            return Response(200, account_out(st, existing))
        return Response(200, account_out(st, insert_account(st, fields)))

    @r("GET", base + "/{accountId}")
    def get_account(req: Request) -> Response:
        st = app.state
        a = get_visible(st.accounts, req, "accountId", "Account", app.assumptions)
        return Response(200, account_out(st, a, bool_arg(req, "include_contacts")))

    @r("PATCH", base + "/{accountId}")
    def update_account(req: Request) -> Response:
        st = app.state
        a = get_record(st.accounts, req, "accountId", "Account")
        apply_update(st, a, validate_record_body(st, json_body(req), create=False, kind="account"), "accounts")
        return Response(200, account_out(st, a))

    @r("GET", base + "/{accountId}/invoices")
    def account_invoices(req: Request) -> Response:
        st = app.state
        a = get_record(st.accounts, req, "accountId", "Account")
        return invoice_page(
            st,
            req,
            st.invoices_by_account.get(a["id"], []),
            ("account", a["id"]),
            tax_fields=app.assumptions.invoice_tax_fields,
        )
