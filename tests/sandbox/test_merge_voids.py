"""Merge sandbox voids through passthrough, as QuickBooks does them: `invoice?operation=void` and
`payment?operation=update&include=void` with the current SyncToken (5010 otherwise), idempotent re-voids, what Merge's
invoice and payment look like afterwards (at once or after Merge's next sync), payments on a voided invoice, lost
responses, and the admin records of it all (sandbox/merge_voids.py, README "Voids")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from sandbox._server import SandboxServer
from sandbox.merge import MergeApp

KEY = "sandbox-merge-key"
TOKEN = "sandbox-account-token"
H = {"Authorization": f"Bearer {KEY}", "X-Account-Token": TOKEN}
T = 10
QBO = "/v3/company/{{LINKED_ACCOUNT_ATTR.realmId}}"
VOID_INVOICE = f"{QBO}/invoice?operation=void&minorversion=75"
VOID_PAYMENT = f"{QBO}/payment?operation=update&include=void&minorversion=75"


class _Running:
    def __init__(self, server: SandboxServer) -> None:
        self.server, self.app = server, server.app
        self.root = server.root_url
        self.url = f"{server.root_url}/api/accounting/v1"


@contextmanager
def running(**kwargs: Any) -> Iterator[_Running]:
    server = SandboxServer(MergeApp(api_key=KEY, account_token=TOKEN, **kwargs)).start()
    try:
        yield _Running(server)
    finally:
        server.stop()


@pytest.fixture
def sb() -> Iterator[_Running]:
    with running() as started:
        yield started


def get(sb: _Running, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{sb.url}{path}", headers=H, params=params, timeout=T)


def post(sb: _Running, path: str, body: Any) -> requests.Response:
    return requests.post(f"{sb.url}{path}", headers=H, json=body, timeout=T)


def passthrough(sb: _Running, method: str, path: str, data: Any = None, *, expect: int = 200) -> dict[str, Any]:
    body: dict[str, Any] = {"method": method, "path": path, "headers": {"Content-Type": "application/json"}}
    if data is not None:
        body["data"] = json.dumps(data)
    r = post(sb, "/passthrough", body)
    assert r.status_code == expect, r.text
    return r.json() if expect == 200 else {}


def fault_code(out: dict[str, Any]) -> str:
    return str(out["response"]["Fault"]["Error"][0]["code"])


def admin_get(sb: _Running, sub: str) -> Any:
    r = requests.get(f"{sb.root}/__admin/{sub}", timeout=T)
    assert r.status_code == 200, r.text
    return r.json()


def setup_invoice(sb: _Running, amount: float = 1200.0, memo: str | None = "Job 42") -> dict[str, Any]:
    cust = post(sb, "/contacts", {"model": {"name": "Void Test Co", "is_customer": True}}).json()["model"]
    model = {
        "type": "ACCOUNTS_RECEIVABLE",
        "contact": cust["id"],
        "memo": memo,
        "line_items": [{"description": "Panels", "quantity": 4, "unit_price": amount / 4}],
    }
    r = post(sb, "/invoices", {"model": model})
    assert r.status_code == 201, r.text
    return r.json()["model"]


def pay(sb: _Running, inv: dict[str, Any], amount: float) -> dict[str, Any]:
    account = get(sb, "/accounts", name="Undeposited Funds").json()["results"][0]
    model = {
        "contact": inv["contact"],
        "account": account["id"],
        "total_amount": amount,
        "transaction_date": "2025-02-01",
        "applied_to_lines": [
            {"applied_amount": f"{amount:.2f}", "related_object_id": inv["id"], "related_object_type": "INVOICE"}
        ],
    }
    r = post(sb, "/payments", {"model": model})
    assert r.status_code == 201, r.text
    return r.json()["model"]


# --- invoice void -----------------------------------------------------------------------------------
def test_invoice_void_synctoken_and_idempotent_revoid(sb: _Running) -> None:
    inv = setup_invoice(sb)
    read = passthrough(sb, "GET", f"{QBO}/invoice/{inv['remote_id']}")
    assert read["status"] == 200 and read["response"]["Invoice"]["SyncToken"] == "0"
    # a stale SyncToken: QBO's 5010, nothing changes
    stale = passthrough(sb, "POST", VOID_INVOICE, {"Id": inv["remote_id"], "SyncToken": "7"})
    assert stale["status"] == 400 and fault_code(stale) == "5010"
    assert stale["response"]["Fault"]["Error"][0]["Message"] == "Stale Object Error"
    assert get(sb, f"/invoices/{inv['id']}").json()["status"] == "OPEN"
    assert admin_get(sb, "voids")["voids"] == []
    # the void
    out = passthrough(sb, "POST", VOID_INVOICE, {"Id": inv["remote_id"], "SyncToken": "0"})
    assert out["status"] == 200
    qbo = out["response"]["Invoice"]
    assert qbo["Id"] == inv["remote_id"] and qbo["SyncToken"] == "1" and qbo["DocNumber"] == inv["number"]
    assert qbo["TotalAmt"] == 0 and qbo["Balance"] == 0 and qbo["PrivateNote"] == "Voided: Job 42"
    assert qbo["LinkedTxn"] == []
    line = qbo["Line"][0]
    assert (
        line["Amount"] == 0
        and line["SalesItemLineDetail"]["Qty"] == 0
        and line["SalesItemLineDetail"]["UnitPrice"] == 0
    )
    merge = get(sb, f"/invoices/{inv['id']}").json()
    assert merge["status"] == "VOID" and merge["total_amount"] == merge["balance"] == merge["sub_total"] == 0
    assert merge["memo"] == "Voided: Job 42" and merge["modified_at"] > inv["modified_at"]
    assert merge["line_items"][0]["total_amount"] == 0 and merge["line_items"][0]["quantity"] == 0
    assert [i["id"] for i in get(sb, "/invoices", status="VOID").json()["results"]] == [inv["id"]]
    # voiding again with the current SyncToken returns the record, unchanged; with the old one it is stale
    again = passthrough(sb, "POST", VOID_INVOICE, {"Id": inv["remote_id"], "SyncToken": "1"})
    assert again["status"] == 200 and again["response"]["Invoice"]["SyncToken"] == "1"
    assert again["response"]["Invoice"]["PrivateNote"] == "Voided: Job 42"
    assert get(sb, f"/invoices/{inv['id']}").json()["modified_at"] == merge["modified_at"]
    assert fault_code(passthrough(sb, "POST", VOID_INVOICE, {"Id": inv["remote_id"], "SyncToken": "0"})) == "5010"
    voids = admin_get(sb, "voids")["voids"]
    assert [(v["via"], v["entity"], v["merge_id"], v["sync_token"], v["changed"]) for v in voids] == [
        ("passthrough", "Invoice", inv["id"], "1", True),
        ("passthrough", "Invoice", inv["id"], "1", False),
    ]
    assert admin_get(sb, "summary")["voids"] == 2
    record = admin_get(sb, f"invoices/{inv['id']}")
    assert record["pending_sync"] is False and record["merge"]["status"] == "VOID"
    assert record["qbo"]["PrivateNote"] == "Voided: Job 42" and record["merge"]["remote_data"][0]["path"] == "/invoice"
    # a voided invoice can't be edited through Merge either; its DocNumber is free again
    r = requests.patch(f"{sb.url}/invoices/{inv['id']}", headers=H, json={"model": {"memo": "x"}}, timeout=T)
    assert r.status_code == 400 and r.json()["errors"][0]["error_code"] == 6000
    model = {
        "type": "ACCOUNTS_RECEIVABLE",
        "contact": inv["contact"],
        "number": inv["number"],
        "line_items": [{"total_amount": 1}],
    }
    assert post(sb, "/invoices", {"model": model}).status_code == 201


def test_void_errors(sb: _Running) -> None:
    inv = setup_invoice(sb)
    missing = passthrough(sb, "POST", VOID_INVOICE, {"Id": inv["remote_id"]})
    assert fault_code(missing) == "2020" and "SyncToken" in missing["response"]["Fault"]["Error"][0]["Detail"]
    assert fault_code(passthrough(sb, "POST", VOID_INVOICE, {"SyncToken": "0"})) == "2020"
    assert fault_code(passthrough(sb, "POST", VOID_INVOICE, {"Id": "99999", "SyncToken": "0"})) == "610"
    assert fault_code(passthrough(sb, "GET", f"{QBO}/invoice/99999")) == "610"
    # only the void is emulated among invoice/payment writes
    create = passthrough(sb, "POST", f"{QBO}/invoice", {"CustomerRef": {"value": "1"}, "Line": []})
    assert create["status"] == 400 and fault_code(create) == "4001"
    payment = pay(sb, inv, 100.0)
    update = passthrough(
        sb, "POST", f"{QBO}/payment?operation=update", {"Id": payment["remote_id"], "SyncToken": "0", "sparse": True}
    )
    assert fault_code(update) == "4001"
    assert admin_get(sb, "voids")["voids"] == []


def test_void_of_an_invoice_with_a_payment_leaves_unapplied_credit(sb: _Running) -> None:
    inv = setup_invoice(sb)
    payment = pay(sb, inv, 500.0)
    assert get(sb, f"/invoices/{inv['id']}").json()["status"] == "PARTIALLY_PAID"
    sync_token = passthrough(sb, "GET", f"{QBO}/invoice/{inv['remote_id']}")["response"]["Invoice"]["SyncToken"]
    out = passthrough(sb, "POST", VOID_INVOICE, {"Id": inv["remote_id"], "SyncToken": sync_token})
    assert out["status"] == 200 and out["response"]["Invoice"]["LinkedTxn"] == []
    merge = get(sb, f"/invoices/{inv['id']}").json()
    assert merge["status"] == "VOID" and merge["payments"] == [] and merge["applied_payments"] == []
    after = get(sb, f"/payments/{payment['id']}", include_remote_data="true").json()
    assert after["total_amount"] == 500.0 and after["applied_to_lines"] == []  # the money is still received
    qbo_payment = after["remote_data"][0]["data"]
    assert qbo_payment["UnappliedAmt"] == 500.0 and qbo_payment["SyncToken"] == "1"
    voids = admin_get(sb, "voids")["voids"]
    assert voids[0]["also_changed"] == [{"model": "payments", "id": payment["id"]}]


def test_void_refused_with_payments_switch() -> None:
    with running(void_refused_with_payments=True) as sb:
        inv = setup_invoice(sb)
        pay(sb, inv, 100.0)
        out = passthrough(sb, "POST", VOID_INVOICE, {"Id": inv["remote_id"], "SyncToken": "0"})
        assert out["status"] == 400 and fault_code(out) == "6000"
        assert "has payments applied" in out["response"]["Fault"]["Error"][0]["Detail"]
        assert get(sb, f"/invoices/{inv['id']}").json()["status"] == "PARTIALLY_PAID"
        other = setup_invoice_for(sb, inv["contact"])
        assert passthrough(sb, "POST", VOID_INVOICE, {"Id": other["remote_id"], "SyncToken": "0"})["status"] == 200
    assert MergeApp(profile="pessimistic").assumptions.void_refused_with_payments is True
    assert MergeApp().assumptions.void_refused_with_payments is False


def setup_invoice_for(sb: _Running, contact_id: str) -> dict[str, Any]:
    model = {"type": "ACCOUNTS_RECEIVABLE", "contact": contact_id, "line_items": [{"total_amount": 10.0}]}
    return post(sb, "/invoices", {"model": model}).json()["model"]


def test_void_of_a_taxed_invoice_zeroes_its_tax() -> None:
    with running(company_tax="us_ast") as sb:
        inv = setup_invoice(sb, amount=1000.0, memo=None)
        assert inv["total_tax_amount"] == 82.5 and inv["total_amount"] == 1082.5
        out = passthrough(sb, "POST", VOID_INVOICE, {"Id": inv["remote_id"], "SyncToken": "0"})
        qbo = out["response"]["Invoice"]
        assert qbo["PrivateNote"] == "Voided" and qbo["TxnTaxDetail"] == {"TotalTax": 0.0, "TaxLine": []}
        merge = get(sb, f"/invoices/{inv['id']}").json()
        assert (merge["total_tax_amount"], merge["total_amount"], merge["balance"]) == (0, 0, 0)


# --- payment void -----------------------------------------------------------------------------------
def test_payment_void_reopens_the_invoice(sb: _Running) -> None:
    inv = setup_invoice(sb)
    payment = pay(sb, inv, 1200.0)
    assert get(sb, f"/invoices/{inv['id']}").json()["status"] == "PAID"
    read = passthrough(sb, "GET", f"{QBO}/payment/{payment['remote_id']}")["response"]["Payment"]
    assert read["SyncToken"] == "0" and read["TotalAmt"] == 1200.0
    stale = passthrough(sb, "POST", VOID_PAYMENT, {"Id": payment["remote_id"], "SyncToken": "3", "sparse": True})
    assert fault_code(stale) == "5010"
    out = passthrough(sb, "POST", VOID_PAYMENT, {"Id": payment["remote_id"], "SyncToken": "0", "sparse": True})
    assert out["status"] == 200
    qbo = out["response"]["Payment"]
    assert qbo["TotalAmt"] == 0 and qbo["Line"] == [] and qbo["UnappliedAmt"] == 0
    assert qbo["PrivateNote"] == "Voided" and qbo["SyncToken"] == "1"
    merge = get(sb, f"/payments/{payment['id']}").json()
    assert merge["total_amount"] == 0 and merge["applied_to_lines"] == []
    reopened = get(sb, f"/invoices/{inv['id']}").json()
    assert reopened["status"] == "OPEN" and reopened["balance"] == 1200.0 and reopened["payments"] == []
    # re-void: the record, unchanged
    again = passthrough(sb, "POST", VOID_PAYMENT, {"Id": payment["remote_id"], "SyncToken": "1", "sparse": True})
    assert again["status"] == 200 and again["response"]["Payment"]["SyncToken"] == "1"
    voids = admin_get(sb, "voids")["voids"]
    assert [(v["entity"], v["changed"]) for v in voids] == [("Payment", True), ("Payment", False)]
    assert voids[0]["also_changed"] == [{"model": "invoices", "id": inv["id"]}]
    assert admin_get(sb, f"payments/{payment['id']}")["qbo"]["PrivateNote"] == "Voided"
    # a voided payment can't be edited through Merge
    r = requests.patch(f"{sb.url}/payments/{payment['id']}", headers=H, json={"model": {"total_amount": 5}}, timeout=T)
    assert r.status_code == 400 and r.json()["errors"][0]["error_code"] == 6000
    # the admin helpers void too ("done in the QuickBooks UI"), and are recorded
    assert requests.post(f"{sb.root}/__admin/invoices/{inv['id']}/void", timeout=T).json()["status"] == "VOID"
    assert admin_get(sb, "voids")["voids"][-1]["via"] == "admin"


# --- when Merge shows it --------------------------------------------------------------------------------
def test_void_visible_in_merge_only_after_sync() -> None:
    with running(passthrough_void_visible_after_sync=True) as sb:
        inv = setup_invoice(sb)
        payment = pay(sb, inv, 300.0)
        before = get(sb, f"/invoices/{inv['id']}").json()
        out = passthrough(sb, "POST", VOID_INVOICE, {"Id": inv["remote_id"], "SyncToken": "0"})
        assert out["status"] == 200 and out["response"]["Invoice"]["TotalAmt"] == 0
        # QuickBooks has voided it; Merge still shows its last sync, remote_data included
        assert passthrough(sb, "GET", f"{QBO}/invoice/{inv['remote_id']}")["response"]["Invoice"]["Balance"] == 0
        stale = get(sb, f"/invoices/{inv['id']}", include_remote_data="true").json()
        assert stale["status"] == "PARTIALLY_PAID" and stale["total_amount"] == 1200.0
        assert stale["modified_at"] == before["modified_at"] and stale["remote_data"][0]["data"]["TotalAmt"] == 1200.0
        assert get(sb, "/invoices", status="VOID").json()["results"] == []
        assert get(sb, "/invoices", modified_after=before["modified_at"]).json()["results"] == []
        assert get(sb, f"/payments/{payment['id']}").json()["applied_to_lines"] != []
        assert admin_get(sb, f"invoices/{inv['id']}")["pending_sync"] is True
        assert admin_get(sb, "summary")["pending_sync"] == 2  # the invoice and the payment it unapplied
        # Merge's next sync
        assert post(sb, "/sync-status/resync", {}).status_code == 200
        synced = get(sb, f"/invoices/{inv['id']}").json()
        assert synced["status"] == "VOID" and synced["modified_at"] > before["modified_at"]
        assert [i["id"] for i in get(sb, "/invoices", modified_after=before["modified_at"]).json()["results"]] == [
            inv["id"]
        ]
        assert get(sb, f"/payments/{payment['id']}").json()["applied_to_lines"] == []
        assert admin_get(sb, f"invoices/{inv['id']}")["pending_sync"] is False
    pess = MergeApp(profile="pessimistic").assumptions
    assert pess.passthrough_void_visible_after_sync is True
    assert MergeApp().assumptions.passthrough_void_visible_after_sync is False


# --- fault injection -----------------------------------------------------------------------------------
def test_lost_response_on_a_void_then_retry(sb: _Running) -> None:
    inv = setup_invoice(sb)
    sb.app.faults.update(lost_response_rate=1.0, only_paths=["operation=void"])
    # other passthrough calls are not hit by only_paths=["operation=void"]
    made = passthrough(sb, "POST", f"{QBO}/customer", {"DisplayName": "Not Faulted"})
    assert made["status"] == 200
    body = {"method": "POST", "path": VOID_INVOICE, "data": json.dumps({"Id": inv["remote_id"], "SyncToken": "0"})}
    lost = post(sb, "/passthrough", body)
    assert lost.status_code == 500  # the void happened, the answer was lost
    sb.app.faults.reset()
    assert [v["changed"] for v in admin_get(sb, "voids")["voids"]] == [True]
    # the client retries with the SyncToken it had: stale now; it reads the invoice and sees it voided
    assert fault_code(passthrough(sb, "POST", VOID_INVOICE, {"Id": inv["remote_id"], "SyncToken": "0"})) == "5010"
    current = passthrough(sb, "GET", f"{QBO}/invoice/{inv['remote_id']}")["response"]["Invoice"]
    assert current["TotalAmt"] == 0 and current["SyncToken"] == "1"
    again = passthrough(sb, "POST", VOID_INVOICE, {"Id": inv["remote_id"], "SyncToken": current["SyncToken"]})
    assert again["status"] == 200
    assert get(sb, f"/invoices/{inv['id']}").json()["status"] == "VOID"
    # error_rate with only_paths: the void is refused before it reaches QuickBooks
    other = setup_invoice_for(sb, inv["contact"])
    sb.app.faults.update(error_rate=1.0, only_paths=["invoice?operation=void"])
    body = {"method": "POST", "path": VOID_INVOICE, "data": json.dumps({"Id": other["remote_id"], "SyncToken": "0"})}
    assert post(sb, "/passthrough", body).status_code == 500
    sb.app.faults.reset()
    assert get(sb, f"/invoices/{other['id']}").json()["status"] == "OPEN"
