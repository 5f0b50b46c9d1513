"""The Coperniq emulator's profiles over real HTTP: each CoperniqAssumptions switch in its pessimistic setting,
next to the default (optimistic) behaviour the rest of the suite relies on."""

from __future__ import annotations

import json
import select
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.coperniq import STAGE_ID_OFFSET, CoperniqApp
from sandbox.profiles import CoperniqAssumptions
from tests.conftest import RunningSandbox, start_coperniq, stop_process
from tests.sandbox.test_coperniq_sandbox import Api, T, assert_error, catalog_id, validate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def both() -> Iterator[dict[str, RunningSandbox]]:
    """A default sandbox (no profile argument: today's behaviour) and a pessimistic one."""
    sandboxes = {"optimistic": start_coperniq(), "pessimistic": start_coperniq(profile="pessimistic")}
    yield sandboxes
    for sb in sandboxes.values():
        sb.server.stop()


def test_profiles_resolve_and_switch_overrides() -> None:
    assert CoperniqApp().assumptions == CoperniqAssumptions()
    pessimistic = CoperniqApp(profile="pessimistic").assumptions
    assert pessimistic == CoperniqAssumptions(
        phase_change_bumps_updated_at=False,
        rate_limit_headers=False,
        archived_visible_by_id=False,
        workflows_v1_share=0.2,
        invoice_patch_replaces_lines=False,
        date_header_skew_s=60.0,
        invoice_tax_fields=False,
        payment_delete_bumps_invoice=False,
        taken_back_payment_stays_in_amount_paid=False,
    )
    mixed = CoperniqApp(profile="pessimistic", rate_limit_headers=True).assumptions
    assert mixed.rate_limit_headers and not mixed.archived_visible_by_id
    assert not CoperniqApp(invoice_patch_replaces_lines=False).assumptions.invoice_patch_replaces_lines
    with pytest.raises(ValueError, match="switch"):
        CoperniqApp(no_such_switch=True)
    with pytest.raises(ValueError, match="profile"):
        CoperniqApp(profile="gloomy")


def test_admin_profile_endpoint(coperniq_sandbox: RunningSandbox) -> None:
    root = coperniq_sandbox.server.root_url
    resp = requests.post(
        f"{root}/__admin/profile", json={"profile": "pessimistic", "rate_limit_headers": True}, timeout=T
    )
    assert resp.status_code == 200
    assert resp.json()["rate_limit_headers"] is True and resp.json()["archived_visible_by_id"] is False
    assert coperniq_sandbox.app.assumptions.phase_change_bumps_updated_at is False
    assert requests.post(f"{root}/__admin/profile", json={"bogus": 1}, timeout=T).status_code == 400
    reset = requests.post(f"{root}/__admin/profile", json={}, timeout=T).json()
    assert reset == asdict(CoperniqAssumptions()) and coperniq_sandbox.app.assumptions == CoperniqAssumptions()


# --- phase_change_bumps_updated_at -------------------------------------------------------------------
def test_phase_change_bumps_updated_at(both: dict[str, RunningSandbox]) -> None:
    for profile, sb in both.items():
        api, app = Api(sb), sb.app
        app.state.clock.set("2025-03-01T00:00:00Z")
        p = app.add_project("Smith Solar")
        before = api.get(f"/projects/{p['id']}").json()
        assert [x["phase"]["name"] for x in api.get("/projects").json()] == ["Sale"]  # warm the list cache
        app.state.clock.advance(3600)
        resp = requests.post(
            f"{sb.server.root_url}/__admin/projects/{p['id']}/phase", json={"phase": "Permitting"}, timeout=T
        )
        assert resp.status_code == 200 and resp.json()["phase"]["name"] == "Permitting"
        detail = api.get(f"/projects/{p['id']}").json()
        started = {pi["name"]: pi["startedAt"] for pi in detail["phaseInstances"]}
        assert started["Permitting"] is not None and started["Permitting"] > before["updatedAt"]
        # lists show the new phase either way: they cache ids, `phase` is rendered per request
        assert [x["phase"]["name"] for x in api.get("/projects").json()] == ["Permitting"]
        window = [x["id"] for x in api.get("/projects", updated_after=before["updatedAt"]).json()]
        if profile == "optimistic":
            assert detail["updatedAt"] == detail["lastActivity"] == started["Permitting"]
            assert detail["updatedBy"] is not None and window == [p["id"]]
        else:
            assert (detail["updatedAt"], detail["lastActivity"], detail["updatedBy"]) == (
                before["updatedAt"],
                before["lastActivity"],
                before["updatedBy"],
            )
            assert window == []  # an incremental sync never sees the move


