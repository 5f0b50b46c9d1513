"""Merge sandbox profiles over HTTP: each `MergeAssumptions` switch in its pessimistic reading, next to the
optimistic default it must leave unchanged (sandbox/profiles.py, README "Merge" ASSUMPTIONS)."""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
import requests

from sandbox._server import SandboxServer
from sandbox.merge import MergeApp
from sandbox.merge_seed import PRESET_EMPLOYEES, PRESET_VENDORS
from sandbox.profiles import MergeAssumptions
from tests.conftest import stop_process

KEY = "sandbox-merge-key"
TOKEN = "sandbox-account-token"
H = {"Authorization": f"Bearer {KEY}", "X-Account-Token": TOKEN}
T = 10
QBO = "/v3/company/{{LINKED_ACCOUNT_ATTR.realmId}}"


class _Running:
    def __init__(self, server: SandboxServer) -> None:
        self.server, self.app = server, cast(MergeApp, server.app)
        self.root = server.root_url
        self.url = f"{server.root_url}/api/accounting/v1"


@contextmanager
def running(**kwargs: Any) -> Iterator[_Running]:
    """A Merge sandbox with these MergeApp options (profile, switches), stopped afterwards."""
    server = SandboxServer(MergeApp(api_key=KEY, account_token=TOKEN, **kwargs)).start()
    try:
        yield _Running(server)
    finally:
        server.stop()


@pytest.fixture
def optimistic() -> Iterator[_Running]:
    with running() as sb:
        yield sb


@pytest.fixture
def pessimistic() -> Iterator[_Running]:
    with running(profile="pessimistic") as sb:
        yield sb


