"""Merge sandbox account-scoped API: the common models (list, get, create/update, meta) and passthrough.

Why one generic handler per verb: every model pages, filters, expands and reports write errors the same way in
Merge, so the per-model parts are only the filters (merge_query) and the write rules (merge_models).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from sandbox._server import Request, Response
from sandbox.merge_models import MergeData
from sandbox.merge_qbo import QboError
from sandbox.merge_query import BadParam, Filters, page_size, parse_bool, parse_expand, parse_time
from sandbox.merge_schema import FIELD_SCHEMAS, REQUIRED, SUPPORTED, WriteError, problem
from sandbox.merge_state import RELINK_NEEDED, MergeHost, detail, write_errors
from sandbox.merge_store import Row

PASSTHROUGH_METHODS = {"GET", "OPTIONS", "HEAD", "POST", "PUT", "PATCH", "DELETE"}
IDEMPOTENCY_TTL = 24 * 3600.0

#: The write rules of one model: `MergeData.write_contact` and its siblings, called with the current data.
Writer = Callable[[MergeData, Any, Row | None], tuple[Row, list[dict[str, Any]]]]


class ModelEndpoints:
    """The handlers of one app (bound methods go into its route table); they read `app.state` on every call."""

    def __init__(self, app: MergeHost) -> None:
        self.app = app

    def list_rows(self, req: Request, model: str, extra: Callable[[Request], Filters]) -> Response:
        """GET /{model}: filters, `remote_id`, deleted rows, date bounds, cursor pages, optional remote data."""
        self.app.state.linked_account(req)
        table = self.app.state.table(model)
        try:
            include_deleted = parse_bool(req, "include_deleted_data")
            remote_data = bool(parse_bool(req, "include_remote_data"))
            remote_fields = bool(parse_bool(req, "include_remote_fields"))
            expand = parse_expand(req, model)
            mod_after, mod_before = parse_time(req, "modified_after"), parse_time(req, "modified_before")
            cr_after, cr_before = parse_time(req, "created_after"), parse_time(req, "created_before")
            checks, candidates = extra(req)
        except BadParam as exc:
            return Response(400, {exc.name: [exc.message]})
        remote_id = req.arg("remote_id")
        if remote_id not in (None, ""):
            ids = [row["_pos"] for row in table.all_by_remote_id(remote_id)]  # customer and vendor may share it
            candidates = ids if candidates is None else [p for p in candidates if p in ids]
        if not include_deleted:
            checks.append(lambda r: not r["remote_was_deleted"])
        if mod_after is not None:
            checks.append(lambda r: r["_mod_us"] > mod_after)
        if mod_before is not None:
            checks.append(lambda r: r["_mod_us"] < mod_before)
        if cr_before is not None:
            checks.append(lambda r: r["_created_us"] < cr_before)
        seen = self.app.state.data.merge_copy  # filters see what Merge shows, also of a row QBO changed since
        try:
            rows, nxt, prev = table.page(
                cursor=req.arg("cursor") or None,
                page_size=page_size(req),
                predicate=lambda r: all(c(seen(r)) for c in checks),
                created_after=cr_after,
                modified_after=mod_after,
                candidates=candidates,
            )
        except ValueError:
            return detail(404, "Invalid cursor")
        results = [
            self.app.state.data.serialize(model, r, expand=expand, remote_data=remote_data, remote_fields=remote_fields)
            for r in rows
        ]
        return Response(200, {"next": nxt, "previous": prev, "results": results})

    def get_row(self, req: Request, model: str) -> Response:
        """GET /{model}/{id} (a deleted row is still found, flagged `remote_was_deleted`)."""
        self.app.state.linked_account(req)
        row = self.app.state.table(model).get(req.path_params["id"])
        if row is None:
            return detail(404, "Not found.")
        try:
            expand = parse_expand(req, model)
            remote_data = bool(parse_bool(req, "include_remote_data"))
            remote_fields = bool(parse_bool(req, "include_remote_fields"))
        except BadParam as exc:
            return Response(400, {exc.name: [exc.message]})
        return Response(
            200,
            self.app.state.data.serialize(
                model, row, expand=expand, remote_data=remote_data, remote_fields=remote_fields
            ),
        )

    def write(self, req: Request, model: str, writer: Writer, patch: bool = False) -> Response:
        """POST /{model} or PATCH /{model}/{id}: `{"model": {...}}`, with Idempotency-Key when the switch is on.
        `writer` gets the current `state.data` (the app replaces the state on every reset)."""
        account = self.app.state.linked_account(req)
        existing = None
        if patch:
            existing = self.app.state.table(model).get(req.path_params["id"])
            if existing is None or existing["remote_was_deleted"]:
                return detail(404, "Not found.")
        try:
            body = req.json()
        except ValueError:
            return write_errors(
                [problem("model", "Invalid JSON", "The request body is not valid JSON.", "INCORRECT_FIELD_TYPE")]
            )
        honoured = req.method == "POST" and self.app.assumptions.idempotency_keys
        key = req.headers.get("idempotency-key", "").strip() if honoured else ""
        fingerprint = hashlib.sha256(
            f"{req.method} {req.path}\n".encode() + json.dumps(body, sort_keys=True, default=str).encode()
        ).hexdigest()
        if key:
            stored = self.app.state.idempotency.get((account.id, key))
            if stored is not None and time.monotonic() - stored[3] < IDEMPOTENCY_TTL:
                if stored[0] != fingerprint:
                    return write_errors(
                        [
                            problem(
                                "Idempotency-Key",
                                "Invalid Idempotency Key Reuse",
                                "This Idempotency-Key was already used with a different request. "
                                "Use a new key for a new request.",
                                "ERROR",
                            )
                        ]
                    )
                return Response(stored[1], json.loads(stored[2]), {"Idempotent-Replayed": "true"})
        if account.status == RELINK_NEEDED:
            return write_errors([self.relink_problem()])
        if not isinstance(body, dict) or "model" not in body:
            return write_errors(
                [problem("model", "Missing Required Field", "model is a required field.", "MISSING_REQUIRED_FIELD")]
            )
        try:
            row, warnings = writer(self.app.state.data, body["model"], existing)
        except WriteError as exc:
            return write_errors(exc.errors, exc.warnings)
        self.app.state.data.drop_merge_copy(row)  # Merge's answer to its own write is QuickBooks' current record
        out: dict[str, Any] = {"model": self.app.state.data.serialize(model, row), "warnings": warnings, "errors": []}
        if parse_bool(req, "is_debug_mode"):
            log_id = str(uuid.uuid4())
            out["logs"] = [
                {
                    "log_id": log_id,
                    "dashboard_view": f"https://app.merge.dev/logs/{log_id}",
                    "log_summary": {
                        "url": f"https://quickbooks.api.intuit.com/v3/company/{self.app.realm_id}/{model.rstrip('s')}",
                        "method": "POST",
                        "status_code": 200,
                    },
                }
            ]
        status = 200 if patch else 201
        if key:
            self.app.state.idempotency[(account.id, key)] = (fingerprint, status, json.dumps(out), time.monotonic())
        return Response(status, out)

    @staticmethod
    def relink_problem() -> dict[str, Any]:
        """ASSUMPTION: a write to an account whose QuickBooks credentials Merge can no longer refresh fails with
        the CREDENTIAL_REFRESH_FAILED problem type (merge_api.md §5.1 lists it; no page shows the exact body)."""
        return problem(
            "model",
            "Credential Refresh Failed",
            "The linked account's QuickBooks Online credentials could not be refreshed: the end user "
            "must relink the account.",
            "CREDENTIAL_REFRESH_FAILED",
            block_merge_link=False,
        )

    def meta(self, req: Request, op: str, model_name: str) -> Response:
        """GET /{model}/meta/post and /meta/patch/{id}: the request schema of that write."""
        account = self.app.state.linked_account(req)
        if "id" in req.path_params:
            row = self.app.state.table(model_name).get(req.path_params["id"])
            if row is None or row["remote_was_deleted"]:
                return detail(404, "Not found.")
        fields = SUPPORTED[f"{op} {model_name}"]
        model_schema: dict[str, Any] = {
            "type": "object",
            "properties": {f: FIELD_SCHEMAS[f] for f in fields if f in FIELD_SCHEMAS},
        }
        if model_name == "invoices" and self.app.state.data.tax.lines_need_code:  # non_us: lines take a tax code
            lines = copy.deepcopy(model_schema["properties"]["line_items"])
            lines["items"]["properties"]["tax_rate"] = {"type": ["string", "null"], "format": "uuid"}
            lines["items"]["required"] = ["tax_rate"]
            model_schema["properties"]["line_items"] = lines
        required = REQUIRED.get(f"{op} {model_name}", [])
        if required:
            model_schema["required"] = required
        return Response(
            200,
            {
                "request_schema": {"type": "object", "properties": {"model": model_schema}, "required": ["model"]},
                "remote_field_classes": {},
                "status": {
                    "linked_account_status": account.status,
                    "can_make_request": account.status != RELINK_NEEDED,
                },
                "has_conditional_params": False,
                "has_required_linked_account_params": False,
            },
        )

    def passthrough(self, req: Request) -> Response:
        """POST /passthrough: a raw QBO API call (same QBO rules as the Merge writes)."""
        account = self.app.state.linked_account(req)
        body = req.json()
        if not isinstance(body, dict):
            return Response(400, {"non_field_errors": ["Invalid data. Expected a dictionary."]})
        errors = {}
        method = str(body.get("method") or "").upper()
        if not method:
            errors["method"] = ["This field is required."]
        elif method not in PASSTHROUGH_METHODS:
            errors["method"] = [f'"{body.get("method")}" is not a valid choice.']
        path = body.get("path")
        if not isinstance(path, str) or not path:
            errors["path"] = ["This field is required."]
            path = ""
        data = body.get("data")
        if data is not None and not isinstance(data, str):
            errors["data"] = ["Not a valid string."]
        if errors:
            return Response(400, errors)
        if account.status == RELINK_NEEDED:  # ASSUMPTION: the call reaches QBO with a dead token
            status, response = (
                401,
                QboError(
                    "3200",
                    "AuthenticationFailed",
                    "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                    fault_type="AUTHENTICATION",
                    status=401,
                ).fault(),
            )
        else:
            status, response = self.app.state.qbo.passthrough(method, path, data)
        self.app.stats.note(f"PASSTHROUGH {method}")  # a passthrough GET is a read, though a POST to Merge
        headers = (
            {str(k): v for k, v in (body.get("headers") or {}).items()} if isinstance(body.get("headers"), dict) else {}
        )
        headers["Authorization"] = "<redacted>"
        return Response(
            200,
            {
                "method": method,
                "path": path,
                "status": status,
                "response": response,
                "response_headers": {"Content-Type": "application/json;charset=UTF-8", "intuit_tid": str(uuid.uuid4())},
                "response_type": "JSON",
                "headers": headers,
            },
        )
