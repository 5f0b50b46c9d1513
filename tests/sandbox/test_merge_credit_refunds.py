"""Merge sandbox: a credit paid back, QuickBooks' way (sandbox/merge_credit_refunds.py, merge_purchases.py): a Check
to Accounts Receivable through passthrough (`POST .../purchase`) and a Payment of 0 linking it to the credit memo
(`POST .../payment`), with QuickBooks' refusals: a check from a non-bank account, an A/R line without its customer,
lines that do not balance, more than the credit memo has left or the check has open."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.conftest import RunningSandbox

T = 10
QBO = "/v3/company/{{LINKED_ACCOUNT_ATTR.realmId}}"


def headers(sb: RunningSandbox) -> dict[str, str]:
    return {"Authorization": f"Bearer {sb.api_key}", "X-Account-Token": str(sb.account_token)}


def passthrough(sb: RunningSandbox, method: str, path: str, data: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"method": method, "path": f"{QBO}{path}"}
    if data is not None:
        body["data"] = json.dumps(data)
    r = requests.post(f"{sb.url}/passthrough", json=body, headers=headers(sb), timeout=T)
    assert r.status_code == 200, r.text
    return dict(r.json())


def fault(out: dict[str, Any]) -> str:
    assert out["status"] >= 400, out
    return str(out["response"]["Fault"]["Error"][0]["Detail"])


@pytest.fixture
def credit(merge_sandbox: RunningSandbox) -> tuple[RunningSandbox, dict[str, Any], dict[str, str]]:
    """A customer with a credit memo of 100, and the QBO Ids of the accounts involved."""
    sb = merge_sandbox
    contact = sb.app.add_contact("Jane Refund")
    model = {
        "contact": contact["id"],
        "number": "CQ-3001",
        "transaction_date": "2025-06-01T00:00:00Z",
        "line_items": [
            {"description": "Credit", "quantity": "1", "unit_price": "100.00", "total_line_amount": "100.00"}
        ],
    }
    r = requests.post(f"{sb.url}/credit-notes", json={"model": model}, headers=headers(sb), timeout=T)
    assert r.status_code == 201, r.text
    accounts = {row["name"]: row["remote_id"] for row in sb.app.state.data.t("accounts").order}
    ids = {
        "customer": contact["remote_id"],
        "bank": accounts["Checking"],
        "ar": accounts["Accounts Receivable (A/R)"],
        "undeposited": accounts["Undeposited Funds"],
    }
    return sb, r.json()["model"], ids


def check(ids: dict[str, str], amount: float = 100.0, **extra: Any) -> dict[str, Any]:
    return {
        "PaymentType": "Check",
        "AccountRef": {"value": ids["bank"]},
        "EntityRef": {"value": ids["customer"], "type": "Customer"},
        "DocNumber": "R-CQ-3001-1",
        "Line": [
            {
                "DetailType": "AccountBasedExpenseLineDetail",
                "Amount": amount,
                "AccountBasedExpenseLineDetail": {"AccountRef": {"value": ids["ar"]}},
            }
        ],
        **extra,
    }


def linking(ids: dict[str, str], memo: str, check_id: str, credit: float = 100.0, charge: float = 100.0) -> Any:
    return {
        "CustomerRef": {"value": ids["customer"]},
        "TotalAmt": 0,
        "PaymentRefNum": "R-CQ-3001-1",
        "Line": [
            {"Amount": credit, "LinkedTxn": [{"TxnId": memo, "TxnType": "CreditMemo"}]},
            {"Amount": charge, "LinkedTxn": [{"TxnId": check_id, "TxnType": "Check"}]},
        ],
    }


def test_a_check_and_a_payment_of_zero_use_up_the_credit(credit: Any) -> None:
    sb, memo, ids = credit
    made = passthrough(sb, "POST", "/purchase?minorversion=75", check(ids))
    assert made["status"] == 200, made
    purchase = made["response"]["Purchase"]
    found = passthrough(sb, "GET", "/query?query=select * from Purchase where DocNumber = 'R-CQ-3001-1'")
    assert [p["Id"] for p in found["response"]["QueryResponse"]["Purchase"]] == [purchase["Id"]]
    paid = passthrough(sb, "POST", "/payment?minorversion=75", linking(ids, memo["remote_id"], purchase["Id"]))
    assert paid["status"] == 200, paid
    payment = paid["response"]["Payment"]
    assert payment["TotalAmt"] == 0 and payment["UnappliedAmt"] == 0 and payment["PaymentRefNum"] == "R-CQ-3001-1"
    r = requests.get(f"{sb.url}/credit-notes/{memo['id']}", headers=headers(sb), timeout=T)
    assert r.json()["remaining_credit"] == 0.0 and r.json()["status"] == "PAID"
    [merge_payment] = [p for p in sb.app.state.data.t("payments").order if p["remote_id"] == payment["Id"]]
    assert merge_payment["applied_to_lines"][0]["related_object_type"] == "CREDIT_NOTE"
    again = passthrough(sb, "POST", "/payment?minorversion=75", linking(ids, memo["remote_id"], purchase["Id"]))
    assert "remaining credit" in fault(again)  # nothing left to link twice


def test_quickbooks_refusals(credit: Any) -> None:
    sb, memo, ids = credit
    from_ar = passthrough(sb, "POST", "/purchase", check(ids, AccountRef={"value": ids["undeposited"]}))
    assert "must be paid from a Bank account" in fault(from_ar)
    no_customer = passthrough(sb, "POST", "/purchase", check(ids, EntityRef=None))
    assert "you must choose a customer" in fault(no_customer)
    purchase = passthrough(sb, "POST", "/purchase", check(ids, amount=40.0))["response"]["Purchase"]
    unbalanced = passthrough(sb, "POST", "/payment", linking(ids, memo["remote_id"], purchase["Id"], 40.0, 30.0))
    assert "must be equal" in fault(unbalanced)
    too_much = passthrough(sb, "POST", "/payment", linking(ids, memo["remote_id"], purchase["Id"], 60.0, 60.0))
    assert "open amount (40.00)" in fault(too_much)
    other_type = linking(ids, memo["remote_id"], purchase["Id"], 40.0, 40.0)
    other_type["Line"][1]["LinkedTxn"][0]["TxnType"] = "Expense"  # a check is linked as a Check
    assert "Invalid Reference Id : Expense" in fault(passthrough(sb, "POST", "/payment", other_type))


def test_credit_paid_back_counts_as_used_on_a_later_patch(credit: Any) -> None:
    sb, memo, ids = credit
    purchase = passthrough(sb, "POST", "/purchase", check(ids, amount=100.0))["response"]["Purchase"]
    assert passthrough(sb, "POST", "/payment", linking(ids, memo["remote_id"], purchase["Id"]))["status"] == 200
    line = {"description": "Credit", "quantity": "1", "unit_price": "160.00", "total_line_amount": "160.00"}
    r = requests.patch(
        f"{sb.url}/credit-notes/{memo['id']}", json={"model": {"line_items": [line]}}, headers=headers(sb), timeout=T
    )
    assert r.status_code == 200, r.text
    assert r.json()["model"]["remaining_credit"] == 60.0  # 100 of it was paid back
    lower = {**line, "unit_price": "50.00", "total_line_amount": "50.00"}
    r = requests.patch(
        f"{sb.url}/credit-notes/{memo['id']}", json={"model": {"line_items": [lower]}}, headers=headers(sb), timeout=T
    )
    assert r.status_code >= 400 and "can't be less than the credit applied (100.00)" in r.text
