"""Merge sandbox company tax setups over HTTP: us_manual (the default, unchanged), us_ast (QuickBooks computes the
tax), non_us (every line needs a tax code); GET /tax-rates, company currency, QBO TaxCode/TaxRate/Preferences
through passthrough (sandbox/merge_tax.py, README "Company tax")."""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import jsonschema
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
QBO = "/v3/company/{{LINKED_ACCOUNT_ATTR.realmId}}"
SPEC = json.loads(Path(__file__).with_name("merge_openapi_taxrate.json").read_text())


class _Running:
    def __init__(self, server: SandboxServer) -> None:
        self.server, self.app = server, server.app
        self.root = server.root_url
        self.url = f"{server.root_url}/api/accounting/v1"


@contextmanager
def running(**kwargs: Any) -> Iterator[_Running]:
    """A Merge sandbox with these MergeApp options (company_tax, currency, profile, switches), stopped after."""
    server = SandboxServer(MergeApp(api_key=KEY, account_token=TOKEN, **kwargs)).start()
    try:
        yield _Running(server)
    finally:
        server.stop()


def get(sb: _Running, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{sb.url}{path}", headers=H, params=params, timeout=T)


def post(sb: _Running, path: str, body: Any) -> requests.Response:
    return requests.post(f"{sb.url}{path}", headers=H, json=body, timeout=T)


def patch(sb: _Running, path: str, body: Any) -> requests.Response:
    return requests.patch(f"{sb.url}{path}", headers=H, json=body, timeout=T)


def passthrough(sb: _Running, method: str, path: str, data: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"method": method, "path": path, "headers": {"Content-Type": "application/json"}}
    if data is not None:
        body["data"] = json.dumps(data)
    r = post(sb, "/passthrough", body)
    assert r.status_code == 200, r.text
    return r.json()


def query(sb: _Running, text: str) -> dict[str, Any]:
    out = passthrough(sb, "GET", f"{QBO}/query?query={text}&minorversion=75")
    assert out["status"] == 200, out
    return out["response"]["QueryResponse"]


def customer(sb: _Running, name: str) -> dict[str, Any]:
    r = post(sb, "/contacts", {"model": {"name": name, "is_customer": True}})
    assert r.status_code == 201, r.text
    return r.json()["model"]


def new_invoice(sb: _Running, contact_id: str, lines: list[dict[str, Any]]) -> requests.Response:
    return post(sb, "/invoices", {"model": {"type": "ACCOUNTS_RECEIVABLE", "contact": contact_id, "line_items": lines}})


def tax_rates(sb: _Running, **params: Any) -> dict[str, dict[str, Any]]:
    r = get(sb, "/tax-rates", **params)
    assert r.status_code == 200, r.text
    return {t["name"]: t for t in r.json()["results"]}


def cents(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def money(inv: dict[str, Any]) -> tuple[float, float, float, float]:
    return inv["sub_total"], inv["total_tax_amount"], inv["total_amount"], inv["balance"]


def check_schema(op: str, body: Any) -> None:
    """Validate against Merge's OpenAPI schema for `op` (nullable `oneOf` as anyOf, no undeclared TaxRate fields)."""

    def nullable(node: Any) -> Any:
        if isinstance(node, list):
            return [nullable(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {k: nullable(v) for k, v in node.items()}
        if "oneOf" in out and {"type": "null"} in out["oneOf"]:
            out["anyOf"] = out.pop("oneOf")
        return out

    schemas = nullable(SPEC["schemas"])
    for name in ("TaxRate", "TaxComponent"):
        schemas[name] = {**schemas[name], "additionalProperties": False}
    schema = {**nullable(SPEC["operations"][op]["schema"]), "components": {"schemas": schemas}}
    jsonschema.Draft202012Validator(schema).validate(body)


# --- settings ----------------------------------------------------------------------------------------
def test_settings_and_their_validation() -> None:
    assert MergeApp().company() == {
        "company_tax": "us_manual",
        "currency": "USD",
        "country": "US",
        "ast_rate": None,
        "partner_tax_enabled": False,
    }
    assert MergeApp(company_tax="us_ast").company()["ast_rate"] == 8.25
    assert MergeApp(company_tax="non_us").company() == {
        "company_tax": "non_us",
        "currency": "CAD",
        "country": "CA",
        "ast_rate": None,
        "partner_tax_enabled": False,
    }
    assert MergeApp(company_tax="non_us", currency="gbp").company()["country"] == "GB"
    for bad, message in (
        ({"company_tax": "eu"}, "company_tax must be one of us_manual, us_ast, non_us"),
        ({"company_tax": "us_ast", "currency": "CAD"}, "home currency is USD"),
        ({"company_tax": "non_us", "currency": "EUR"}, "currency is one of CAD, GBP"),
    ):
        with pytest.raises(ValueError, match=message):
            MergeApp(**bad)


# --- us_manual: the default, unchanged ---------------------------------------------------------------
def test_default_company_is_us_manual_and_unchanged(merge_sandbox: Any) -> None:
    sb = _Running(merge_sandbox.server)
    info = get(sb, "/company-info", include_remote_data="true").json()["results"][0]
    assert info["currency"] == "USD"
    assert info["remote_data"][0] == {"path": "/companyinfo", "data": info["remote_data"][0]["data"]}
    assert info["remote_data"][0]["data"]["Country"] == "US"
    rates = tax_rates(sb)
    assert list(rates) == ["TAX", "NON", "Austin"]
    cust = customer(sb, "Manual Co")
    r = new_invoice(sb, cust["id"], [{"description": "Panels", "total_amount": 1000.0, "tax_rate": rates["TAX"]["id"]}])
    assert r.status_code == 201, r.text
    inv = r.json()["model"]
    assert money(inv) == (1000.0, 0.0, 1000.0, 1000.0)  # no tax: as the sandbox always did
    assert inv["line_items"][0]["tax_rate"] is None
    assert "model/line_items/0/tax_rate" in [w["source"]["pointer"] for w in r.json()["warnings"]]
    qbo = get(sb, f"/invoices/{inv['id']}", include_remote_data="true").json()["remote_data"][0]["data"]
    assert "TxnTaxDetail" not in qbo and "TaxCodeRef" not in qbo["Line"][0]["SalesItemLineDetail"]
    item = get(sb, "/items", include_remote_data="true").json()["results"][0]["remote_data"][0]["data"]
    assert "Taxable" not in item
    meta = get(sb, "/invoices/meta/post").json()["request_schema"]["properties"]["model"]["properties"]
    assert "tax_rate" not in meta["line_items"]["items"]["properties"]
    prefs = query(sb, "select * from Preferences")["Preferences"][0]
    assert prefs["TaxPrefs"]["PartnerTaxEnabled"] is False and prefs["TaxPrefs"]["UsingSalesTax"] is True
    assert prefs["CurrencyPrefs"] == {"MultiCurrencyEnabled": False, "HomeCurrency": {"value": "USD"}}
    assert requests.get(f"{sb.root}/__admin/company", timeout=T).json()["company_tax"] == "us_manual"


# --- GET /tax-rates -----------------------------------------------------------------------------------
def test_tax_rates_list_shape_paging_and_filters() -> None:
    with running(company_tax="non_us") as sb:
        r = get(sb, "/tax-rates", include_remote_data="true")
        check_schema("GET tax-rates", r.json())
        by_name = {t["name"]: t for t in r.json()["results"]}
        assert list(by_name) == ["GST", "HST ON", "Exempt", "GST/PST BC"]
        hst = by_name["HST ON"]
        assert hst["remote_id"] == "3" and hst["code"] == "HST ON" and hst["status"] == "ACTIVE"
        assert hst["total_tax_rate"] == hst["effective_tax_rate"] == 13.0
        assert hst["company"] is None and hst["remote_was_deleted"] is False
        assert [(c["name"], c["rate"], c["component_type"], c["is_compound"]) for c in hst["tax_components"]] == [
            ("HST ON", "13.0000", "SALES", False)
        ]
        bc = by_name["GST/PST BC"]
        assert bc["total_tax_rate"] == 12.0 and [c["name"] for c in bc["tax_components"]] == ["GST", "PST BC"]
        assert by_name["Exempt"]["total_tax_rate"] == 0.0
        code = hst["remote_data"][0]
        assert code["path"] == "/taxcode" and code["data"]["SalesTaxRateList"]["TaxRateDetail"][0]["TaxRateRef"] == {
            "value": "2",
            "name": "HST ON",
        }
        # paging like every list: cursors, page_size
        first = get(sb, "/tax-rates", page_size=3).json()
        assert len(first["results"]) == 3 and first["next"] and first["previous"] is None
        second = get(sb, "/tax-rates", page_size=3, cursor=first["next"]).json()
        assert [t["name"] for t in second["results"]] == ["GST/PST BC"] and second["next"] is None
        # filters: name (case-insensitive), remote_id, company_id; retrieve by id
        assert list(tax_rates(sb, name="hst on")) == ["HST ON"]
        assert list(tax_rates(sb, remote_id="2")) == ["GST"]
        assert tax_rates(sb, company_id="3fa85f64-5717-4562-b3fc-2c963f66afa6") == {}
        one = get(sb, f"/tax-rates/{hst['id']}", expand="company")
        assert one.status_code == 200 and one.json()["name"] == "HST ON"
        check_schema("GET tax-rates/{id}", one.json())
        assert get(sb, "/tax-rates/3fa85f64-5717-4562-b3fc-2c963f66afa6").status_code == 404
        assert get(sb, "/tax-rates", expand="nope").status_code == 400


def test_tax_rates_of_us_companies() -> None:
    with running(company_tax="us_ast") as sb:
        rates = tax_rates(sb)
        assert list(rates) == ["TAX", "NON", "Austin"]
        assert rates["TAX"]["total_tax_rate"] is None and rates["NON"]["total_tax_rate"] == 0.0
        austin = rates["Austin"]
        assert austin["total_tax_rate"] == 8.25
        assert [(c["name"], c["rate"]) for c in austin["tax_components"]] == [
            ("Texas State", "6.2500"),
            ("Austin City", "1.0000"),
            ("Austin MTA", "1.0000"),
        ]
        check_schema("GET tax-rates", get(sb, "/tax-rates").json())
        codes = query(sb, "select * from TaxCode")["TaxCode"]
        assert [(c["Id"], c.get("TaxGroup")) for c in codes] == [("TAX", False), ("NON", False), ("2", True)]
        assert codes[2]["TaxCodeConfigType"] == "SYSTEM_GENERATED"  # made by QuickBooks' AST engine


# --- us_ast: QuickBooks computes the tax ---------------------------------------------------------------
def test_us_ast_computes_tax_and_ignores_line_tax_rates() -> None:
    with running(company_tax="us_ast") as sb:
        prefs = passthrough(sb, "GET", f"{QBO}/preferences")
        assert prefs["status"] == 200 and prefs["response"]["Preferences"]["TaxPrefs"]["PartnerTaxEnabled"] is True
        rates = tax_rates(sb)
        cust = customer(sb, "Austin Homeowner")
        # a tax_rate sent on a line is overridden (NON here): the AST engine decides
        r = new_invoice(
            sb,
            cust["id"],
            [
                {"description": "Panels", "quantity": 3, "unit_price": 333.33, "tax_rate": rates["NON"]["id"]},
                {"description": "Permit", "total_amount": 150.25},
            ],
        )
        assert r.status_code == 201, r.text
        inv = r.json()["model"]
        taxable = Decimal("999.99") + Decimal("150.25")
        parts = [cents(taxable * Decimal(p) / 100) for p in ("6.25", "1", "1")]  # one rounding per tax rate
        tax = round(sum(parts), 2)
        assert parts == [71.89, 11.5, 11.5] and tax == 94.89  # 8.25% of 1,150.24 = 94.8948
        assert money(inv) == (1150.24, 94.89, 1245.13, 1245.13)
        assert {ln["tax_rate"] for ln in inv["line_items"]} == {rates["TAX"]["id"]}
        qbo = get(sb, f"/invoices/{inv['id']}", include_remote_data="true").json()["remote_data"][0]["data"]
        assert qbo["TxnTaxDetail"]["TxnTaxCodeRef"] == {"value": "2"} and qbo["TxnTaxDetail"]["TotalTax"] == tax
        assert [t["Amount"] for t in qbo["TxnTaxDetail"]["TaxLine"]] == parts
        assert qbo["TxnTaxDetail"]["TaxLine"][0]["TaxLineDetail"]["NetAmountTaxable"] == 1150.24
        assert qbo["Line"][0]["SalesItemLineDetail"]["TaxCodeRef"] == {"value": "TAX"}
        assert qbo["TotalAmt"] == inv["total_amount"] and qbo["Balance"] == inv["balance"]
        # a payment of the whole total (tax included) pays it off
        account = get(sb, "/accounts", name="Undeposited Funds").json()["results"][0]
        pay = post(
            sb,
            "/payments",
            {
                "model": {
                    "contact": cust["id"],
                    "account": account["id"],
                    "total_amount": inv["total_amount"],
                    "transaction_date": "2025-03-01",
                    "applied_to_lines": [
                        {
                            "applied_amount": f"{inv['total_amount']:.2f}",
                            "related_object_id": inv["id"],
                            "related_object_type": "INVOICE",
                        }
                    ],
                }
            },
        )
        assert pay.status_code == 201, pay.text
        assert get(sb, f"/invoices/{inv['id']}").json()["status"] == "PAID"


def test_us_ast_non_taxable_item_and_patch_recomputes() -> None:
    with running(company_tax="us_ast") as sb:
        labour = sb.app.add_item("Labour (exempt)", taxable=False)
        cust = customer(sb, "Round Rock Builders")
        r = new_invoice(
            sb,
            cust["id"],
            [{"description": "Labour", "total_amount": 500.0, "item": labour["id"]}],
        )
        inv = r.json()["model"]
        assert money(inv) == (500.0, 0.0, 500.0, 500.0)
        assert inv["line_items"][0]["tax_rate"] == tax_rates(sb)["NON"]["id"]
        item = get(sb, f"/items/{labour['id']}", include_remote_data="true").json()["remote_data"][0]["data"]
        assert item["Taxable"] is False
        r = patch(
            sb,
            f"/invoices/{inv['id']}",
            {"model": {"line_items": [{"description": "Battery", "total_amount": 1000.0}]}},
        )
        assert r.status_code == 200, r.text
        assert money(r.json()["model"]) == (1000.0, 82.5, 1082.5, 1082.5)
        # the admin helper ("entered in QuickBooks") is taxed the same way
        assert sb.app.create_invoice(cust["id"], amount=200.0)["total_tax_amount"] == 16.5


# --- non_us: every line needs a tax code ---------------------------------------------------------------
def test_non_us_rejects_lines_without_or_with_unknown_tax_code() -> None:
    with running(company_tax="non_us") as sb:
        cust = customer(sb, "Toronto Solar Inc")
        r = new_invoice(
            sb,
            cust["id"],
            [
                {"description": "Panels", "total_amount": 100.0, "tax_rate": tax_rates(sb)["GST"]["id"]},
                {"description": "Racking", "total_amount": 50.0},
            ],
        )
        assert r.status_code == 400
        body = r.json()
        assert body["warnings"] == [] and len(body["errors"]) == 1
        err = body["errors"][0]
        assert err["problem_type"] == "PROVIDER_ERROR" and err["error_code"] == 6000
        assert err["source"] == {"pointer": "model/line_items/1/tax_rate"}
        assert err["title"] == "A business validation error has occurred while processing your request"
        assert err["detail"].endswith(
            "Business Validation Error: Make sure all your transactions have a GST/HST rate before you save."
        )
        fault = json.loads(err["raw_error"])["Fault"]
        assert fault["type"] == "ValidationFault"
        assert fault["Error"][0]["code"] == "6000" and fault["Error"][0]["element"] == "TaxCodeRef"
        unknown = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
        r = new_invoice(sb, cust["id"], [{"description": "Panels", "total_amount": 100.0, "tax_rate": unknown}])
        assert r.status_code == 400 and r.json()["errors"][0]["error_code"] == 2500
        assert r.json()["errors"][0]["source"]["pointer"] == "model/line_items/0/tax_rate"
        assert get(sb, "/invoices").json()["results"] == []  # nothing was written
        # PATCH: new lines need codes too; a PATCH without line_items keeps the coded ones
        hst = tax_rates(sb)["HST ON"]["id"]
        inv = new_invoice(sb, cust["id"], [{"description": "Panels", "total_amount": 100.0, "tax_rate": hst}])
        assert inv.status_code == 201 and inv.json()["warnings"] == []  # tax_rate is taken, no warning
        inv_id = inv.json()["model"]["id"]
        r = patch(sb, f"/invoices/{inv_id}", {"model": {"line_items": [{"description": "X", "total_amount": 5.0}]}})
        assert r.status_code == 400 and r.json()["errors"][0]["error_code"] == 6000
        r = patch(sb, f"/invoices/{inv_id}", {"model": {"memo": "PO 77"}})
        assert r.status_code == 200 and money(r.json()["model"]) == (100.0, 13.0, 113.0, 113.0)
        # the write's meta says so too
        meta = get(sb, "/invoices/meta/post").json()["request_schema"]["properties"]["model"]["properties"]
        assert meta["line_items"]["items"]["required"] == ["tax_rate"]
        assert "tax_rate" in meta["line_items"]["items"]["properties"]
        # the admin helper with an amount uses the company's home rate; explicit lines follow the API's rule
        assert sb.app.create_invoice(cust["id"], amount=10.0)["total_tax_amount"] == 1.3
        with pytest.raises(ValueError, match="GST/HST rate"):
            sb.app.create_invoice(cust["id"], [{"description": "No code", "total_amount": 1.0}])


def test_non_us_computes_tax_per_rate_in_company_currency() -> None:
    with running(company_tax="non_us") as sb:
        info = get(sb, "/company-info", include_remote_data="true").json()["results"][0]
        assert info["currency"] == "CAD" and info["remote_data"][0]["data"]["Country"] == "CA"
        rates = tax_rates(sb)
        cust = customer(sb, "Vancouver Roofing Ltd")
        assert cust["currency"] == "CAD"
        lines = [
            {"description": "Fuse", "total_amount": 0.10, "tax_rate": rates["GST"]["id"]},
            {"description": "Fuse", "total_amount": 0.10, "tax_rate": rates["GST"]["id"]},
            {"description": "Inverter", "total_amount": 1999.99, "tax_rate": rates["GST/PST BC"]["id"]},
            {"description": "Design", "total_amount": 300.0, "tax_rate": rates["Exempt"]["id"]},
        ]
        r = new_invoice(sb, cust["id"], lines)
        assert r.status_code == 201, r.text
        inv = r.json()["model"]
        # GST applies to 0.10 + 0.10 + 1,999.99 once (rounded per rate, not per line: 2 x 0.005 -> 0.01, not 0.02);
        # PST BC to 1,999.99; Exempt is 0%
        gst = cents((Decimal("0.20") + Decimal("1999.99")) * Decimal("0.05"))
        pst = cents(Decimal("1999.99") * Decimal("0.07"))
        assert (gst, pst) == (100.01, 140.0)
        assert money(inv) == (2300.19, 240.01, 2540.2, 2540.2)
        assert inv["currency"] == "CAD" and {ln["currency"] for ln in inv["line_items"]} == {"CAD"}
        assert [ln["tax_rate"] for ln in inv["line_items"]] == [ln["tax_rate"] for ln in lines]
        qbo = get(sb, f"/invoices/{inv['id']}", include_remote_data="true").json()["remote_data"][0]["data"]
        assert "TxnTaxCodeRef" not in qbo["TxnTaxDetail"] and qbo["GlobalTaxCalculation"] == "TaxExcluded"
        assert [(t["TaxLineDetail"]["TaxRateRef"]["name"], t["Amount"]) for t in qbo["TxnTaxDetail"]["TaxLine"]] == [
            ("GST", 100.01),
            ("PST BC", 140.0),
            ("Exempt", 0.0),
        ]
        assert [ln["SalesItemLineDetail"].get("TaxCodeRef") for ln in qbo["Line"][:4]] == [
            {"value": "2"},
            {"value": "2"},
            {"value": "5"},
            {"value": "4"},
        ]
        assert qbo["CurrencyRef"] == {"value": "CAD"}
        # QBO passthrough sees the tax setup
        assert [r["Name"] for r in query(sb, "select * from TaxRate")["TaxRate"]] == [
            "GST",
            "HST ON",
            "Exempt",
            "PST BC",
        ]
        assert query(sb, "select * from TaxCode where Name = 'HST ON'")["TaxCode"][0]["Id"] == "3"
        got = passthrough(sb, "GET", f"{QBO}/taxcode/5")
        assert got["status"] == 200 and got["response"]["TaxCode"]["Name"] == "GST/PST BC"
        assert passthrough(sb, "GET", f"{QBO}/taxrate/99")["response"]["Fault"]["Error"][0]["code"] == "610"
        prefs = query(sb, "select * from Preferences")["Preferences"][0]
        assert prefs["CurrencyPrefs"]["HomeCurrency"] == {"value": "CAD"}
        assert prefs["TaxPrefs"] == {"UsingSalesTax": True, "PartnerTaxEnabled": False}
        # seeded open invoices carry the company's home rate
        assert seed_merge(sb.app, customers=2, seed=9, invoices_every=1)["invoices"] == 2


def test_uk_company_asks_for_a_vat_rate() -> None:
    with running(company_tax="non_us", currency="GBP") as sb:
        info = get(sb, "/company-info", include_remote_data="true").json()["results"][0]
        assert info["currency"] == "GBP" and info["remote_data"][0]["data"]["Country"] == "GB"
        assert list(tax_rates(sb)) == ["20.0% S", "5.0% R", "0.0% Z", "Exempt"]
        cust = customer(sb, "Leeds Solar Ltd")
        r = new_invoice(sb, cust["id"], [{"description": "Panels", "total_amount": 100.0}])
        assert r.status_code == 400
        assert r.json()["errors"][0]["detail"].endswith(
            "Make sure all your transactions have a VAT rate before you save."
        )
        r = new_invoice(
            sb,
            cust["id"],
            [{"description": "Panels", "total_amount": 100.0, "tax_rate": tax_rates(sb)["20.0% S"]["id"]}],
        )
        assert money(r.json()["model"]) == (100.0, 20.0, 120.0, 120.0)


# --- switching the company at run time, and the CLI -----------------------------------------------------
def test_admin_switches_the_company(merge_sandbox: Any) -> None:
    sb = _Running(merge_sandbox.server)
    customer(sb, "Gone After Switch")
    r = requests.post(f"{sb.root}/__admin/company", json={"company_tax": "non_us"}, timeout=T)
    assert r.status_code == 200 and r.json()["currency"] == "CAD"
    assert get(sb, "/contacts").json()["results"] == []  # rebuilt empty, as after a reset
    assert get(sb, "/company-info").json()["results"][0]["currency"] == "CAD"
    assert requests.post(f"{sb.root}/__admin/company", json={"currency": "EUR"}, timeout=T).status_code == 400
    back = requests.post(f"{sb.root}/__admin/company", json={"company_tax": "us_manual"}, timeout=T).json()
    assert back["currency"] == "USD" and list(tax_rates(sb)) == ["TAX", "NON", "Austin"]


def test_cli_company_tax_flag() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.merge", "--port", "0", "--company-tax", "non_us", "--currency", "GBP"],
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
        assert "company non_us GBP" in line, line
        url = line.split()[3]
        assert requests.get(f"{url}/company-info", headers=H, timeout=T).json()["results"][0]["currency"] == "GBP"
    finally:
        stop_process(proc)
