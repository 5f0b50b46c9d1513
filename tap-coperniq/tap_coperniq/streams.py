"""Coperniq streams. Names and fields are a contract with target-quickbooks-merge (docs/CONTRACTS.md)."""

from __future__ import annotations

import sys
import typing as t
from datetime import UTC, datetime, timedelta
from http import HTTPStatus

from sync_ledger import to_money
from sync_ledger.incremental import parse_timestamp
from tap_coperniq.budget import DEFAULT_PHASE_SWEEP_INTERVAL, PaymentPlanner, QuotaReached, nothing_paid
from tap_coperniq.client import CoperniqStream
from tap_coperniq.incremental import IncrementalStream
from tap_coperniq.pagination import response_body

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context
    from singer_sdk.streams.rest import HTTPRequest, PageContext


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


def payment_planner(stream: CoperniqStream) -> PaymentPlanner | None:
    planner = getattr(stream._tap, "payment_planner", None)  # the tap-wide planner
    return planner if isinstance(planner, PaymentPlanner) else None


class ProjectsStream(ArchivedAwareStream):
    """Projects with their current phase (enough for the trigger); the optional phase history is a child stream.

    Every `phase_sweep_interval` seconds (and on the first run) the whole list is read, because no source says a
    phase change bumps `updatedAt`: the target compares each project with what it saw before. A sweep costs list
    pages only (100 projects per call).
    """

    name = "projects"
    path = "/projects"
    LAST_SWEEP_KEY = "last_sweep_at"

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._reached: dict[t.Any, bool] = {}
        self._full: bool | None = None
        self._first_read = False

    @property
    def sweep_interval(self) -> float:
        value = self.config.get("phase_sweep_interval")
        return DEFAULT_PHASE_SWEEP_INTERVAL if value is None else max(0.0, float(value))

    @override
    def full_read(self) -> bool:
        """Decided once per run, from the state as the run found it."""
        if self._full is None:
            self._full = self._sweep_due()
        return self._full

    def _sweep_due(self) -> bool:
        state = self.stream_state
        if self.resume is not None:
            return bool(self.resume.get("full"))
        if not state.get("replication_key_value"):
            self._first_read = True
            return True  # first run: every project, so the target's snapshot of who is where is complete
        last = state.get(self.LAST_SWEEP_KEY)
        if not last:
            return True
        return datetime.now(UTC) - parse_timestamp(str(last)) >= timedelta(seconds=self.sweep_interval)

    @property
    def _sweep_started_at(self) -> datetime | None:
        started = (self.resume or {}).get("started_at")
        return parse_timestamp(str(started)) if started else None

    @override
    def get_http_request(self, *, page: PageContext) -> HTTPRequest:
        if self._page is None and self.full_read():
            self.logger.info(
                "projects: reading the whole list (phase sweep, every %ss: phase_sweep_interval)",
                int(self.sweep_interval),
            )
        return super().get_http_request(page=page)

    @override
    def on_complete_read(self) -> None:
        if self.full_read():  # a sweep reached the end of the list
            resume_start = self._sweep_started_at or self._started_at
            self.stream_state[self.LAST_SWEEP_KEY] = resume_start.isoformat()

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        out = super().post_process(row, context)
        if out is not None and (planner := payment_planner(self)) is not None:
            self._reached[out.get("id")] = planner.see_project(out)
        return out

    @override
    def generate_child_contexts(self, record: dict, context: Context | None) -> t.Iterable[dict | None]:
        # The phase history costs one GET /projects/{id}: only with `phase_history` on, only for projects that
        # reached their trigger phase (where the entry time is the point), and on sweeps only the first run's.
        reached = self._reached.pop(record.get("id"), True)
        if self.config.get("phase_history") and reached and (not self.full_read() or self._first_read):
            yield {"projectId": record["id"]}


