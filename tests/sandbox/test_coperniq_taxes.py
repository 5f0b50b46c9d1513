"""The Coperniq emulator's taxes over real HTTP: `GET /taxes` (bare array, paging, `include_archived`, auth and the
daily quota like every list), the seeded taxes, and an invoice's `taxId`/`taxRate` under both settings of
`invoice_tax_fields` (optimistic: invoices carry them and writes take `taxId`; pessimistic: never), plus the admin
call that sets an invoice's tax."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox.coperniq import CoperniqApp
from sandbox.profiles import CoperniqAssumptions
from sandbox.seed_data import INVOICE_TAX_BY_ID_MOD_10, TAXES
from tests.conftest import RunningSandbox, start_coperniq
from tests.sandbox.test_coperniq_sandbox import Api, T, assert_error, catalog_id, validate

TAX_FIELDS = ("taxId", "taxRate")


@pytest.fixture
def both() -> Iterator[dict[str, RunningSandbox]]:
    """A default sandbox and a pessimistic one (no Workflows 1.0 share: not what these tests are about)."""
    sandboxes = {
        "optimistic": start_coperniq(),
        "pessimistic": start_coperniq(profile="pessimistic", workflows_v1_share=0.0),
    }
    yield sandboxes
    for sb in sandboxes.values():
        sb.server.stop()


def taxes_of(app: CoperniqApp) -> dict[str, dict[str, Any]]:
    """austin 8.25, state 6.25, exempt 0, and an archived 8.00, by short name."""
    return {
        "austin": app.add_tax("Austin Sales Tax", 8.25),
        "state": app.add_tax("Texas State Sales Tax", "6.25"),
        "exempt": app.add_tax("Exempt", 0),
        "archived": app.add_tax("Austin Sales Tax (2023)", 8, archived=True),
    }


def line_body(app: CoperniqApp, record_id: int, **fields: Any) -> dict[str, Any]:
    """A minimal valid POST /invoices body (one line of a new catalog item)."""
    return {
        "recordId": record_id,
        "calculationMethod": "LINE_ITEMS",
        "lineItems": [{"catalogItemId": catalog_id(app), "quantity": 2, "unitCost": 100, "unitPrice": 250}],
        **fields,
    }


def admin_tax(sb: RunningSandbox, invoice_id: int, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{sb.server.root_url}/__admin/invoices/{invoice_id}/tax", json=body, timeout=T)


def tax_fields_seen(api: Api, invoice_id: int, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The invoice as every read shows it: GET by id and the three envelope lists (global, project, account)."""
    views = [api.get(f"/invoices/{invoice_id}").json()]
    for path in ("/invoices", f"/projects/{record['id']}/invoices", f"/accounts/{record['accountId']}/invoices"):
        views += [i for i in api.get(path, page_size=100).json()["items"] if i["id"] == invoice_id]
    assert len(views) == 4
    return views


# --- GET /taxes ------------------------------------------------------------------------------------------
def test_taxes_list_shape_paging_and_include_archived(coperniq_sandbox: RunningSandbox) -> None:
    api, app = Api(coperniq_sandbox), coperniq_sandbox.app
    assert api.get("/taxes").json() == []  # an empty company has no taxes
    taxes = taxes_of(app)
    active = api.get("/taxes")
    assert active.status_code == 200
    body = active.json()
    assert isinstance(body, list)
    for item in body:
        validate(item, "CompanyTax")
        assert set(item) == {"id", "name", "rate", "isArchived", "createdAt", "updatedAt"}
    assert [(t["name"], t["rate"], t["isArchived"]) for t in body] == [
        ("Austin Sales Tax", "8.2500", False),
        ("Texas State Sales Tax", "6.2500", False),
        ("Exempt", "0.0000", False),
    ]
    everything = api.get("/taxes", include_archived="true").json()
    assert [t["id"] for t in everything] == sorted(t["id"] for t in taxes.values())
    assert everything[-1] == {**taxes["archived"], "isArchived": True, "rate": "8.0000"}
    assert api.get("/taxes", include_archived="false").json() == body

    # bare-array paging: a short page ends it, beyond the last page is []
    pages = [api.get("/taxes", page=n, page_size=2, include_archived="true").json() for n in (1, 2, 3)]
    assert [len(p) for p in pages] == [2, 2, 0] and pages[0] + pages[1] == everything
    assert [t["id"] for t in api.get("/taxes", page=2, page_size=2).json()] == [taxes["exempt"]["id"]]
    assert [t["id"] for t in api.get("/taxes", order_by="desc").json()] == [t["id"] for t in reversed(body)]
    assert_error(api.get("/taxes", page_size=101), 400, "VALIDATION_ERROR", "page_size")
    assert_error(api.get("/taxes", page=0), 400, "VALIDATION_ERROR", "page")
    assert_error(api.get("/taxes", include_archived="maybe"), 400, "VALIDATION_ERROR", "include_archived")

    # a tax added later shows on the next read (the cached id list follows the data)
    later = app.add_tax("Round Rock Sales Tax", "8.2500")
    assert api.get("/taxes", page_size=100).json()[-1]["id"] == later["id"]


