"""target-coperniq under both Coperniq sandbox profiles: invoice updates when PATCH appends lines without an id
(`invoice_patch_replaces_lines=False`), and 429s without Retry-After (`rate_limit_headers=False`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from reverse_helpers import link_forward, log_rows, merge_contact, merge_invoice, merge_item, reverse_links, run_target

from sync_ledger import ApiClient, Ledger
from target_coperniq.invoice_update import REMOVED_DESCRIPTION
from target_coperniq.reconcile import FatalTargetError
from tests.conftest import RunningSandbox, start_coperniq


@pytest.fixture(params=["optimistic", "pessimistic"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A Coperniq project synced to QuickBooks as a job (forward link) and its Merge contact, per profile."""
    sb: RunningSandbox = start_coperniq(profile=request.param)
    project = sb.app.add_project("Smith Residence Solar")
    contact = merge_contact("Smith Residence Solar")
    ledger_path = tmp_path / "ledger.duckdb"
    link_forward(ledger_path, "project", project["id"], "job", contact["id"], contact["remote_id"])
    config = {"api_url": sb.url, "api_key": sb.api_key, "ledger_path": str(ledger_path), "max_requests_per_second": 0}
    yield {
        "app": sb.app,
        "sb": sb,
        "project": project,
        "contact": contact,
        "ledger": ledger_path,
        "config": config,
        "appends": not sb.app.assumptions.invoice_patch_replaces_lines,
    }
    sb.server.stop()


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """ApiClient's backoff in milliseconds (the behaviour is the same, the test just does not sleep)."""
    monkeypatch.setattr(ApiClient, "_backoff", lambda self, attempt: 0.005 * 2**attempt)


def held(invoice: dict[str, Any]) -> list[tuple[str, int, float]]:
    return sorted((li["catalogItem"]["name"], li["quantity"], li["unitPrice"]) for li in invoice["lineItems"])


def writes(sb: RunningSandbox) -> int:
    return sb.stats.count("POST") + sb.stats.count("PATCH") + sb.stats.count("DELETE")


def edited(invoice: dict[str, Any], lines: list[dict[str, Any]], modified_at: str) -> dict[str, Any]:
    """The same QuickBooks invoice with new lines (new line ids, as QuickBooks hands out) and total."""
    fresh = merge_invoice(invoice["contact"], lines)
    return {
        **invoice,
        "line_items": fresh["line_items"],
        "total_amount": fresh["total_amount"],
        "balance": fresh["total_amount"],
        "modified_at": modified_at,
    }


def test_changed_lines_end_exactly_as_in_quickbooks(world: dict[str, Any]) -> None:
    """Quantity change, an item swapped for another, a line added: exactly the new lines, never doubled."""
    app, sb = world["app"], world["sb"]
    panel, labor, battery, permit = (
        merge_item("REC 400W Alpha", price=300.0),
        merge_item("PV Install Labor"),
        merge_item("Battery Install"),
        merge_item("Permit Fee"),
    )
    items = ("items", [panel, labor, battery, permit])
    invoice = merge_invoice(
        world["contact"]["id"],
        [
            {"item": panel["id"], "quantity": 20, "unit_price": 300.0},
            {"item": labor["id"], "quantity": 1, "unit_price": 3750.0},
        ],
    )
    run_target(world["config"], [items, ("invoices", [invoice])])
    [created] = app.state.invoices.values()
    assert created["amount"] == 9750.0 and len(created["lineItems"]) == 2
    panel_line = next(li["id"] for li in created["lineItems"] if li["catalogItem"]["name"] == "REC 400W Alpha")

    changed = edited(
        invoice,
        [
            {"item": panel["id"], "quantity": 22, "unit_price": 300.0},
            {"item": battery["id"], "quantity": 1, "unit_price": 4000.0},
            {"item": permit["id"], "quantity": 1, "unit_price": 250.0},
        ],
        "2026-01-11T00:00:00Z",
    )
    run_target(world["config"], [items, ("invoices", [changed])])
    [updated] = app.state.invoices.values()
    assert updated["id"] == created["id"]
    assert held(updated) == [("Battery Install", 1, 4000.0), ("Permit Fee", 1, 250.0), ("REC 400W Alpha", 22, 300.0)]
    assert updated["amount"] == 10_850.0
    assert panel_line in {li["id"] for li in updated["lineItems"]}  # the same line, updated in place
    [action] = [r["action"] for r in log_rows(world["ledger"], stream="invoices") if r["action"] != "created"]
    assert action == "updated"

    before, lines = writes(sb), held(updated)
    run_target(world["config"], [items, ("invoices", [changed])])  # the same input again: nothing changes
    [again] = app.state.invoices.values()
    assert writes(sb) == before and held(again) == lines and again["amount"] == 10_850.0


