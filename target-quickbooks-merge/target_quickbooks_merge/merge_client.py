"""Thin typed wrapper over sync_ledger.ApiClient for the Merge Accounting endpoints the target uses.

Rate limiting, retries on 429/5xx (honouring Retry-After) and secret redaction live in ApiClient; this module only
knows paths and envelopes (how Merge reports a failed write: merge_errors.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

from sync_ledger import ApiClient, ApiError
from sync_ledger.http import send_checked
from sync_ledger.passthrough import QBO_MINOR, passthrough_answer, passthrough_body

from .merge_errors import (
    QboFault,
    WriteError,
    is_duplicate_name,
    problems_text,
    provider_codes,
    qbo_fault_codes,
    warning_texts,
    write_error,
)

__all__ = ["MergeClient", "QboFault", "WriteError", "WriteResult", "provider_codes", "qbo_fault_codes"]


#: QuickBooks' void of each transaction kind: the path (relative to the company) and what the body adds to
#: {Id, SyncToken}. An invoice has an operation of its own; a payment is voided by a sparse update.
QBO_VOIDS: dict[str, tuple[str, dict[str, Any]]] = {
    "Invoice": ("/invoice?operation=void", {}),
    "Payment": ("/payment?operation=update&include=void", {"sparse": True}),
}
#: QuickBooks' "Object Not Found" (a deleted or unknown Id).
QBO_NOT_FOUND = "610"


def qbo_query_path(entity: str, field_name: str, value: str) -> str:
    """The passthrough path of a QuickBooks query for the records of `entity` whose `field_name` is `value` (quotes
    and backslashes escaped as QuickBooks' query language wants them)."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    query = f"select * from {entity} where {field_name} = '{escaped}'"
    return f"/query?query={quote(query)}&{QBO_MINOR}"


@dataclass
class WriteResult:
    model: dict[str, Any]
    request_id: str | None = None
    #: the write's answer was lost and the record was found by its natural key instead
    recovered: bool = False
    #: Merge's `warnings` (e.g. a field QuickBooks ignored), as text for the integration log
    warnings: list[str] = field(default_factory=list)


T = TypeVar("T")


class MergeClient:
    """Typed calls against one linked account."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str,
        account_token: str,
        max_requests_per_minute: int | None = None,
        api: ApiClient | None = None,
        connections: int = 10,
    ) -> None:
        rate = (max_requests_per_minute / 60.0) if max_requests_per_minute else None
        self.api = api or ApiClient(
            base_url,
            headers={
                "Authorization": f"Bearer {api_key}",
                "X-Account-Token": account_token,
                "Accept": "application/json",
            },
            max_requests_per_second=rate,
            secrets=[api_key, account_token],
            connections=connections,
        )
        self._settings_lists: dict[str, list[dict[str, Any]]] = {}

    # -- linked account -------------------------------------------------------------------------------------
    def account_details(self) -> dict[str, Any]:
        return self.api.get("/account-details") or {}

    # -- reads ----------------------------------------------------------------------------------------------
    def iter_pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Pages of a Merge list ({next, previous, results}), following the opaque `next` cursor, 100 per page."""
        query: dict[str, Any] = {"page_size": 100, **(params or {})}
        while True:
            page = self.api.get(path, params=query) or {}
            yield page
            cursor = page.get("next")
            if not cursor:
                return
            query = {**query, "cursor": cursor}

    def iter_list(self, path: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        for page in self.iter_pages(path, params):
            yield from page.get("results") or []

    def settings_list(self, path: str) -> list[dict[str, Any]]:
        """The whole list (`/accounts`, `/items`) the settings name records of, read once per client (one run): the
        payment account, the refund account and item, the accounts of a refunded credit all resolve from it."""
        if path not in self._settings_lists:
            self._settings_lists[path] = list(self.iter_list(path))
        return self._settings_lists[path]

    def find_contacts(self, **filters: Any) -> list[dict[str, Any]]:
        return list(self.iter_list("/contacts", {k: v for k, v in filters.items() if v is not None}))

    def contact_by_remote_id(self, remote_id: str) -> dict[str, Any] | None:
        """The Merge contact of a QuickBooks customer/job Id. Customers only: QuickBooks numbers vendors (and
        employees) separately, so a vendor can carry the same Id."""
        found = [c for c in self.find_contacts(remote_id=remote_id, is_customer="true") if c.get("is_customer")]
        return found[0] if found else None

    def invoice(self, merge_id: str) -> dict[str, Any]:
        return dict(self.api.get(f"/invoices/{merge_id}") or {})

    def invoices_by_number(self, number: str) -> list[dict[str, Any]]:
        return list(self.iter_list("/invoices", {"number": number, "type": "ACCOUNTS_RECEIVABLE"}))

    def payments_for_contact(self, contact_id: str) -> list[dict[str, Any]]:
        return list(self.iter_list("/payments", {"contact_id": contact_id, "expand": "applied_to_lines"}))

    # -- writes ---------------------------------------------------------------------------------------------
    def _write(
        self,
        method: str,
        path: str,
        model: dict[str, Any],
        idempotency_key: str | None,
        *,
        retry_ambiguous: bool = True,
    ) -> WriteResult:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        try:
            resp = self.api.request(
                method, path, json={"model": model}, headers=headers, retry_ambiguous=retry_ambiguous
            )
        except ApiError as exc:
            raise write_error(exc) from exc
        body = resp.json() if resp.content else {}
        request_id = resp.headers.get("X-Request-Id") or resp.headers.get("x-merge-request-id")
        if body.get("errors"):  # Merge may answer 201 with errors: treat as a failed write
            text = problems_text(body)
            raise WriteError(
                text,
                status=resp.status_code,
                request_id=request_id,
                duplicate_name=is_duplicate_name(text),
                codes=provider_codes(body),
            )
        model_out = body.get("model") or {}
        if not model_out.get("id"):
            raise WriteError(
                f"Merge returned no model id (HTTP {resp.status_code})", status=resp.status_code, request_id=request_id
            )
        return WriteResult(model_out, request_id, warnings=warning_texts(body.get("warnings")))

    def create(
        self,
        model_path: str,
        model: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        find_existing: Callable[[], dict[str, Any] | None] | None = None,
    ) -> WriteResult:
        """POST a common model. With `find_existing` (the record's natural-key lookup) the create is safe without
        Merge's Idempotency-Key (a beta enabled per organisation): see `send_checked`."""
        if find_existing is None:
            return self._write("POST", f"/{model_path}", model, idempotency_key)

        def found() -> WriteResult | None:
            hit = find_existing()
            return WriteResult(hit, recovered=True) if hit is not None else None

        return self.send_checked(
            lambda: self._write("POST", f"/{model_path}", model, idempotency_key, retry_ambiguous=False), found
        )

    def send_checked(self, send: Callable[[], T], find: Callable[[], T | None]) -> T:
        """`sync_ledger.http.send_checked` with this client's patience: a lost answer is looked up by natural key
        before the create is sent again, whether or not Merge honours the Idempotency-Key."""
        return send_checked(send, find, tries=self.api.max_retries + 1, backoff=self.api.backoff, errors=(WriteError,))

    def update(self, model_path: str, merge_id: str, model: dict[str, Any]) -> WriteResult:
        return self._write("PATCH", f"/{model_path}/{merge_id}", model, None)

    # -- passthrough (QBO sub-customers) --------------------------------------------------------------------
    def passthrough(
        self,
        method: str,
        qbo_path: str,
        data: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        retry_ambiguous: bool = True,
    ) -> tuple[int, Any, str | None, bool]:
        """Returns (QBO status, QBO body, request id, ambiguous). Merge wraps the provider answer in a 200
        RemoteResponse; `ambiguous`: an earlier attempt got a 5xx or no answer, so a write may have happened."""
        body = passthrough_body(method, qbo_path, data)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        try:
            resp = self.api.request(
                "POST",
                "/passthrough",
                json=body,
                headers=headers,
                retry_ambiguous=retry_ambiguous,
                counted_as="GET" if method.upper() == "GET" else None,  # a read, though a POST to Merge
            )
        except ApiError as exc:
            raise write_error(exc) from exc
        request_id = resp.headers.get("X-Request-Id") or resp.headers.get("x-merge-request-id")
        ambiguous = bool(getattr(resp, "ambiguous_retry", False))
        status, inner = passthrough_answer(resp.json() if resp.content else {}, resp.status_code)
        return status, inner, request_id, ambiguous

    def create_sub_customer(
        self,
        body: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        find_existing: Callable[[], dict[str, Any] | None] | None = None,
    ) -> WriteResult:
        """A QBO job through passthrough (Merge's contact model has no parent); `model` is the QBO Customer.
        Passthrough ignores the Idempotency-Key, so with `find_existing` (the job's DisplayName + ParentRef lookup)
        a lost answer is checked before sending again (`send_checked`)."""
        if find_existing is None:
            return self._create_sub_customer(body, idempotency_key, retry_ambiguous=True)

        def found() -> WriteResult | None:
            hit = find_existing()
            return WriteResult(hit, recovered=True) if hit is not None else None

        return self.send_checked(lambda: self._create_sub_customer(body, idempotency_key, retry_ambiguous=False), found)

    def _create_sub_customer(
        self,
        body: dict[str, Any],
        idempotency_key: str | None,
        *,
        retry_ambiguous: bool,
    ) -> WriteResult:
        status, inner, rid, ambiguous = self.passthrough(
            "POST", f"/customer?{QBO_MINOR}", body, idempotency_key=idempotency_key, retry_ambiguous=retry_ambiguous
        )
        if status >= 400 or not isinstance(inner, dict) or "Customer" not in inner:
            text = problems_text(inner)
            raise WriteError(
                f"QuickBooks rejected the job (HTTP {status}): {text}",
                status=status,
                request_id=rid,
                duplicate_name=is_duplicate_name(text),
                ambiguous=ambiguous,
            )
        return WriteResult(inner["Customer"], rid)

    def query_customers_by_name(self, display_name: str) -> list[dict[str, Any]] | None:
        """QBO query by DisplayName through passthrough; None if passthrough cannot answer (then rely on Merge)."""
        try:
            status, inner, _, _ = self.passthrough("GET", qbo_query_path("Customer", "DisplayName", display_name))
        except WriteError:
            return None
        if status >= 400 or not isinstance(inner, dict):
            return None
        return list((inner.get("QueryResponse") or {}).get("Customer") or [])

    # -- passthrough (QBO invoices and payments: Merge's common models have no void) -------------------------
    def qbo_transaction(self, entity: str, qbo_id: str) -> dict[str, Any] | None:
        """QuickBooks' own Invoice or Payment (`entity`), with its SyncToken; None when QuickBooks has no record with
        that Id (610: deleted there). Read through passthrough because Merge may show a passthrough void only
        after its next sync."""
        status, inner, rid, _ = self.passthrough("GET", f"/{entity.lower()}/{quote(qbo_id)}?{QBO_MINOR}")
        if status < 400 and isinstance(inner, dict) and isinstance(inner.get(entity), dict):
            return dict(inner[entity])
        codes = qbo_fault_codes(inner)
        if QBO_NOT_FOUND in codes:
            return None
        raise QboFault(
            f"QuickBooks did not return {entity} {qbo_id} (HTTP {status}): {problems_text(inner)}",
            codes=codes,
            status=status,
            request_id=rid,
        )

    def void_transaction(self, entity: str, qbo_id: str, sync_token: str) -> WriteResult:
        """Void a QuickBooks Invoice or Payment with its current SyncToken (`QBO_VOIDS`). Never resent after a 5xx
        or no answer: the error is `ambiguous` and the caller reads the record to learn whether the void happened."""
        path, extra = QBO_VOIDS[entity]
        body = {"Id": qbo_id, "SyncToken": sync_token, **extra}
        return self._qbo_post(entity, f"{path}&{QBO_MINOR}", body, f"QuickBooks refused to void {entity} {qbo_id}")

    def _qbo_post(self, entity: str, path: str, body: dict[str, Any], refused: str) -> WriteResult:
        """POST a QuickBooks transaction through passthrough, never resent after a 5xx or no answer (the QboFault is
        `ambiguous`: the caller reads QuickBooks to learn whether it happened); `refused` opens the error's text."""
        status, inner, rid, ambiguous = self.passthrough("POST", path, body, retry_ambiguous=False)
        if status < 400 and isinstance(inner, dict) and isinstance(inner.get(entity), dict):
            return WriteResult(dict(inner[entity]), rid)
        raise QboFault(
            f"{refused} (HTTP {status}): {problems_text(inner)}",
            codes=qbo_fault_codes(inner),
            status=status,
            request_id=rid,
            ambiguous=ambiguous,
        )

    # -- passthrough (QBO refund receipts, checks, linking payments: Merge's common models have none) -----------
    def create_qbo(self, entity: str, body: dict[str, Any], refused: str) -> WriteResult:
        """POST a new QuickBooks `entity` (RefundReceipt, Purchase, Payment), never resent after a 5xx or no answer
        (the error is `ambiguous`: the caller looks it up, `query_qbo`, before anything is sent again)."""
        return self._qbo_post(entity, f"/{entity.lower()}?{QBO_MINOR}", body, refused)

    def query_qbo(self, entity: str, field_name: str, value: str) -> list[dict[str, Any]]:
        """QuickBooks' records of `entity` whose `field_name` is `value` (passthrough query)."""
        status, inner, rid, _ = self.passthrough("GET", qbo_query_path(entity, field_name, value))
        if status >= 400 or not isinstance(inner, dict):
            raise QboFault(
                f"QuickBooks did not answer the {entity} query (HTTP {status}): {problems_text(inner)}",
                codes=qbo_fault_codes(inner),
                status=status,
                request_id=rid,
            )
        return list((inner.get("QueryResponse") or {}).get(entity) or [])

    def create_refund_receipt(self, body: dict[str, Any]) -> WriteResult:
        return self.create_qbo("RefundReceipt", body, "QuickBooks refused the refund receipt")

    def refund_receipts(self, doc_number: str) -> list[dict[str, Any]]:
        """QuickBooks' refund receipts with this DocNumber."""
        return self.query_qbo("RefundReceipt", "DocNumber", doc_number)
