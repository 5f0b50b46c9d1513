"""Merge sandbox over HTTP: auth, pagination, filters, expand, QBO write rules, idempotency, rate limits, link flow."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
import requests

from sandbox._server import SandboxServer
from sandbox.merge import MergeApp
from sandbox.merge_seed import seed_merge
from tests.conftest import stop_process

KEY = "sandbox-merge-key"
TOKEN = "sandbox-account-token"
H = {"Authorization": f"Bearer {KEY}", "X-Account-Token": TOKEN}
T = 10


class _Running:
    def __init__(self, server: SandboxServer) -> None:
        self.server, self.app = server, server.app
        self.url = f"{server.root_url}/api/accounting/v1"
        self.state = server.app.state


def start(**kwargs: Any) -> _Running:
    """A sandbox with non-default options (the shared fixture uses the defaults)."""
    return _Running(SandboxServer(MergeApp(api_key=KEY, account_token=TOKEN, **kwargs)).start())


def get(sb: Any, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{sb.url}{path}", headers=H, params=params, timeout=T)


def post(sb: Any, path: str, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(f"{sb.url}{path}", headers={**H, **(headers or {})}, json=body, timeout=T)


def patch(sb: Any, path: str, body: Any) -> requests.Response:
    return requests.patch(f"{sb.url}{path}", headers=H, json=body, timeout=T)


def contact(sb: Any, name: str, **extra: Any) -> dict[str, Any]:
    r = post(sb, "/contacts", {"model": {"name": name, "is_customer": True, **extra}})
    assert r.status_code == 201, r.text
    return r.json()["model"]


def invoice(sb: Any, contact_id: str, amount: float = 100.0, **extra: Any) -> dict[str, Any]:
    model = {
        "type": "ACCOUNTS_RECEIVABLE",
        "contact": contact_id,
        "line_items": [{"description": "Install", "total_amount": amount}],
        **extra,
    }
    r = post(sb, "/invoices", {"model": model})
    assert r.status_code == 201, r.text
    return r.json()["model"]


def undeposited(sb: Any) -> str:
    return get(sb, "/accounts", name="Undeposited Funds").json()["results"][0]["id"]


def errors_of(r: requests.Response) -> list[dict[str, Any]]:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["warnings"] is not None
    return body["errors"]


# --- auth --------------------------------------------------------------------------------------------
def test_auth_failures(merge_sandbox: Any) -> None:
    url = f"{merge_sandbox.url}/contacts"
    r = requests.get(url, headers={"X-Account-Token": TOKEN}, timeout=T)
    assert r.status_code == 401 and "credentials" in r.json()["detail"]
    r = requests.get(url, headers={"Authorization": "Bearer nope", "X-Account-Token": TOKEN}, timeout=T)
    assert r.status_code == 401 and r.json() == {"detail": "Invalid token."}
    r = requests.get(url, headers={"Authorization": f"Token {KEY}", "X-Account-Token": TOKEN}, timeout=T)
    assert r.status_code == 401
    r = requests.get(url, headers={"Authorization": f"Bearer {KEY}"}, timeout=T)
    assert r.status_code == 401 and "X-Account-Token" in r.json()["detail"]
    r = requests.get(url, headers={"Authorization": f"Bearer {KEY}", "X-Account-Token": "other"}, timeout=T)
    assert r.status_code == 401
    # org-level endpoints need only the API key
    r = requests.get(f"{merge_sandbox.url}/linked-accounts", headers={"Authorization": f"Bearer {KEY}"}, timeout=T)
    assert r.status_code == 200 and r.json()["results"][0]["integration"]["slug"] == "quickbooks-online"


def test_delete_account_invalidates_token(merge_sandbox: Any) -> None:
    details = get(merge_sandbox, "/account-details").json()
    assert details["status"] == "COMPLETE" and details["integration"] == "QuickBooks Online"
    assert details["integration_slug"] == "quickbooks-online"
    assert details["end_user_organization_name"] == "Sandbox Solar Co"
    r = requests.post(f"{merge_sandbox.url}/delete-account", headers=H, timeout=T)
    assert r.status_code == 200 and r.content == b""
    for path in ("/contacts", "/account-details", "/sync-status"):
        r = get(merge_sandbox, path)
        assert r.status_code == 401 and "deleted" in r.json()["detail"]
    assert get(merge_sandbox, "/linked-accounts").json()["results"] == []


# --- pagination and filters --------------------------------------------------------------------------
def test_cursor_pagination_walks_everything_in_created_order(merge_sandbox: Any) -> None:
    seed_merge(merge_sandbox.app, customers=75, seed=7)
    r = get(merge_sandbox, "/contacts")
    body = r.json()
    assert set(body) == {"next", "previous", "results"} and len(body["results"]) == 30  # default page size
    assert body["previous"] is None
    assert base64.b64decode(body["next"])  # opaque base64 cursor
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while pages < 20:
        body = get(merge_sandbox, "/contacts", page_size=20, **({"cursor": cursor} if cursor else {})).json()
        seen += body["results"]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == 4 and len(seen) == 75 and len({c["id"] for c in seen}) == 75
    assert [c["created_at"] for c in seen] == sorted(c["created_at"] for c in seen)
    # previous goes back exactly one page
    p1 = get(merge_sandbox, "/contacts", page_size=20).json()
    p2 = get(merge_sandbox, "/contacts", page_size=20, cursor=p1["next"]).json()
    back = get(merge_sandbox, "/contacts", page_size=20, cursor=p2["previous"]).json()
    assert [c["id"] for c in back["results"]] == [c["id"] for c in p1["results"]]
    assert back["previous"] is None


@pytest.mark.parametrize(
    ("size", "expected"), [("1", 1), ("100", 100), ("101", 100), ("5000", 100), ("0", 30), ("-3", 30), ("abc", 30)]
)
def test_page_size_edges(merge_sandbox: Any, size: str, expected: int) -> None:
    seed_merge(merge_sandbox.app, customers=120, seed=1)
    assert len(get(merge_sandbox, "/contacts", page_size=size).json()["results"]) == expected


def test_bad_cursor_and_bad_params(merge_sandbox: Any) -> None:
    assert get(merge_sandbox, "/contacts", cursor="!!garbage").status_code == 404
    r = get(merge_sandbox, "/contacts", modified_after="yesterday")
    assert r.status_code == 400 and "modified_after" in r.json()
    r = get(merge_sandbox, "/invoices", expand="line_items,bogus")
    assert r.status_code == 400 and "expand" in r.json()


def test_modified_after_remote_id_and_deleted(merge_sandbox: Any) -> None:
    a = contact(merge_sandbox, "Alpha Homes")
    b = contact(merge_sandbox, "Beta Homes")
    time.sleep(0.01)
    mark = b["modified_at"]
    c = contact(merge_sandbox, "Gamma Homes")
    assert [x["id"] for x in get(merge_sandbox, "/contacts", modified_after=mark).json()["results"]] == [c["id"]]
    r = patch(merge_sandbox, f"/contacts/{a['id']}", {"model": {"email_address": "ap@alpha.example"}})
    assert r.status_code == 200 and r.json()["model"]["modified_at"] > mark
    ids = [x["id"] for x in get(merge_sandbox, "/contacts", modified_after=mark).json()["results"]]
    assert ids == [a["id"], c["id"]]  # still ordered by created_at
    assert [x["id"] for x in get(merge_sandbox, "/contacts", modified_before=c["modified_at"]).json()["results"]] == [
        b["id"]
    ]  # strict bounds; a was modified after
    assert [x["id"] for x in get(merge_sandbox, "/contacts", remote_id=b["remote_id"]).json()["results"]] == [b["id"]]
    assert get(merge_sandbox, "/contacts", remote_id="999999").json()["results"] == []
    assert [x["id"] for x in get(merge_sandbox, "/contacts", created_after=b["created_at"]).json()["results"]] == [
        c["id"]
    ]
    merge_sandbox.app.delete("contacts", b["id"])
    assert b["id"] not in {x["id"] for x in get(merge_sandbox, "/contacts").json()["results"]}
    rows = get(merge_sandbox, "/contacts", include_deleted_data="true").json()["results"]
    assert {x["id"]: x["remote_was_deleted"] for x in rows}[b["id"]] is True


def test_contact_filters_and_remote_data(merge_sandbox: Any) -> None:
    acme = contact(merge_sandbox, "Acme Corp", email_address="AP@acme.example")
    merge_sandbox.app.add_contact("Supply House", is_customer=False, is_supplier=True)
    job = merge_sandbox.app.add_contact("Acme Corp - Roof", parent=acme["id"])
    assert {c["name"] for c in get(merge_sandbox, "/contacts", is_customer="true").json()["results"]} == {
        "Acme Corp",
        "Acme Corp - Roof",
    }
    assert [c["name"] for c in get(merge_sandbox, "/contacts", is_customer="false").json()["results"]] == [
        "Supply House"
    ]
    assert [c["id"] for c in get(merge_sandbox, "/contacts", name="  acme corp ").json()["results"]] == [acme["id"]]
    assert [c["id"] for c in get(merge_sandbox, "/contacts", email_address="ap@acme.example").json()["results"]] == [
        acme["id"]
    ]
    plain = get(merge_sandbox, f"/contacts/{job['id']}").json()
    assert plain["remote_data"] is None
    rich = get(merge_sandbox, f"/contacts/{job['id']}", include_remote_data="true").json()
    data = rich["remote_data"][0]["data"]
    assert data["Job"] is True and data["ParentRef"]["value"] == acme["remote_id"]
    assert data["FullyQualifiedName"] == "Acme Corp:Acme Corp - Roof" and data["DisplayName"] == "Acme Corp - Roof"
    assert data["Id"] == job["remote_id"]


def test_expand_invoice_and_payment(merge_sandbox: Any) -> None:
    c = contact(merge_sandbox, "Expand Co")
    inv = invoice(merge_sandbox, c["id"], 250)
    pay = post(
        merge_sandbox,
        "/payments",
        {
            "model": {
                "contact": c["id"],
                "account": undeposited(merge_sandbox),
                "total_amount": 100,
                "transaction_date": "2025-03-01T00:00:00Z",
                "applied_to_lines": [
                    {"applied_amount": "100.00", "related_object_id": inv["id"], "related_object_type": "INVOICE"}
                ],
            }
        },
    ).json()["model"]
    plain = get(merge_sandbox, f"/invoices/{inv['id']}").json()
    assert plain["contact"] == c["id"] and plain["payments"] == [pay["id"]]
    assert plain["applied_payments"] == [pay["applied_to_lines"][0]["id"]]
    assert plain["line_items"][0]["total_amount"] == 250
    full = get(merge_sandbox, "/invoices", expand="line_items,payments,applied_payments,contact").json()["results"][0]
    assert full["contact"]["name"] == "Expand Co"
    assert full["payments"][0]["id"] == pay["id"] and full["payments"][0]["total_amount"] == 100
    assert full["applied_payments"][0]["applied_amount"] == "100.00"
    p = get(merge_sandbox, f"/payments/{pay['id']}", expand="applied_to_lines,contact,account").json()
    assert p["contact"]["id"] == c["id"] and p["account"]["name"] == "Undeposited Funds"
    assert p["applied_to_lines"][0]["related_object_id"] == inv["id"]
    assert get(merge_sandbox, "/payments", contact_id=c["id"]).json()["results"][0]["id"] == pay["id"]
    assert get(merge_sandbox, "/payments", contact_id="nope").json()["results"] == []
    # invoice filters
    assert [
        i["id"]
        for i in get(
            merge_sandbox, "/invoices", contact_id=c["id"], type="ACCOUNTS_RECEIVABLE", status="PARTIALLY_PAID"
        ).json()["results"]
    ] == [inv["id"]]
    assert get(merge_sandbox, "/invoices", status="PAID").json()["results"] == []
    assert get(merge_sandbox, "/invoices", number=inv["number"]).json()["results"][0]["id"] == inv["id"]


# --- writes and QBO rules ----------------------------------------------------------------------------
def test_contact_write_rules(merge_sandbox: Any) -> None:
    first = contact(merge_sandbox, "Sunrise Solar")
    assert first["remote_id"].isdigit() and first["is_customer"] is True
    errs = errors_of(post(merge_sandbox, "/contacts", {"model": {"name": "  SUNRISE solar "}}))
    assert errs[0]["problem_type"] == "PROVIDER_ERROR" and errs[0]["error_code"] == 6240
    assert "Duplicate Name Exists Error" in errs[0]["title"]
    # jobs share the namespace
    merge_sandbox.app.add_contact("Sunrise Solar - Job 1", parent=first["id"])
    assert (
        errors_of(post(merge_sandbox, "/contacts", {"model": {"name": "sunrise solar - job 1"}}))[0]["error_code"]
        == 6240
    )
    assert "colon" in errors_of(post(merge_sandbox, "/contacts", {"model": {"name": "A:B"}}))[0]["detail"]
    assert errors_of(post(merge_sandbox, "/contacts", {"model": {"name": "x" * 101}}))[0]["error_code"] == 2050
    assert contact(merge_sandbox, "y" * 100)["name"] == "y" * 100
    errs = errors_of(post(merge_sandbox, "/contacts", {"model": {"email_address": "a@b.c"}}))
    assert errs[0]["problem_type"] == "MISSING_REQUIRED_FIELD" and errs[0]["source"]["pointer"] == "model/name"
    r = post(merge_sandbox, "/contacts", {"name": "No envelope"})
    assert r.status_code == 400 and r.json()["errors"][0]["source"]["pointer"] == "model"
    r = post(merge_sandbox, "/contacts", {"model": {"name": "Warned", "company": "x", "remote_fields": []}})
    assert r.status_code == 201
    assert [w["problem_type"] for w in r.json()["warnings"]] == ["UNSUPPORTED_FIELD"]
    assert r.json()["warnings"][0]["source"]["pointer"] == "model/company"
    assert r.json()["model"]["company"] is None
    # rename via PATCH keeps the namespace rules, and a trimmed rename of itself is fine
    assert patch(merge_sandbox, f"/contacts/{first['id']}", {"model": {"name": "Sunrise Solar "}}).status_code == 200
    r = patch(merge_sandbox, f"/contacts/{first['id']}", {"model": {"name": "Warned"}})
    assert errors_of(r)[0]["error_code"] == 6240
    assert patch(merge_sandbox, "/contacts/does-not-exist", {"model": {"name": "Z"}}).status_code == 404
    names = [c["name"] for c in get(merge_sandbox, "/contacts", page_size=100).json()["results"]]
    assert len(names) == len({n.casefold() for n in names})


def test_invoice_write_rules(merge_sandbox: Any) -> None:
    c = contact(merge_sandbox, "Invoice Rules Inc")
    item = get(merge_sandbox, "/items", name="Hours").json()["results"][0]
    errs = errors_of(post(merge_sandbox, "/invoices", {"model": {"type": "ACCOUNTS_RECEIVABLE"}}))
    assert {e["source"]["pointer"] for e in errs} == {"model/contact", "model/line_items"}
    assert all(e["problem_type"] == "MISSING_REQUIRED_FIELD" for e in errs)
    base = {"type": "ACCOUNTS_RECEIVABLE", "contact": c["id"]}
    assert (
        errors_of(post(merge_sandbox, "/invoices", {"model": {**base, "line_items": []}}))[0]["problem_type"]
        == "MISSING_REQUIRED_FIELD"
    )
    errs = errors_of(
        post(
            merge_sandbox,
            "/invoices",
            {"model": {**base, "contact": "00000000-0000-0000-0000-000000000000", "line_items": [{"total_amount": 5}]}},
        )
    )
    assert errs[0]["problem_type"] == "PROVIDER_ERROR" and errs[0]["error_code"] == 2500
    errs = errors_of(post(merge_sandbox, "/invoices", {"model": {**base, "line_items": [{"description": "x"}]}}))
    assert errs[0]["error_code"] == 2020
    errs = errors_of(
        post(
            merge_sandbox,
            "/invoices",
            {"model": {**base, "line_items": [{"total_amount": 5, "item": "11111111-1111-1111-1111-111111111111"}]}},
        )
    )
    assert errs[0]["error_code"] == 2500 and errs[0]["source"]["pointer"] == "model/line_items/0/item"
    ok = post(
        merge_sandbox,
        "/invoices",
        {
            "model": {
                **base,
                "number": "INV-7",
                "line_items": [{"item": item["id"], "quantity": 3, "unit_price": 40.5}, {"total_amount": 10}],
            }
        },
    )
    assert ok.status_code == 201, ok.text
    inv = ok.json()["model"]
    assert inv["total_amount"] == 131.5 and inv["balance"] == 131.5 and inv["status"] == "OPEN"
    assert inv["line_items"][0]["item"] == item["id"]
    dup = errors_of(
        post(merge_sandbox, "/invoices", {"model": {**base, "number": "inv-7", "line_items": [{"total_amount": 1}]}})
    )
    assert dup[0]["error_code"] == 6140
    auto = invoice(merge_sandbox, c["id"], 5)
    assert auto["number"] and auto["number"] != "INV-7"
    # PATCH replaces lines and recomputes totals
    r = patch(
        merge_sandbox, f"/invoices/{inv['id']}", {"model": {"line_items": [{"total_amount": 99}], "memo": "updated"}}
    )
    assert r.status_code == 200 and r.json()["model"]["total_amount"] == 99 and r.json()["model"]["memo"] == "updated"
    assert merge_sandbox.state.invoices.get(inv["id"])["balance"] == 99


def test_invoice_numbers_not_unique_when_configured() -> None:
    sb = start(unique_invoice_numbers=False)
    try:
        c = contact(sb, "Dup Numbers")
        invoice(sb, c["id"], number="1")
        assert invoice(sb, c["id"], number="1")["number"] == "1"
    finally:
        sb.server.stop()


def test_payment_rules_and_invoice_effects(merge_sandbox: Any) -> None:
    c = contact(merge_sandbox, "Payer LLC")
    other = contact(merge_sandbox, "Someone Else")
    inv = invoice(merge_sandbox, c["id"], 300)
    foreign = invoice(merge_sandbox, other["id"], 50)
    acct = undeposited(merge_sandbox)
    errs = errors_of(post(merge_sandbox, "/payments", {"model": {"contact": c["id"]}}))
    assert {e["source"]["pointer"] for e in errs} == {"model/account", "model/total_amount", "model/transaction_date"}
    base = {"contact": c["id"], "account": acct, "transaction_date": "2025-04-01"}

    def line(inv_id: str, amount: str) -> dict[str, Any]:
        return {"applied_amount": amount, "related_object_id": inv_id, "related_object_type": "INVOICE"}

    assert (
        errors_of(post(merge_sandbox, "/payments", {"model": {**base, "total_amount": 0}}))[0]["problem_type"]
        == "PROVIDER_ERROR"
    )
    assert errors_of(
        post(
            merge_sandbox,
            "/payments",
            {"model": {**base, "total_amount": 400, "applied_to_lines": [line(inv["id"], "301.00")]}},
        )
    )
    assert errors_of(
        post(
            merge_sandbox,
            "/payments",
            {"model": {**base, "total_amount": 50, "applied_to_lines": [line(foreign["id"], "50")]}},
        )
    )
    assert errors_of(
        post(
            merge_sandbox,
            "/payments",
            {"model": {**base, "total_amount": 50, "applied_to_lines": [line(inv["id"], "60")]}},
        )
    )
    assert errors_of(post(merge_sandbox, "/payments", {"model": {**base, "account": "nope", "total_amount": 5}}))
    assert merge_sandbox.state.invoices.get(inv["id"])["balance"] == 300  # nothing applied by failures
    before = get(merge_sandbox, f"/invoices/{inv['id']}").json()["modified_at"]
    r = post(
        merge_sandbox,
        "/payments",
        {
            "model": {
                **base,
                "total_amount": 100,
                "type": "ACCOUNTS_RECEIVABLE",
                "applied_to_lines": [line(inv["id"], "100.00")],
            }
        },
    )
    assert r.status_code == 201 and r.json()["warnings"][0]["source"]["pointer"] == "model/type"
    p1 = r.json()["model"]
    after = get(merge_sandbox, f"/invoices/{inv['id']}").json()
    assert after["balance"] == 200 and after["status"] == "PARTIALLY_PAID" and after["paid_on_date"] is None
    assert after["modified_at"] > before and after["payments"] == [p1["id"]]
    r = post(
        merge_sandbox,
        "/payments",
        {
            "model": {
                **base,
                "total_amount": 200,
                "transaction_date": "2025-05-02",
                "applied_to_lines": [line(inv["id"], "200")],
            }
        },
    )
    assert r.status_code == 201
    paid = get(merge_sandbox, f"/invoices/{inv['id']}").json()
    assert paid["balance"] == 0 and paid["status"] == "PAID" and paid["paid_on_date"] == "2025-05-02T00:00:00Z"
    assert len(paid["payments"]) == 2 and len(paid["applied_payments"]) == 2
    # PATCH a payment down: the invoice reopens by the difference
    r = patch(
        merge_sandbox,
        f"/payments/{p1['id']}",
        {"model": {"total_amount": 60, "applied_to_lines": [line(inv["id"], "60")]}},
    )
    assert r.status_code == 200, r.text
    reopened = get(merge_sandbox, f"/invoices/{inv['id']}").json()
    assert reopened["balance"] == 40 and reopened["status"] == "PARTIALLY_PAID"


def test_admin_helpers_void_delete_and_http(merge_sandbox: Any) -> None:
    app = merge_sandbox.app
    c = app.add_contact("QBO Direct", email="direct@example.com")
    inv = app.create_invoice(c["id"], amount=120)
    app.create_payment(c["remote_id"], 120, applied_to=[(inv["id"], 120)])
    assert get(merge_sandbox, f"/invoices/{inv['id']}").json()["status"] == "PAID"
    voided = app.void_invoice(inv["id"])
    assert voided["status"] == "VOID" and voided["total_amount"] == 0 and voided["payments"] == []
    with pytest.raises(ValueError, match="Duplicate Name Exists Error"):
        app.add_contact("qbo direct")
    root = merge_sandbox.url.split("/api/")[0]
    r = requests.post(f"{root}/__admin/contacts", json={"name": "Via Admin"}, timeout=T)
    assert r.status_code == 201 and r.json()["name"] == "Via Admin"
    assert requests.post(f"{root}/__admin/contacts", json={"name": "via admin"}, timeout=T).status_code == 400
    r = requests.post(
        f"{root}/__admin/update",
        json={"model": "contacts", "id": r.json()["id"], "fields": {"name": "Renamed In QBO"}},
        timeout=T,
    )
    assert r.status_code == 200 and get(merge_sandbox, "/contacts", name="Renamed In QBO").json()["results"]
    r = requests.post(f"{root}/__admin/seed", json={"customers": 5, "seed": 3}, timeout=T)
    assert r.json()["customers"] == 5
    assert requests.get(f"{root}/__admin/summary", timeout=T).json()["contacts"] == 7


def test_seed_is_deterministic(merge_sandbox: Any) -> None:
    other = MergeApp()
    seed_merge(other, customers=20, seed=5, jobs_every=4, invoices_every=5)
    seed_merge(merge_sandbox.app, customers=20, seed=5, jobs_every=4, invoices_every=5)
    names = [c["name"] for c in get(merge_sandbox, "/contacts", page_size=100).json()["results"]]
    assert names == [r["name"] for r in other.state.contacts.order] and len(names) == 25
    assert len(get(merge_sandbox, "/invoices").json()["results"]) == 4


# --- idempotency and rate limit ----------------------------------------------------------------------
def test_idempotency_key_replay_and_reuse(merge_sandbox: Any) -> None:
    body = {"model": {"name": "Idem Corp"}}
    r1 = post(merge_sandbox, "/contacts", body, {"Idempotency-Key": "k-1"})
    r2 = post(merge_sandbox, "/contacts", body, {"Idempotency-Key": "k-1"})
    assert r1.status_code == r2.status_code == 201
    assert r1.json() == r2.json() and r2.headers.get("Idempotent-Replayed") == "true"
    assert len(merge_sandbox.state.contacts) == 1
    r3 = post(merge_sandbox, "/contacts", {"model": {"name": "Other Corp"}}, {"Idempotency-Key": "k-1"})
    assert r3.status_code == 400 and "Idempotency" in r3.json()["errors"][0]["title"]
    assert len(merge_sandbox.state.contacts) == 1
    # a new key is a new request: the duplicate-name rule answers
    assert post(merge_sandbox, "/contacts", body, {"Idempotency-Key": "k-2"}).status_code == 400


def test_rate_limit_429_with_retry_after() -> None:
    sb = start(rate_limit_per_minute=5)
    try:
        codes = []
        last = None
        for _ in range(7):
            last = get(sb, "/contacts")
            codes.append(last.status_code)
        assert codes == [200] * 5 + [429] * 2
        assert last is not None and last.json() == {"detail": "Request was throttled."}
        assert 1 <= int(last.headers["Retry-After"]) <= 60
        assert last.headers["X-RateLimit-Limit"] == "5" and last.headers["X-RateLimit-Remaining"] == "0"
        # the limit is per linked account: the org-level API-key calls have their own bucket
        r = requests.get(f"{sb.url}/linked-accounts", headers={"Authorization": f"Bearer {KEY}"}, timeout=T)
        assert r.status_code == 200
    finally:
        sb.server.stop()


# --- meta, sync status -------------------------------------------------------------------------------
def test_meta_endpoints(merge_sandbox: Any) -> None:
    c = contact(merge_sandbox, "Meta Co")
    inv = invoice(merge_sandbox, c["id"])
    for path, required in (
        ("/contacts/meta/post", ["name"]),
        ("/invoices/meta/post", ["contact", "line_items", "type"]),
        ("/payments/meta/post", ["account", "contact", "total_amount", "transaction_date"]),
    ):
        meta = get(merge_sandbox, path).json()
        assert set(meta) >= {
            "request_schema",
            "remote_field_classes",
            "status",
            "has_conditional_params",
            "has_required_linked_account_params",
        }
        model = meta["request_schema"]["properties"]["model"]
        assert model["required"] == required
        assert set(required) <= set(model["properties"])
    assert (
        "tax_number"
        in get(merge_sandbox, "/contacts/meta/post").json()["request_schema"]["properties"]["model"]["properties"]
    )
    assert (
        "type"
        not in get(merge_sandbox, "/payments/meta/post").json()["request_schema"]["properties"]["model"]["properties"]
    )
    patch_meta = get(merge_sandbox, f"/contacts/meta/patch/{c['id']}").json()
    assert "required" not in patch_meta["request_schema"]["properties"]["model"]
    assert get(merge_sandbox, f"/invoices/meta/patch/{inv['id']}").status_code == 200
    assert get(merge_sandbox, "/invoices/meta/patch/nope").status_code == 404


def test_sync_status(merge_sandbox: Any) -> None:
    body = get(merge_sandbox, "/sync-status").json()
    models = {r["model_id"]: r for r in body["results"]}
    assert {"accounting.Contact", "accounting.Invoice", "accounting.Payment"} <= set(models)
    assert all(r["status"] == "DONE" and r["last_sync_result"] == "DONE" for r in body["results"])
    r = requests.post(f"{merge_sandbox.url}/sync-status/resync", headers=H, timeout=T)
    assert r.status_code == 200 and isinstance(r.json(), list)
    assert (
        get(merge_sandbox, "/sync-status").json()["results"][0]["last_sync_finished"]
        >= models["accounting.Contact"]["last_sync_finished"]
    )


# --- link flow ---------------------------------------------------------------------------------------
def test_link_token_public_token_account_token(merge_sandbox: Any) -> None:
    org = {"Authorization": f"Bearer {KEY}"}
    url = merge_sandbox.url
    r = requests.post(f"{url}/link-token", headers=org, json={"end_user_email_address": "a@b.c"}, timeout=T)
    assert r.status_code == 400 and set(r.json()) >= {"end_user_organization_name", "end_user_origin_id", "categories"}
    req = {
        "end_user_email_address": "owner@acme.example",
        "end_user_organization_name": "Acme",
        "end_user_origin_id": "tenant-1",
        "categories": ["accounting"],
        "integration": "quickbooks-online",
    }
    r = requests.post(f"{url}/link-token", headers=org, json=req, timeout=T)
    assert r.status_code == 200 and r.json()["integration_name"] == "QuickBooks Online"
    link_token = r.json()["link_token"]
    root = url.split("/api/")[0]
    js = requests.get(f"{root}/link/initialize.js", timeout=T)
    assert js.status_code == 200 and "window.MergeLink" in js.text and "openLink" in js.text
    page = requests.get(f"{root}/link/app", params={"link_token": link_token}, timeout=T)
    assert 'id="merge-link-connect"' in page.text and "Connect QuickBooks Online" in page.text
    minted = requests.post(f"{root}/link/api/public-token", json={"link_token": link_token}, timeout=T)
    assert minted.status_code == 200
    public = minted.json()["public_token"]
    assert (
        requests.post(f"{root}/link/api/public-token", json={"link_token": link_token}, timeout=T).status_code == 400
    )  # link tokens are single-use
    exchanged = requests.get(f"{url}/account-token/{public}", headers=org, timeout=T)
    assert exchanged.status_code == 200
    body = exchanged.json()
    assert body["integration"]["slug"] == "quickbooks-online" and body["id"]
    new_token = body["account_token"]
    assert new_token != TOKEN
    r = requests.get(f"{url}/account-details", headers={**org, "X-Account-Token": new_token}, timeout=T)
    assert r.status_code == 200 and r.json()["end_user_origin_id"] == "tenant-1" and r.json()["id"] == body["id"]
    assert get(merge_sandbox, "/account-details").status_code == 200  # the default token still works
    assert requests.get(f"{url}/account-token/unknown", headers=org, timeout=T).status_code == 404
    linked = requests.get(
        f"{url}/linked-accounts", headers=org, params={"end_user_origin_id": "tenant-1"}, timeout=T
    ).json()["results"]
    assert [a["id"] for a in linked] == [body["id"]]


# --- scale and entry point ---------------------------------------------------------------------------
def test_indexes_keep_lists_from_rescanning(merge_sandbox: Any) -> None:
    seed_merge(merge_sandbox.app, customers=3000, seed=9)
    table = merge_sandbox.state.contacts
    mark = table.order[-1]["_mod_us"]
    merge_sandbox.app.update("contacts", table.order[5]["id"], email_address="changed@example.com")
    assert len(table._positions(None, mark, None)) == 1  # modified_after narrows via the index, no full scan
    rows = get(merge_sandbox, "/contacts", modified_after=table.order[-1]["modified_at"]).json()["results"]
    assert [r["id"] for r in rows] == [table.order[5]["id"]]
    deep = get(merge_sandbox, "/contacts", page_size=100, cursor=base64.b64encode(b"p=2949").decode()).json()["results"]
    assert [r["id"] for r in deep] == [r["id"] for r in table.order[2950:]]


def test_cli_refuses_public_host_and_prints_url() -> None:
    import subprocess
    import sys

    bad = subprocess.run(
        [sys.executable, "-m", "sandbox.merge", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,  # a non-zero exit is what is asserted
    )
    assert bad.returncode != 0 and "loopback" in bad.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.merge", "--port", "0", "--seed", "2", "--customers", "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split()[3]
        assert url.endswith("/api/accounting/v1")
        assert len(requests.get(f"{url}/contacts", headers=H, timeout=T).json()["results"]) == 3
    finally:
        stop_process(proc)
