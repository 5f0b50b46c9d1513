"""Merge sandbox passthrough refund receipts (sandbox/merge_refunds.py): validated, stored, queried by DocNumber,
listed at GET /__admin/refund-receipts, and reached by lost-response fault injection."""

from __future__ import annotations

import json
from typing import Any

import requests

from tests.sandbox.test_merge_passthrough import H, T, passthrough

REFUND = "/v3/company/{{LINKED_ACCOUNT_ATTR.realmId}}/refundreceipt?minorversion=75"
QUERY = "/v3/company/{{LINKED_ACCOUNT_ATTR.realmId}}/query?query=select * from RefundReceipt where DocNumber = '%s'"


def refs(url: str) -> tuple[str, str, str, str]:
    """QuickBooks Ids: a new customer, the Checking account, the Services income account, the Services item."""
    customer = requests.post(f"{url}/contacts", headers=H, json={"model": {"name": "Refund Co"}}, timeout=T).json()
    accounts = requests.get(f"{url}/accounts", headers=H, timeout=T).json()["results"]
    items = requests.get(f"{url}/items", headers=H, timeout=T).json()["results"]
    by_name = {a["name"]: a["remote_id"] for a in accounts}
    item = next(i["remote_id"] for i in items if i["name"] == "Services")
    return customer["model"]["remote_id"], by_name["Checking"], by_name["Services"], item


def body(customer: str, account: str, item: str, amount: float = 100.0, number: str = "R-CQ-1001-1") -> Any:
    line = {"DetailType": "SalesItemLineDetail", "Amount": amount, "SalesItemLineDetail": {"ItemRef": {"value": item}}}
    return {
        "CustomerRef": {"value": customer},
        "DepositToAccountRef": {"value": account},
        "DocNumber": number,
        "Line": [line],
    }


def test_refund_receipts_are_validated_stored_and_queried(merge_sandbox: Any) -> None:
    url = merge_sandbox.url
    customer, checking, income, item = refs(url)
    out = passthrough(url, "POST", REFUND, body(customer, checking, item))
    assert out["status"] == 200 and out["response"]["RefundReceipt"]["TotalAmt"] == 100.0
    for bad in (
        body("999999", checking, item),
        body(customer, income, item),  # an income account: not Bank / Other Current Asset
        body(customer, checking, "999999"),
        body(customer, checking, item, amount=0),
        body(customer, checking, item, number="R-" + "9" * 20),
    ):
        assert passthrough(url, "POST", REFUND, bad)["status"] == 400
    found = passthrough(url, "GET", QUERY % "R-CQ-1001-1")["response"]["QueryResponse"]["RefundReceipt"]
    assert [r["DocNumber"] for r in found] == ["R-CQ-1001-1"]
    listed = requests.get(f"{merge_sandbox.server.root_url}/__admin/refund-receipts", timeout=T).json()
    assert len(listed["refund_receipts"]) == 1


def test_a_lost_answer_still_stores_the_receipt(merge_sandbox: Any) -> None:
    url = merge_sandbox.url
    customer, checking, _, item = refs(url)
    merge_sandbox.faults.update(lost_response_rate=1.0, only_paths=["/refundreceipt"])
    r = requests.post(
        f"{url}/passthrough",
        headers=H,
        json={"method": "POST", "path": REFUND, "data": json.dumps(body(customer, checking, item))},
        timeout=T,
    )
    merge_sandbox.faults.reset()
    assert r.status_code >= 500
    listed = requests.get(f"{merge_sandbox.server.root_url}/__admin/refund-receipts", timeout=T).json()
    assert len(listed["refund_receipts"]) == 1
