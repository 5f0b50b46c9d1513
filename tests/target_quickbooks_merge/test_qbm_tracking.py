"""Classes and departments (locations) on forward invoices: a project field decides them (tracking_category_mapping),
they land on the invoices QuickBooks holds, a name QuickBooks lacks stops the run, an unmapped value fails the
invoice with the reason, a mapping change or a project's move to another workflow updates pushed invoices, and
without the setting nothing changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from target_quickbooks_merge.merge_client import MergeClient
from tests.conftest import start_coperniq, start_merge
from tests.target_quickbooks_merge.qbm_helpers import (
    BOTH_TRIGGERS,
    Pipeline,
    coperniq_patch,
    log_rows,
    merge_rows,
    staged_records,
)

CONFIG = {"invoice_sync": True, "default_item": "Services", "trigger_phases": BOTH_TRIGGERS, "backfill": True}
CLASSES = {"Residential Solar": "Solar", "HVAC Replacement": "HVAC"}
DEPARTMENTS = {"Solar": "Austin", "HVAC": "Dallas"}
MAPPING = {
    "class": {"field": "workflowName", "values": CLASSES},
    "location": {"field": "trades", "values": DEPARTMENTS},
}


@pytest.fixture
def company(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pipeline]:
    """8 seeded projects against a company that tracks classes per line (default) or per transaction."""
    from sandbox.seed import seed_coperniq

    coperniq, merge = start_coperniq(), start_merge(class_tracking=getattr(request, "param", "per_line"))
    seed_coperniq(coperniq.app, projects=8, seed=7)
    yield Pipeline(coperniq, merge, tmp_path / "ledger.duckdb", config=dict(CONFIG))
    coperniq.server.stop()
    merge.server.stop()


def _category_ids(pipe: Pipeline) -> dict[tuple[str, str], str]:
    rows = merge_rows(pipe.merge, "tracking-categories")
    by_id = {r["id"]: r for r in rows}
    parent = {r["id"]: f"{by_id[r['parent_category']]['name']}:" if r["parent_category"] else "" for r in rows}
    full = {r["id"]: parent[r["id"]] + r["name"] for r in rows}
    return {(r["category_type"], full[r["id"]]): r["id"] for r in rows}


def _pushed(pipe: Pipeline) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Coperniq invoice id -> (its project, the Merge invoice QuickBooks holds)."""
    projects = staged_records(pipe, "projects")
    staged = staged_records(pipe, "invoices")
    by_id = {inv["id"]: inv for inv in merge_rows(pipe.merge, "invoices")}
    out = {}
    with pipe.ledger() as ledger:
        for rid, inv in staged.items():
            link = ledger.get_link("coperniq", "invoice", rid)
            if link is not None:
                out[rid] = (projects[str(inv["record"]["id"])], by_id[link.target_id])
    return out


def _assert_categories(pipe: Pipeline, classes: dict[str, str], per_line: bool) -> int:
    ids = _category_ids(pipe)
    pushed = _pushed(pipe)
    assert pushed
    for project, invoice in pushed.values():
        klass = ids["CLASS", classes[project["workflowName"]]]
        department = ids["DEPARTMENT", DEPARTMENTS[project["trades"][0]]]
        header = [department] if per_line else sorted([klass, department])
        assert sorted(invoice["tracking_categories"]) == header
        assert all(line["tracking_categories"] == ([klass] if per_line else []) for line in invoice["line_items"])
    return len(pushed)


