"""Coperniq sandbox `/v1/contacts` routes and their write-body rules.

Contacts are linked to accounts and projects by id lists in the body; an unknown id is a 400 naming the first
missing one, and a PATCH only adds links (the sandbox never removes one).
"""

from __future__ import annotations

from typing import Any

from sandbox._server import Request, Response
from sandbox.coperniq_listing import get_record, list_ids
from sandbox.coperniq_params import ListParams, as_int, fold, invalid, json_body, opt_str, req_str, str_list
from sandbox.coperniq_state import CoperniqHost, CoperniqState
from sandbox.coperniq_views import contact_out
from sandbox.coperniq_writes import apply_update, insert_contact, link_contact


def validate_contact(st: CoperniqState, body: dict[str, Any], create: bool) -> dict[str, Any]:
    """ContactCreate / ContactUpdate fields; `accountIds` and `projectIds` must name existing records."""
    fields: dict[str, Any] = {}
    if create or "name" in body:
        fields["name"] = req_str(body, "name")
    for f in ("emails", "phones"):
        if f in body:
            fields[f] = str_list(body, f) or []
    if "title" in body:
        fields["title"] = opt_str(body, "title")
    for f, records in (("accountIds", st.accounts), ("projectIds", st.projects)):
        if body.get(f) is not None:
            if not isinstance(body[f], list):
                raise invalid(f, f"{f} must be an array of ids")
            ids = [as_int(x, f) for x in body[f]]
            missing = [x for x in ids if x not in records]
            if missing:
                raise invalid(f, f"{f[:-3]} {missing[0]} not found")
            fields[f] = ids
    return fields


def register_contact_routes(app: CoperniqHost) -> None:
    """Add the contact routes to `app`."""
    r = app.route

    @r("GET", "/v1/contacts")
    def list_contacts(req: Request) -> Response:
        st = app.state
        params = ListParams.parse(req)
        q = fold(req.arg("q"))

        def pred(c: dict[str, Any]) -> bool:
            return q in c["name"].casefold() or any(q in x.casefold() for x in c["emails"] + c["phones"])

        ids = list_ids(st, "contacts", st.contacts, params, extra=(q,), pred=pred if q else None)
        return Response(200, [contact_out(st, st.contacts[i]) for i in params.window(ids)])

    @r("POST", "/v1/contacts")
    def create_contact(req: Request) -> Response:
        st = app.state
        return Response(201, contact_out(st, insert_contact(st, validate_contact(st, json_body(req), True))))

    @r("GET", "/v1/contacts/{contactId}")
    def get_contact(req: Request) -> Response:
        st = app.state
        return Response(200, contact_out(st, get_record(st.contacts, req, "contactId", "Contact")))

    @r("PATCH", "/v1/contacts/{contactId}")
    def update_contact(req: Request) -> Response:
        st = app.state
        c = get_record(st.contacts, req, "contactId", "Contact")
        fields = validate_contact(st, json_body(req), False)
        for aid in fields.pop("accountIds", None) or []:
            link_contact(st, c["id"], account_id=aid)
        for pid in fields.pop("projectIds", None) or []:
            link_contact(st, c["id"], project_id=pid)
        apply_update(st, c, fields, "contacts")
        return Response(200, contact_out(st, c))