def get(sb: _Running, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{sb.url}{path}", headers=H, params=params, timeout=T)


def post(sb: _Running, path: str, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(f"{sb.url}{path}", headers={**H, **(headers or {})}, json=body, timeout=T)


def admin(sb: _Running, sub: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{sb.root}/__admin/{sub}", json=body, timeout=T)


def contacts(sb: _Running, **params: Any) -> list[dict[str, Any]]:
    r = get(sb, "/contacts", **params)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def new_customer(sb: _Running, name: str) -> dict[str, Any]:
    r = post(sb, "/contacts", {"model": {"name": name, "is_customer": True}})
    assert r.status_code == 201, r.text
    return r.json()["model"]


def passthrough(sb: _Running, method: str, path: str, data: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "method": method,
        "path": f"{QBO}{path}",
        "request_format": "JSON",
        "headers": {"Content-Type": "application/json"},
    }
    if data is not None:
        body["data"] = json.dumps(data)
    r = post(sb, "/passthrough", body)
    assert r.status_code == 200, r.text  # QBO's status travels inside the envelope
    return r.json()


def fault_code(out: dict[str, Any]) -> str:
    return out["response"]["Fault"]["Error"][0]["code"]


# --- profile selection -------------------------------------------------------------------------------
def test_profile_selection_and_overrides() -> None:
    """No profile is the optimistic set; switches and the legacy keyword override a profile."""
    assert MergeApp().assumptions == MergeApp(profile="optimistic").assumptions == MergeAssumptions()
    pess = MergeApp(profile="pessimistic").assumptions
    assert (
        pess.idempotency_keys,
        pess.passthrough_visible_after_sync,
        pess.separate_id_spaces,
        pess.employees_hold_names,
        pess.linked_account_status,
    ) == (False, True, True, True, "COMPLETE")
    assert MergeApp(profile="pessimistic", idempotency_keys=True).assumptions.idempotency_keys is True
    assert MergeApp(profile="pessimistic", passthrough_visible_after_sync=False).deferred_passthrough is False
    assert MergeApp(passthrough_visible_after_sync=True).deferred_passthrough is True
    custom = MergeAssumptions(separate_id_spaces=True)
    assert MergeApp(profile=custom).assumptions == custom
    for bad, message in (
        ({"profile": "gloomy"}, "unknown sandbox profile 'gloomy'"),
        ({"no_such_switch": True}, r"unknown MergeAssumptions switch\(es\): no_such_switch"),
        ({"linked_account_status": "BROKEN"}, "linked_account_status must be one of"),
    ):
        with pytest.raises(ValueError, match=message):
            MergeApp(**bad)


# --- idempotency_keys -------------------------------------------------------------------------------
def test_idempotency_keys_ignored_when_pessimistic(optimistic: _Running, pessimistic: _Running) -> None:
    key = {"Idempotency-Key": "same-key"}
    # optimistic (unchanged): replay, then 400 on reuse with another body
    body = {"model": {"name": "Idem Co"}}
    first, again = post(optimistic, "/contacts", body, key), post(optimistic, "/contacts", body, key)
    assert first.status_code == again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    reuse = post(optimistic, "/contacts", {"model": {"name": "Other Co"}}, key)
    assert reuse.status_code == 400 and reuse.json()["errors"][0]["title"] == "Invalid Idempotency Key Reuse"
    # pessimistic: the key means nothing: a retry is a second write (here the DisplayName rule stops it) ...
    first, again = post(pessimistic, "/contacts", body, key), post(pessimistic, "/contacts", body, key)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    assert again.status_code == 400 and again.json()["errors"][0]["error_code"] == 6240
    reuse = post(pessimistic, "/contacts", {"model": {"name": "Other Co"}}, key)
    assert reuse.status_code == 201 and "Idempotent-Replayed" not in reuse.headers
    # ... and a retried invoice is a duplicate invoice
    model = {
        "type": "ACCOUNTS_RECEIVABLE",
        "contact": first.json()["model"]["id"],
        "line_items": [{"description": "Install", "total_amount": 100.0}],
    }
    ids = {
        post(pessimistic, "/invoices", {"model": model}, {"Idempotency-Key": "inv-1"}).json()["model"]["id"]
        for _ in range(2)
    }
    assert len(ids) == 2 and len(get(pessimistic, "/invoices").json()["results"]) == 2


# --- passthrough_visible_after_sync -----------------------------------------------------------------
def test_passthrough_visible_after_sync_when_pessimistic(optimistic: _Running, pessimistic: _Running) -> None:
    made = passthrough(optimistic, "POST", "/customer", {"DisplayName": "Now Co"})["response"]["Customer"]
    assert [c["name"] for c in contacts(optimistic, remote_id=made["Id"], is_customer="true")] == ["Now Co"]
    made = passthrough(pessimistic, "POST", "/customer", {"DisplayName": "Later Co"})["response"]["Customer"]
    assert contacts(pessimistic, remote_id=made["Id"], is_customer="true") == []
    assert post(pessimistic, "/contacts", {"model": {"name": "later co"}}).status_code == 400  # name taken in QBO
    assert post(pessimistic, "/sync-status/resync", None).status_code == 200
    assert [c["name"] for c in contacts(pessimistic, remote_id=made["Id"], is_customer="true")] == ["Later Co"]


# --- separate_id_spaces -----------------------------------------------------------------------------
def test_separate_id_spaces_customer_and_vendor_share_ids(optimistic: _Running, pessimistic: _Running) -> None:
    # optimistic (unchanged): one counter, a fresh company has no vendors, remote_ids never repeat
    assert contacts(optimistic) == []
    cust = new_customer(optimistic, "Solo Customer")
    assert len(contacts(optimistic, remote_id=cust["remote_id"])) == 1
    assert (
        admin(
            optimistic,
            "contacts",
            {"name": "Clash Vendor", "is_supplier": True, "is_customer": False, "qbo_id": cust["remote_id"]},
        ).status_code
        == 400
    )
    # pessimistic: the preset vendors hold Vendor Ids 1, 2; the first customer gets Customer Id 1
    vendors = contacts(pessimistic, is_supplier="true")
    assert [(v["name"], v["remote_id"]) for v in vendors] == [(n, str(i + 1)) for i, n in enumerate(PRESET_VENDORS)]
    cust = new_customer(pessimistic, "First Customer")
    assert cust["remote_id"] == "1"
    both = contacts(pessimistic, remote_id="1")
    assert sorted((c["name"], c["is_customer"]) for c in both) == [("First Customer", True), (PRESET_VENDORS[0], False)]
    assert [c["name"] for c in contacts(pessimistic, remote_id="1", is_customer="true")] == ["First Customer"]
    assert [c["name"] for c in contacts(pessimistic, remote_id="1", is_customer="false")] == [PRESET_VENDORS[0]]
    # passthrough reads each entity's own Id space
    assert passthrough(pessimistic, "GET", "/customer/1")["response"]["Customer"]["DisplayName"] == "First Customer"
    assert passthrough(pessimistic, "GET", "/vendor/1")["response"]["Vendor"]["DisplayName"] == PRESET_VENDORS[0]
    # admin: customer 58 and vendor 58 on purpose; a counter continues after a chosen Id
    r = admin(pessimistic, "contacts", {"name": "Customer 58", "qbo_id": "58"})
    assert r.status_code == 201 and r.json()["remote_id"] == "58"
    r = admin(pessimistic, "contacts", {"name": "Vendor 58", "is_supplier": True, "is_customer": False, "qbo_id": "58"})
    assert r.status_code == 201 and r.json()["remote_id"] == "58" and r.json()["is_supplier"]
    assert (
        admin(
            pessimistic,
            "contacts",
            {"name": "Vendor 58 Again", "is_supplier": True, "is_customer": False, "qbo_id": "58"},
        ).status_code
        == 400
    )  # taken among vendors
    assert sorted(c["name"] for c in contacts(pessimistic, remote_id="58")) == ["Customer 58", "Vendor 58"]
    table = pessimistic.app.state.contacts
    assert (table.by_remote_id("58") or {}).get("name") == "Customer 58"  # customers first
    assert (table.by_remote_id("58", "Vendor") or {}).get("name") == "Vendor 58"
    assert new_customer(pessimistic, "After 58")["remote_id"] == "59"
    # admin invoices by QBO Id pick the customer; other entities have their own counters too
    inv = pessimistic.app.create_invoice("1", amount=50)
    assert inv["contact"] == cust["id"] and inv["remote_id"] == "1"


def test_separate_id_spaces_passthrough_job_resolves_to_the_customer(pessimistic: _Running) -> None:
    """A passthrough job whose Id a vendor also holds: after the sync, remote_id + is_customer finds the job."""
    parent = new_customer(pessimistic, "Parent Co")
    job = passthrough(
        pessimistic,
        "POST",
        "/customer",
        {"DisplayName": "Parent Co - Roof", "Job": True, "ParentRef": {"value": parent["remote_id"]}},
    )
    job_id = job["response"]["Customer"]["Id"]
    assert job_id == "2"  # same as the second preset vendor
    post(pessimistic, "/sync-status/resync", None)
    found = contacts(pessimistic, remote_id=job_id, is_customer="true", include_remote_data="true")
    assert [c["name"] for c in found] == ["Parent Co - Roof"]
    assert found[0]["remote_data"][0]["data"]["ParentRef"]["value"] == parent["remote_id"]


# --- employees_hold_names ---------------------------------------------------------------------------
def test_employees_hold_names_when_pessimistic(optimistic: _Running, pessimistic: _Running) -> None:
    name = PRESET_EMPLOYEES[0]
    # optimistic (unchanged): no employees, the name is free, Employee is not queryable
    assert new_customer(optimistic, name)["name"] == name
    assert fault_code(passthrough(optimistic, "GET", "/query?query=select * from Employee")) == "4000"
    assert admin(optimistic, "employees", {"name": "Nobody"}).status_code == 400
    # pessimistic: an employee's DisplayName is taken, via Merge and via passthrough alike
    r = post(pessimistic, "/contacts", {"model": {"name": name.upper(), "is_customer": True}})
    assert r.status_code == 400
    err = r.json()["errors"][0]
    assert err["problem_type"] == "PROVIDER_ERROR" and err["error_code"] == 6240
    assert "Duplicate Name Exists Error" in err["title"]
    out = passthrough(pessimistic, "POST", "/customer", {"DisplayName": name})
    assert out["status"] == 400 and fault_code(out) == "6240"
    # employees are not accounting contacts, but QBO's query finds them
    assert contacts(pessimistic, name=name) == []
    assert all(c["name"] not in PRESET_EMPLOYEES for c in contacts(pessimistic))
    found = passthrough(pessimistic, "GET", "/query?query=select * from Employee")["response"]["QueryResponse"]
    assert sorted(e["DisplayName"] for e in found["Employee"]) == sorted(PRESET_EMPLOYEES)
    # admin: another employee blocks its name too, and can't take a customer's name
    r = admin(pessimistic, "employees", {"name": "Casey Crew"})
    assert r.status_code == 201 and r.json()["DisplayName"] == "Casey Crew"
    assert post(pessimistic, "/contacts", {"model": {"name": "Casey Crew"}}).json()["errors"][0]["error_code"] == 6240
    new_customer(pessimistic, "Taken By Customer")
    assert admin(pessimistic, "employees", {"name": "Taken By Customer"}).status_code == 400
    got = passthrough(pessimistic, "GET", f"/employee/{r.json()['Id']}")["response"]["Employee"]
    assert got["DisplayName"] == "Casey Crew"


# --- linked_account_status --------------------------------------------------------------------------
def test_linked_account_status_reported_and_relink_needed(optimistic: _Running) -> None:
    org = {"Authorization": f"Bearer {KEY}"}
    assert get(optimistic, "/account-details").json()["status"] == "COMPLETE"
    assert (
        requests.get(f"{optimistic.url}/linked-accounts", headers=org, timeout=T).json()["results"][0]["status"]
        == "COMPLETE"
    )
    with running(profile="pessimistic", linked_account_status="RELINK_NEEDED") as sb:
        assert get(sb, "/account-details").json()["status"] == "RELINK_NEEDED"
        listed = requests.get(
            f"{sb.url}/linked-accounts", headers=org, params={"status": "RELINK_NEEDED"}, timeout=T
        ).json()["results"]
        assert [a["status"] for a in listed] == ["RELINK_NEEDED"]
        meta = get(sb, "/contacts/meta/post").json()["status"]
        assert meta == {"linked_account_status": "RELINK_NEEDED", "can_make_request": False}
        # reads answer from Merge's copy; writes and passthrough cannot reach QuickBooks
        assert get(sb, "/contacts").status_code == 200 and get(sb, "/invoices").status_code == 200
        r = post(sb, "/contacts", {"model": {"name": "Blocked Co"}})
        assert r.status_code == 400 and r.json()["errors"][0]["problem_type"] == "CREDENTIAL_REFRESH_FAILED"
        out = passthrough(sb, "GET", "/customer/1")
        assert out["status"] == 401 and out["response"]["Fault"]["type"] == "AUTHENTICATION"
        assert {s["last_sync_result"] for s in get(sb, "/sync-status").json()["results"]} == {"FAILED"}
        # admin: the end user relinked
        assert admin(sb, "linked-account-status", {"status": "BROKEN"}).status_code == 400
        r = admin(sb, "linked-account-status", {"status": "COMPLETE"})
        assert r.status_code == 200 and r.json()["status"] == "COMPLETE"
        assert post(sb, "/contacts", {"model": {"name": "Unblocked Co"}}).status_code == 201
        # IDLE and INCOMPLETE are only reported
        sb.app.set_linked_account_status("IDLE")
        assert get(sb, "/account-details").json()["status"] == "IDLE"
        assert post(sb, "/contacts", {"model": {"name": "Idle Co"}}).status_code == 201


# --- warnings (no switch: both profiles) ------------------------------------------------------------
def test_ignored_fields_warn_in_both_profiles(optimistic: _Running, pessimistic: _Running) -> None:
    for sb in (optimistic, pessimistic):
        cust = new_customer(sb, "Warned Co")
        model = {
            "type": "ACCOUNTS_RECEIVABLE",
            "contact": cust["id"],
            "status": "PAID",
            "line_items": [{"description": "Install", "total_amount": 10.0}],
        }
        r = post(sb, "/invoices", {"model": model})
        assert r.status_code == 201 and r.json()["model"]["status"] == "OPEN"
        assert "model/status" in [w["source"]["pointer"] for w in r.json()["warnings"]]


# --- CLI --------------------------------------------------------------------------------------------
def test_cli_starts_with_pessimistic_profile() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.merge", "--profile", "pessimistic", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 30
        line = ""
        while not line and time.monotonic() < deadline and proc.poll() is None:
            if sel.select(timeout=0.5):
                line = proc.stdout.readline()
        stderr = proc.stderr.read() if proc.stderr is not None and proc.poll() is not None else ""
        assert "profile pessimistic" in line, line or stderr
        url = line.split()[3]
        assert url.endswith("/api/accounting/v1")
        root = url.split("/api/")[0]
        assert requests.get(f"{root}/__admin/assumptions", timeout=T).json()["profile"] == "pessimistic"
        names = [c["name"] for c in requests.get(f"{url}/contacts", headers=H, timeout=T).json()["results"]]
        assert names == PRESET_VENDORS
    finally:
        stop_process(proc)
