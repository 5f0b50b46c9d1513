"""Merge sandbox credit notes (QuickBooks Credit Memos): the wire format of GET/POST/PATCH /credit-notes and of
`POST /credit-notes/{id}/application`, QuickBooks' rules (customer required, no negative credit, never more applied
than the credit holds or the invoice owes) and lost-answer fault injection on the new routes."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.conftest import RunningSandbox

T = 10


def headers(sb: RunningSandbox) -> dict[str, str]:
    return {"Authorization": f"Bearer {sb.api_key}", "X-Account-Token": str(sb.account_token)}


def post(sb: RunningSandbox, path: str, body: Any) -> requests.Response:
    return requests.post(f"{sb.url}{path}", json=body, headers=headers(sb), timeout=T)


def get(sb: RunningSandbox, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{sb.url}{path}", params=params, headers=headers(sb), timeout=T)


def credit_model(contact: str, number: str = "CQ-2001", price: str = "50.00", qty: str = "2") -> dict[str, Any]:
    amount = f"{float(price) * float(qty):.2f}"
    return {
        "contact": contact,
        "number": number,
        "transaction_date": "2025-06-01T00:00:00Z",
        "line_items": [{"description": "Refund", "quantity": qty, "unit_price": price, "total_line_amount": amount}],
        "total_amount": float(amount),
    }


@pytest.fixture
def company(merge_sandbox: RunningSandbox) -> tuple[RunningSandbox, str, dict[str, Any]]:
    """A customer with one open invoice of 300."""
    app = merge_sandbox.app
    contact = app.add_contact("Jane Credit")
    invoice = app.create_invoice(contact["id"], amount=300.0)
    return merge_sandbox, contact["id"], invoice


def test_create_get_list_and_patch(company: tuple[RunningSandbox, str, dict[str, Any]]) -> None:
    sb, contact, _ = company
    resp = post(sb, "/credit-notes", {"model": credit_model(contact)})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["errors"] == [] and body["warnings"] == []
    model = body["model"]
    assert model["total_amount"] == 100.0 and model["remaining_credit"] == 100.0 and model["status"] == "SUBMITTED"
    assert model["number"] == "CQ-2001" and model["contact"] == contact and model["remote_id"]
    [line] = model["line_items"]
    assert line["unit_price"] == "50.00" and line["quantity"] == "2.00" and line["total_line_amount"] == "100.00"
    assert not any(key.startswith("_") for key in (*model, *line))
    assert get(sb, f"/credit-notes/{model['id']}").json()["number"] == "CQ-2001"
    qbo = get(sb, f"/credit-notes/{model['id']}", include_remote_data="true").json()["remote_data"][0]
    assert qbo["path"] == "/creditmemo" and qbo["data"]["TotalAmt"] == 100.0
    listed = get(sb, "/credit-notes", transaction_date_after="2025-05-31T00:00:00Z", page_size=1).json()
    assert [c["id"] for c in listed["results"]] == [model["id"]] and listed["next"] is None
    assert get(sb, "/credit-notes", transaction_date_after="2025-06-02T00:00:00Z").json()["results"] == []
    patched = requests.patch(
        f"{sb.url}/credit-notes/{model['id']}",
        json={"model": {"line_items": [{"quantity": "1", "unit_price": "80.00", "total_line_amount": "80.00"}]}},
        headers=headers(sb),
        timeout=T,
    )
    assert patched.status_code == 200 and patched.json()["model"]["total_amount"] == 80.0
    assert get(sb, "/credit-notes/meta/post").json()["request_schema"]["properties"]["model"]["required"] == [
        "contact",
        "line_items",
    ]


def test_quickbooks_refusals(company: tuple[RunningSandbox, str, dict[str, Any]]) -> None:
    sb, contact, _ = company
    no_contact = {k: v for k, v in credit_model(contact).items() if k != "contact"}
    resp = post(sb, "/credit-notes", {"model": no_contact})
    assert resp.status_code == 400 and resp.json()["errors"][0]["problem_type"] == "MISSING_REQUIRED_FIELD"
    negative = post(sb, "/credit-notes", {"model": credit_model(contact, price="-50.00")})
    assert negative.status_code == 400 and "can't be negative" in negative.json()["errors"][0]["detail"]
    assert post(sb, "/credit-notes", {"model": credit_model(contact)}).status_code == 201
    duplicate = post(sb, "/credit-notes", {"model": credit_model(contact)})
    assert duplicate.status_code == 400 and "TxnType=CreditMemo" in duplicate.json()["errors"][0]["detail"]


def test_application_moves_credit_to_the_invoice_and_refuses_too_much(
    company: tuple[RunningSandbox, str, dict[str, Any]],
) -> None:
    sb, contact, invoice = company
    credit = post(sb, "/credit-notes", {"model": credit_model(contact)}).json()["model"]
    apply = {"invoice": invoice["id"], "applied_date": "2025-06-02T00:00:00Z", "applied_amount": "60.00"}
    resp = post(sb, f"/credit-notes/{credit['id']}/application", apply)
    assert resp.status_code == 201, resp.text
    model = resp.json()["model"]
    assert model["remaining_credit"] == 40.0
    assert [(a["invoice"], a["applied_amount"]) for a in model["applied_to_lines"]] == [(invoice["id"], "60.00")]
    merge_invoice = get(sb, f"/invoices/{invoice['id']}").json()
    assert merge_invoice["balance"] == 240.0 and merge_invoice["applied_credit_notes"] == [credit["id"]]
    assert merge_invoice["status"] == "PARTIALLY_PAID"
    too_much = post(sb, f"/credit-notes/{credit['id']}/application", apply)  # 60 > the 40 remaining
    assert too_much.status_code == 400 and "remaining credit" in too_much.json()["errors"][0]["detail"]
    below = requests.patch(
        f"{sb.url}/credit-notes/{credit['id']}",
        json={"model": {"line_items": [{"quantity": "1", "unit_price": "10.00"}]}},
        headers=headers(sb),
        timeout=T,
    )
    assert below.status_code == 400 and "credit applied" in below.json()["errors"][0]["detail"]

    big = post(sb, "/credit-notes", {"model": credit_model(contact, "CQ-2002", price="500.00", qty="1")}).json()
    over_balance = {**apply, "applied_amount": "241.00"}
    refused = post(sb, f"/credit-notes/{big['model']['id']}/application", over_balance)
    assert refused.status_code == 400 and "open balance" in refused.json()["errors"][0]["detail"]
    missing = post(sb, f"/credit-notes/{big['model']['id']}/application", {"invoice": invoice["id"]})
    assert missing.status_code == 400
    assert post(sb, "/credit-notes/00000000-0000-0000-0000-000000000000/application", apply).status_code == 404


def test_lost_answers_on_the_create_and_the_application(company: tuple[RunningSandbox, str, dict[str, Any]]) -> None:
    """The write happens, the client sees a 5xx: as on POST /invoices."""
    sb, contact, invoice = company
    sb.faults.update(lost_response_rate=1.0, only_paths=["/credit-notes"])
    assert post(sb, "/credit-notes", {"model": credit_model(contact)}).status_code >= 500
    [credit] = get(sb, "/credit-notes").json()["results"]
    apply = {"invoice": invoice["id"], "applied_date": "2025-06-02T00:00:00Z", "applied_amount": "30.00"}
    assert post(sb, f"/credit-notes/{credit['id']}/application", apply).status_code >= 500
    sb.faults.reset()
    assert get(sb, f"/credit-notes/{credit['id']}").json()["remaining_credit"] == 70.0
    assert get(sb, f"/invoices/{invoice['id']}").json()["balance"] == 270.0