class ProjectPhaseInstancesStream(CoperniqStream):
    """Every phase a project has entered, from GET /projects/{id} (the list omits phaseInstances).

    Optional (`phase_history`, off by default): the trigger is decided from the list; the history only adds the
    exact time a project entered its trigger phase. Phases not started yet are left out: a record here means
    "the project reached this phase".
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

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        out = super().post_process(row, context)
        if out is not None and (planner := payment_planner(self)) is not None:
            planner.add_workflow(out)  # the trigger's phase order, for payments of projects past it
        return out


class InvoicesStream(IncrementalStream):
    """Invoices with line items; the list is wrapped in {items, page, page_size, has_more}."""

    name = "invoices"
    path = "/invoices"
    records_jsonpath = "$.items[*]"

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        amount, paid = row.get("amount"), row.get("amountPaid")
        if amount is not None and paid is not None:
            row["balance"] = to_money(amount) - to_money(paid)  # exact: pagination parses numbers as Decimal
        out = super().post_process(row, context)
        if out is not None and (planner := payment_planner(self)) is not None:
            planner.see_invoice(out)
        return out


class PaymentsStream(CoperniqStream):
    """Payments of the invoices the planner chose (GET /invoices/{id}/payments has no filter or paging).

    Not a child of invoices: the list of invoices to read also holds paid invoices of earlier runs whose project
    has reached its trigger phase since, and what a quota stop left (tap_coperniq.budget.PaymentPlanner).
    """

    name = "payments"
    path = "/invoices/{invoiceId}/payments"
    paginated = False

    _gone = False  # the last invoice read answered 404

    @override
    def validate_response(self, response: requests.Response) -> None:
        self._gone = response.status_code == HTTPStatus.NOT_FOUND
        if self._gone:
            return  # invoice deleted since the list call
        super().validate_response(response)

    @override
    def parse_response(self, response: requests.Response) -> t.Iterable[dict]:
        if response.status_code == HTTPStatus.NOT_FOUND:
            return iter(())
        return super().parse_response(response)

    @override
    def read_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        planner = payment_planner(self)
        if planner is None:
            return
        todo = list(planner.queued)
        for i, invoice_id in enumerate(todo):
            try:
                rows = list(self.request_records({"invoiceId": invoice_id}))
            except QuotaReached:
                planner.keep_queued(todo[i:])
                raise
            listed = sorted(str(row["id"]) for row in rows if row.get("id") is not None)
            # Not a set: a 404 (a deleted invoice's payments are its delete's business, invoice_sweeps), nor an empty
            # list (only paid invoices are read, so an empty answer contradicts the invoice: an empty body, a key
            # that lost scope); an invoice that shows nothing paid has its empty set from the planner instead.
            if listed and not self._gone:
                planner.listed[invoice_id] = listed
            for row in rows:
                row["invoiceId"] = int(invoice_id) if invoice_id.isdigit() else invoice_id
                yield row
        planner.keep_queued([])
        if planner.skipped_unpaid or planner.skipped_not_syncing:
            self.logger.info(
                "payments: %d invoice(s) read (%d showing nothing paid, edited since created); not read: %d unpaid, "
                "%d of projects that do not sync (yet: %d remembered for when they reach their trigger phase)",
                len(todo),
                planner.unpaid_read,
                planner.skipped_unpaid,
                planner.skipped_not_syncing,
                len(planner.deferred),
            )


class PaymentSetsStream(CoperniqStream):
    """Every payment id Coperniq lists on an invoice, one record per invoice whose payments this run read (and an
    empty one per invoice read this run that shows nothing paid, without a call). No API call of its own.

    Why: Coperniq's API deletes no payment and lists no deleted one, but its UI can delete one; a payment pushed to
    QuickBooks that is missing from its invoice's whole list is the only sign (the target voids it by
    `void_policy`). ASSUMPTION (README, ASSUMPTIONS 2): a payment deleted in Coperniq changes its invoice's
    `amountPaid` and `updatedAt`, so the invoices stream reads the invoice again and its payments are read.
    """

    name = "payment_sets"
    path = "/invoices/{invoiceId}/payments"

    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        yield from self.read_records(context)  # no call of its own: also after a quota stop (what was read)

    @override
    def read_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        planner = payment_planner(self)
        if planner is None:
            return
        at = datetime.now(UTC).isoformat()
        for invoice_id, ids in planner.listed.items():
            yield {"id": invoice_id, "invoiceId": invoice_id, "paymentIds": ids, "listed": True, "seenAt": at}
        for invoice_id in dict.fromkeys(planner.unpaid):
            if invoice_id not in planner.listed:
                yield {"id": invoice_id, "invoiceId": invoice_id, "paymentIds": [], "listed": False, "seenAt": at}

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        return row


class InvoiceSweepStream(CoperniqStream):
    """The ids of every invoice Coperniq lists, as one record, every `invoice_sweep_interval` seconds (unset: never).

    Why: Coperniq's invoice list has no tombstones, so a deleted invoice is only seen as one missing from a whole
    read; the target takes a pushed invoice missing from two sweeps in a row as deleted (target README, Voids and
    deletes). The record is emitted only once the last page is read: a sweep stopped by an error or the daily quota
    says nothing, and the next run sweeps again. Costs one call per page (100 invoices).
    """

    name = "invoice_sweeps"
    path = "/invoices"
    records_jsonpath = "$.items[*]"
    LAST_SWEEP_KEY = "last_sweep_at"
    RECORD_ID = "invoices"  # one record, replaced by each sweep

    @property
    def sweep_interval(self) -> float | None:
        value = self.config.get("invoice_sweep_interval")
        return None if value is None else max(0.0, float(value))

    def _due(self) -> bool:
        """0: every run. An interval: not on the run that first sees the setting (the invoices stream reads the
        whole list on a first run, and nothing pushed can be missing yet); the interval starts there."""
        interval = self.sweep_interval
        if interval is None:
            return False
        last = self.stream_state.get(self.LAST_SWEEP_KEY)
        if interval == 0:
            return True
        if not last:
            self.stream_state[self.LAST_SWEEP_KEY] = datetime.now(UTC).isoformat()
            return False
        return datetime.now(UTC) - parse_timestamp(str(last)) >= timedelta(seconds=interval)

    @override
    def read_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        if not self._due():
            return
        started = datetime.now(UTC)
        self.logger.info("invoice_sweeps: reading the whole invoice list (every %ss)", int(self.sweep_interval or 0))
        ids, unpaid = set(), set()
        for row in super().read_records(context):
            if row.get("id") is not None:
                ids.add(str(row["id"]))
                if nothing_paid(row):
                    unpaid.add(str(row["id"]))
        self.stream_state[self.LAST_SWEEP_KEY] = started.isoformat()
        yield {
            "id": self.RECORD_ID,
            "sweptAt": started.isoformat(),
            "count": len(ids),
            "invoiceIds": sorted(ids),
            "unpaidIds": sorted(unpaid),
        }

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        return row  # a sweep row is only its id: no dedup set of the whole list (the list is read once)


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
    PaymentSetsStream,
    InvoiceSweepStream,
    CatalogItemsStream,
)
