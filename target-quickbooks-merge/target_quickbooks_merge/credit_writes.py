"""Coperniq credits as Merge credit notes: the payload (pure) and the calls (create, find, apply) that are safe
against a lost answer.

Why apart from credit_notes.py: that module holds the rules (when a credit is pushed, applied, zeroed); this one
knows Merge's CreditNote wire format (line amounts as decimal strings, `POST /credit-notes/{id}/application` taking
an ApplyCreditNoteRequest not wrapped in `model`) and how a lost answer is looked up instead of sent twice.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from datetime import timedelta
from functools import partial
from typing import Any

from sync_ledger import ApiError, money_text, to_decimal, to_money
from sync_ledger.util import PAYMENT_DATE_SLACK, closest_by_day, day_of

from .mapping import invoice_number, money
from .merge_client import MergeClient, WriteResult
from .merge_errors import WriteError, write_error

#: The Merge model path of credit notes.
PATH = "credit-notes"


def is_credit(invoice: Mapping[str, Any]) -> bool:
    """Coperniq has no credit memo: a credit is an invoice whose total is negative (coperniq_api.md §3.7)."""
    amount = to_decimal(invoice.get("amount"))
    return amount is not None and amount < 0


def credit_line(line: Mapping[str, Any], item_id: str) -> dict[str, Any]:
    """Merge CreditNoteLineItemRequest of a Coperniq credit line, its sign turned: QuickBooks keeps a Credit Memo's
    amounts positive (a -250 line credits 250). Decimal strings, as Merge's CreditNote fields are."""
    qty = to_decimal(line.get("quantity")) or 0
    price = -money(line.get("unitPrice"))
    catalog = line.get("catalogItem") or {}
    return {
        "description": str(line.get("description") or catalog.get("name") or ""),
        "quantity": str(qty),
        "unit_price": money_text(price),
        "total_line_amount": money_text(to_money(qty * price)),
        "item": item_id,
    }


def credit_payload(
    invoice: Mapping[str, Any], contact_id: str, lines: list[dict[str, Any]], *, number_prefix: str = ""
) -> dict[str, Any]:
    """Merge CreditNoteRequest: numbered like the invoices (`invoice_number_prefix` + uid), on the same job."""
    payload: dict[str, Any] = {
        "number": invoice_number(invoice, number_prefix),
        "contact": contact_id,
        "line_items": lines,
        "total_amount": -money(invoice.get("amount")),
    }
    when = invoice.get("issueDate") or invoice.get("createdAt")
    if when:
        payload["transaction_date"] = when
    return payload


def zero_lines(current: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A credit note's lines at zero (unit price and amount), item, quantity and tax code kept."""
    out = []
    for line in current.get("line_items") or []:
        if isinstance(line, dict):
            zeroed = {
                "description": line.get("description"),
                "quantity": line.get("quantity"),
                "unit_price": "0.00",
                "total_line_amount": "0.00",
                "item": line.get("item"),
            }
            out.append({**zeroed, **{k: line[k] for k in ("account", "tax_rate") if line.get(k)}})
    return out


def find_credit_note(
    client: MergeClient, number: str, contact: str, when: str | None, taken: Container[str]
) -> dict[str, Any] | None:
    """Natural key of a credit note we created: its number on the same job, linked to nothing else. Merge's list
    has no `number` filter, so the credit note's day is read (a day either side: QuickBooks keeps dates)."""
    params: dict[str, Any] = {}
    day = day_of(when)
    if day is not None:
        params = {
            "transaction_date_after": (day - timedelta(days=2)).isoformat() + "T00:00:00Z",
            "transaction_date_before": (day + timedelta(days=2)).isoformat() + "T00:00:00Z",
        }
    for note in client.iter_list(f"/{PATH}", params):
        if (
            str(note.get("number")) == number
            and str(note.get("contact")) == contact
            and not note.get("remote_was_deleted")
            and str(note.get("id")) not in taken
        ):
            return dict(note)
    return None


def find_twin_credit_note(
    client: MergeClient, desired: Mapping[str, Any], contact: str, taken: Container[str]
) -> dict[str, Any] | None:
    """A credit memo the bookkeeper entered by hand for this credit: on the same customer/job, for the same amount,
    dated within PAYMENT_DATE_SLACK days (the twin rule of payments), under another number and linked to nothing.
    One list read of those days, only before a credit is created (credits are few)."""
    day = day_of(desired.get("transaction_date"))
    params: dict[str, Any] = {}
    if day is not None:
        params = {
            "transaction_date_after": (day - timedelta(days=PAYMENT_DATE_SLACK + 1)).isoformat() + "T00:00:00Z",
            "transaction_date_before": (day + timedelta(days=PAYMENT_DATE_SLACK + 1)).isoformat() + "T00:00:00Z",
        }
    total = to_money(desired.get("total_amount") or 0)
    candidates = [
        dict(note)
        for note in client.iter_list(f"/{PATH}", params)
        if str(note.get("contact")) == contact
        and not note.get("remote_was_deleted")
        and str(note.get("id")) not in taken
        and str(note.get("number")) != str(desired.get("number"))
        and to_money(note.get("total_amount") or 0) == total
    ]
    return closest_by_day(candidates, day, lambda n: n.get("transaction_date"), PAYMENT_DATE_SLACK)


def create_credit_note(client: MergeClient, desired: dict[str, Any], idempotency_key: str, find: Any) -> WriteResult:
    """POST /credit-notes, a lost answer looked up by `find` before anything is sent again."""
    return client.create(PATH, desired, idempotency_key=idempotency_key, find_existing=find)


def applied_to(note: Mapping[str, Any], invoice_id: str) -> bool:
    """Does QuickBooks show this credit note applied to that invoice?"""
    return any(
        isinstance(a, dict) and str(a.get("invoice")) == invoice_id and not a.get("remote_was_deleted")
        for a in note.get("applied_to_lines") or []
    )


def credit_note(client: MergeClient, merge_id: str) -> dict[str, Any]:
    return dict(client.api.get(f"/{PATH}/{merge_id}") or {})


def _found_applied(client: MergeClient, merge_id: str, invoice_id: str) -> WriteResult | None:
    note = credit_note(client, merge_id)
    return WriteResult(note, recovered=True) if applied_to(note, invoice_id) else None


def _send_application(client: MergeClient, merge_id: str, body: dict[str, Any]) -> WriteResult:
    try:
        resp = client.api.request("POST", f"/{PATH}/{merge_id}/application", json=body, retry_ambiguous=False)
    except ApiError as exc:
        raise write_error(exc) from exc
    out = resp.json() if resp.content else {}
    request_id = resp.headers.get("X-Request-Id") or resp.headers.get("x-merge-request-id")
    if out.get("errors") or not (out.get("model") or {}).get("id"):
        raise WriteError(f"Merge did not apply the credit note: {out.get('errors')}", status=resp.status_code)
    return WriteResult(out["model"], request_id)


def apply_credit_note(client: MergeClient, merge_id: str, invoice_id: str, amount: Any, when: str) -> WriteResult:
    """POST /credit-notes/{id}/application, exactly once: never resent blindly after a 5xx or no answer (the credit
    note is read first: if it lists the invoice, the application happened)."""
    body = {"invoice": invoice_id, "applied_date": when, "applied_amount": money_text(amount)}
    return client.send_checked(
        partial(_send_application, client, merge_id, body), partial(_found_applied, client, merge_id, invoice_id)
    )