def test_taxes_need_the_api_key_and_count_against_the_quota(coperniq_sandbox: RunningSandbox) -> None:
    app = coperniq_sandbox.app
    taxes_of(app)
    keys: tuple[Any, ...] = (False, "wrong-key")  # Api(sb, False): no x-api-key header at all
    for key in keys:
        resp = Api(coperniq_sandbox, key).get("/taxes")
        assert resp.status_code == 401 and resp.json() == {"message": "Invalid API key", "code": "UNAUTHORIZED"}
    coperniq_sandbox.stats.reset()
    app.set_rate_limits(100, 3)
    api = Api(coperniq_sandbox)
    first = api.get("/taxes")
    assert first.headers["X-RateLimit-Limit"] == "3" and first.headers["X-RateLimit-Remaining"] == "2"
    assert [api.get("/taxes").status_code for _ in range(2)] == [200, 200]
    assert_error(api.get("/taxes"), 429, "RATE_LIMIT_EXCEEDED")
    assert api.get("/projects").status_code == 429  # one daily window for every endpoint
    stats = coperniq_sandbox.stats  # counted like every call: the refused ones too, by route
    assert stats.by_route["GET /v1/taxes"] == 4 and stats.total == 5 and stats.by_status[429] == 2


def test_admin_taxes_endpoint(coperniq_sandbox: RunningSandbox) -> None:
    root = coperniq_sandbox.server.root_url
    made = requests.post(f"{root}/__admin/taxes", json={"name": "Exempt", "rate": 0, "archived": True}, timeout=T)
    assert made.status_code == 201
    assert {k: made.json()[k] for k in ("name", "rate", "isArchived")} == {
        "name": "Exempt",
        "rate": "0.0000",
        "isArchived": True,
    }
    assert coperniq_sandbox.app.summary()["taxes"] == 1
    for bad in ({"name": "X", "rate": "lots"}, {"name": "X", "rate": 101}, {"name": "X", "rate": -1}):
        assert_error(requests.post(f"{root}/__admin/taxes", json=bad, timeout=T), 400, "VALIDATION_ERROR", "rate")
    resp = requests.post(f"{root}/__admin/taxes", json={"name": " ", "rate": 1}, timeout=T)
    assert_error(resp, 400, "VALIDATION_ERROR", "name")
    assert requests.post(f"{root}/__admin/taxes", json={"bogus": 1}, timeout=T).status_code == 400