@pytest.mark.parametrize("company", ["per_line", "per_txn"], indirect=True)
def test_invoices_land_with_their_class_and_location_and_a_mapping_change_updates_them(company: Pipeline) -> None:
    per_line = company.merge.app.class_tracking == "per_line"
    company.config["tracking_category_mapping"] = MAPPING
    first = company.run()
    assert first.counts["invoices"]["failed"] == 0 and first.counts["invoices"]["created"] > 0
    assert _assert_categories(company, CLASSES, per_line) == first.counts["invoices"]["created"]
    assert company.run().writes == 0  # a no-op re-run writes nothing

    moved = {**CLASSES, "Residential Solar": "Solar:Commercial"}  # a sub-class, by its full name
    company.config["tracking_category_mapping"] = {**MAPPING, "class": {"field": "workflowName", "values": moved}}
    second = company.run()
    solar = sum(p["workflowName"] == "Residential Solar" for p, _ in _pushed(company).values())
    assert 0 < solar < len(_pushed(company))
    assert second.counts["invoices"]["updated"] == solar  # only the invoices whose class changed are PATCHed
    assert second.writes == solar
    _assert_categories(company, moved, per_line)
    assert company.run().writes == 0

    # A pushed invoice's project moves to another workflow in Coperniq: its invoices take the new class.
    project, _ = next(p for p in _pushed(company).values() if p[0]["workflowName"] == "Residential Solar")
    hvac = next(w["id"] for w in company.coperniq.app.state.workflows.values() if w["name"] == "HVAC Replacement")
    coperniq_patch(company.coperniq, f"/projects/{project['id']}", {"workflowId": hvac})
    of_project = sum(p["id"] == project["id"] for p, _ in _pushed(company).values())
    third = company.run()
    assert third.counts["invoices"]["updated"] == third.writes == of_project > 0
    _assert_categories(company, moved, per_line)  # by each project's workflow now
    assert company.run().writes == 0


@pytest.mark.parametrize("company", ["per_line", "per_txn"], indirect=True)
def test_a_credit_memo_carries_the_class_and_location_its_invoices_get(company: Pipeline) -> None:
    per_line = company.merge.app.class_tracking == "per_line"
    company.config["tracking_category_mapping"] = MAPPING
    company.run()
    project, invoice = next(iter(_pushed(company).values()))
    credit = company.coperniq.app.add_invoice(
        int(project["id"]),
        [{"quantity": 1, "unitCost": 0, "unitPrice": -80, "description": "Goodwill credit"}],
        status="SENT",
        issue_date="2025-06-05T00:00:00Z",
    )
    run = company.run()
    assert run.counts["invoices"]["failed"] == 0 and run.counts["invoices"]["created"] == 1
    [memo] = [m for m in merge_rows(company.merge, "credit-notes") if m["number"] == f"CQ-{credit['uid']}"]
    assert sorted(memo["tracking_categories"]) == sorted(invoice["tracking_categories"])  # what QuickBooks kept
    assert [line["tracking_categories"] for line in memo["line_items"]] == [
        invoice["line_items"][0]["tracking_categories"]
    ]
    ids = _category_ids(company)
    klass = ids["CLASS", CLASSES[project["workflowName"]]]
    assert (klass in memo["tracking_categories"]) != per_line  # per transaction or per line, never both
    assert company.run().writes == 0