# --- rate_limit_headers ----------------------------------------------------------------------------
def test_rate_limit_headers(both: dict[str, RunningSandbox]) -> None:
    for profile, sb in both.items():
        api = Api(sb)
        ok = api.get("/projects")
        missing = api.get("/projects/1")
        assert ok.status_code == 200 and missing.status_code == 404
        sb.faults.update(burst_429=1, retry_after=2)
        injected = api.get("/projects")
        sb.app.set_rate_limits(1, 5000)
        assert api.get("/workflows").status_code == 200
        limited = api.get("/workflows")
        for resp in (injected, limited):
            assert_error(resp, 429, "RATE_LIMIT_EXCEEDED")
            assert "X-RateLimit-Reset" not in resp.headers
        if profile == "optimistic":
            assert ok.headers["X-RateLimit-Limit"] == missing.headers["X-RateLimit-Limit"] == "5000"
            assert "X-RateLimit-Remaining" in ok.headers
            assert injected.headers["Retry-After"] == "2" and limited.headers["Retry-After"] == "1"
        else:
            for resp in (ok, missing, injected, limited):
                assert not {"X-RateLimit-Limit", "X-RateLimit-Remaining", "Retry-After"} & set(resp.headers)


# --- archived_visible_by_id ----------------------------------------------------------------------------
def test_archived_visible_by_id(both: dict[str, RunningSandbox]) -> None:
    for profile, sb in both.items():
        api, app = Api(sb), sb.app
        archived = app.add_project("Old Job", isActive=False)
        active = app.add_project("New Job")
        gone_acc = app.add_account("Old Co", isActive=False)
        paths = [f"/projects/{archived['id']}", f"/accounts/{gone_acc['id']}", f"/clients/{gone_acc['id']}"]
        for path in paths:
            assert api.get(path, include_archived="true").status_code == 200
            resp = api.get(path)
            if profile == "optimistic":
                assert resp.status_code == 200 and resp.json()["isActive"] is False
            else:
                assert_error(resp, 404, "NOT_FOUND")
        assert api.get(f"/projects/{active['id']}").status_code == 200
        assert api.get(f"/accounts/{active['accountId']}").status_code == 200
        # lists behave the same in both profiles
        assert [x["id"] for x in api.get("/projects").json()] == [active["id"]]
        assert [x["id"] for x in api.get("/projects", include_archived="true").json()] == [archived["id"], active["id"]]


# --- workflows_v1_share ----------------------------------------------------------------------------
def _seeded(profile: str | None, **switches: Any) -> CoperniqApp:
    app = CoperniqApp(profile=profile, **switches)
    app.seed(projects=50, seed=7)
    return app


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


def test_workflows_v1_share_in_seeded_data() -> None:
    optimistic, pessimistic = _seeded(None), _seeded("pessimistic")
    assert _dump(_seeded("pessimistic", workflows_v1_share=0.0)) == _dump(optimistic)  # share 0: data unchanged
    assert _dump(_seeded("pessimistic")) == _dump(pessimistic)  # deterministic per seed
    assert not any("stage" in optimistic.project_out(p) for p in optimistic.state.projects.values())
    v1 = [pid for pid, p in pessimistic.state.projects.items() if "stage" in pessimistic.project_out(p)]
    assert len(v1) == 10  # exactly 20 % of 50
    assert v1 != sorted(pessimistic.state.projects)[:10]  # spread over the seed, not the first ones
    for pid in pessimistic.state.projects:
        before = optimistic.project_out(optimistic.state.projects[pid], detail=True)
        after = pessimistic.project_out(pessimistic.state.projects[pid], detail=True)
        if pid not in v1:
            assert after == before
            continue
        phase, stage = before.pop("phase"), after.pop("stage")
        assert "phase" not in after and after.pop("phaseInstances") == []
        before.pop("phaseInstances")
        assert after == before  # nothing else differs
        assert stage == {
            "id": phase["templateId"] + STAGE_ID_OFFSET,
            "name": phase["name"],
            "type": phase["type"],
            "scope": "PROJECT",
            "redSla": phase["redSla"],
            "yellowSla": phase["yellowSla"],
            "timeInStageDays": phase["timeInStageDays"],
            "slaStatus": phase["slaStatus"],
        }
    everything = _seeded(None, workflows_v1_share=1.0)  # a single switch works on the default profile too
    assert all("stage" in everything.project_out(p) for p in everything.state.projects.values())
    with pytest.raises(ValueError, match="workflows_v1_share"):
        CoperniqApp(workflows_v1_share=1.5).seed(projects=2)