def test_line_removed_in_quickbooks(world: dict[str, Any]) -> None:
    """Replace semantics: the line goes. Append semantics: it cannot be removed, so it is priced 0 (the amount
    stays right) and the row fails with a reason, the same way on every retry, never doubling anything."""
    app, sb = world["app"], world["sb"]
    invoice = merge_invoice(world["contact"]["id"], [{"quantity": 2, "unit_price": 500.0}], total=1100.0)  # +tax
    run_target(world["config"], [("invoices", [invoice])])
    [created] = app.state.invoices.values()
    assert held(created) == [("QuickBooks adjustment", 1, 100.0), ("QuickBooks line item", 2, 500.0)]

    changed = edited(invoice, [{"quantity": 3, "unit_price": 500.0}], "2026-01-11T00:00:00Z")  # the tax is gone
    run_target(world["config"], [("invoices", [changed])])
    [updated] = app.state.invoices.values()
    assert updated["amount"] == 1500.0
    with Ledger(world["ledger"]) as ledger:
        status, _, reason = ledger.staged_status("quickbooks", "invoices", invoice["id"]) or ("", 0, "")
    if not world["appends"]:
        assert held(updated) == [("QuickBooks line item", 3, 500.0)] and status == "done"
        before = writes(sb)
        run_target(world["config"], [("invoices", [changed])])
        assert writes(sb) == before
        return
    assert held(updated) == [("QuickBooks adjustment", 1, 0.0), ("QuickBooks line item", 3, 500.0)]
    zero = next(li for li in updated["lineItems"] if li["unitPrice"] == 0)
    assert zero["description"] == REMOVED_DESCRIPTION
    assert status == "failed" and "could not be removed" in reason and str(zero["id"]) in reason
    assert "delete them in Coperniq by hand" in reason
    with Ledger(world["ledger"]) as ledger:  # the link keeps the old fingerprint: the row is retried
        assert ledger.get_link("quickbooks", "invoice", invoice["id"]).target_id == str(created["id"])

    failures = [r["action"] for r in log_rows(world["ledger"], stream="invoices")].count("failed")
    run_target(world["config"], [])  # the retry from staging: same outcome, nothing added
    [retried] = app.state.invoices.values()
    assert held(retried) == held(updated) and retried["amount"] == 1500.0
    assert [r["action"] for r in log_rows(world["ledger"], stream="invoices")].count("failed") > failures


def test_invoice_doubled_by_an_earlier_update_is_repaired_as_far_as_the_api_allows(world: dict[str, Any]) -> None:
    """An invoice whose lines an older target version doubled (re-sent without ids): the update reuses one line
    per catalog item, prices the extra copies at 0 and fails the row naming them; the amount is right."""
    app = world["app"]
    invoice = merge_invoice(world["contact"]["id"], [{"quantity": 2, "unit_price": 500.0}], total=1100.0)
    run_target(world["config"], [("invoices", [invoice])])
    [created] = app.state.invoices.values()
    resend = [{k: li[k] for k in ("catalogItemId", "quantity", "unitCost", "unitPrice")} for li in created["lineItems"]]
    response = requests.patch(
        f"{world['sb'].url}/invoices/{created['id']}",
        json={"lineItems": resend},
        headers={"x-api-key": world["sb"].api_key},
        timeout=10,
    )
    assert response.status_code == 200 and len(response.json()["lineItems"]) == (4 if world["appends"] else 2)

    changed = edited(invoice, [{"quantity": 3, "unit_price": 500.0}], "2026-01-11T00:00:00Z")
    changed["total_amount"] = changed["balance"] = 1600.0
    run_target(world["config"], [("invoices", [changed])])
    [updated] = app.state.invoices.values()
    assert updated["amount"] == 1600.0
    priced = sorted(entry for entry in held(updated) if entry[2])
    assert priced == [("QuickBooks adjustment", 1, 100.0), ("QuickBooks line item", 3, 500.0)]
    [reason] = [r["reason"] for r in log_rows(world["ledger"], stream="invoices") if r["action"] != "created"][:1]
    if world["appends"]:
        assert len(updated["lineItems"]) == 4 and "2 line(s)" in reason and "could not be removed" in reason
    else:
        assert len(updated["lineItems"]) == 2 and reason == "changed in QuickBooks"


def test_interrupted_create_found_and_updated_without_doubling(world: dict[str, Any]) -> None:
    invoice = merge_invoice(world["contact"]["id"], [{"quantity": 1, "unit_price": 200.0}])
    existing = world["app"].add_invoice(
        world["project"]["id"],
        [{"quantity": 1, "unitCost": 0, "unitPrice": 200.0}],
        description=f"QuickBooks invoice #1043 [qbo-merge:{invoice['id']}]",
    )
    with Ledger(world["ledger"]) as ledger:
        ledger.begin_intent(f"target-coperniq:invoice:{invoice['id']}", {"marker": invoice["id"]})
    run_target(world["config"], [("invoices", [invoice])])
    [found] = world["app"].state.invoices.values()
    assert found["id"] == existing["id"] and found["amount"] == 200.0
    assert held(found) == [("QuickBooks line item", 1, 200.0)]
    assert [link.target_id for link in reverse_links(world["ledger"])] == [str(existing["id"])]


# --- 429 without Retry-After -------------------------------------------------------------------------------------


def test_429_burst_is_retried(world: dict[str, Any], fast_retries: None) -> None:
    world["sb"].faults.update(burst_429=4, retry_after=0.01, only_paths=["/v1/invoices"])
    invoice = merge_invoice(world["contact"]["id"], [{"quantity": 1, "unit_price": 200.0}])
    run_target(world["config"], [("invoices", [invoice])])
    [created] = world["app"].state.invoices.values()
    assert created["amount"] == 200.0 and world["sb"].stats.by_status[429] == 4
    assert [r["action"] for r in log_rows(world["ledger"], stream="invoices")] == ["created"]


def test_persistent_429_stops_the_run_with_a_clear_message(world: dict[str, Any], fast_retries: None) -> None:
    world["sb"].faults.update(burst_429=10_000, retry_after=0.01, only_paths=["/v1/catalog-items", "/v1/invoices"])
    invoice = merge_invoice(world["contact"]["id"], [{"quantity": 1, "unit_price": 200.0}])
    with pytest.raises(FatalTargetError, match=r"kept answering 429 .* daily cap of 5,000 calls"):
        run_target(world["config"], [("invoices", [invoice])])
    assert world["sb"].stats.by_status[429] == 7  # one call, ApiClient's 6 retries, then the run stops
    assert world["app"].state.invoices == {}
