"""Coperniq sandbox `/v1/projects` routes: list, search, get, create (upsert), update, a project's invoices.

Why a function that registers closures: the handlers read `app.state` on every call (a reset replaces it), and the
app passes itself in, so this module needs only the `CoperniqHost` protocol, never the app module.
"""

from __future__ import annotations

from sandbox._server import Request, Response
from sandbox.coperniq_listing import get_record, get_visible, invoice_page, list_ids, search, text_filters
from sandbox.coperniq_params import ListParams, as_int, invalid, json_body
from sandbox.coperniq_records import find_match, match_params, validate_record_body
from sandbox.coperniq_state import CoperniqHost
from sandbox.coperniq_views import project_out
from sandbox.coperniq_writes import apply_update, insert_account, insert_project, restart_workflow


def register_project_routes(app: CoperniqHost) -> None:
    """Add the project routes to `app` (search before `{projectId}`, so /projects/search is not an id)."""
    r = app.route

    @r("GET", "/v1/projects/search")
    def search_projects(req: Request) -> Response:
        st = app.state
        return Response(200, [project_out(st, p) for p in search(req, st.projects)])

    @r("GET", "/v1/projects")
    def list_projects(req: Request) -> Response:
        st = app.state
        params = ListParams.parse(req)
        extra, pred = text_filters(req, ("title", "address", "primaryEmail", "primaryPhone"))
        ids = list_ids(st, "projects", st.projects, params, extra=extra, pred=pred, archived_key="isActive")
        projects = st.projects
        return Response(200, [project_out(st, projects[i]) for i in params.window(ids)])

    @r("POST", "/v1/projects")
    def create_project(req: Request) -> Response:
        st = app.state
        body = json_body(req)
        match_by, strategy = match_params(req)
        fields = validate_record_body(st, body, create=True, kind="project")
        account_id = None
        if body.get("accountId") is not None:
            account_id = as_int(body["accountId"], "accountId")
            if account_id not in st.accounts:
                raise invalid("accountId", f"account {account_id} not found")
        workflow_id = None
        if body.get("workflowId") is not None:
            workflow_id = as_int(body["workflowId"], "workflowId")
            if workflow_id not in st.workflows:
                raise invalid("workflowId", f"workflow {workflow_id} not found")
        existing = find_match(st.projects, match_by, fields)
        if existing is not None:
            if strategy != "skip":
                apply_update(st, existing, fields, "projects", enrich_only=strategy == "enrich")
            return Response(200, project_out(st, existing))
        if workflow_id is None and st.workflows:
            workflow_id = min(st.workflows)
        if account_id is None:  # Coperniq files every project under an account: make one
            account_id = insert_account(
                st, {k: fields.get(k) for k in ("title", "address", "primaryEmail", "primaryPhone")}
            )["id"]
        p = insert_project(st, fields, account_id, workflow_id)
        return Response(200, project_out(st, p))

    @r("GET", "/v1/projects/{projectId}")
    def get_project(req: Request) -> Response:
        st = app.state
        p = get_visible(st.projects, req, "projectId", "Project", app.assumptions)
        return Response(200, project_out(st, p, detail=True))

    @r("PATCH", "/v1/projects/{projectId}")
    def update_project(req: Request) -> Response:
        st = app.state
        p = get_record(st.projects, req, "projectId", "Project")
        body = json_body(req)
        if "accountId" in body:
            raise invalid(
                "accountId",
                "Changing the account of a project is not supported; "
                "delete and re-create the project under the new account",
            )
        fields = validate_record_body(st, body, create=False, kind="project")
        moved = False
        if body.get("workflowId") is not None:
            wid = as_int(body["workflowId"], "workflowId")
            if wid not in st.workflows:
                raise invalid("workflowId", f"workflow {wid} not found")
            if moved := wid != p["workflowId"]:
                restart_workflow(st, p, wid)
        apply_update(st, p, fields, "projects", touched=moved)  # a new workflow is a change of the record
        return Response(200, project_out(st, p))

    @r("GET", "/v1/projects/{projectId}/invoices")
    def project_invoices(req: Request) -> Response:
        st = app.state
        p = get_record(st.projects, req, "projectId", "Project")
        return invoice_page(
            st,
            req,
            st.invoices_by_project.get(p["id"], []),
            ("project", p["id"]),
            tax_fields=app.assumptions.invoice_tax_fields,
        )