def test_workflows_v1_project_over_http(both: dict[str, RunningSandbox]) -> None:
    for profile, sb in both.items():
        api, app = Api(sb), sb.app
        v2 = app.add_project("Phase Job")
        resp = requests.post(
            f"{sb.server.root_url}/__admin/projects", json={"title": "Stage Job", "workflows_v1": True}, timeout=T
        )
        assert resp.status_code == 201
        v1 = resp.json()
        assert "phase" in v2 and "stage" not in v2, profile  # add_project defaults to 2.0 in every profile
        assert "phase" not in v1 and v1["stage"]["name"] == "Sale", profile
        listed = {x["id"]: x for x in api.get("/projects").json()}
        validate(listed[v1["id"]], "Project")
        validate(listed[v1["id"]]["stage"], "ProjectStage")
        assert "phase" not in listed[v1["id"]] and listed[v2["id"]]["phase"]["name"] == "Sale"
        detail = api.get(f"/projects/{v1['id']}").json()
        assert detail["phaseInstances"] == [] and "phase" not in detail  # no stage history in the API
        wf = api.get(f"/workflows/{v1['workflowId']}").json()
        permitting = next(ph for ph in wf["phases"] if ph["name"] == "Permitting")
        assert detail["stage"]["id"] not in {ph["id"] for ph in wf["phases"]}  # a stage is not a phase template
        moved = app.move_project_to_phase(v1["id"], "Permitting")
        assert moved["stage"]["name"] == "Permitting" and moved["stage"]["id"] == permitting["id"] + STAGE_ID_OFFSET
        back = app.move_project_to_phase(v1["id"], detail["stage"]["id"])  # by stage id too
        assert api.get(f"/projects/{v1['id']}").json()["stage"] == back["stage"]
        assert back["stage"]["name"] == "Sale" and "phase" not in back


# --- invoice_patch_replaces_lines ----------------------------------------------------------------------
def test_invoice_patch_lines(both: dict[str, RunningSandbox]) -> None:
    for profile, sb in both.items():
        api, app = Api(sb), sb.app
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
        keep = inv["lineItems"][0]["id"]
        # a line sent back with its id is updated in place in both profiles; the new one is added
        first = api.patch(
            f"/invoices/{inv['id']}",
            {
                "lineItems": [
                    {"id": keep, "catalogItemId": c1, "quantity": 3, "unitCost": 1, "unitPrice": 10},
                    {"catalogItemId": c2, "quantity": 1, "unitCost": 1, "unitPrice": 5},
                ]
            },
        ).json()
        assert [(li["id"] == keep, li["quantity"]) for li in first["lineItems"]] == [(True, 3), (False, 1)]
        assert first["amount"] == 35
        # the full set again, without ids (what a writer that keeps no line ids sends)
        second = api.patch(
            f"/invoices/{inv['id']}",
            {
                "lineItems": [
                    {"catalogItemId": c1, "quantity": 3, "unitCost": 1, "unitPrice": 10},
                    {"catalogItemId": c2, "quantity": 1, "unitCost": 1, "unitPrice": 5},
                ]
            },
        )
        assert second.status_code == 200
        lines = second.json()["lineItems"]
        if profile == "optimistic":
            assert [li["catalogItemId"] for li in lines] == [c1, c2] and second.json()["amount"] == 35
            assert keep not in {li["id"] for li in lines}  # replaced: new ids
        else:
            assert [li["catalogItemId"] for li in lines] == [c1, c2, c1, c2] and second.json()["amount"] == 70
            assert lines[:2] == first["lineItems"]  # the old lines stay untouched
        assert api.get(f"/invoices/{inv['id']}").json()["lineItems"] == lines


def test_taken_back_payment_stays_in_amount_paid(both: dict[str, RunningSandbox]) -> None:
    for profile, sb in both.items():
        api, app = Api(sb), sb.app
        proj = app.add_project("P")
        inv = app.add_invoice(proj["id"], [{"quantity": 1, "unitCost": 1, "unitPrice": 300}], status="SENT")
        pay = app.add_payment(inv["id"], 100.0)
        before = api.get(f"/invoices/{inv['id']}").json()
        root = sb.server.root_url
        url = f"{root}/__admin/invoices/{inv['id']}/payments/{pay['id']}/status"
        assert requests.post(url, json={}, timeout=T).status_code == 400
        resp = requests.post(url, json={"status": "REFUNDED"}, timeout=T)
        assert resp.status_code == 200, resp.text
        after = api.get(f"/invoices/{inv['id']}").json()
        assert after["updatedAt"] > before["updatedAt"]  # both profiles: the refund is a change of the invoice
        assert after["amountPaid"] == (100 if profile == "optimistic" else 0)
        [listed] = api.get(f"/invoices/{inv['id']}/payments").json()
        assert listed["id"] == pay["id"] and listed["status"] == "REFUNDED"  # still listed, with its new status
        unknown = f"{root}/__admin/invoices/{inv['id']}/payments/999999/status"
        assert requests.post(unknown, json={"status": "X"}, timeout=T).status_code == 404


# --- CLI -------------------------------------------------------------------------------------------------
def test_cli_profile_pessimistic_starts() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox.coperniq",
            "--port",
            "0",
            "--profile",
            "pessimistic",
            "--seed",
            "3",
            "--projects",
            "10",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the CLI printed nothing within 30 s"
        line = proc.stdout.readline()
        assert "profile pessimistic" in line, line
        url = line.split("listening on ")[1].split()[0]
        resp = requests.get(
            f"{url}/projects",
            headers={"x-api-key": "sandbox-coperniq-key"},
            params={"include_archived": "true"},
            timeout=T,
        )
        assert resp.status_code == 200 and "X-RateLimit-Limit" not in resp.headers
        assert sum("stage" in p for p in resp.json()) == 2  # the seed follows the profile
    finally:
        stop_process(proc)