def test_an_unmapped_value_or_a_name_quickbooks_lacks_fails_the_invoice_with_the_reason(company: Pipeline) -> None:
    company.merge.app.add_tracking_category("Solar", "DEPARTMENT")  # trades Solar exists as a location, HVAC not
    company.config["tracking_category_mapping"] = {
        "class": {"field": "workflowName", "values": {"Residential Solar": "Solar"}},
        "department": {"field": "trades"},  # no values: the trade is the QuickBooks name itself
    }
    run = company.run()
    staged = staged_records(company, "invoices")
    projects = staged_records(company, "projects")
    failed = {r["source_id"]: r["reason"] for r in log_rows(company, stream="invoices", action="failed")}
    pushed = _pushed(company)
    assert failed and pushed and run.counts["invoices"]["failed"] == len(failed)
    for rid, reason in failed.items():
        assert projects[str(staged[rid]["record"]["id"])]["workflowName"] == "HVAC Replacement"
        assert "'HVAC Replacement'" in reason and "tracking_category_mapping.class.values" in reason
    assert {p["workflowName"] for p, _ in pushed.values()} == {"Residential Solar"}
    numbers = {inv["number"] for inv in merge_rows(company.merge, "invoices")}
    assert all(f"CQ-{staged[rid]['uid']}" not in numbers for rid in failed)  # nothing posted for them

    company.config["tracking_category_mapping"]["class"]["default"] = "Other"
    company.run()
    reasons = [(r["source_id"], r["reason"]) for r in log_rows(company, stream="invoices", action="failed")]
    for rid in failed:  # the class is the default now; the location the trade names does not exist
        assert any(s == rid and "QuickBooks has no active department 'HVAC'" in why for s, why in reasons)
    assert {p["workflowName"] for p, _ in _pushed(company).values()} == {"Residential Solar"}

    company.merge.app.add_tracking_category("HVAC", "DEPARTMENT")
    third = company.run()  # failed rows are retried: now they land, on the default class
    assert third.counts["invoices"]["created"] == len(failed) and third.counts["invoices"]["failed"] == 0
    ids = _category_ids(company)
    for project, invoice in _pushed(company).values():
        if project["workflowName"] == "HVAC Replacement":
            assert invoice["tracking_categories"] == [ids["DEPARTMENT", "HVAC"]]
            assert invoice["line_items"][0]["tracking_categories"] == [ids["CLASS", "Other"]]
    assert company.run().writes == 0


@pytest.mark.parametrize(
    ("mapping", "named"),
    [
        ({"class": {"field": "workflowName", "values": {"Residential Solar": "Solr"}}}, ".class.values["),
        ({"department": {"field": "trades", "default": "Legacy"}}, ".department.default = 'Legacy'"),  # a class
        ({"class": {"field": "trades", "default": "Legacy"}}, ".class.default = 'Legacy'"),  # inactive
    ],
)
def test_a_name_quickbooks_does_not_have_stops_the_run_naming_the_setting(
    company: Pipeline, mapping: dict[str, Any], named: str
) -> None:
    company.config["tracking_category_mapping"] = mapping
    with pytest.raises(Exception) as info:  # noqa: PT011 - the target's own error type, raised through the SDK
        company.run()
    assert "tracking_category_mapping" + named in str(info.value), str(info.value)
    assert merge_rows(company.merge, "contacts") == [] and merge_rows(company.merge, "invoices") == []


@pytest.mark.parametrize(
    "value",
    [
        ["class"],
        {"segment": {"field": "workflowName"}},
        {"class": {"values": {"a": "b"}}},
        {"class": {"field": "workflowName", "values": ["Solar"]}},
        {"class": {"field": "workflowName", "default": ""}},
        {"department": {"field": "trades"}, "location": {"field": "trades"}},
    ],
)
def test_a_bad_shape_fails_at_start_naming_the_setting(value: Any) -> None:
    from singer_sdk.exceptions import ConfigValidationError

    from target_quickbooks_merge.target import TargetQuickbooksMerge

    with pytest.raises(ConfigValidationError) as info:
        TargetQuickbooksMerge(config={"merge_api_key": "k", "account_token": "t", "tracking_category_mapping": value})
    assert "tracking_category_mapping" in str(info.value.errors)


def test_without_the_setting_payloads_are_unchanged_and_nothing_is_read(
    company: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies: list[str] = []
    write = MergeClient._write

    def recording(self: MergeClient, method: str, path: str, model: dict[str, Any], *args: Any, **kw: Any) -> Any:
        if path.startswith("/invoices"):
            bodies.append(json.dumps(model, default=str))
        return write(self, method, path, model, *args, **kw)

    monkeypatch.setattr(MergeClient, "_write", recording)
    run = company.run()
    assert run.counts["invoices"]["created"] == len(bodies) > 0
    assert not any("tracking_categories" in body for body in bodies)  # the payload (and fingerprint) of before
    assert not any("tracking-categories" in route for route in company.merge.app.stats.by_route)
    with company.ledger() as ledger:
        assert ledger.get_meta("forward:tracking_categories") is None
    assert company.run().writes == 0
