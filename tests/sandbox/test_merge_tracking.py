"""Merge sandbox tracking categories over HTTP: GET /tracking-categories (paginated, filtered, by id), the admin
hook that adds classes and departments, and `tracking_categories` on invoices and their lines as the company's
class tracking keeps them (per_line / per_txn), unknown or inactive ids refused as QuickBooks refuses them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import RunningSandbox, start_merge

T = 10


@pytest.fixture(params=["per_line", "per_txn"])
def merge(request: pytest.FixtureRequest) -> Iterator[RunningSandbox]:
    sb = start_merge(class_tracking=request.param)
    yield sb
    sb.server.stop()


def _h(sb: RunningSandbox) -> dict[str, str]:
    return {"Authorization": f"Bearer {sb.api_key}", "X-Account-Token": sb.account_token}


def get(sb: RunningSandbox, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{sb.url}{path}", headers=_h(sb), params=params, timeout=T)


def send(sb: RunningSandbox, method: str, path: str, model: dict[str, Any]) -> requests.Response:
    return requests.request(method, f"{sb.url}{path}", headers=_h(sb), json={"model": model}, timeout=T)


def _categories(sb: RunningSandbox, **params: Any) -> list[dict[str, Any]]:
    out, cursor = [], None
    while True:
        page = get(sb, "/tracking-categories", page_size=2, cursor=cursor, **params).json()
        out += page["results"]
        cursor = page["next"]
        if not cursor:
            return out


def test_tracking_categories_are_listed_paginated_filtered_and_read_by_id(merge: RunningSandbox) -> None:
    listed = _categories(merge)
    assert {(c["category_type"], c["name"], c["status"]) for c in listed} >= {
        ("CLASS", "Solar", "ACTIVE"),
        ("CLASS", "Legacy", "ARCHIVED"),
        ("DEPARTMENT", "Austin", "ACTIVE"),
    }
    fields = {"id", "remote_id", "created_at", "modified_at", "name", "status", "category_type", "parent_category"}
    assert all(fields | {"company", "remote_was_deleted", "field_mappings"} <= set(c) for c in listed)
    by_name = {c["name"]: c for c in listed}
    assert by_name["Commercial"]["parent_category"] == by_name["Solar"]["id"]  # a sub-class
    assert {c["name"] for c in _categories(merge, category_type="DEPARTMENT")} == {"Austin", "Dallas"}
    assert [c["name"] for c in _categories(merge, name="hvac")] == ["HVAC"]
    assert "Legacy" not in {c["name"] for c in _categories(merge, status="ACTIVE")}
    one = get(merge, f"/tracking-categories/{by_name['Austin']['id']}", include_remote_data="true").json()
    assert one["name"] == "Austin" and one["remote_data"][0]["path"] == "/department"
    assert get(merge, "/tracking-categories/nope").status_code == 404

    made = requests.post(
        f"{merge.server.root_url}/__admin/tracking-categories",
        json={"name": "Houston", "category_type": "DEPARTMENT"},
        timeout=T,
    )
    assert made.status_code == 201 and made.json()["category_type"] == "DEPARTMENT"
    assert "Houston" in {c["name"] for c in _categories(merge, category_type="DEPARTMENT")}


def _invoice(sb: RunningSandbox, line_categories: list[str], header: list[str]) -> requests.Response:
    contact = sb.app.state.data.find("contacts", "Tracked Customer") or sb.app.add_contact("Tracked Customer")
    return send(
        sb,
        "POST",
        "/invoices",
        {
            "type": "ACCOUNTS_RECEIVABLE",
            "contact": contact["id"],
            "tracking_categories": header,
            "line_items": [{"description": "Install", "total_amount": 100, "tracking_categories": line_categories}],
        },
    )


def test_invoices_keep_their_class_where_the_company_tracks_it_and_return_it(merge: RunningSandbox) -> None:
    ids = {c["name"]: c["id"] for c in _categories(merge)}
    per_line = merge.app.class_tracking == "per_line"
    made = _invoice(merge, [ids["Solar"]], [ids["Solar"], ids["Austin"]])
    assert made.status_code == 201, made.text
    stored = get(merge, f"/invoices/{made.json()['model']['id']}").json()
    assert sorted(stored["tracking_categories"]) == sorted(
        [ids["Austin"]] if per_line else [ids["Solar"], ids["Austin"]]
    )
    assert stored["line_items"][0]["tracking_categories"] == ([ids["Solar"]] if per_line else [])

    changed = send(merge, "PATCH", f"/invoices/{stored['id']}", {"tracking_categories": [ids["HVAC"], ids["Dallas"]]})
    assert changed.status_code == 200, changed.text
    again = get(merge, f"/invoices/{stored['id']}").json()
    assert ids["Dallas"] in again["tracking_categories"] and ids["Austin"] not in again["tracking_categories"]
    lines = [line["tracking_categories"] for line in again["line_items"]]
    assert lines == [line["tracking_categories"] for line in stored["line_items"]]  # lines not sent: kept

    kept = send(merge, "PATCH", f"/invoices/{stored['id']}", {"memo": "no categories sent"})
    assert (
        kept.status_code == 200
        and get(merge, f"/invoices/{stored['id']}").json()["tracking_categories"] == (again["tracking_categories"])
    )


@pytest.mark.parametrize("where", ["header", "line"])
def test_an_unknown_or_inactive_tracking_category_is_an_invalid_reference(merge: RunningSandbox, where: str) -> None:
    ids = {c["name"]: c["id"] for c in _categories(merge)}
    for bad in ("00000000-0000-0000-0000-000000000000", ids["Legacy"]):
        refused = _invoice(merge, [bad], []) if where == "line" else _invoice(merge, [], [bad])
        assert refused.status_code == 400
        [error] = refused.json()["errors"]
        assert error["problem_type"] == "PROVIDER_ERROR" and "Invalid Reference Id" in error["detail"]
        assert json.loads(error["raw_error"])["Fault"]["Error"][0]["code"] == "2500"
    assert merge.app.state.invoices.order == []  # nothing stored
