"""target-coperniq in-process against the Coperniq sandbox over HTTP; the ledger is set up like the forward leg
would have left it. Assertions are on what the Coperniq sandbox holds afterwards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from reverse_helpers import (
    link_forward,
    log_rows,
    merge_contact,
    merge_invoice,
    merge_item,
    merge_payment,
    reverse_links,
    run_target,
)

from sync_ledger import Ledger
from target_coperniq.reconcile import FatalTargetError


@pytest.fixture
def world(coperniq_sandbox: Any, tmp_path: Path) -> dict[str, Any]:
    """A Coperniq project synced to QuickBooks as a job (forward link), plus its Merge contact."""
    app = coperniq_sandbox.app
    project = app.add_project("Smith Residence Solar")
    contact = merge_contact("Smith Residence Solar")
    ledger_path = tmp_path / "ledger.duckdb"
    link_forward(ledger_path, "account", project["accountId"], "customer", new_customer := merge_contact()["id"])
    link_forward(ledger_path, "project", project["id"], "job", contact["id"], contact["remote_id"])
    config = {
        "api_url": coperniq_sandbox.url,
        "api_key": coperniq_sandbox.api_key,
        "ledger_path": str(ledger_path),
        "max_requests_per_second": 0,
    }
    return {
        "app": app,
        "sb": coperniq_sandbox,
        "project": project,
        "contact": contact,
        "ledger": ledger_path,
        "config": config,
        "account_contact": new_customer,
    }


def invoices_of(app: Any) -> list[dict[str, Any]]:
    return list(app.state.invoices.values())


def payments_of(app: Any, invoice_id: int) -> list[dict[str, Any]]:
    return app.state.payments.get(invoice_id, [])


def test_invoice_and_payment_arrive_once_in_any_order(world: dict[str, Any]) -> None:
    app, contact = world["app"], world["contact"]
    panel, labor = merge_item("REC 400W Alpha", price=300.0, type_="INVENTORY"), merge_item("PV Install Labor")
    invoice = merge_invoice(
        contact["id"],
        [
            {"item": panel["id"], "quantity": 20, "unit_price": 300.0, "description": "400W PV module"},
            {"item": labor["id"], "quantity": 1, "unit_price": 3750.0, "description": "Installation labor"},
            {"item": panel["id"], "quantity": 2, "unit_price": 300.0, "description": "spares"},
        ],
        total=10_612.0,
    )  # 10,350 of lines + 262 tax
    payment = merge_payment(contact["id"], [(invoice["id"], 5000.0)])
    # payments and invoices before the items and contacts they refer to
    streams = [("payments", [payment]), ("invoices", [invoice]), ("items", [panel, labor]), ("contacts", [contact])]

    states = run_target(world["config"], streams)

    assert states, "STATE must be emitted after the reconcile"
    [coperniq_invoice] = invoices_of(app)
    assert coperniq_invoice["_record"] == ("project", world["project"]["id"])
    assert coperniq_invoice["amount"] == pytest.approx(10_612.0)
    assert coperniq_invoice["amountPaid"] == pytest.approx(5000.0)
    assert coperniq_invoice["status"] == "PARTIALLY_PAID"
    assert f"qbo-merge:{invoice['id']}" in coperniq_invoice["description"]
    by_name = {li["catalogItem"]["name"]: li for li in coperniq_invoice["lineItems"]}
    assert by_name["REC 400W Alpha"]["quantity"] == 22 and by_name["REC 400W Alpha"]["unitPrice"] == 300.0
    assert by_name["PV Install Labor"]["unitPrice"] == 3750.0
    assert by_name["QuickBooks adjustment"]["unitPrice"] == pytest.approx(262.0)
    [coperniq_payment] = payments_of(app, coperniq_invoice["id"])
    assert coperniq_payment["amount"] == 5000.0 and coperniq_payment["paymentReference"] == payment["id"]

    links = {(link.source_type, link.source_id): link for link in reverse_links(world["ledger"])}
    assert links[("invoice", invoice["id"])].target_id == str(coperniq_invoice["id"])
    assert links[("invoice", invoice["id"])].origin == "quickbooks"
    assert links[("payment", payment["id"])].target_id == str(coperniq_payment["id"])
    with Ledger(world["ledger"]) as ledger:  # what the forward target uses to suppress the echo
        echo = ledger.get_link_by_target("coperniq", "invoice", str(coperniq_invoice["id"]))
        assert echo is not None and echo.origin == "quickbooks"

    # re-run with the same input: nothing new is written
    writes = world["sb"].stats.count("POST") + world["sb"].stats.count("PATCH")
    run_target(world["config"], streams)
    assert world["sb"].stats.count("POST") + world["sb"].stats.count("PATCH") == writes
    assert len(invoices_of(app)) == 1 and len(payments_of(app, coperniq_invoice["id"])) == 1


def test_unsynced_customer_and_forward_echo_are_not_written(world: dict[str, Any]) -> None:
    app, contact = world["app"], world["contact"]
    stranger = merge_contact("Walk-in customer")
    foreign = merge_invoice(stranger["id"], [{"quantity": 1, "unit_price": 50.0}], number="9001")
    foreign_payment = merge_payment(stranger["id"], [(foreign["id"], 50.0)])
    # an invoice the forward leg pushed from Coperniq to QuickBooks
    coperniq_invoice = app.add_invoice(world["project"]["id"], [{"quantity": 1, "unitCost": 1, "unitPrice": 800.0}])
    pushed = merge_invoice(contact["id"], [{"quantity": 1, "unit_price": 800.0}], number=str(coperniq_invoice["uid"]))
    link_forward(world["ledger"], "invoice", coperniq_invoice["id"], "invoice", pushed["id"], pushed["remote_id"])
    paid_in_qbo = merge_payment(contact["id"], [(pushed["id"], 300.0)])

    run_target(
        world["config"],
        [
            ("contacts", [stranger, contact]),
            ("invoices", [foreign, pushed]),
            ("payments", [foreign_payment, paid_in_qbo]),
        ],
    )

    assert [i["id"] for i in invoices_of(app)] == [coperniq_invoice["id"]]  # nothing created
    [payment] = payments_of(app, coperniq_invoice["id"])  # the QBO payment lands on the Coperniq-born invoice
    assert payment["amount"] == 300.0 and payment["paymentReference"] == paid_in_qbo["id"]
    reasons = {r["source_id"]: r["reason"] for r in log_rows(world["ledger"], action="skipped")}
    assert reasons[foreign["id"]] == "customer not synced from Coperniq"
    assert reasons[foreign_payment["id"]] == "customer not synced from Coperniq"
    assert reasons[pushed["id"]] == "written by the forward leg"


def test_updates_void_mark_and_rerun(world: dict[str, Any]) -> None:
    app, contact = world["app"], world["contact"]
    invoice = merge_invoice(contact["id"], [{"quantity": 2, "unit_price": 500.0}])
    run_target(world["config"], [("invoices", [invoice])])
    [created] = invoices_of(app)
    assert created["amount"] == 1000.0

    changed = {
        **invoice,
        "modified_at": "2026-01-11T00:00:00Z",
        "due_date": "2026-03-01T00:00:00Z",
        "line_items": [{**invoice["line_items"][0], "quantity": 3, "total_amount": 1500.0}],
        "total_amount": 1500.0,
        "balance": 1500.0,
    }
    run_target(world["config"], [("invoices", [changed])])
    [updated] = invoices_of(app)
    assert updated["id"] == created["id"] and updated["amount"] == 1500.0
    assert updated["dueDate"].startswith("2026-03-01")

    voided = {**changed, "status": "VOID", "modified_at": "2026-01-12T00:00:00Z"}
    run_target(world["config"], [("invoices", [voided])])
    [marked] = invoices_of(app)
    assert marked["status"] == "DECLINED" and marked["description"].startswith("[VOIDED IN QUICKBOOKS]")
    patches = world["sb"].stats.count("PATCH")
    run_target(world["config"], [("invoices", [voided])])
    assert world["sb"].stats.count("PATCH") == patches
    actions = [r["action"] for r in log_rows(world["ledger"], stream="invoices")]
    assert actions.count("created") == 1 and actions.count("updated") == 2


def test_void_policy_delete(world: dict[str, Any]) -> None:
    invoice = merge_invoice(world["contact"]["id"], [{"quantity": 1, "unit_price": 200.0}])
    run_target(world["config"], [("invoices", [invoice])])
    assert len(invoices_of(world["app"])) == 1
    run_target(
        {**world["config"], "void_policy": "delete"},
        [("invoices", [{**invoice, "remote_was_deleted": True, "modified_at": "2026-02-01T00:00:00Z"}])],
    )
    assert invoices_of(world["app"]) == []
    assert log_rows(world["ledger"], action="deleted")[0]["source_id"] == invoice["id"]


def test_failed_rows_are_retried_next_run(world: dict[str, Any]) -> None:
    invoice = merge_invoice(world["contact"]["id"], [{"quantity": 1, "unit_price": 200.0}])
    world["sb"].faults.update(error_rate=1.0, error_status=400, only_paths=["/v1/invoices"])
    run_target(world["config"], [("invoices", [invoice])])
    assert invoices_of(world["app"]) == []
    assert log_rows(world["ledger"], action="failed")[0]["source_id"] == invoice["id"]

    world["sb"].faults.reset()
    run_target(world["config"], [])  # nothing new from the tap: the failed row is retried from staging
    assert len(invoices_of(world["app"])) == 1


def test_interrupted_create_is_found_not_duplicated(world: dict[str, Any]) -> None:
    invoice = merge_invoice(world["contact"]["id"], [{"quantity": 1, "unit_price": 200.0}])
    # a previous run crashed after POST /invoices succeeded but before the link was written
    existing = world["app"].add_invoice(
        world["project"]["id"],
        [{"quantity": 1, "unitCost": 0, "unitPrice": 200.0}],
        description=f"QuickBooks invoice #1043 [qbo-merge:{invoice['id']}]",
    )
    with Ledger(world["ledger"]) as ledger:
        ledger.begin_intent(f"target-coperniq:invoice:{invoice['id']}", {"marker": invoice["id"]})
    run_target(world["config"], [("invoices", [invoice])])
    assert [i["id"] for i in invoices_of(world["app"])] == [existing["id"]]
    assert log_rows(world["ledger"], action="linked")[0]["target_id"] == str(existing["id"])
    with Ledger(world["ledger"]) as ledger:
        assert ledger.pending_intents("target-coperniq:") == []


def test_customer_linked_later_brings_its_invoice(world: dict[str, Any]) -> None:
    later = merge_contact("Jones HVAC")
    invoice = merge_invoice(later["id"], [{"quantity": 1, "unit_price": 900.0}])
    run_target(world["config"], [("contacts", [later]), ("invoices", [invoice])])
    assert invoices_of(world["app"]) == []
    # the forward leg syncs this job afterwards
    project = world["app"].add_project("Jones HVAC")
    link_forward(world["ledger"], "project", project["id"], "job", later["id"])
    run_target(world["config"], [])
    [created] = invoices_of(world["app"])
    assert created["_record"] == ("project", project["id"])
    assert len(log_rows(world["ledger"], action="skipped")) == 1  # the wait was logged once


def test_dry_run_writes_nothing(world: dict[str, Any]) -> None:
    invoice = merge_invoice(world["contact"]["id"], [{"quantity": 1, "unit_price": 200.0}])
    run_target({**world["config"], "dry_run": True}, [("invoices", [invoice])])
    assert invoices_of(world["app"]) == [] and world["sb"].stats.count("POST") == 0
    assert log_rows(world["ledger"], action="planned")[0]["source_id"] == invoice["id"]
    run_target(world["config"], [("invoices", [invoice])])  # the real run still does the work
    assert len(invoices_of(world["app"])) == 1


def test_bad_api_key_is_fatal_and_not_printed(world: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    invoice = merge_invoice(world["contact"]["id"], [{"quantity": 1, "unit_price": 200.0}])
    secret = "wrong-key-s3cr3t"
    with pytest.raises(FatalTargetError, match="api_key"):
        run_target({**world["config"], "api_key": secret}, [("invoices", [invoice])])
    assert secret not in caplog.text


def test_lost_responses_on_creates_never_duplicate(world: dict[str, Any]) -> None:
    """Coperniq has no idempotency key: when every create answers 500 after the write happened, the target finds
    the record by its marker / paymentReference instead of sending the POST again."""
    app, contact = world["app"], world["contact"]
    world["sb"].faults.update(lost_response_rate=1.0, only_paths=["/invoices"])
    invoice = merge_invoice(
        contact["id"], [{"description": "Install", "quantity": 1, "unit_price": 900.0}], total=900.0, number="LOST-1"
    )
    payment = merge_payment(contact["id"], [(invoice["id"], 400.0)])
    run_target(world["config"], [("contacts", [contact]), ("invoices", [invoice]), ("payments", [payment])])

    created = [inv for inv in invoices_of(app) if "LOST-1" in (inv.get("description") or "")]
    assert len(created) == 1, created
    assert [p["amount"] for p in payments_of(app, created[0]["id"])] == [400.0]
    posts = world["sb"].stats.count("POST", "/invoices")
    assert posts == 2, f"one invoice POST and one payment POST expected, saw {posts}"
    assert {r["action"] for r in log_rows(world["ledger"], stream="invoices")} >= {"created"}


def test_two_equal_payments_on_one_invoice_are_both_imported(world: dict[str, Any]) -> None:
    """The twin check (a payment recorded in both systems) must never take this run's own import for a twin: two
    QuickBooks payments of the same amount, days apart, on one invoice are two Coperniq payments."""
    app, contact = world["app"], world["contact"]
    invoice = merge_invoice(contact["id"], [{"quantity": 1, "unit_price": 3000.0}])
    first = merge_payment(contact["id"], [(invoice["id"], 1000.0)], transaction_date="2026-01-12T00:00:00Z")
    second = merge_payment(contact["id"], [(invoice["id"], 1000.0)], transaction_date="2026-01-14T00:00:00Z")

    run_target(world["config"], [("contacts", [contact]), ("invoices", [invoice]), ("payments", [first, second])])

    [coperniq_invoice] = invoices_of(app)
    paid = payments_of(app, coperniq_invoice["id"])
    assert sorted(p["paymentReference"] for p in paid) == sorted([first["id"], second["id"]])
    assert coperniq_invoice["amountPaid"] == pytest.approx(2000.0)
    assert not log_rows(world["ledger"], stream="payments", action="linked")


def _cli(world: dict[str, Any], *args: str) -> tuple[int, str]:
    import io

    from coperniq_qbo.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=out, stderr=err, environ={"COPERNIQ_QBO_LEDGER_PATH": str(world["ledger"])})
    return code, out.getvalue() + err.getvalue()


def test_a_person_retries_a_row_past_max_attempts_and_dismisses_another(world: dict[str, Any]) -> None:
    """Reverse-leg rows by `quickbooks:<stream>:<id>`: retry brings back a row that used up its attempts; a
    dismissed row is not tried again, even on the next tap read of it."""
    kept = merge_invoice(world["contact"]["id"], [{"quantity": 1, "unit_price": 200.0}])
    dropped = merge_invoice(world["contact"]["id"], [{"quantity": 1, "unit_price": 75.0}])
    config = {**world["config"], "max_attempts": 1}
    world["sb"].faults.update(error_rate=1.0, error_status=400, only_paths=["/v1/invoices"])
    run_target(config, [("invoices", [kept, dropped])])
    world["sb"].faults.reset()
    run_target(config, [])  # past max_attempts: not tried again on its own
    assert invoices_of(world["app"]) == []

    assert _cli(world, "retry", f"quickbooks:invoices:{kept['id']}", "--by", "erin")[0] == 0
    code, text = _cli(world, "dismiss", f"quickbooks:invoices:{dropped['id']}", "--reason", "duplicate entry")
    assert code == 0, text
    run_target(config, [("invoices", [dropped])])  # the tap sends the dismissed one again
    assert [i["amount"] for i in invoices_of(world["app"])] == [200.0]
    operator = [r for r in log_rows(world["ledger"], action="operator") if r["run_id"] != "operator"]
    assert {r["source_id"] for r in operator} == {kept["id"], dropped["id"]}
    with Ledger(world["ledger"]) as ledger:
        status, _, why = ledger.staged_status("quickbooks", "invoices", dropped["id"])
    assert status == "skipped" and "dismissed by" in (why or "") and "duplicate entry" in (why or "")