# --- seeded taxes ----------------------------------------------------------------------------------------
def test_seeded_taxes_and_invoice_taxes() -> None:
    untaxed = CoperniqApp()
    untaxed.seed(projects=200, seed=5)  # the default: the taxes exist, no invoice carries one
    assert len(untaxed.state.taxes) == 4
    assert all(untaxed.invoice_out(i)["taxId"] is None for i in untaxed.state.invoices.values())
    app = CoperniqApp()
    summary = app.seed(projects=200, seed=5, invoice_taxes=True)
    st = app.state
    assert summary["taxes"] == len(TAXES) == 4
    by_name = {t["name"]: t for t in st.taxes.values()}
    assert [(t["name"], t["rate"], t["isArchived"]) for t in st.taxes.values()] == TAXES
    assert by_name["Austin Sales Tax"]["rate"] == "8.2500" and by_name["Exempt"]["rate"] == "0.0000"
    shares: Counter[str | None] = Counter()
    for inv in st.invoices.values():
        out = app.invoice_out(inv)
        name = INVOICE_TAX_BY_ID_MOD_10.get(inv["id"] % 10)
        shares[name] += 1
        if name is None:
            assert out["taxId"] is None and out["taxRate"] is None
        else:
            assert out["taxId"] == by_name[name]["id"] and out["taxRate"] == float(by_name[name]["rate"])
        # the tax leaves the amount as the lines make it
        assert out["amount"] == round(sum(li["quantity"] * li["unitPrice"] for li in out["lineItems"]), 2)
    assert shares["Austin Sales Tax"] > shares[None] > shares["Exempt"] > 0
    assert shares["Austin Sales Tax (2023)"] > 0  # an invoice may carry a tax archived since

    # with taxes the data is the untaxed seed's plus the two fields
    def without_tax(seeded: CoperniqApp) -> list[dict[str, Any]]:
        views = map(seeded.invoice_out, seeded.state.invoices.values())
        return [{k: v for k, v in view.items() if k not in TAX_FIELDS} for view in views]

    assert without_tax(app) == without_tax(untaxed)
    # seeding again reuses the taxes and taxes only the new invoices
    before = {i: (inv["taxId"], inv["updatedAt"]) for i, inv in st.invoices.items()}
    app.seed(projects=10, seed=6, invoice_taxes=True)
    assert len(st.taxes) == 4
    assert {i: (st.invoices[i]["taxId"], st.invoices[i]["updatedAt"]) for i in before} == before
    assert any(inv["taxId"] is not None for i, inv in st.invoices.items() if i not in before)


def test_admin_seed_with_invoice_taxes(coperniq_sandbox: RunningSandbox) -> None:
    root = coperniq_sandbox.server.root_url
    body = {"projects": 20, "seed": 3, "invoice_taxes": True}
    assert requests.post(f"{root}/__admin/seed", json=body, timeout=60).json()["taxes"] == 4
    items = Api(coperniq_sandbox).get("/invoices", page_size=100).json()["items"]
    assert {i["taxId"] is None for i in items} == {True, False}


def test_seeded_invoice_taxes_are_the_same_in_both_profiles_and_hidden_by_the_pessimistic_api(
    both: dict[str, RunningSandbox],
) -> None:
    for sb in both.values():
        sb.app.seed(projects=20, seed=3, invoice_taxes=True)
    optimistic, pessimistic = both["optimistic"], both["pessimistic"]
    assert [optimistic.app.invoice_out(i) for i in optimistic.state.invoices.values()] == [
        pessimistic.app.invoice_out(i) for i in pessimistic.state.invoices.values()
    ]
    taxed = next(i for i in optimistic.state.invoices.values() if i["taxId"] is not None)
    project = optimistic.state.projects[taxed["_record"][1]]
    for view in tax_fields_seen(Api(optimistic), taxed["id"], project):
        assert (view["taxId"], view["taxRate"]) == (taxed["taxId"], taxed["taxRate"])
    for view in tax_fields_seen(Api(pessimistic), taxed["id"], project):
        assert not set(TAX_FIELDS) & set(view)
    assert Api(pessimistic).get("/taxes").json()  # the taxes themselves are listed in both profiles


