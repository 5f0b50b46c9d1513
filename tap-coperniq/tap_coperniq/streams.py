"""Coperniq streams. Names and fields are a contract with target-quickbooks-merge (docs/CONTRACTS.md)."""

from __future__ import annotations

import sys
import typing as t
from decimal import Decimal
from http import HTTPStatus

from sync_ledger.incremental import LookbackStreamMixin

from tap_coperniq.client import CoperniqStream, format_timestamp, response_body

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context
    from singer_sdk.streams.rest import HTTPRequest, PageContext


class IncrementalStream(LookbackStreamMixin, CoperniqStream):
    """List endpoint with `updated_after`: bookmark max(updatedAt); the API order is unknown, so unsorted.

    The lookback overlap would re-emit every row updated just before the bookmark on every run, and for
    projects/invoices each costs a detail call against the daily cap: the overlap filter (sync_ledger)
    drops the rows already emitted with the same updatedAt.
    """

    replication_key = "updatedAt"
    is_sorted = False

    @override
    def get_http_request(self, *, page: PageContext) -> HTTPRequest:
        request = super().get_http_request(page=page)
        if (after := self.read_from(page.stream_context)) is not None:
            request.params["updated_after"] = format_timestamp(after)
        return request

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        return super().post_process(row, context) if self.keep_row(row) else None

    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        yield from super().get_records(context)
        self.remember_overlap()


def with_archived(request: HTTPRequest, config: t.Mapping[str, t.Any]) -> HTTPRequest:
    """Ask for archived records too (`include_archived=true`) while the tap's `include_archived` setting is on."""
    if config.get("include_archived", True):
        request.params["include_archived"] = "true"
    return request


class ArchivedAwareStream(IncrementalStream):
    """Endpoints that hide archived records unless asked; archiving is a change the target must see."""

    @override
    def get_http_request(self, *, page: PageContext) -> HTTPRequest:
        return with_archived(super().get_http_request(page=page), self.config)


class AccountsStream(ArchivedAwareStream):
    """Accounts (formerly clients): the QuickBooks customers."""

    name = "accounts"
    path = "/accounts"
    extra_params: t.ClassVar[dict[str, t.Any]] = {"include_contacts": "true"}  # contact ids/emails, same call


class ContactsStream(IncrementalStream):
    """People linked to accounts and projects."""

    name = "contacts"
    path = "/contacts"


class ProjectsStream(ArchivedAwareStream):
    """Projects with their current phase; the phase history comes from the child stream."""

    name = "projects"
    path = "/projects"

    @override
    def get_child_context(self, record: dict, context: Context | None) -> dict:
        # Only projects emitted in this run (changed since the bookmark) get the extra GET /projects/{id}.
        return {"projectId": record["id"]}


class ProjectPhaseInstancesStream(CoperniqStream):
    """Every phase a project has entered, from GET /projects/{id} (the list omits phaseInstances).

    One call per changed project is the main cost against the 5,000/day cap; deselect this stream to
    skip it. Phases not started yet are left out: a record here means "the project reached this phase".
    """

    name = "project_phase_instances"
    path = "/projects/{projectId}"
    records_jsonpath = "$.phaseInstances[*]"
    parent_stream_type = ProjectsStream
    state_partitioning_keys: t.ClassVar[tuple[str, ...]] = ()  # one small state entry, not one per project
    paginated = False

    @override
    def get_http_request(self, *, page: PageContext) -> HTTPRequest:
        # GET /projects/{id} may 404 an archived project unless asked (the spec: "By default only active
        # records are returned"), and the list just emitted it: without this its phase history would be lost.
        return with_archived(super().get_http_request(page=page), self.config)

    @override
    def validate_response(self, response: requests.Response) -> None:
        if response.status_code == HTTPStatus.NOT_FOUND:
            return  # deleted (or moved out of the key's scope) between the list call and this one
        super().validate_response(response)

    @override
    def parse_response(self, response: requests.Response) -> t.Iterable[dict]:
        if response.status_code == HTTPStatus.NOT_FOUND:
            return iter(())
        project = response_body(response) or {}
        extra = {"workflowId": project.get("workflowId"), "projectUpdatedAt": project.get("updatedAt")}
        return ({**row, **extra} for row in project.get("phaseInstances") or [])

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        started = row.get("startedAt") is not None or (row.get("status") not in (None, "NOT_STARTED"))
        if not started:
            return None
        project_id = (context or {}).get("projectId")
        template = row.get("phaseTemplate") or {}
        row["projectId"] = project_id
        row["templateId"] = row.get("phaseTemplateId") or template.get("id")
        row.setdefault("type", template.get("type"))
        return super().post_process(row, context)


class WorkflowsStream(CoperniqStream):
    """Workflows with their phase templates (no updated_after on this endpoint: full table, small)."""

    name = "workflows"
    path = "/workflows"


class InvoicesStream(IncrementalStream):
    """Invoices with line items; the list is wrapped in {items, page, page_size, has_more}."""

    name = "invoices"
    path = "/invoices"
    records_jsonpath = "$.items[*]"

    @override
    def get_child_context(self, record: dict, context: Context | None) -> dict:
        return {"invoiceId": record["id"]}

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        amount, paid = row.get("amount"), row.get("amountPaid")
        if amount is not None and paid is not None:
            row["balance"] = Decimal(str(amount)) - Decimal(str(paid))
        return super().post_process(row, context)


class PaymentsStream(CoperniqStream):
    """Payments of the invoices emitted in this run (GET /invoices/{id}/payments has no filter or paging)."""

    name = "payments"
    path = "/invoices/{invoiceId}/payments"
    parent_stream_type = InvoicesStream
    state_partitioning_keys: t.ClassVar[tuple[str, ...]] = ()
    paginated = False

    @override
    def validate_response(self, response: requests.Response) -> None:
        if response.status_code == HTTPStatus.NOT_FOUND:
            return  # invoice deleted since the list call
        super().validate_response(response)

    @override
    def parse_response(self, response: requests.Response) -> t.Iterable[dict]:
        if response.status_code == HTTPStatus.NOT_FOUND:
            return iter(())
        return super().parse_response(response)

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        row["invoiceId"] = (context or {}).get("invoiceId")
        return super().post_process(row, context)


class CatalogItemsStream(CoperniqStream):
    """Products and services (no updated_after on this endpoint: full table)."""

    name = "catalog_items"
    path = "/catalog-items"


STREAM_TYPES: tuple[type[CoperniqStream], ...] = (
    AccountsStream,
    ContactsStream,
    WorkflowsStream,
    ProjectsStream,
    ProjectPhaseInstancesStream,
    InvoicesStream,
    PaymentsStream,
    CatalogItemsStream,
)
