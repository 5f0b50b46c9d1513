"""Contract tests: the official Merge SDK (mergepythonclient 4.2.1) and Merge's OpenAPI response schemas accept
what the sandbox returns. These catch shape bugs that our own clients would only meet in production.

The schemas come from tests/sandbox/merge_openapi_subset.json: the response schemas of the operations we use,
extracted from /work/shared/reference/merge-accounting-openapi.yaml (OpenAPI 3.1, annotations stripped).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from merge import Merge
from merge.resources.accounting import ContactRequest, InvoiceLineItemRequest, InvoiceRequest

KEY = "sandbox-merge-key"
TOKEN = "sandbox-account-token"
H = {"Authorization": f"Bearer {KEY}", "X-Account-Token": TOKEN}
T = 10
SPEC = json.loads((Path(__file__).with_name("merge_openapi_subset.json")).read_text())
MODELS = {"Contact", "Invoice", "InvoiceLineItem", "Payment", "PaymentLineItem", "Item", "Account", "CompanyInfo"}


def _nullable(node: Any) -> Any:
    """OpenAPI -> JSON Schema: `oneOf: [X, {type: null}]` is a nullable X (anyOf, since "any type" also matches
    null), and 3.0-style `nullable: true` adds null to the type."""
    if isinstance(node, list):
        return [_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items() if k != "nullable"}
    if "oneOf" in out and {"type": "null"} in out["oneOf"]:
        out["anyOf"] = out.pop("oneOf")
    if node.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _strict(schemas: dict[str, Any]) -> dict[str, Any]:
    """Common models may not carry fields the spec does not declare (catches typos in field names)."""
    return {
        name: ({**s, "additionalProperties": False} if name in MODELS and "properties" in s else s)
        for name, s in schemas.items()
    }


COMPONENTS = {"components": {"schemas": _strict(_nullable(SPEC["schemas"]))}}


def check(op: str, status: int, body: Any) -> None:
    """Validate one response against the spec's schema for `op` ("GET contacts/{id}")."""
    spec = SPEC["operations"][op]
    assert status == spec["status"], (op, status, body)
    schema = {**_nullable(spec["schema"]), **COMPONENTS}
    jsonschema.Draft202012Validator(schema).validate(body)


def test_schema_check_can_fail() -> None:
    with pytest.raises(jsonschema.ValidationError):
        check("GET contacts", 200, {"next": None, "previous": None, "results": [{"id": "x", "is_customer": "yes"}]})
    with pytest.raises(jsonschema.ValidationError):
        check("GET contacts", 200, {"next": None, "previous": None, "results": [{"id": "x", "nmae": "typo"}]})


def _populate(url: str) -> dict[str, Any]:
    r = requests.post(
        f"{url}/contacts",
        headers=H,
        timeout=T,
        json={
            "model": {
                "name": "Contract Co",
                "email_address": "ap@contract.example",
                "phone_numbers": [{"number": "+1512555", "type": "Mobile"}],
                "addresses": [
                    {"type": "BILLING", "street_1": "1 Main", "city": "Austin", "country": "US", "zip_code": "78701"}
                ],
            }
        },
    )
    contact = r.json()["model"]
    check("POST contacts", r.status_code, r.json())
    item = requests.get(f"{url}/items", headers=H, timeout=T).json()["results"][0]
    r = requests.post(
        f"{url}/invoices",
        headers=H,
        timeout=T,
        params={"is_debug_mode": "true"},
        json={
            "model": {
                "type": "ACCOUNTS_RECEIVABLE",
                "contact": contact["id"],
                "number": "C-1",
                "issue_date": "2025-01-15",
                "line_items": [{"description": "Panels", "quantity": 2, "unit_price": 100, "item": item["id"]}],
            }
        },
    )
    check("POST invoices", r.status_code, r.json())
    invoice = r.json()["model"]
    account = requests.get(f"{url}/accounts", headers=H, params={"name": "Undeposited Funds"}, timeout=T).json()[
        "results"
    ][0]
    r = requests.post(
        f"{url}/payments",
        headers=H,
        timeout=T,
        json={
            "model": {
                "contact": contact["id"],
                "account": account["id"],
                "total_amount": 50,
                "transaction_date": "2025-02-01",
                "applied_to_lines": [
                    {"applied_amount": "50.00", "related_object_id": invoice["id"], "related_object_type": "INVOICE"}
                ],
            }
        },
    )
    check("POST payments", r.status_code, r.json())
    return {"contact": contact, "invoice": invoice, "payment": r.json()["model"], "item": item, "account": account}


