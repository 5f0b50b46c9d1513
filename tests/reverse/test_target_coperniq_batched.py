"""target-coperniq's writes go through the batched writer: with a slow Coperniq (write_latency_ms) several are in
flight at once (the sandbox's own max_in_flight counter), and the results are still complete and duplicate-free;
one failing write fails only its row; a fatal answer stops the run and the re-run finishes the job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from reverse_helpers import link_forward, log_rows, merge_contact, merge_invoice, merge_payment, new_id, run_target
from singer_sdk.exceptions import ConfigValidationError

from sync_ledger import ApiClient, Ledger
from target_coperniq.reconcile import FatalTargetError
from target_coperniq.target import TargetCoperniq
from tests.conftest import start_coperniq

INVOICES = 12


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A Coperniq project synced as a QuickBooks job, and QuickBooks invoices for it with one payment each."""
    sb = start_coperniq(rate_limit_per_day=None)
    project = sb.app.add_project("Smith Residence Solar")
    contact = merge_contact("Smith Residence Solar")
    ledger = tmp_path / "ledger.duckdb"
    link_forward(ledger, "project", project["id"], "job", contact["id"], contact["remote_id"])
    invoices = [
        merge_invoice(contact["id"], [{"quantity": 1, "unit_price": 100.0 + n}], number=f"B-{n}")
        for n in range(INVOICES)
    ]
    payments = [merge_payment(contact["id"], [(inv["id"], 50.0)]) for inv in invoices]
    config = {"api_url": sb.url, "api_key": sb.api_key, "ledger_path": str(ledger), "max_requests_per_second": 0}
    yield {"sb": sb, "app": sb.app, "ledger": ledger, "config": config, "invoices": invoices, "payments": payments}
    sb.server.stop()


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """ApiClient's backoff in milliseconds (the behaviour is the same, the test just does not sleep)."""
    monkeypatch.setattr(ApiClient, "_backoff", lambda self, attempt: 0.005 * 2**attempt)


def by_marker(app: Any) -> dict[str, list[dict[str, Any]]]:
    """Coperniq invoices per QuickBooks invoice id (the marker in their description)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for invoice in app.state.invoices.values():
        merge_id = (invoice.get("description") or "").rsplit("[qbo-merge:", 1)[-1].rstrip("]")
        found.setdefault(merge_id, []).append(invoice)
    return found


def doubled(invoice: dict[str, Any]) -> dict[str, Any]:
    """The same QuickBooks invoice with its line's quantity doubled (new line ids, as QuickBooks hands out)."""
    line = invoice["line_items"][0]
    fresh = merge_invoice(invoice["contact"], [{"quantity": 2 * line["quantity"], "unit_price": line["unit_price"]}])
    total = fresh["total_amount"]
    return {
        **invoice,
        "line_items": fresh["line_items"],
        "total_amount": total,
        "balance": total,
        "modified_at": "2026-01-11T00:00:00Z",
    }


