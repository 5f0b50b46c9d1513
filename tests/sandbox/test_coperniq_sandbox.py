"""The Coperniq emulator over real HTTP: wire formats, pagination, filters, writes, phases, limits, faults."""

from __future__ import annotations

import functools
import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from sandbox.coperniq import CoperniqApp, parse_iso

SPEC_PATH = Path("/work/shared/reference/coperniq-openapi.yml")
T = 10  # request timeout, seconds


class Api:
    """requests.Session bound to a sandbox URL with the API key."""

    def __init__(self, sb: Any, key: str | None = None) -> None:
        self.url = sb.url
        self.s = requests.Session()
        if key is not False:
            self.s.headers["x-api-key"] = key or sb.api_key

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.s.get(self.url + path, params=params, timeout=T)

    def post(self, path: str, body: Any = None, raw: bytes | None = None, **params: Any) -> requests.Response:
        if raw is not None:
            return self.s.post(
                self.url + path, data=raw, params=params, timeout=T, headers={"Content-Type": "application/json"}
            )
        return self.s.post(self.url + path, json=body, params=params, timeout=T)

    def patch(self, path: str, body: Any) -> requests.Response:
        return self.s.patch(self.url + path, json=body, timeout=T)


@pytest.fixture
def api(coperniq_sandbox: Any) -> Api:
    return Api(coperniq_sandbox)


