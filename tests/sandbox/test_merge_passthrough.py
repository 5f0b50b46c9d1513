"""Merge sandbox passthrough to the emulated QBO API: sub-customers, SyncToken, queries, visibility as Contacts."""

from __future__ import annotations

import json
import time
from typing import Any

import requests

from sandbox._server import SandboxServer
from sandbox.merge import MergeApp

KEY = "sandbox-merge-key"
TOKEN = "sandbox-account-token"
H = {"Authorization": f"Bearer {KEY}", "X-Account-Token": TOKEN}
T = 10
CUSTOMER = "/v3/company/{{LINKED_ACCOUNT_ATTR.realmId}}/customer?minorversion=75"


def passthrough(url: str, method: str, path: str, data: Any = None) -> dict[str, Any]:
    body = {
        "method": method,
        "path": path,
        "request_format": "JSON",
        "headers": {"Content-Type": "application/json", "Accept": "application/json"},
    }
    if data is not None:
        body["data"] = json.dumps(data)
    r = requests.post(f"{url}/passthrough", headers=H, json=body, timeout=T)
    assert r.status_code == 200, r.text  # QBO's own status travels inside the envelope
    out = r.json()
    assert set(out) >= {"method", "path", "status", "response", "response_headers", "response_type", "headers"}
    assert out["headers"]["Authorization"] == "<redacted>"
    return out


def contacts(url: str, **params: Any) -> list[dict[str, Any]]:
    return requests.get(f"{url}/contacts", headers=H, params=params, timeout=T).json()["results"]


def test_sub_customer_create_visible_and_synctoken_update(merge_sandbox: Any) -> None:
    url = merge_sandbox.url
    parent = requests.post(f"{url}/contacts", headers=H, json={"model": {"name": "Acme Corp"}}, timeout=T).json()
    parent_qbo = parent["model"]["remote_id"]
    out = passthrough(
        url,
        "POST",
        CUSTOMER,
        {
            "DisplayName": "Kitchen Remodel - Acme",
            "Job": True,
            "ParentRef": {"value": parent_qbo},
            "BillWithParent": True,
            "PrimaryEmailAddr": {"Address": "pm@acme.example"},
            "BillAddr": {"Line1": "1 Main St", "City": "Austin"},
        },
    )
    assert out["status"] == 200 and out["response_type"] == "JSON"
    job = out["response"]["Customer"]
    assert job["Job"] is True and job["Level"] == 1 and job["SyncToken"] == "0"
    assert job["FullyQualifiedName"] == "Acme Corp:Kitchen Remodel - Acme"
    assert job["ParentRef"]["value"] == parent_qbo
    # visible immediately (default) as a Merge Contact with the QBO Id as remote_id
    found = contacts(url, remote_id=job["Id"], include_remote_data="true")
    assert len(found) == 1
    c = found[0]
    assert c["is_customer"] is True and c["name"] == "Kitchen Remodel - Acme"
    assert c["email_address"] == "pm@acme.example" and c["addresses"][0]["street_1"] == "1 Main St"
    assert c["remote_data"][0]["data"]["ParentRef"]["value"] == parent_qbo
    # GET by Id
    got = passthrough(url, "GET", f"/v3/company/{{{{LINKED_ACCOUNT_ATTR.realmId}}}}/customer/{job['Id']}")
    assert got["status"] == 200 and got["response"]["Customer"]["DisplayName"] == "Kitchen Remodel - Acme"
    missing = passthrough(url, "GET", "/v3/company/{{LINKED_ACCOUNT_ATTR.realmId}}/customer/99999")
    assert missing["status"] == 400 and missing["response"]["Fault"]["Error"][0]["code"] == "610"
    # sparse update with the current SyncToken; Merge modified_at moves
    before = c["modified_at"]
    upd = passthrough(
        url,
        "POST",
        CUSTOMER,
        {"Id": job["Id"], "SyncToken": "0", "sparse": True, "DisplayName": "Kitchen Remodel (Acme)"},
    )
    assert upd["status"] == 200 and upd["response"]["Customer"]["SyncToken"] == "1"
    assert upd["response"]["Customer"]["Job"] is True  # sparse keeps the rest
    after = contacts(url, remote_id=job["Id"])[0]
    assert after["name"] == "Kitchen Remodel (Acme)" and after["modified_at"] > before
    # stale SyncToken -> QBO 5010 inside a 200 envelope, nothing changes
    stale = passthrough(
        url, "POST", CUSTOMER, {"Id": job["Id"], "SyncToken": "0", "sparse": True, "DisplayName": "Lost Update"}
    )
    assert stale["status"] == 400
    assert stale["response"]["Fault"]["Error"][0]["code"] == "5010"
    assert stale["response"]["Fault"]["Error"][0]["Message"] == "Stale Object Error"
    assert contacts(url, remote_id=job["Id"])[0]["name"] == "Kitchen Remodel (Acme)"


