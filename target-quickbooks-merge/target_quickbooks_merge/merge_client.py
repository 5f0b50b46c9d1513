"""Thin typed wrapper over sync_ledger.ApiClient for the Merge Accounting endpoints the target uses.

Rate limiting, retries on 429/5xx (honouring Retry-After) and secret redaction live in ApiClient; this module only
knows paths, envelopes and how Merge reports a failed write.
"""

from __future__ import annotations

import json
from urllib.parse import quote
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sync_ledger import ApiClient, ApiError

QBO_COMPANY = "/v3/company/{{LINKED_ACCOUNT_ATTR.realmId}}"
QBO_MINOR = "minorversion=75"


class WriteError(Exception):
    """A write Merge (or QuickBooks behind it) refused; `detail` is the provider's message for the log."""

    def __init__(self, detail: str, *, status: int | None = None, request_id: str | None = None,
                 duplicate_name: bool = False, ambiguous: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.request_id = request_id
        self.duplicate_name = duplicate_name
        self.ambiguous = ambiguous  # an earlier attempt may have written (see ApiError.ambiguous)


@dataclass
class WriteResult:
    model: dict[str, Any]
    request_id: str | None = None


def _problems_text(body: Any) -> str:
    """Human text from Merge's {"errors": [{title, detail, problem_type, raw_error}]} or QBO's Fault envelope."""
    if isinstance(body, dict):
        problems = body.get("errors") or []
        if problems and isinstance(problems, list):
            parts = []
            for p in problems:
                if isinstance(p, dict):
                    bits = [p.get("problem_type"), p.get("title"), p.get("detail"), p.get("raw_error")]
                    parts.append(": ".join(str(b) for b in bits if b))
                else:
                    parts.append(str(p))
            return "; ".join(parts)
        fault = body.get("Fault")
        if isinstance(fault, dict):
            errs = fault.get("Error") or []
            return "; ".join(f"{e.get('code', '')} {e.get('Message', '')}: {e.get('Detail', '')}".strip()
                             for e in errs if isinstance(e, dict)) or json.dumps(fault)[:500]
        if body.get("detail"):
            return str(body["detail"])
    return (json.dumps(body, default=str) if not isinstance(body, str) else body)[:1000]


def _is_duplicate_name(text: str) -> bool:
    low = text.lower()
    return "6240" in low or "duplicate name" in low or "name supplied already exists" in low or (
        "already" in low and "displayname" in low.replace(" ", ""))


class MergeClient:
    """Typed calls against one linked account."""

    def __init__(self, base_url: str, *, api_key: str, account_token: str,
                 max_requests_per_minute: int | None = None, api: ApiClient | None = None,
                 connections: int = 10) -> None:
        rate = (max_requests_per_minute / 60.0) if max_requests_per_minute else None
        self.api = api or ApiClient(
            base_url,
            headers={"Authorization": f"Bearer {api_key}", "X-Account-Token": account_token,
                     "Accept": "application/json"},
            max_requests_per_second=rate,
            secrets=[api_key, account_token],
            connections=connections,
        )

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

    def find_contacts(self, **filters: Any) -> list[dict[str, Any]]:
        return list(self.iter_list("/contacts", {k: v for k, v in filters.items() if v is not None}))

    def contact_by_remote_id(self, remote_id: str) -> dict[str, Any] | None:
        found = self.find_contacts(remote_id=remote_id)
        return found[0] if found else None

    def invoices_by_number(self, number: str) -> list[dict[str, Any]]:
        return list(self.iter_list("/invoices", {"number": number, "type": "ACCOUNTS_RECEIVABLE"}))

    def payments_for_contact(self, contact_id: str) -> list[dict[str, Any]]:
        return list(self.iter_list("/payments", {"contact_id": contact_id, "expand": "applied_to_lines"}))

    # -- writes ---------------------------------------------------------------------------------------------
    def _write(self, method: str, path: str, model: dict[str, Any], idempotency_key: str | None) -> WriteResult:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        try:
            resp = self.api.request(method, path, json={"model": model}, headers=headers)
        except ApiError as exc:
            text = _problems_text(exc.body) if exc.body not in (None, "") else exc.message
            raise WriteError(text or exc.message, status=exc.status, request_id=exc.request_id,
                             duplicate_name=_is_duplicate_name(text or ""), ambiguous=exc.ambiguous) from exc
        body = resp.json() if resp.content else {}
        request_id = resp.headers.get("X-Request-Id") or resp.headers.get("x-merge-request-id")
        if body.get("errors"):  # Merge may answer 201 with errors: treat as a failed write
            text = _problems_text(body)
            raise WriteError(text, status=resp.status_code, request_id=request_id,
                             duplicate_name=_is_duplicate_name(text))
        model_out = body.get("model") or {}
        if not model_out.get("id"):
            raise WriteError(f"Merge returned no model id (HTTP {resp.status_code})", status=resp.status_code,
                             request_id=request_id)
        return WriteResult(model_out, request_id)

    def create(self, model_path: str, model: dict[str, Any], *, idempotency_key: str | None = None) -> WriteResult:
        return self._write("POST", f"/{model_path}", model, idempotency_key)

    def update(self, model_path: str, merge_id: str, model: dict[str, Any]) -> WriteResult:
        return self._write("PATCH", f"/{model_path}/{merge_id}", model, None)

    # -- passthrough (QBO sub-customers) --------------------------------------------------------------------
    def passthrough(self, method: str, qbo_path: str, data: dict[str, Any] | None = None, *,
                    idempotency_key: str | None = None) -> tuple[int, Any, str | None, bool]:
        """Returns (QBO status, QBO body, request id, ambiguous). Merge wraps the provider answer in a 200
        RemoteResponse; `ambiguous`: an earlier attempt got a 5xx or no answer, so a write may have happened."""
        body: dict[str, Any] = {
            "method": method,
            "path": f"{QBO_COMPANY}{qbo_path}",
            "request_format": "JSON",
            "headers": {"Content-Type": "application/json", "Accept": "application/json"},
        }
        if data is not None:
            body["data"] = json.dumps(data)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        try:
            resp = self.api.request("POST", "/passthrough", json=body, headers=headers)
        except ApiError as exc:
            text = _problems_text(exc.body) if exc.body not in (None, "") else exc.message
            raise WriteError(text or exc.message, status=exc.status, request_id=exc.request_id,
                             duplicate_name=_is_duplicate_name(text or ""), ambiguous=exc.ambiguous) from exc
        out = resp.json() if resp.content else {}
        request_id = resp.headers.get("X-Request-Id") or resp.headers.get("x-merge-request-id")
        ambiguous = bool(getattr(resp, "ambiguous_retry", False))
        status = int(out.get("status") or resp.status_code)
        inner = out.get("response")
        if isinstance(inner, str):
            try:
                inner = json.loads(inner)
            except ValueError:
                pass
        return status, inner, request_id, ambiguous

    def create_sub_customer(self, body: dict[str, Any], *, idempotency_key: str | None = None,
                            ) -> tuple[dict[str, Any], str | None]:
        status, inner, rid, ambiguous = self.passthrough("POST", f"/customer?{QBO_MINOR}", body,
                                              idempotency_key=idempotency_key)
        if status >= 400 or not isinstance(inner, dict) or "Customer" not in inner:
            text = _problems_text(inner)
            raise WriteError(f"QuickBooks rejected the job (HTTP {status}): {text}", status=status,
                             request_id=rid, duplicate_name=_is_duplicate_name(text),
                             ambiguous=ambiguous)
        return inner["Customer"], rid

    def query_customers_by_name(self, display_name: str) -> list[dict[str, Any]] | None:
        """QBO query by DisplayName through passthrough; None if passthrough cannot answer (then rely on Merge)."""
        escaped = display_name.replace("\\", "\\\\").replace("'", "\\'")
        query = f"select * from Customer where DisplayName = '{escaped}'"
        try:
            status, inner, _, _ = self.passthrough("GET", f"/query?query={quote(query)}&{QBO_MINOR}")
        except WriteError:
            return None
        if status >= 400 or not isinstance(inner, dict):
            return None
        return list((inner.get("QueryResponse") or {}).get("Customer") or [])