# --- invoice writes ----------------------------------------------------------------------------------------
def test_create_invoice_with_and_without_tax(both: dict[str, RunningSandbox]) -> None:
    for profile, sb in both.items():
        api, app = Api(sb), sb.app
        taxes = taxes_of(app)
        p = app.add_project("Smith Solar")
        plain = api.post("/invoices", line_body(app, p["id"]))
        taxed = api.post("/invoices", line_body(app, p["id"], taxId=taxes["austin"]["id"]))
        as_text = api.post("/invoices", line_body(app, p["id"], taxId=str(taxes["exempt"]["id"]), taxRate=99))
        assert plain.status_code == taxed.status_code == as_text.status_code == 201, profile
        assert plain.json()["amount"] == taxed.json()["amount"] == 500.0  # the tax changes no amount
        if profile == "optimistic":
            assert (plain.json()["taxId"], plain.json()["taxRate"]) == (None, None)
            assert (taxed.json()["taxId"], taxed.json()["taxRate"]) == (taxes["austin"]["id"], 8.25)
            # a numeric string names the tax; the rate is the tax's, whatever `taxRate` was sent
            assert (as_text.json()["taxId"], as_text.json()["taxRate"]) == (taxes["exempt"]["id"], 0.0)
            for view in tax_fields_seen(api, taxed.json()["id"], p):
                assert (view["taxId"], view["taxRate"]) == (taxes["austin"]["id"], 8.25)
            validate(taxed.json(), "Invoice")
        else:  # no invoice tax in this API: absent from every response, and `taxId` is ignored
            for resp in (plain, taxed, as_text):
                assert not set(TAX_FIELDS) & set(resp.json())
                assert app.state.invoices[resp.json()["id"]]["taxId"] is None
            for view in tax_fields_seen(api, taxed.json()["id"], p):
                assert not set(TAX_FIELDS) & set(view)


def test_create_invoice_tax_validation(both: dict[str, RunningSandbox]) -> None:
    for profile, sb in both.items():
        api, app = Api(sb), sb.app
        taxes = taxes_of(app)
        p = app.add_project("Smith Solar")
        bad = {"unknown": 999_999, "archived": taxes["archived"]["id"], "text": "austin", "bool": True, "list": [1]}
        for what, value in bad.items():
            resp = api.post("/invoices", line_body(app, p["id"], taxId=value))
            if profile == "optimistic":
                body = assert_error(resp, 400, "VALIDATION_ERROR", "taxId")
                if what in ("unknown", "archived"):
                    assert ("not found" if what == "unknown" else "archived") in body["message"]
            else:
                assert resp.status_code == 201, (what, resp.text)
        if profile == "optimistic":
            assert app.state.invoices == {}  # nothing was created by a rejected call


def test_patch_invoice_tax(both: dict[str, RunningSandbox]) -> None:
    for profile, sb in both.items():
        api, app = Api(sb), sb.app
        taxes = taxes_of(app)
        p = app.add_project("Smith Solar")
        inv = api.post("/invoices", line_body(app, p["id"])).json()
        iid = inv["id"]
        set_it = api.patch(f"/invoices/{iid}", {"taxId": taxes["state"]["id"]})
        assert set_it.status_code == 200 and set_it.json()["updatedAt"] > inv["updatedAt"]
        if profile == "pessimistic":
            assert not set(TAX_FIELDS) & set(set_it.json()) and app.state.invoices[iid]["taxId"] is None
            assert api.patch(f"/invoices/{iid}", {"taxId": 999_999}).status_code == 200  # ignored, not checked
            continue
        assert (set_it.json()["taxId"], set_it.json()["taxRate"]) == (taxes["state"]["id"], 6.25)
        kept = api.patch(f"/invoices/{iid}", {"description": "Deposit"}).json()  # absent: unchanged
        assert (kept["taxId"], kept["description"]) == (taxes["state"]["id"], "Deposit")
        # validation is atomic: a bad taxId leaves every other field (and updatedAt) as it was
        for value, words in ((999_999, "not found"), (taxes["archived"]["id"], "archived"), ("x", "integer")):
            resp = api.patch(f"/invoices/{iid}", {"description": "changed", "taxId": value})
            assert words in assert_error(resp, 400, "VALIDATION_ERROR", "taxId")["message"]
        after = api.get(f"/invoices/{iid}").json()
        assert after == kept
        cleared = api.patch(f"/invoices/{iid}", {"taxId": None}).json()
        assert (cleared["taxId"], cleared["taxRate"]) == (None, None) and cleared["updatedAt"] > kept["updatedAt"]
        assert cleared["amount"] == inv["amount"]