def assert_error(resp: requests.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["code"] == code and isinstance(body["message"], str) and body["message"]
    if field is not None:
        assert body.get("field") == field, body
    return body


@functools.lru_cache(maxsize=1)
def _registry() -> Registry:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec = yaml.load(SPEC_PATH.read_text(), Loader=loader)  # noqa: S506 - safe loader
    return Registry().with_resource("urn:coperniq", Resource.from_contents(spec, default_specification=DRAFT202012))


def validate(instance: Any, schema_name: str) -> None:
    """Validate against components/schemas/<name> of the real OpenAPI (extra fields allowed, as Fern drops some)."""
    Draft202012Validator({"$ref": f"urn:coperniq#/components/schemas/{schema_name}"}, registry=_registry()).validate(
        instance
    )


def catalog_id(app: CoperniqApp, name: str = "Panel") -> int:
    return app.add_catalog_item(name, cost=100.0, price=250.0)["id"]


# --- auth and headers ---------------------------------------------------------------------------
def test_auth_failure_body(coperniq_sandbox: Any) -> None:
    for key in (False, "wrong-key"):
        resp = Api(coperniq_sandbox, key).get("/projects")
        assert resp.status_code == 401
        assert resp.json() == {"message": "Invalid API key", "code": "UNAUTHORIZED"}
        assert "X-RateLimit-Limit" not in resp.headers
    # header name is case-insensitive
    resp = requests.get(coperniq_sandbox.url + "/projects", headers={"X-API-KEY": coperniq_sandbox.api_key}, timeout=T)
    assert resp.status_code == 200 and resp.json() == []


def test_rate_limit_headers_on_every_authenticated_response(api: Api) -> None:
    first = api.get("/projects")
    second = api.get("/projects/999")  # errors carry them too
    assert second.status_code == 404
    assert first.headers["X-RateLimit-Limit"] == "5000" == second.headers["X-RateLimit-Limit"]
    assert int(first.headers["X-RateLimit-Remaining"]) == 4999
    assert int(second.headers["X-RateLimit-Remaining"]) == 4998


def test_429_on_per_second_limit(coperniq_sandbox: Any, api: Api) -> None:
    coperniq_sandbox.app.set_rate_limits(3, 5000)
    statuses = []
    started = time.monotonic()
    for _ in range(8):
        resp = api.get("/projects")
        statuses.append(resp.status_code)
        if resp.status_code == 429:
            break
    assert time.monotonic() - started < 1.0, "too slow to exercise a 1-second window"
    assert statuses == [200, 200, 200, 429]
    assert_error(resp, 429, "RATE_LIMIT_EXCEEDED")
    assert resp.headers["Retry-After"] == "1"
    assert resp.headers["X-RateLimit-Limit"] == "5000"
    time.sleep(1.05)
    assert api.get("/projects").status_code == 200


def test_429_on_daily_limit(coperniq_sandbox: Any, api: Api) -> None:
    coperniq_sandbox.app.set_rate_limits(100, 3)
    assert [api.get("/workflows").status_code for _ in range(3)] == [200, 200, 200]
    resp = api.get("/workflows")
    assert_error(resp, 429, "RATE_LIMIT_EXCEEDED")
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    assert int(resp.headers["Retry-After"]) > 80000  # rolling 24 h window


# --- pagination and filters ---------------------------------------------------------------------
def test_pagination_edges(coperniq_sandbox: Any, api: Api) -> None:
    app = coperniq_sandbox.app
    ids = [app.add_project(f"P{i}")["id"] for i in range(40)]
    pages = [api.get("/projects", page=p, page_size=20).json() for p in (1, 2, 3)]
    assert [len(p) for p in pages] == [20, 20, 0]  # exact multiple: the page after is empty
    assert [p["id"] for p in pages[0] + pages[1]] == ids
    assert api.get("/projects").json().__len__() == 20  # default page_size
    assert api.get("/projects", page=99, page_size=7).json() == []
    app.add_project("P40")
    assert len(api.get("/projects", page=3, page_size=20).json()) == 1
    assert len(api.get("/projects", page_size=100).json()) == 41
    assert_error(api.get("/projects", page_size=101), 400, "VALIDATION_ERROR", "page_size")
    assert_error(api.get("/projects", page_size=0), 400, "VALIDATION_ERROR", "page_size")
    assert_error(api.get("/projects", page=0), 400, "VALIDATION_ERROR", "page")
    assert_error(api.get("/projects", page="x"), 400, "VALIDATION_ERROR", "page")
    assert_error(api.get("/accounts", page_size=101), 400, "VALIDATION_ERROR", "page_size")
    desc = api.get("/projects", page_size=5, order_by="desc").json()
    assert [p["id"] for p in desc] == sorted([*ids, desc[0]["id"]], reverse=True)[:5]
    assert_error(api.get("/projects", order_by="sideways"), 400, "VALIDATION_ERROR", "order_by")


def test_updated_after_and_before(coperniq_sandbox: Any, api: Api) -> None:
    app = coperniq_sandbox.app
    app.state.clock.set("2025-01-01T00:00:00Z")
    made = []
    for i in range(3):
        made.append(app.add_project(f"P{i}"))
        app.state.clock.advance(3600)
    stamps = [p["updatedAt"] for p in made]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    after = api.get("/projects", updated_after=stamps[0]).json()
    assert [p["id"] for p in after] == [made[1]["id"], made[2]["id"]]  # strict >
    before = api.get("/projects", updated_before=stamps[2]).json()
    assert [p["id"] for p in before] == [made[0]["id"], made[1]["id"]]  # strict <
    both = api.get("/projects", updated_after=stamps[0], updated_before=stamps[2]).json()
    assert [p["id"] for p in both] == [made[1]["id"]]
    # offsets are honoured
    assert len(api.get("/projects", updated_after="2025-01-01T00:30:00+01:00").json()) == 3  # 23:30Z
    assert len(api.get("/projects", updated_after="2024-12-31T23:30:00-01:00").json()) == 2  # 00:30Z
    assert_error(api.get("/projects", updated_after="yesterday"), 400, "VALIDATION_ERROR", "updated_after")
    assert_error(api.get("/invoices", updated_before="2025-13-01"), 400, "VALIDATION_ERROR", "updated_before")
    # the same filters exist on accounts, contacts and invoices
    acc_stamp = api.get(f"/accounts/{made[0]['accountId']}").json()["updatedAt"]
    assert made[0]["accountId"] not in [a["id"] for a in api.get("/accounts", updated_after=acc_stamp).json()]
    # a PATCH moves a record into the window
    assert api.patch(f"/projects/{made[0]['id']}", {"title": "Renamed"}).status_code == 200
    assert [p["title"] for p in api.get("/projects", updated_after=stamps[2]).json()] == ["Renamed"]


def test_include_archived_and_clients_alias(coperniq_sandbox: Any, api: Api) -> None:
    acc = coperniq_sandbox.app.add_account("Archived Co")
    keep = coperniq_sandbox.app.add_account("Active Co")
    assert api.patch(f"/accounts/{acc['id']}", {"isActive": False}).json()["isActive"] is False
    assert [a["id"] for a in api.get("/accounts").json()] == [keep["id"]]
    assert [a["id"] for a in api.get("/clients", include_archived="true").json()] == [acc["id"], keep["id"]]


# --- projects and phases ------------------------------------------------------------------------
def test_project_list_vs_detail_and_phase_move(coperniq_sandbox: Any, api: Api) -> None:
    app = coperniq_sandbox.app
    app.state.clock.set("2025-03-01T00:00:00Z")
    p = app.add_project("Smith Residence Solar")
    assert p["phase"]["name"] == "Sale" and p["phase"]["status"] == "IN_PROGRESS"
    listed = api.get("/projects").json()[0]
    assert "phaseInstances" not in listed
    assert set(listed["phase"]) >= {"instanceId", "templateId", "name", "status", "type"}
    assert listed["workflowName"] == "Residential Solar" and listed["address"] == ["1 Test St, Austin, TX 78701"]
    before = api.get(f"/projects/{p['id']}").json()
    assert [pi["status"] for pi in before["phaseInstances"]] == ["IN_PROGRESS"] + ["NOT_STARTED"] * 6

    app.state.clock.advance(86400)
    moved = app.move_project_to_phase(p["id"], "Permitting")
    detail = api.get(f"/projects/{p['id']}").json()
    assert detail == json.loads(json.dumps(moved))
    assert detail["updatedAt"] > before["updatedAt"]
    inst = {pi["name"]: pi for pi in detail["phaseInstances"]}
    assert [pi["status"] for pi in detail["phaseInstances"]] == ["COMPLETED"] * 3 + ["IN_PROGRESS"] + [
        "NOT_STARTED"
    ] * 3
    assert inst["Sale"]["startedAt"] == before["phaseInstances"][0]["startedAt"]
    assert inst["Sale"]["completedAt"] == inst["Permitting"]["startedAt"] == detail["updatedAt"]
    assert inst["Design"]["startedAt"] == inst["Design"]["completedAt"]  # skipped phase recorded as completed
    assert inst["Install"]["startedAt"] is None
    assert detail["phase"]["instanceId"] == inst["Permitting"]["id"]
    assert detail["phase"]["templateId"] == inst["Permitting"]["phaseTemplateId"]
    # the workflow's phases are the template ids
    wf = api.get(f"/workflows/{detail['workflowId']}").json()
    assert [ph["id"] for ph in wf["phases"]] == [pi["phaseTemplateId"] for pi in detail["phaseInstances"]]

    # admin HTTP endpoint, by template id; the move shows up in an updated_after window
    app.state.clock.advance(60)
    install_tpl = inst["Install"]["phaseTemplateId"]
    resp = requests.post(
        f"{coperniq_sandbox.server.root_url}/__admin/projects/{p['id']}/phase", json={"phase": install_tpl}, timeout=T
    )
    assert resp.status_code == 200 and resp.json()["phase"]["name"] == "Install"
    window = api.get("/projects", updated_after=detail["updatedAt"]).json()
    assert [(w["id"], w["phase"]["name"]) for w in window] == [(p["id"], "Install")]
    # moving back restarts the target and clears later phases
    back = app.move_project_to_phase(p["id"], "design")
    assert [pi["status"] for pi in back["phaseInstances"]] == ["COMPLETED"] * 2 + ["IN_PROGRESS"] + ["NOT_STARTED"] * 4
    bad = requests.post(
        f"{coperniq_sandbox.server.root_url}/__admin/projects/{p['id']}/phase", json={"phase": "Closeout"}, timeout=T
    )
    assert bad.status_code == 400 and bad.json()["field"] == "phase"


def test_project_and_account_writes(coperniq_sandbox: Any, api: Api) -> None:
    resp = api.post(
        "/accounts",
        {
            "title": "Jane O'Brien",
            "address": ["5 Oak Ave, Austin, TX 78701"],
            "accountType": "RESIDENTIAL",
            "primaryEmail": "jane@example.com",
        },
    )
    assert resp.status_code == 200
    acc = resp.json()
    assert acc["title"] == "Jane O'Brien" and acc["isActive"] is True and acc["number"] > 0
    # upsert: default match_by=title, skip -> same record unchanged
    same = api.post("/accounts", {"title": "jane o'brien", "address": ["elsewhere"]}).json()
    assert same["id"] == acc["id"] and same["address"] == acc["address"]
    replaced = api.post(
        "/accounts",
        {"title": "X", "address": ["9 New St"], "primaryEmail": "JANE@example.com"},
        match_by="primaryEmail",
        match_found_strategy="replace",
    ).json()
    assert replaced["id"] == acc["id"] and replaced["address"] == ["9 New St"] and replaced["title"] == "X"
    enriched = api.post(
        "/accounts", {"title": "X", "address": ["other"], "primaryPhone": "+15125550123"}, match_found_strategy="enrich"
    ).json()
    assert enriched["address"] == ["9 New St"] and enriched["primaryPhone"] == "+15125550123"
    assert_error(api.post("/accounts", {"address": ["a"]}), 400, "VALIDATION_ERROR", "title")
    assert_error(api.post("/accounts", {"title": "t", "address": "a string"}), 400, "VALIDATION_ERROR", "address")
    assert_error(
        api.post("/accounts", {"title": "t", "address": ["a"], "accountType": "ALIEN"}),
        400,
        "VALIDATION_ERROR",
        "accountType",
    )
    assert_error(
        api.post("/accounts", {"title": "t", "address": ["a"]}, match_by="shoe"), 400, "VALIDATION_ERROR", "match_by"
    )
    assert_error(api.patch("/accounts/1", {"title": "x"}), 404, "NOT_FOUND")

    wf = coperniq_sandbox.app.add_workflow("HVAC Replacement", ["Sale", "Site Visit", "Installation", "Closeout"])
    resp = api.post(
        "/projects",
        {
            "title": "O'Brien HVAC",
            "address": ["9 New St"],
            "accountId": str(acc["id"]),
            "workflowId": str(wf["id"]),
            "trades": ["HVAC"],
            "value": 12000,
        },
    )
    assert resp.status_code == 200
    proj = resp.json()
    assert proj["accountId"] == acc["id"] and proj["workflowName"] == "HVAC Replacement"
    assert proj["phase"]["name"] == "Sale"
    assert_error(
        api.post("/projects", {"title": "t", "address": ["a"], "accountId": 1}), 400, "VALIDATION_ERROR", "accountId"
    )
    assert_error(
        api.post("/projects", {"title": "t", "address": ["a"], "workflowId": 1}), 400, "VALIDATION_ERROR", "workflowId"
    )
    assert_error(
        api.post("/projects", {"title": "t", "address": ["a"], "status": "DONE"}), 400, "VALIDATION_ERROR", "status"
    )
    assert_error(api.patch(f"/projects/{proj['id']}", {"accountId": 5}), 400, "VALIDATION_ERROR", "accountId")
    patched = api.patch(f"/projects/{proj['id']}", {"description": "x", "custom": {"utility": "APS"}}).json()
    assert patched["description"] == "x" and patched["custom"] == {"utility": "APS"}
    cleared = api.patch(f"/projects/{proj['id']}", {"description": None}).json()
    assert cleared["description"] is None and cleared["updatedAt"] > patched["updatedAt"]
    # a project without accountId gets an account of its own
    solo = api.post("/projects", {"title": "Walk-in", "address": ["1 Road"]}).json()
    assert api.get(f"/accounts/{solo['accountId']}").json()["title"] == "Walk-in"


def test_contacts_and_catalog_writes(coperniq_sandbox: Any, api: Api) -> None:
    acc = coperniq_sandbox.app.add_account("Acme")
    resp = api.post(
        "/contacts",
        {
            "name": "Zoë Müller",
            "emails": ["zoe@example.com"],
            "phones": ["+1"],
            "title": "CFO",
            "accountIds": [acc["id"]],
        },
    )
    assert resp.status_code == 201
    contact = resp.json()
    assert contact["id"] and contact["accounts"] == [{"id": acc["id"], "title": "Acme"}]
    got = api.get(f"/accounts/{acc['id']}", include_contacts="true").json()
    assert got["contacts"] == [{"id": contact["id"], "emails": ["zoe@example.com"], "phones": ["+1"]}]
    assert "contacts" not in api.get(f"/accounts/{acc['id']}").json()
    assert [c["name"] for c in api.get("/contacts", q="müll").json()] == ["Zoë Müller"]
    assert_error(api.post("/contacts", {"emails": []}), 400, "VALIDATION_ERROR", "name")
    assert_error(api.post("/contacts", {"name": "a", "accountIds": [1]}), 400, "VALIDATION_ERROR", "accountIds")

    resp = api.post(
        "/catalog-items",
        {
            "name": "Heat pump",
            "type": "PRODUCT",
            "category": "HEAT_PUMP",
            "cost": 5000,
            "price": 8900,
            "tradeGroup": "MECHANICAL",
        },
    )
    assert resp.status_code == 201 and resp.json()["catalog"] == "MECHANICAL"
    assert_error(
        api.post("/catalog-items", {"name": "x", "type": "SERVICE", "category": "HEAT_PUMP", "cost": 1, "price": 2}),
        400,
        "VALIDATION_ERROR",
        "category",
    )
    assert_error(
        api.post("/catalog-items", {"name": "x", "type": "SERVICE", "category": "REPAIR", "price": 2}),
        400,
        "VALIDATION_ERROR",
        "cost",
    )
    assert [c["name"] for c in api.get("/catalog-items").json()] == ["Heat pump"]


# --- invoices and payments ----------------------------------------------------------------------
def test_invoice_create_validation(coperniq_sandbox: Any, api: Api) -> None:
    app = coperniq_sandbox.app
    proj = app.add_project("Smith Solar")
    c1, c2 = catalog_id(app, "Panel"), catalog_id(app, "Labor")
    good_line = {"catalogItemId": c1, "quantity": 2, "unitCost": 100, "unitPrice": 250}
    base = {"recordId": proj["id"], "calculationMethod": "LINE_ITEMS", "lineItems": [good_line]}

    def create(**changes: Any) -> requests.Response:
        body = {**base, **changes}
        return api.post("/invoices", {k: v for k, v in body.items() if v is not None})

    assert_error(api.post("/invoices", raw=b"{not json"), 400, "INVALID_JSON")
    assert_error(api.post("/invoices", [base]), 400, "VALIDATION_ERROR")
    assert_error(create(recordId=None), 400, "VALIDATION_ERROR", "recordId")
    assert_error(create(recordId=123), 400, "VALIDATION_ERROR", "recordId")
    assert_error(create(calculationMethod=None), 400, "VALIDATION_ERROR", "calculationMethod")
    assert_error(create(calculationMethod="MAGIC"), 400, "VALIDATION_ERROR", "calculationMethod")
    assert_error(create(lineItems=None), 400, "VALIDATION_ERROR", "lineItems")
    assert_error(create(lineItems=[]), 400, "VALIDATION_ERROR", "lineItems")
    assert_error(
        create(lineItems=[{**good_line, "catalogItemId": None}]), 400, "VALIDATION_ERROR", "lineItems[0].catalogItemId"
    )
    assert_error(
        create(lineItems=[{**good_line, "catalogItemId": 1}]), 400, "VALIDATION_ERROR", "lineItems[0].catalogItemId"
    )
    assert_error(
        create(lineItems=[good_line, {**good_line, "quantity": 1}]),
        400,
        "VALIDATION_ERROR",
        "lineItems[1].catalogItemId",
    )  # unique across lines
    assert_error(
        create(lineItems=[good_line], sections=[{"name": "S", "lineItems": [good_line]}]),
        400,
        "VALIDATION_ERROR",
        "sections[0].lineItems[0].catalogItemId",
    )  # ... and across sections
    assert_error(create(lineItems=[{**good_line, "quantity": 1.5}]), 400, "VALIDATION_ERROR", "lineItems[0].quantity")
    assert_error(create(lineItems=[{**good_line, "unitPrice": "9"}]), 400, "VALIDATION_ERROR", "lineItems[0].unitPrice")
    assert_error(create(status="SENT"), 400, "VALIDATION_ERROR", "issueDate")
    assert_error(create(status="OVERDUE", issueDate="2025-06-01T00:00:00Z"), 400, "VALIDATION_ERROR", "status")
    assert_error(create(status="SENT", issueDate="June 1st"), 400, "VALIDATION_ERROR", "issueDate")
    assert_error(create(calculationMethod="PERCENTAGE"), 400, "VALIDATION_ERROR", "lineItems")
    assert_error(create(calculationMethod="PERCENTAGE", lineItems=None), 400, "VALIDATION_ERROR", "percentage")
    assert app.state.invoices == {}  # nothing half-created

    resp = create(
        status="SENT",
        issueDate="2025-06-10T00:00:00Z",
        dueDate="2025-07-01T00:00:00Z",
        description="QBO INV-1043 | Deposit",
        lineItems=[good_line, {"catalogItemId": c2, "quantity": 1, "unitCost": 1500, "unitPrice": -100.5}],
    )
    assert resp.status_code == 201, resp.text
    inv = resp.json()
    assert inv["amount"] == 399.5 and inv["amountPaid"] == 0 and inv["status"] == "SENT"
    assert inv["record"] == {"id": proj["id"], "uid": proj["number"], "title": "Smith Solar"}
    assert inv["account"]["id"] == proj["accountId"]
    assert [li["catalogItem"]["name"] for li in inv["lineItems"]] == ["Panel", "Labor"]
    assert api.get(f"/invoices/{inv['id']}").json() == inv
    draft = create(sections=[{"name": "Equipment", "lineItems": [good_line]}], lineItems=None).json()
    assert draft["status"] == "DRAFT" and draft["lineItems"][0]["sectionName"] == "Equipment"
    on_account = create(recordId=proj["accountId"]).json()
    assert on_account["record"]["id"] == proj["accountId"]


def test_invoice_patch(coperniq_sandbox: Any, api: Api) -> None:
    app = coperniq_sandbox.app
    proj = app.add_project("P")
    c1, c2 = catalog_id(app, "A"), catalog_id(app, "B")
    inv = api.post(
        "/invoices",
        {
            "recordId": proj["id"],
            "calculationMethod": "LINE_ITEMS",
            "lineItems": [{"catalogItemId": c1, "quantity": 1, "unitCost": 1, "unitPrice": 10}],
        },
    ).json()
    assert_error(
        api.patch(f"/invoices/{inv['id']}", {"calculationMethod": "PERCENTAGE"}),
        400,
        "VALIDATION_ERROR",
        "calculationMethod",
    )
    assert_error(api.patch(f"/invoices/{inv['id']}", {"status": "LOST"}), 400, "VALIDATION_ERROR", "status")
    assert_error(
        api.patch(
            f"/invoices/{inv['id']}",
            {"lineItems": [{"catalogItemId": 7, "quantity": 1, "unitCost": 1, "unitPrice": 1}]},
        ),
        400,
        "VALIDATION_ERROR",
        "lineItems[0].catalogItemId",
    )
    assert_error(api.patch("/invoices/1", {"status": "SENT"}), 404, "NOT_FOUND")
    assert api.get(f"/invoices/{inv['id']}").json() == inv  # failed PATCHes change nothing
    keep_line = inv["lineItems"][0]["id"]
    resp = api.patch(
        f"/invoices/{inv['id']}",
        {
            "status": "SENT",
            "description": "new",
            "lineItems": [
                {"id": keep_line, "catalogItemId": c1, "quantity": 3, "unitCost": 1, "unitPrice": 10},
                {"catalogItemId": c2, "quantity": 1, "unitCost": 1, "unitPrice": 5},
            ],
        },
    )
    assert resp.status_code == 200
    new = resp.json()
    assert new["amount"] == 35 and new["status"] == "SENT" and new["issueDate"] and new["description"] == "new"
    assert new["lineItems"][0]["id"] == keep_line and new["lineItems"][1]["id"] != keep_line
    assert new["updatedAt"] > inv["updatedAt"]
    assert requests.delete(f"{api.url}/invoices/{inv['id']}", headers=api.s.headers, timeout=T).status_code == 200
    assert api.get(f"/invoices/{inv['id']}").status_code == 404


def test_payments_update_invoice(coperniq_sandbox: Any, api: Api) -> None:
    app = coperniq_sandbox.app
    proj = app.add_project("P")
    inv = app.add_invoice(proj["id"], [{"quantity": 1, "unitCost": 500, "unitPrice": 1000}])
    path = f"/invoices/{inv['id']}/payments"
    ok = {"amount": 400, "paymentMethod": "ACH", "paymentDate": "2025-06-15T00:00:00Z", "paymentReference": "QBO-1"}
    assert_error(api.post(path, {**ok, "amount": 0}), 400, "VALIDATION_ERROR", "amount")
    assert_error(api.post(path, {**ok, "amount": -5}), 400, "VALIDATION_ERROR", "amount")
    assert_error(api.post(path, {**ok, "amount": "400"}), 400, "VALIDATION_ERROR", "amount")
    assert_error(api.post(path, {**ok, "paymentMethod": "BITCOIN"}), 400, "VALIDATION_ERROR", "paymentMethod")
    assert_error(
        api.post(path, {k: v for k, v in ok.items() if k != "paymentMethod"}), 400, "VALIDATION_ERROR", "paymentMethod"
    )
    assert_error(
        api.post(path, {k: v for k, v in ok.items() if k != "paymentDate"}), 400, "VALIDATION_ERROR", "paymentDate"
    )
    assert_error(api.post(path, {**ok, "amount": 1000.01}), 400, "VALIDATION_ERROR", "amount")  # over balance
    assert_error(api.post("/invoices/1/payments", ok), 404, "NOT_FOUND")
    assert api.get(path).json() == []

    resp = api.post(path, ok)
    assert resp.status_code == 201
    pay = resp.json()
    assert pay["amount"] == 400 and pay["status"] == "COMPLETED" and pay["paymentReference"] == "QBO-1"
    after_first = api.get(f"/invoices/{inv['id']}").json()
    assert after_first["amountPaid"] == 400 and after_first["status"] == "PARTIALLY_PAID"
    assert after_first["updatedAt"] > inv["updatedAt"]
    assert [i["id"] for i in api.get("/invoices", updated_after=inv["updatedAt"]).json()["items"]] == [inv["id"]]
    api.post(path, {**ok, "amount": 600, "paymentMethod": "CHECK"})
    paid = api.get(f"/invoices/{inv['id']}").json()
    assert paid["amountPaid"] == 1000 and paid["status"] == "PAID"
    listed = api.get(path).json()
    assert [p["amount"] for p in listed] == [400, 600] and [p["invoiceNumber"] for p in listed] == [1, 2]
    assert api.get(f"{path}/{pay['id']}").json() == pay
    assert api.get(f"{path}/1").status_code == 404


def test_invoice_envelope_and_scoped_lists(coperniq_sandbox: Any, api: Api) -> None:
    app = coperniq_sandbox.app
    p1, p2 = app.add_project("A"), app.add_project("B")
    ids = [app.add_invoice(p1["id"])["id"] for _ in range(3)] + [app.add_invoice(p2["id"])["id"]]
    first = api.get("/invoices", page_size=2).json()
    assert set(first) == {"items", "page", "page_size", "has_more"}
    assert first["page"] == 1 and first["page_size"] == 2 and first["has_more"] is True
    last = api.get("/invoices", page=2, page_size=2).json()
    assert last["has_more"] is False and [i["id"] for i in first["items"] + last["items"]] == ids
    beyond = api.get("/invoices", page=3, page_size=2).json()
    assert beyond["items"] == [] and beyond["has_more"] is False
    scoped = api.get(f"/projects/{p1['id']}/invoices", page_size=2).json()
    assert [i["id"] for i in scoped["items"]] == ids[:2] and scoped["has_more"] is True
    assert [i["id"] for i in api.get(f"/accounts/{p2['accountId']}/invoices").json()["items"]] == ids[3:]
    assert api.get("/projects/1/invoices").status_code == 404
    assert_error(api.get("/invoices", page_size=101), 400, "VALIDATION_ERROR", "page_size")


# --- fault injection ----------------------------------------------------------------------------
def test_fault_injection(coperniq_sandbox: Any, api: Api) -> None:
    faults = coperniq_sandbox.faults
    faults.update(error_rate=1.0)
    assert_error(api.get("/projects"), 500, "INTERNAL_SERVER_ERROR")
    faults.reset()
    faults.update(burst_429=2, retry_after=3)
    first, second, third = (api.get("/projects") for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (429, 429, 200)
    assert first.headers["Retry-After"] == "3" and first.json()["code"] == "RATE_LIMIT_EXCEEDED"
    # over HTTP, restricted to one path
    root = coperniq_sandbox.server.root_url
    assert (
        requests.post(
            f"{root}/__admin/faults", json={"error_rate": 1, "only_paths": ["/invoices"]}, timeout=T
        ).status_code
        == 200
    )
    assert api.get("/projects").status_code == 200 and api.get("/invoices").status_code == 500
    assert requests.post(f"{root}/__admin/faults", json={"nope": 1}, timeout=T).status_code == 400
    faults.reset()
    faults.update(drop_after=coperniq_sandbox.stats.total + 1)
    assert api.get("/projects").status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(api.url + "/projects", headers={"x-api-key": coperniq_sandbox.api_key}, timeout=T)
    faults.reset()
    assert api.get("/projects").status_code == 200
    stats = requests.get(f"{root}/__admin/stats", timeout=T).json()
    assert stats["by_status"]["429"] == 2 and stats["by_route"]["GET /v1/projects"] >= 5


# --- schemas ------------------------------------------------------------------------------------
def test_responses_match_openapi_schemas(coperniq_sandbox: Any, api: Api) -> None:
    coperniq_sandbox.app.seed(projects=30, seed=7)
    projects = api.get("/projects", page_size=100, include_archived="true").json()
    assert len(projects) == 30
    for p in projects:
        validate(p, "Project")
    detail = api.get(f"/projects/{projects[-1]['id']}").json()
    validate(detail, "Project")
    validate(detail, "ProjectWithPhaseInstances")
    for a in api.get("/accounts", page_size=100, include_contacts="true").json():
        validate(a, "Account")
    contacts = api.get("/contacts", page_size=100).json()
    for c in contacts:
        validate(c, "Contact")
        assert isinstance(c["id"], int) and c["updatedAt"]  # fields Fern dropped, present for real
    for w in api.get("/workflows").json():
        validate(w, "Workflow")
    envelope = api.get("/invoices", page_size=100).json()
    validate(envelope, "InvoiceListResponse")
    validate(api.get(f"/invoices/{envelope['items'][0]['id']}").json(), "Invoice")
    paid = next(i for i in envelope["items"] if i["amountPaid"] > 0)
    payments = api.get(f"/invoices/{paid['id']}/payments").json()
    validate(payments, "PaymentListResponse")
    for item in api.get("/catalog-items", page_size=100).json():
        validate(item, "CatalogItem")
    # and the schemas are strict enough to catch a broken record
    with pytest.raises(ValidationError):
        validate({**envelope, "has_more": "no"}, "InvoiceListResponse")


# --- seed ---------------------------------------------------------------------------------------
def _dump(app: CoperniqApp) -> str:
    st = app.state
    return json.dumps(
        {
            "p": [app.project_out(p, True) for p in st.projects.values()],
            "a": [app.account_out(a, True) for a in st.accounts.values()],
            "c": [app.contact_out(c) for c in st.contacts.values()],
            "i": [app.invoice_out(i) for i in st.invoices.values()],
            "pay": st.payments,
        },
        sort_keys=True,
        default=str,
    )


def test_seed_is_deterministic() -> None:
    a, b, c = CoperniqApp(), CoperniqApp(), CoperniqApp()
    a.seed(projects=200, seed=5)
    b.seed(projects=200, seed=5)
    c.seed(projects=200, seed=6)
    dump = _dump(a)
    assert dump == _dump(b)
    assert dump != _dump(c)
    # realistic text: apostrophes/unicode appear somewhere
    titles = " ".join(x["title"] for x in a.state.accounts.values())
    assert "'" in titles and any(ord(ch) > 127 for ch in titles)


def test_seed_2k_projects_spread_and_consistent() -> None:
    app = CoperniqApp()
    started = time.monotonic()
    summary = app.seed(projects=2000, seed=42)
    assert time.monotonic() - started < 30  # generous: ~0.3 s on a dev box
    assert summary["projects"] == 2000 and summary["workflows"] == 3 and summary["catalog_items"] == 20
    assert 800 <= summary["accounts"] <= 1000 and summary["invoices"] > 1000 and summary["payments"] > 500
    st = app.state
    end = parse_iso("2025-06-30T00:00:00Z")
    past_install = before_install = 0
    for pid in st.projects:
        detail = app.project_out(st.projects[pid], detail=True)
        inst = detail["phaseInstances"]
        statuses = [i["status"] for i in inst]
        k = statuses.index("IN_PROGRESS")
        assert statuses == ["COMPLETED"] * k + ["IN_PROGRESS"] + ["NOT_STARTED"] * (len(inst) - k - 1)
        for prev, nxt in itertools.pairwise(inst[: k + 1]):
            assert prev["completedAt"] == nxt["startedAt"] and prev["startedAt"] <= prev["completedAt"]
        assert detail["phase"]["instanceId"] == inst[k]["id"]
        assert parse_iso(detail["updatedAt"]) <= end
        names = [i["name"] for i in inst]
        install = names.index("Install" if "Install" in names else "Installation")
        if k > install:
            past_install += 1
        elif k < install:
            before_install += 1
        invoices = st.invoices_by_project.get(pid, [])
        assert (k == 0) == (not invoices)  # invoices only after Sale
    assert past_install > 200 and before_install > 200
    for inv in st.invoices.values():
        total = round(sum(p["amount"] for p in st.payments[inv["id"]]), 2)
        assert total == inv["amountPaid"] <= inv["amount"]
        assert inv["status"] == (
            "PAID" if total and total >= inv["amount"] else "PARTIALLY_PAID" if total else inv["status"]
        )


def test_seed_over_http_admin(coperniq_sandbox: Any, api: Api) -> None:
    root = coperniq_sandbox.server.root_url
    resp = requests.post(f"{root}/__admin/seed", json={"projects": 20, "seed": 3}, timeout=60)
    assert resp.status_code == 200 and resp.json()["projects"] == 20
    summary = requests.get(f"{root}/__admin/state/summary", timeout=T).json()
    assert summary == coperniq_sandbox.app.summary() and summary["accounts"] == 10
    assert len(api.get("/projects", page_size=100, include_archived="true").json()) == 20
    requests.post(f"{root}/__admin/reset", timeout=T)
    assert requests.get(f"{root}/__admin/state/summary", timeout=T).json()["projects"] == 0