def test_passthrough_qbo_rules(merge_sandbox: Any) -> None:
    url = merge_sandbox.url
    top = passthrough(url, "POST", CUSTOMER, {"DisplayName": "Beta Builders"})["response"]["Customer"]
    dup = passthrough(url, "POST", CUSTOMER, {"DisplayName": " beta BUILDERS "})
    assert dup["status"] == 400
    err = dup["response"]["Fault"]["Error"][0]
    assert err["code"] == "6240" and err["Message"] == "Duplicate Name Exists Error"
    # the Merge write path shares the namespace with passthrough-created customers
    r = requests.post(f"{url}/contacts", headers=H, json={"model": {"name": "Beta Builders"}}, timeout=T)
    assert r.status_code == 400 and r.json()["errors"][0]["error_code"] == 6240
    assert passthrough(url, "POST", CUSTOMER, {"DisplayName": "A:B"})["status"] == 400
    bad_parent = passthrough(
        url, "POST", CUSTOMER, {"DisplayName": "Orphan", "Job": True, "ParentRef": {"value": "424242"}}
    )
    assert bad_parent["status"] == 400 and bad_parent["response"]["Fault"]["Error"][0]["code"] == "2500"
    no_parent = passthrough(url, "POST", CUSTOMER, {"DisplayName": "Orphan", "Job": True})
    assert no_parent["status"] == 400
    # five levels max (Level 0..4)
    parent_id = top["Id"]
    for level in range(1, 5):
        job = passthrough(
            url, "POST", CUSTOMER, {"DisplayName": f"Level {level}", "Job": True, "ParentRef": {"value": parent_id}}
        )
        assert job["status"] == 200 and job["response"]["Customer"]["Level"] == level
        parent_id = job["response"]["Customer"]["Id"]
    too_deep = passthrough(
        url, "POST", CUSTOMER, {"DisplayName": "Level 5", "Job": True, "ParentRef": {"value": parent_id}}
    )
    assert too_deep["status"] == 400
    # renaming the parent cascades into the children's FullyQualifiedName
    passthrough(url, "POST", CUSTOMER, {"Id": top["Id"], "SyncToken": "0", "sparse": True, "DisplayName": "Beta Homes"})
    deep = passthrough(url, "GET", f"/v3/company/{{{{LINKED_ACCOUNT_ATTR.realmId}}}}/customer/{parent_id}")
    assert deep["response"]["Customer"]["FullyQualifiedName"] == "Beta Homes:Level 1:Level 2:Level 3:Level 4"
    wrong_realm = passthrough(url, "GET", "/v3/company/123/customer/1")
    assert wrong_realm["status"] == 403


def test_passthrough_query(merge_sandbox: Any) -> None:
    url = merge_sandbox.url
    passthrough(url, "POST", CUSTOMER, {"DisplayName": "O'Brien Solar"})
    passthrough(url, "POST", CUSTOMER, {"DisplayName": "Other Co"})
    q = (
        "/v3/company/{{LINKED_ACCOUNT_ATTR.realmId}}/query?query=select * from Customer where DisplayName = "
        "'O\\'Brien Solar'&minorversion=75"
    )
    out = passthrough(url, "GET", q)
    assert out["status"] == 200
    assert [c["DisplayName"] for c in out["response"]["QueryResponse"]["Customer"]] == ["O'Brien Solar"]
    none = passthrough(
        url,
        "GET",
        "/v3/company/{{LINKED_ACCOUNT_ATTR.realmId}}/query?query="
        "select%20*%20from%20Customer%20where%20DisplayName%20%3D%20%27Nobody%27",
    )
    assert none["status"] == 200 and none["response"]["QueryResponse"] == {}
    count = passthrough(
        url, "GET", "/v3/company/{{LINKED_ACCOUNT_ATTR.realmId}}/query?query=select count(*) from Customer"
    )
    assert count["response"]["QueryResponse"]["totalCount"] == 2
    bad = passthrough(url, "GET", "/v3/company/{{LINKED_ACCOUNT_ATTR.realmId}}/query?query=delete Customer")
    assert bad["status"] == 400 and bad["response"]["Fault"]["Error"][0]["code"] == "4000"
    r = requests.post(f"{url}/passthrough", headers=H, json={"path": "/v3/company/x/customer"}, timeout=T)
    assert r.status_code == 400 and "method" in r.json()


def test_passthrough_visible_only_after_sync() -> None:
    server = SandboxServer(MergeApp(api_key=KEY, account_token=TOKEN, passthrough_visible_after_sync=True)).start()
    url = f"{server.root_url}/api/accounting/v1"
    try:
        job = passthrough(url, "POST", CUSTOMER, {"DisplayName": "Deferred Co"})["response"]["Customer"]
        assert contacts(url, remote_id=job["Id"]) == []
        # the name is already taken in QBO even though Merge has not synced it yet
        r = requests.post(f"{url}/contacts", headers=H, json={"model": {"name": "deferred co"}}, timeout=T)
        assert r.status_code == 400
        assert requests.post(f"{url}/sync-status/resync", headers=H, timeout=T).status_code == 200
        assert [c["name"] for c in contacts(url, remote_id=job["Id"])] == ["Deferred Co"]
    finally:
        server.stop()


def test_passthrough_visible_after_delay() -> None:
    server = SandboxServer(MergeApp(api_key=KEY, account_token=TOKEN, passthrough_sync_delay=0.3)).start()
    url = f"{server.root_url}/api/accounting/v1"
    try:
        job = passthrough(url, "POST", CUSTOMER, {"DisplayName": "Later Co"})["response"]["Customer"]
        assert contacts(url, remote_id=job["Id"]) == []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not contacts(url, remote_id=job["Id"]):
            time.sleep(0.1)
        assert [c["name"] for c in contacts(url, remote_id=job["Id"])] == ["Later Co"]
    finally:
        server.stop()