# --- admin: set an invoice's tax as in the UI ------------------------------------------------------------
def test_admin_sets_and_clears_an_invoice_tax(both: dict[str, RunningSandbox]) -> None:
    for profile, sb in both.items():
        api, app = Api(sb), sb.app
        app.state.clock.set("2025-03-01T00:00:00Z")
        taxes = taxes_of(app)
        p = app.add_project("Smith Solar")
        inv = app.add_invoice(p["id"])
        assert (inv["taxId"], inv["taxRate"]) == (None, None)  # the admin view shows what Coperniq holds
        app.state.clock.advance(60)
        mark = api.get(f"/invoices/{inv['id']}").json()["updatedAt"]

        resp = admin_tax(sb, inv["id"], {"taxId": taxes["austin"]["id"]})
        assert resp.status_code == 200, resp.text
        admin_view = resp.json()
        assert (admin_view["taxId"], admin_view["taxRate"]) == (taxes["austin"]["id"], 8.25)
        assert admin_view["updatedAt"] > mark and admin_view["amount"] == inv["amount"]
        # the change is seen by an incremental read (updatedAt bumps, as for a payment), in both profiles
        window = api.get("/invoices", updated_after=mark).json()["items"]
        assert [i["id"] for i in window] == [inv["id"]]
        if profile == "optimistic":
            assert (window[0]["taxId"], window[0]["taxRate"]) == (taxes["austin"]["id"], 8.25)
        else:
            assert not set(TAX_FIELDS) & set(window[0])

        # the same tax again changes nothing; an archived tax is allowed here (taxed before it was archived)
        again = admin_tax(sb, inv["id"], {"taxId": taxes["austin"]["id"]}).json()
        assert again["updatedAt"] == admin_view["updatedAt"]
        archived = admin_tax(sb, inv["id"], {"taxId": taxes["archived"]["id"]}).json()
        assert (archived["taxId"], archived["taxRate"]) == (taxes["archived"]["id"], 8.0)
        cleared = admin_tax(sb, inv["id"], {"taxId": None}).json()
        assert (cleared["taxId"], cleared["taxRate"]) == (None, None) and cleared["updatedAt"] > archived["updatedAt"]

        assert_error(admin_tax(sb, inv["id"], {"taxId": 999_999}), 400, "VALIDATION_ERROR", "taxId")
        assert_error(admin_tax(sb, inv["id"], {}), 400, "VALIDATION_ERROR", "taxId")
        assert_error(admin_tax(sb, 12345, {"taxId": None}), 404, "NOT_FOUND")
        # add_invoice takes a tax too (POST /__admin/invoices {"tax_id": ...})
        made = requests.post(
            f"{sb.server.root_url}/__admin/invoices",
            json={"record_id": p["id"], "tax_id": taxes["exempt"]["id"]},
            timeout=T,
        )
        assert made.status_code == 201 and made.json()["taxId"] == taxes["exempt"]["id"]
        assert app.set_invoice_tax(made.json()["id"], taxes["state"]["id"])["taxRate"] == 6.25


# --- the switch --------------------------------------------------------------------------------------------
def test_invoice_tax_fields_switch() -> None:
    assert CoperniqAssumptions().invoice_tax_fields is True
    assert CoperniqApp(profile="pessimistic").assumptions.invoice_tax_fields is False
    assert CoperniqApp(profile="pessimistic", invoice_tax_fields=True).assumptions.invoice_tax_fields is True
    assert CoperniqApp(invoice_tax_fields=False).assumptions.invoice_tax_fields is False


def test_admin_profile_switches_invoice_tax_fields_at_run_time(coperniq_sandbox: RunningSandbox) -> None:
    api, app = Api(coperniq_sandbox), coperniq_sandbox.app
    taxes = taxes_of(app)
    inv = app.add_invoice(app.add_project("Smith Solar")["id"], tax_id=taxes["austin"]["id"])
    assert api.get(f"/invoices/{inv['id']}").json()["taxId"] == taxes["austin"]["id"]
    root = coperniq_sandbox.server.root_url
    resp = requests.post(f"{root}/__admin/profile", json={"invoice_tax_fields": False}, timeout=T)
    assert resp.status_code == 200 and resp.json()["invoice_tax_fields"] is False
    assert "taxId" not in api.get(f"/invoices/{inv['id']}").json()
    requests.post(f"{root}/__admin/profile", json={}, timeout=T)
    assert api.get(f"/invoices/{inv['id']}").json()["taxRate"] == 8.25