def assert_complete(world: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every QuickBooks invoice is one Coperniq invoice holding its one payment, and every link is distinct."""
    app, found = world["app"], by_marker(world["app"])
    assert sorted(found) == sorted(inv["id"] for inv in world["invoices"])
    assert all(len(copies) == 1 for copies in found.values()), found
    for invoice, payment in zip(world["invoices"], world["payments"], strict=True):
        paid = app.state.payments.get(found[invoice["id"]][0]["id"], [])
        assert [p["paymentReference"] for p in paid] == [payment["id"]]
    with Ledger(world["ledger"]) as ledger:
        links = ledger.links(source_system="quickbooks")
        assert ledger.pending_intents("target-coperniq:") == []
    assert len(links) == 2 * INVOICES and len({(li.target_type, li.target_id) for li in links}) == 2 * INVOICES
    return {inv_id: copies[0] for inv_id, copies in found.items()}


def test_writes_overlap_and_results_are_complete(world: dict[str, Any]) -> None:
    sb = world["sb"]
    sb.faults.update(write_latency_ms=60)
    streams = [("invoices", world["invoices"]), ("payments", world["payments"])]
    run_target({**world["config"], "max_parallel_writes": 4}, streams)
    assert sb.stats.max_in_flight > 1, "creates must be sent in parallel"
    created = assert_complete(world)
    actions = [r["action"] for r in log_rows(world["ledger"])]
    assert actions.count("created") == 2 * INVOICES and "failed" not in actions

    # updates (lines) go in parallel too
    sb.stats.reset()
    changed = [doubled(inv) for inv in world["invoices"]]
    run_target({**world["config"], "max_parallel_writes": 4}, [("invoices", changed)])
    assert sb.stats.max_in_flight > 1, "updates must be sent in parallel"
    for inv in changed:
        assert created[inv["id"]]["amount"] == pytest.approx(inv["total_amount"])
    assert [r["action"] for r in log_rows(world["ledger"])].count("updated") == INVOICES

    # and so do voids (void_policy mark)
    sb.stats.reset()
    voided = [{**inv, "status": "VOID", "modified_at": "2026-01-12T00:00:00Z"} for inv in changed]
    run_target({**world["config"], "max_parallel_writes": 4}, [("invoices", voided)])
    assert sb.stats.max_in_flight > 1, "voids must be sent in parallel"
    assert all(inv["status"] == "DECLINED" for inv in world["app"].state.invoices.values())
    assert_complete(world)


def test_one_write_at_a_time_when_set_to_1(world: dict[str, Any]) -> None:
    world["sb"].faults.update(write_latency_ms=20)
    config = {**world["config"], "max_parallel_writes": 1}
    run_target(config, [("invoices", world["invoices"]), ("payments", world["payments"])])
    assert world["sb"].stats.max_in_flight == 1
    assert_complete(world)


def test_a_failing_write_fails_only_its_row(world: dict[str, Any]) -> None:
    run_target(world["config"], [("invoices", world["invoices"]), ("payments", world["payments"])])
    created = assert_complete(world)
    gone = world["invoices"][3]["id"]
    response = requests.delete(  # deleted in Coperniq behind the target's back: its update answers 404
        f"{world['sb'].url}/invoices/{created[gone]['id']}", headers={"x-api-key": world["sb"].api_key}, timeout=10
    )
    assert response.status_code < 300
    changed = [{**inv, "due_date": "2026-03-01T00:00:00Z", "modified_at": "2026-01-11"} for inv in world["invoices"]]
    run_target({**world["config"], "max_parallel_writes": 4}, [("invoices", changed)])

    rows = [r for r in log_rows(world["ledger"], stream="invoices") if r["action"] in ("updated", "failed")]
    assert sorted(r["source_id"] for r in rows if r["action"] == "updated") == sorted(
        inv["id"] for inv in world["invoices"] if inv["id"] != gone
    )
    failed = [r for r in rows if r["action"] == "failed"]  # retried in each pass of the run, then left failed
    assert failed and {r["source_id"] for r in failed} == {gone} and all("404" in r["reason"] for r in failed)
    with Ledger(world["ledger"]) as ledger:
        assert (ledger.staged_status("quickbooks", "invoices", gone) or ("",))[0] == "failed"
        assert (ledger.staged_status("quickbooks", "invoices", world["invoices"][4]["id"]) or ("",))[0] == "done"


def test_persistent_429_on_the_batch_stops_the_run_and_the_rerun_completes(
    world: dict[str, Any], fast_retries: None
) -> None:
    world["sb"].faults.update(burst_429=10_000, retry_after=0.01, only_paths=["/v1/invoices"])
    streams = [("invoices", world["invoices"]), ("payments", world["payments"])]
    with pytest.raises(FatalTargetError, match=r"kept answering 429"):
        run_target({**world["config"], "max_parallel_writes": 4}, streams)
    assert world["app"].state.invoices == {}
    with Ledger(world["ledger"]) as ledger:  # a 429 does not say the create did not happen: the intents stay
        assert len(ledger.pending_intents("target-coperniq:")) == INVOICES

    world["sb"].faults.reset()
    run_target({**world["config"], "max_parallel_writes": 4}, streams)
    assert_complete(world)


def test_dry_run_sends_no_write_whatever_the_parallelism(world: dict[str, Any]) -> None:
    config = {**world["config"], "dry_run": True, "max_parallel_writes": 8}
    run_target(config, [("invoices", world["invoices"]), ("payments", world["payments"])])
    sb = world["sb"]
    assert sb.stats.count("POST", "/invoices") == sb.stats.count("PATCH") == 0
    planned = {r["source_id"] for r in log_rows(world["ledger"], action="planned")}
    assert planned == {inv["id"] for inv in world["invoices"]}  # the payments wait for their invoices


@pytest.mark.parametrize("value", [0, 33, "four"])
def test_max_parallel_writes_is_validated(world: dict[str, Any], value: Any) -> None:
    with pytest.raises(ConfigValidationError):
        TargetCoperniq(config={**world["config"], "max_parallel_writes": value}, validate_config=True)


def test_an_interrupted_create_is_never_the_twin_of_an_equal_payment(world: dict[str, Any]) -> None:
    """A crash in a batch can leave several payments created and unlinked. A sibling of the same amount on the same
    invoice, evaluated first on the re-run, must create its own payment, not link the interrupted one as a payment
    "recorded in both systems": that one is found by its reference and linked to its own QuickBooks payment."""
    invoice = world["invoices"][0]
    contact_id = invoice["contact"]
    first = merge_payment(contact_id, [(invoice["id"], 40.0)], id="a" * 8 + new_id()[8:])
    interrupted = merge_payment(
        contact_id, [(invoice["id"], 40.0)], id="b" * 8 + new_id()[8:], transaction_date="2026-01-13T00:00:00Z"
    )
    run_target(world["config"], [("invoices", [invoice])])
    [coperniq_invoice] = world["app"].state.invoices.values()
    # what the killed run left: the batch's intents, and one of its creates done in Coperniq but not linked
    with Ledger(world["ledger"]) as ledger:
        ledger.begin_intents(
            [
                (f"target-coperniq:payment:{p['id']}", {"invoice_id": str(coperniq_invoice["id"])})
                for p in (first, interrupted)
            ]
        )
    world["app"].add_payment(
        coperniq_invoice["id"], 40.0, payment_date="2026-01-13T00:00:00Z", reference=interrupted["id"]
    )

    run_target(world["config"], [("invoices", [invoice]), ("payments", [first, interrupted])])

    paid = world["app"].state.payments[coperniq_invoice["id"]]
    assert sorted(p["paymentReference"] for p in paid) == sorted([first["id"], interrupted["id"]])
    actions = {r["source_id"]: (r["action"], r["reason"]) for r in log_rows(world["ledger"], stream="payments")}
    assert actions[first["id"]][0] == "created"
    assert actions[interrupted["id"]] == ("linked", "found in Coperniq after an interrupted run")
