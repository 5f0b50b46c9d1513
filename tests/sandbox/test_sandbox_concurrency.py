"""The fault `max_concurrent`: requests over the limit per linked account (Merge) / API key (Coperniq) get 429 at
once, counted in `GET /__admin/stats`; the Merge pessimistic profile starts with 3, and a reset keeps it.

Deterministic: requests are held in flight by holding the app's handler lock (admitted ones wait inside the
server), or slots are taken directly with `stats.admit`; no assertion depends on timing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox._server import SandboxServer
from sandbox.merge import MergeApp
from sandbox.merge_state import LinkedAccount
from tests.conftest import COPERNIQ_KEY, MERGE_ACCOUNT_TOKEN, MERGE_KEY, RunningSandbox, start_coperniq

H = {"Authorization": f"Bearer {MERGE_KEY}", "X-Account-Token": MERGE_ACCOUNT_TOKEN}
T = 10


@pytest.fixture
def merge(request: pytest.FixtureRequest) -> Iterator[SandboxServer]:
    profile = getattr(request, "param", "optimistic")
    server = SandboxServer(MergeApp(api_key=MERGE_KEY, account_token=MERGE_ACCOUNT_TOKEN, profile=profile)).start()
    yield server
    server.stop()


def api(server: SandboxServer, path: str, token: str = MERGE_ACCOUNT_TOKEN) -> requests.Response:
    headers = {**H, "X-Account-Token": token}
    return requests.get(f"{server.root_url}/api/accounting/v1{path}", headers=headers, timeout=T)


def slot(server: SandboxServer, token: str = MERGE_ACCOUNT_TOKEN) -> str:
    """The key `max_concurrent` counts a linked account's requests under."""
    return f"acct:{server.app.state.accounts[token].id}"


def admin_faults(server: SandboxServer, **values: Any) -> None:
    assert requests.post(f"{server.root_url}/__admin/faults", json=values, timeout=T).status_code == 200


def test_profiles_set_the_starting_limit_and_a_reset_returns_to_it() -> None:
    assert MergeApp().faults.max_concurrent is None
    assert MergeApp().assumptions.max_concurrent is None
    assert MergeApp(profile="pessimistic").faults.max_concurrent == 3
    assert MergeApp(profile="pessimistic", max_concurrent=0).faults.max_concurrent == 0  # a single switch on top
    assert MergeApp(max_concurrent=10).faults.max_concurrent == 10
    app = MergeApp(profile="pessimistic")
    app.faults.update(max_concurrent=0, latency_ms=5)
    app.faults.reset()
    assert (app.faults.max_concurrent, app.faults.latency_ms) == (3, 0)
    plain = MergeApp()
    plain.faults.update(max_concurrent=2)
    plain.faults.reset()
    assert plain.faults.max_concurrent is None


@pytest.mark.parametrize("merge", ["pessimistic"], indirect=True)
def test_http_admin_shows_and_resets_the_limit(merge: SandboxServer) -> None:
    root = merge.root_url
    assert requests.get(f"{root}/__admin/assumptions", timeout=T).json()["max_concurrent"] == 3
    admin_faults(merge, max_concurrent=1)
    assert merge.app.faults.max_concurrent == 1
    assert requests.post(f"{root}/__admin/reset", timeout=T).status_code == 200
    assert merge.app.faults.max_concurrent == 3
    stats = requests.get(f"{root}/__admin/stats", timeout=T).json()
    assert stats["concurrency_429"] == 0 and stats["max_in_flight_per_key"] == 0


def test_requests_over_the_limit_get_429_at_once_and_are_counted(merge: SandboxServer) -> None:
    """4 concurrent reads, limit 2: two wait inside the server (its handler lock is held), two are refused."""
    app = merge.app
    admin_faults(merge, max_concurrent=2)
    results: list[requests.Response] = []
    threads = [threading.Thread(target=lambda: results.append(api(merge, "/contacts"))) for _ in range(4)]
    with app.lock:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(results) < 2 and time.monotonic() < deadline:  # only refused ones can be answered now
            time.sleep(0.01)
        refused = list(results)  # answered while the two admitted requests still wait
        assert app.stats.concurrency_429 == 2
    for t in threads:
        t.join(T)
    assert [r.status_code for r in refused] == [429, 429]
    for r in refused:
        assert r.headers["Retry-After"] == "1"
        assert r.json()["detail"].startswith("Request was throttled: QuickBooks is already serving 2 concurrent")
    assert sorted(r.status_code for r in results) == [200, 200, 429, 429]
    stats = requests.get(f"{merge.root_url}/__admin/stats", timeout=T).json()
    assert stats["concurrency_429"] == 2 and stats["max_in_flight_per_key"] == 2
    assert stats["by_status"] == {"200": 2, "429": 2}
    assert api(merge, "/contacts").status_code == 200  # every slot was given back


def test_limit_is_per_linked_account_and_skips_org_level_calls(merge: SandboxServer) -> None:
    app = merge.app
    app.state.accounts["other-token"] = LinkedAccount("other-token", "org-2", "Other Co", "o@example.com")
    app.faults.update(max_concurrent=1)
    assert app.stats.admit(slot(merge), None)  # one request of the default account in flight
    try:
        assert api(merge, "/contacts").status_code == 429
        assert api(merge, "/contacts", token="other-token").status_code == 200
        assert api(merge, "/linked-accounts").status_code == 200  # org level: no QuickBooks company behind it
        app.faults.update(only_paths=["/invoices"])  # faults apply only to these paths
        assert api(merge, "/contacts").status_code == 200
        assert api(merge, "/invoices").status_code == 429
    finally:
        app.stats.release(slot(merge))
    app.faults.update(only_paths=[])
    assert api(merge, "/contacts").status_code == 200
    assert app.stats.concurrency_429 == 2


@pytest.mark.parametrize("profile", ["optimistic", "pessimistic"])
def test_coperniq_has_the_fault_too_with_its_own_429(profile: str) -> None:
    sb: RunningSandbox = start_coperniq(profile=profile)
    try:
        sb.faults.update(max_concurrent=1)
        assert sb.stats.admit(COPERNIQ_KEY, None)
        r = requests.get(f"{sb.url}/projects", headers={"x-api-key": COPERNIQ_KEY}, timeout=T)
        sb.stats.release(COPERNIQ_KEY)
        assert r.status_code == 429 and r.json()["code"] == "RATE_LIMIT_EXCEEDED"
        assert "concurrent" in r.json()["message"]
        assert ("Retry-After" in r.headers) is sb.app.assumptions.rate_limit_headers
    finally:
        sb.server.stop()