def test_responses_match_openapi(merge_sandbox: Any) -> None:
    url = merge_sandbox.url
    made = _populate(url)
    merge_sandbox.app.add_contact("Contract Co - Job", parent=made["contact"]["id"])
    for model in ("contacts", "invoices", "payments", "items", "accounts", "company-info"):
        for params in ({}, {"include_remote_data": "true", "include_deleted_data": "true", "page_size": "2"}):
            r = requests.get(f"{url}/{model}", headers=H, params=params, timeout=T)
            check(f"GET {model}", r.status_code, r.json())
            first = r.json()["results"][0]
            r = requests.get(f"{url}/{model}/{first['id']}", headers=H, params=params, timeout=T)
            check(f"GET {model}/{{id}}", r.status_code, r.json())
    r = requests.patch(
        f"{url}/contacts/{made['contact']['id']}",
        headers=H,
        timeout=T,
        json={"model": {"email_address": "new@contract.example"}},
    )
    check("PATCH contacts/{id}", r.status_code, r.json())
    r = requests.patch(
        f"{url}/invoices/{made['invoice']['id']}", headers=H, timeout=T, json={"model": {"memo": "patched"}}
    )
    check("PATCH invoices/{id}", r.status_code, r.json())
    r = requests.patch(
        f"{url}/payments/{made['payment']['id']}",
        headers=H,
        timeout=T,
        json={"model": {"transaction_date": "2025-02-02"}},
    )
    check("PATCH payments/{id}", r.status_code, r.json())
    r = requests.post(f"{url}/items", headers=H, timeout=T, json={"model": {"name": "Battery", "unit_price": 9}})
    check("POST items", r.status_code, r.json())
    for op in ("contacts/meta/post", "invoices/meta/post", "payments/meta/post"):
        r = requests.get(f"{url}/{op}", headers=H, timeout=T)
        check(f"GET {op}", r.status_code, r.json())
    for op, rid in (
        ("contacts/meta/patch/{id}", made["contact"]["id"]),
        ("invoices/meta/patch/{id}", made["invoice"]["id"]),
    ):
        r = requests.get(f"{url}/{op.replace('{id}', rid)}", headers=H, timeout=T)
        check(f"GET {op}", r.status_code, r.json())
    for op in ("account-details", "sync-status", "linked-accounts"):
        r = requests.get(f"{url}/{op}", headers=H, timeout=T)
        check(f"GET {op}", r.status_code, r.json())
    r = requests.post(f"{url}/sync-status/resync", headers=H, timeout=T)
    check("POST sync-status/resync", r.status_code, r.json())
    r = requests.post(
        f"{url}/passthrough",
        headers=H,
        timeout=T,
        json={
            "method": "GET",
            "path": f"/v3/company/{{{{LINKED_ACCOUNT_ATTR.realmId}}}}/customer/{made['contact']['remote_id']}",
            "headers": {"Content-Type": "application/json"},
        },
    )
    check("POST passthrough", r.status_code, r.json())
    r = requests.post(
        f"{url}/link-token",
        headers=H,
        timeout=T,
        json={
            "end_user_email_address": "a@b.c",
            "end_user_organization_name": "Org",
            "end_user_origin_id": "o-1",
            "categories": ["accounting"],
        },
    )
    check("POST link-token", r.status_code, r.json())
    root = url.split("/api/")[0]
    public = requests.post(
        f"{root}/link/api/public-token", json={"link_token": r.json()["link_token"]}, timeout=T
    ).json()["public_token"]
    r = requests.get(f"{url}/account-token/{public}", headers=H, timeout=T)
    check("GET account-token/{public_token}", r.status_code, r.json())


def test_official_sdk_reads_and_writes(merge_sandbox: Any) -> None:
    url = merge_sandbox.url
    root = url.split("/api/")[0]
    made = _populate(url)
    client = Merge(base_url=f"{root}/api", api_key=KEY, account_token=TOKEN, timeout=T)
    acc = client.accounting
    contacts = acc.contacts.list(page_size=100, include_remote_data=True, is_customer="true")
    assert [c.name for c in contacts.results or []] == ["Contract Co"]
    assert contacts.results[0].addresses[0].city == "Austin"  # type: ignore[union-attr,index]
    one = acc.contacts.retrieve(made["contact"]["id"])
    assert one.remote_id == made["contact"]["remote_id"] and one.email_address == "ap@contract.example"
    invoices = acc.invoices.list(expand="line_items,payments,applied_payments,contact", include_deleted_data=True)
    inv = (invoices.results or [])[0]
    assert inv.contact.name == "Contract Co"  # type: ignore[union-attr]
    assert inv.line_items[0].total_amount == 200 and inv.balance == 150  # type: ignore[index]
    assert inv.payments[0].id == made["payment"]["id"]  # type: ignore[index,union-attr]
    assert inv.status == "PARTIALLY_PAID"
    payments = acc.payments.list(expand="applied_to_lines,contact,account")
    pay = (payments.results or [])[0]
    assert pay.applied_to_lines[0].related_object_id == made["invoice"]["id"]  # type: ignore[index,union-attr]
    assert pay.account.name == "Undeposited Funds"  # type: ignore[union-attr]
    assert acc.payments.retrieve(made["payment"]["id"]).total_amount == 50
    assert acc.invoices.retrieve(made["invoice"]["id"]).number == "C-1"
    # SDK pagination walks our cursors
    for i in range(4):
        merge_sandbox.app.add_contact(f"SDK Page {i}")
    page = acc.contacts.list(page_size=2)
    seen = [c.id for c in page.results or []]
    while page.next:
        page = acc.contacts.list(page_size=2, cursor=page.next)
        seen += [c.id for c in page.results or []]
    assert len(seen) == 5 == len(set(seen))
    # writes through the SDK
    created = acc.contacts.create(model=ContactRequest(name="SDK Customer", is_customer=True))
    assert created.model.name == "SDK Customer" and created.errors == []
    line = InvoiceLineItemRequest(description="Inverter", total_amount=321.5)
    inv_resp = acc.invoices.create(
        model=InvoiceRequest(type="ACCOUNTS_RECEIVABLE", contact=created.model.id, line_items=[line])
    )
    assert inv_resp.model.total_amount == 321.5
    stored = merge_sandbox.state.invoices.get(inv_resp.model.id)
    assert stored["contact"] == created.model.id and stored["balance"] == 321.5
    meta = acc.contacts.meta_post_retrieve()
    assert meta.request_schema["properties"]["model"]["required"] == ["name"]
    assert acc.account_details.retrieve().integration == "QuickBooks Online"
    assert [s.model_id for s in acc.sync_status.list().results or []]
