"""Many companies behind one sandbox server (sandbox/companies.py): each company sees only its own data, unknown
credentials are refused as the single-company sandboxes refuse them, and the forward pipeline of two contractors
keeps each QuickBooks company to its own customers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox._server import Request
from sandbox.companies import FIRST_REALM_ID, MultiCoperniqApp, MultiMergeApp, header
from sandbox.seed import seed_coperniq
from tests.conftest import (
    MERGE_KEY,
    RunningMultiSandbox,
    RunningSandbox,
    start_multi_coperniq,
    start_multi_merge,
)

T = 10
KEY_A, KEY_B = "coperniq-key-a", "coperniq-key-b"
TOKEN_A, TOKEN_B = "account-token-a", "account-token-b"
ORG = {"Authorization": f"Bearer {MERGE_KEY}"}


@pytest.fixture
def coperniq_multi() -> Iterator[RunningMultiSandbox]:
    sb = start_multi_coperniq(KEY_A, KEY_B)
    yield sb
    sb.server.stop()


@pytest.fixture
def merge_multi() -> Iterator[RunningMultiSandbox]:
    sb = start_multi_merge(TOKEN_A, TOKEN_B)
    yield sb
    sb.server.stop()


def cq_get(sb: RunningSandbox, path: str, key: str | None, **params: Any) -> requests.Response:
    headers = {"x-api-key": key} if key is not None else {}
    return requests.get(f"{sb.url}{path}", headers=headers, params=params, timeout=T)


def mg(sb: RunningSandbox, method: str, path: str, token: str | None, **kwargs: Any) -> requests.Response:
    headers = {**ORG, **({"X-Account-Token": token} if token is not None else {})}
    return requests.request(method, f"{sb.url}{path}", headers=headers, timeout=T, **kwargs)


def names(sb: RunningSandbox, token: str) -> set[str]:
    r = mg(sb, "GET", "/contacts", token, params={"page_size": 100})
    assert r.status_code == 200, r.text
    return {c["name"] for c in r.json()["results"]}


# --- Coperniq ---------------------------------------------------------------------------------------------------
def test_coperniq_each_key_sees_only_its_company(
    coperniq_multi: RunningMultiSandbox, coperniq_sandbox: RunningSandbox
) -> None:
    a, b = coperniq_multi.company(KEY_A), coperniq_multi.company(KEY_B)
    seed_coperniq(a.app, projects=5, seed=1)
    seed_coperniq(b.app, projects=5, seed=2)
    seed_coperniq(coperniq_sandbox.app, projects=5, seed=1)  # what company A alone on its own server answers
    alone = cq_get(coperniq_sandbox, "/projects", coperniq_sandbox.api_key, page_size=100).json()
    seen = {}
    for company in (a, b):
        r = cq_get(coperniq_multi, "/projects", company.api_key, page_size=100)
        assert r.status_code == 200, r.text
        seen[company.api_key] = r.json()
        assert {p["id"] for p in r.json()} <= set(company.state.projects)
    assert seen[KEY_A] == alone and len(alone) >= 3
    assert {p["title"] for p in seen[KEY_A]}.isdisjoint({p["title"] for p in seen[KEY_B]})
    # each company counts its own requests, the server all of them
    assert a.stats.count("GET", "/v1/projects") == 1 == b.stats.count("GET", "/v1/projects")
    assert coperniq_multi.stats.count("GET", "/v1/projects") == 2
    assert coperniq_multi.stats.by_route["GET /v1/projects"] == 2


def test_coperniq_unknown_key_refused_like_coperniq(
    coperniq_multi: RunningMultiSandbox, coperniq_sandbox: RunningSandbox
) -> None:
    for key in (None, "", "wrong-key", f"{KEY_A}x"):
        single = cq_get(coperniq_sandbox, "/projects", key)
        multi = cq_get(coperniq_multi, "/projects", key)
        assert single.status_code == multi.status_code == 401
        assert multi.json() == single.json() == {"message": "Invalid API key", "code": "UNAUTHORIZED"}
    # header name is case-insensitive (over HTTP and in-process), the value stripped
    r = requests.get(f"{coperniq_multi.url}/projects", headers={"X-API-KEY": KEY_B}, timeout=T)
    assert r.status_code == 200 and r.json() == []
    req = Request("GET", "/v1/projects", {}, {"X-Api-Key": f" {KEY_B} "}, b"")
    assert header(req, "x-api-key") == KEY_B


def test_coperniq_date_header_is_the_serving_companys_clock(coperniq_multi: RunningMultiSandbox) -> None:
    frozen = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
    coperniq_multi.company(KEY_A).state.clock.set(frozen)
    dated = {k: parsedate_to_datetime(cq_get(coperniq_multi, "/projects", k).headers["Date"]) for k in (KEY_A, KEY_B)}
    assert dated[KEY_A] == frozen and dated[KEY_B] > frozen + timedelta(days=30)


def test_companies_are_served_concurrently(coperniq_multi: RunningMultiSandbox) -> None:
    """A slow company does not hold up another: each has its own lock and faults."""
    coperniq_multi.company(KEY_A).faults.update(latency_ms=600)
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(cq_get, coperniq_multi, "/projects", KEY_A)
        time.sleep(0.1)
        started = time.monotonic()
        assert cq_get(coperniq_multi, "/projects", KEY_B).status_code == 200
        fast = time.monotonic() - started
        assert slow.result().status_code == 200
    assert fast < 0.4
    assert coperniq_multi.stats.max_in_flight == 2


def test_coperniq_admin_routes_name_their_company(coperniq_multi: RunningMultiSandbox) -> None:
    root = coperniq_multi.server.root_url
    r = requests.post(f"{root}/__admin/seed", params={"api_key": KEY_B}, json={"projects": 3, "seed": 5}, timeout=T)
    assert r.status_code == 200, r.text
    assert len(coperniq_multi.company(KEY_B).state.projects) == 3
    assert len(coperniq_multi.company(KEY_A).state.projects) == 0
    refused = requests.post(f"{root}/__admin/seed", json={"projects": 3}, timeout=T)
    assert refused.status_code == 401 and refused.json()["code"] == "UNAUTHORIZED"
    health = requests.get(f"{root}/__admin/health", timeout=T).json()
    assert health == {"ok": True, "name": "coperniq"}
    added = requests.post(f"{root}/__admin/companies", json={"api_key": "key-c"}, timeout=T)
    assert added.status_code == 201
    assert requests.get(f"{root}/__admin/companies", timeout=T).json() == {"companies": [KEY_A, KEY_B, "key-c"]}
    assert requests.post(f"{root}/__admin/companies", json={"api_key": KEY_A}, timeout=T).status_code == 400
    assert cq_get(coperniq_multi, "/projects", "key-c").json() == []


def test_server_wide_faults_stats_and_reset(coperniq_multi: RunningMultiSandbox) -> None:
    root = coperniq_multi.server.root_url
    a, b = coperniq_multi.company(KEY_A), coperniq_multi.company(KEY_B)
    seed_coperniq(a.app, projects=2, seed=1)
    assert requests.post(f"{root}/__admin/faults", json={"error_rate": 1}, timeout=T).status_code == 200
    assert a.faults.error_rate == 1 == b.faults.error_rate
    assert cq_get(coperniq_multi, "/projects", KEY_B).status_code == 500
    stats = requests.get(f"{root}/__admin/stats", timeout=T).json()
    assert stats["total"] == 1 and stats["companies"][KEY_B]["total"] == 1 and stats["companies"][KEY_A]["total"] == 0
    assert requests.post(f"{root}/__admin/reset", timeout=T).status_code == 200
    assert a.faults.error_rate == 0 == b.faults.error_rate
    assert len(a.state.projects) == 0 and b.stats.total == 0 and coperniq_multi.stats.total == 0
    assert cq_get(coperniq_multi, "/projects", KEY_A).status_code == 200


def test_adding_companies_in_process() -> None:
    multi = MultiCoperniqApp(rate_limit_per_second=7)
    app = multi.add_company("k1")
    assert multi.company("k1") is app and app.rate_limit_per_second == 7
    assert multi.add_company("k2", rate_limit_per_second=3).rate_limit_per_second == 3
    for bad, why in (("", "non-empty"), (" k3", "blanks"), ("k1", "exists already")):
        with pytest.raises(ValueError, match=why):
            multi.add_company(bad)
    with pytest.raises(KeyError):
        multi.company("nope")
    merge = MultiMergeApp(api_key="org-key", profile="pessimistic")
    one, two = merge.add_company("t1"), merge.add_company("t2", realm_id="42")
    assert one.api_key == two.api_key == "org-key" and one.profile_name == "pessimistic"
    assert (one.realm_id, two.realm_id) == (str(FIRST_REALM_ID), "42")
    assert one.faults.max_concurrent == merge.company("t1").assumptions.max_concurrent
    merge.faults.update(max_concurrent=99)
    merge.faults.reset()  # back to each company's own profile value, not the server's default
    assert one.faults.max_concurrent == one.assumptions.max_concurrent
    with pytest.raises(ValueError, match="organization"):
        merge.add_company("t3", api_key="other")


# --- Merge ------------------------------------------------------------------------------------------------------
def test_merge_contact_created_with_a_token_stays_in_its_company(merge_multi: RunningMultiSandbox) -> None:
    r = mg(merge_multi, "POST", "/contacts", TOKEN_A, json={"model": {"name": "Alpha Solar", "is_customer": True}})
    assert r.status_code == 201, r.text
    created = r.json()["model"]
    assert "Alpha Solar" in names(merge_multi, TOKEN_A)
    assert "Alpha Solar" not in names(merge_multi, TOKEN_B)
    assert mg(merge_multi, "GET", f"/contacts/{created['id']}", TOKEN_B).status_code == 404
    assert merge_multi.company(TOKEN_A).state.contacts.get(created["id"]) is not None
    assert merge_multi.company(TOKEN_B).state.contacts.get(created["id"]) is None
    # the same name in the other company is no duplicate there
    r = mg(merge_multi, "POST", "/contacts", TOKEN_B, json={"model": {"name": "Alpha Solar", "is_customer": True}})
    assert r.status_code == 201, r.text


def test_merge_account_details_per_company(merge_multi: RunningMultiSandbox) -> None:
    details = {}
    for token in (TOKEN_A, TOKEN_B):
        r = mg(merge_multi, "GET", "/account-details", token)
        assert r.status_code == 200, r.text
        details[token] = r.json()
        assert r.json()["id"] == merge_multi.company(token).state.accounts[token].id
    assert details[TOKEN_A]["id"] != details[TOKEN_B]["id"]
    assert details[TOKEN_A]["instance_id"] != details[TOKEN_B]["instance_id"]  # two QuickBooks realms


def test_merge_unknown_or_missing_token_refused_like_merge(
    merge_multi: RunningMultiSandbox, merge_sandbox: RunningSandbox
) -> None:
    cases: list[tuple[dict[str, str], str]] = [
        ({**ORG, "X-Account-Token": "unknown-token"}, "/contacts"),
        (ORG, "/contacts"),
        ({"Authorization": "Bearer wrong", "X-Account-Token": TOKEN_A}, "/contacts"),
        ({"X-Account-Token": TOKEN_A}, "/contacts"),
    ]
    for headers, path in cases:
        single = requests.get(f"{merge_sandbox.url}{path}", headers=headers, timeout=T)
        multi = requests.get(f"{merge_multi.url}{path}", headers=headers, timeout=T)
        assert multi.status_code == single.status_code == 401, (headers, multi.text)
        assert multi.json() == single.json()
    unknown = requests.get(
        f"{merge_sandbox.url}/contacts", headers={**ORG, "X-Account-Token": "unknown-token"}, timeout=T
    ).json()
    # organization-level routes and admin routes need a company named: unknown -> the unknown-token answer
    r = requests.get(f"{merge_multi.url}/linked-accounts", headers=ORG, params={"account_token": "nope"}, timeout=T)
    assert r.status_code == 401 and r.json() == unknown
    root = merge_multi.server.root_url
    r = requests.get(f"{root}/__admin/summary", params={"account_token": "nope"}, timeout=T)
    assert r.status_code == 401 and r.json() == unknown
    r = requests.get(f"{root}/__admin/summary", timeout=T)
    assert r.status_code == 401 and "X-Account-Token" in r.json()["detail"]


def test_merge_admin_and_org_routes_by_token(merge_multi: RunningMultiSandbox) -> None:
    root = merge_multi.server.root_url
    r = requests.post(f"{root}/__admin/contacts", params={"account_token": TOKEN_B}, json={"name": "Beta"}, timeout=T)
    assert r.status_code == 201, r.text
    r = requests.post(f"{root}/__admin/contacts", headers={"X-Account-Token": TOKEN_A}, json={"name": "A"}, timeout=T)
    assert r.status_code == 201, r.text
    assert names(merge_multi, TOKEN_B) == {"Beta"} and names(merge_multi, TOKEN_A) == {"A"}
    sel = {"account_token": TOKEN_A}
    linked = requests.get(f"{merge_multi.url}/linked-accounts", headers=ORG, params=sel, timeout=T)
    assert linked.status_code == 200, linked.text
    assert [a["id"] for a in linked.json()["results"]] == [merge_multi.company(TOKEN_A).state.accounts[TOKEN_A].id]


def test_merge_link_flow_account_belongs_to_its_company(merge_multi: RunningMultiSandbox) -> None:
    url, root, sel = merge_multi.url, merge_multi.server.root_url, {"account_token": TOKEN_B}
    body = {
        "end_user_email_address": "owner@beta.example",
        "end_user_organization_name": "Beta",
        "end_user_origin_id": "tenant-b",
        "categories": ["accounting"],
    }
    r = requests.post(f"{url}/link-token", headers=ORG, params=sel, json=body, timeout=T)
    assert r.status_code == 200, r.text
    minted = requests.post(
        f"{root}/link/api/public-token", params=sel, json={"link_token": r.json()["link_token"]}, timeout=T
    )
    assert minted.status_code == 200, minted.text
    exchanged = requests.get(f"{url}/account-token/{minted.json()['public_token']}", headers=ORG, params=sel, timeout=T)
    assert exchanged.status_code == 200, exchanged.text
    new_token = exchanged.json()["account_token"]
    assert merge_multi.company(new_token).app is merge_multi.company(TOKEN_B).app
    details = mg(merge_multi, "GET", "/account-details", new_token)
    assert details.status_code == 200 and details.json()["end_user_origin_id"] == "tenant-b"
    mg(merge_multi, "POST", "/contacts", new_token, json={"model": {"name": "Via Link", "is_customer": True}})
    assert "Via Link" in names(merge_multi, TOKEN_B) and "Via Link" not in names(merge_multi, TOKEN_A)


# --- two contractors through the forward pipeline ---------------------------------------------------------------
def test_forward_pipeline_two_companies(tmp_path: Path) -> None:
    from tests.target_quickbooks_merge.qbm_helpers import BOTH_TRIGGERS, Pipeline, qbo_customers

    coperniq, merge = start_multi_coperniq(KEY_A, KEY_B), start_multi_merge(TOKEN_A, TOKEN_B)
    try:
        seed_coperniq(coperniq.company(KEY_A).app, projects=8, seed=1)
        seed_coperniq(coperniq.company(KEY_B).app, projects=8, seed=2)
        config = {"trigger_phases": BOTH_TRIGGERS, "backfill": True}
        pipes = {
            key: Pipeline(coperniq.company(key), merge.company(token), tmp_path / f"{key}.duckdb", config=dict(config))
            for key, token in ((KEY_A, TOKEN_A), (KEY_B, TOKEN_B))
        }
        run_a = pipes[KEY_A].run()
        assert run_a.counts["accounts"]["failed"] == 0
        customers_a = {c["DisplayName"] for c in qbo_customers(merge.company(TOKEN_A)).values()}
        assert customers_a and qbo_customers(merge.company(TOKEN_B)) == {}  # B's books untouched by A's run
        assert merge.company(TOKEN_B).stats.count("POST") == 0
        run_b = pipes[KEY_B].run()
        assert run_b.counts["accounts"]["failed"] == 0
        customers_b = {c["DisplayName"] for c in qbo_customers(merge.company(TOKEN_B)).values()}
        assert customers_b and customers_a.isdisjoint(customers_b)
        assert {c["DisplayName"] for c in qbo_customers(merge.company(TOKEN_A)).values()} == customers_a
        accounts_of = {k: {a["title"] for a in coperniq.company(k).state.accounts.values()} for k in (KEY_A, KEY_B)}
        for key, customers in ((KEY_A, customers_a), (KEY_B, customers_b)):
            other = accounts_of[KEY_B if key == KEY_A else KEY_A] - accounts_of[key]
            assert not any(name.startswith(tuple(other)) for name in customers), (key, customers)
    finally:
        coperniq.server.stop()
        merge.server.stop()
