"""Coperniq credits (invoices with a negative total) arrive in QuickBooks as Credit Memos (Merge credit notes) on the
project's job, their amounts positive; one based on a pushed, open invoice is applied to it (the invoice's balance
drops); a credit memo the bookkeeper entered for it is linked, not created again; exactly once under lost answers and
a crash between the create and the application; a changed credit is PATCHed, a declined one zeroed; a no-op re-run
writes nothing (target_quickbooks_merge/credit_notes.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from sync_ledger import Link
from target_quickbooks_merge import credit_notes
from tests.target_quickbooks_merge.qbm_helpers import Pipeline, log_rows, merge_rows
from tests.target_quickbooks_merge.test_qbm_voids import set_status
from tests.target_quickbooks_merge.test_qbm_voids import start as start_with_invoice

CONFIG = {"invoice_sync": True, "default_item": "Services"}
LINES = [{"quantity": 2, "unitCost": 100, "unitPrice": 250}]
T = 10


class Crash(BaseException):
    """Stands in for the process dying (BaseException: nothing in the target may swallow it)."""


# --------------------------------------------------------------------------------------------------- helpers
def start(pipe: Pipeline, **config: Any) -> tuple[int, dict[str, Any], Link]:
    """The seeded projects synced (their seeded invoices deleted), then one SENT invoice of 500 pushed
    (test_qbm_voids.start), and the project it is on."""
    inv, link = start_with_invoice(pipe, **config)
    return int(inv["record"]["id"]), inv, link


def add_credit(pipe: Pipeline, project: int, price: float = -100, based_on: dict[str, Any] | None = None) -> Any:
    return pipe.coperniq.app.add_invoice(
        project,
        [{"quantity": 1, "unitCost": 0, "unitPrice": price, "description": "Goodwill credit"}],
        status="SENT",
        issue_date="2025-06-05T00:00:00Z",
        based_on=based_on["id"] if based_on else None,
    )


def link_of(pipe: Pipeline, inv: dict[str, Any]) -> Link:
    with pipe.ledger() as ledger:
        link = ledger.get_link("coperniq", "invoice", str(inv["id"]))
    assert link is not None and link.target_id, "it should be pushed"
    return link


def credit_memos(pipe: Pipeline) -> list[dict[str, Any]]:
    return merge_rows(pipe.merge, "credit-notes")


def merge_invoice(pipe: Pipeline, link: Link) -> dict[str, Any]:
    return dict(pipe.merge.state.table("invoices").row(link.target_id))


def rows_of(pipe: Pipeline, inv: dict[str, Any], action: str | None = None) -> list[dict[str, Any]]:
    return [r for r in log_rows(pipe, stream="invoices", action=action) if r["source_id"] == str(inv["id"])]


def applications(pipe: Pipeline) -> list[tuple[str, str]]:
    return [(a["invoice"], a["applied_amount"]) for c in credit_memos(pipe) for a in c["applied_to_lines"]]


# ------------------------------------------------------------------------------------------------- tests
def test_a_credit_arrives_as_a_credit_memo_with_positive_amounts(pipeline: Pipeline) -> None:
    project, _, inv_link = start(pipeline)
    credit = add_credit(pipeline, project, price=-150)
    assert credit["amount"] == -150 and credit["basedOnId"] is None
    run = pipeline.run()
    assert run.counts["invoices"]["failed"] == 0
    [memo] = credit_memos(pipeline)
    assert memo["number"] == f"CQ-{credit['uid']}" and memo["total_amount"] == 150.0
    assert memo["contact"] == merge_invoice(pipeline, inv_link)["contact"]  # the job the invoices go on
    assert memo["transaction_date"].startswith("2025-06-05")
    [line] = memo["line_items"]
    assert (line["quantity"], line["unit_price"], line["total_line_amount"]) == ("1.00", "150.00", "150.00")
    assert line["description"] == "Goodwill credit"
    link = link_of(pipeline, credit)
    assert link.target_type == "credit_note" and link.target_id == memo["id"] and link.target_remote_id
    [created] = rows_of(pipeline, credit, "created")
    assert created["reason"].startswith(f"credit memo #CQ-{credit['uid']} for synced project")
    assert "left as the customer's open credit" in created["reason"]
    assert merge_invoice(pipeline, inv_link)["balance"] == 500.0  # nothing applied

    again = pipeline.run()
    assert again.writes == 0 and len(credit_memos(pipeline)) == 1


def test_a_credit_based_on_an_open_invoice_is_applied_to_it_once(pipeline: Pipeline) -> None:
    project, inv, inv_link = start(pipeline)
    credit = add_credit(pipeline, project, based_on=inv)
    pipeline.run()
    [memo] = credit_memos(pipeline)
    assert applications(pipeline) == [(inv_link.target_id, "100.00")] and memo["remaining_credit"] == 0
    invoice = merge_invoice(pipeline, inv_link)
    assert invoice["balance"] == 400.0 and invoice["applied_credit_notes"] == [memo["id"]]
    [created] = rows_of(pipeline, credit, "created")
    assert f"applied 100.00 to invoice #CQ-{inv['uid']} (open balance 500.00)" in created["reason"]
    assert pipeline.run().writes == 0 and len(applications(pipeline)) == 1


def test_the_applied_amount_is_at_most_the_open_balance(pipeline: Pipeline) -> None:
    project, inv, inv_link = start(pipeline)
    pipeline.coperniq.app.add_payment(inv["id"], 450.0)
    pipeline.run()
    assert merge_invoice(pipeline, inv_link)["balance"] == 50.0
    add_credit(pipeline, project, based_on=inv)
    pipeline.run()
    assert applications(pipeline) == [(inv_link.target_id, "50.00")]
    assert credit_memos(pipeline)[0]["remaining_credit"] == 50.0  # the rest stays the customer's credit
    assert merge_invoice(pipeline, inv_link)["balance"] == 0.0
    assert pipeline.run().writes == 0


@pytest.mark.parametrize("pipeline", ["optimistic", "pessimistic"], indirect=True)
def test_lost_answers_on_the_create_and_the_application_make_one_credit_memo_applied_once(
    pipeline: Pipeline,
) -> None:
    project, inv, inv_link = start(pipeline)
    credit = add_credit(pipeline, project, based_on=inv)
    pipeline.merge.faults.update(lost_response_rate=1.0, only_paths=["/credit-notes"])
    run = pipeline.run()
    pipeline.merge.faults.reset()
    assert run.counts["invoices"]["failed"] == 0
    assert len(credit_memos(pipeline)) == 1 and applications(pipeline) == [(inv_link.target_id, "100.00")]
    [created] = rows_of(pipeline, credit, "created")
    assert "found by its natural key (no duplicate)" in created["reason"]
    assert "its answer was lost, and QuickBooks shows it applied (not applied twice)" in created["reason"]
    assert merge_invoice(pipeline, inv_link)["balance"] == 400.0
    assert pipeline.run().writes == 0 and len(applications(pipeline)) == 1


def test_a_credit_arriving_with_its_invoice_waits_for_it_and_is_applied_next_run(pipeline: Pipeline) -> None:
    project, _, _ = start(pipeline)
    inv = pipeline.coperniq.app.add_invoice(project, LINES, status="SENT", issue_date="2025-06-02T00:00:00Z")
    credit = add_credit(pipeline, project, based_on=inv)
    pipeline.run()  # the invoice is created in this run's batch: the credit waits for its link
    [waiting] = rows_of(pipeline, credit, "skipped")
    assert f"waiting for invoice {inv['id']}, which this credit is based on" in waiting["reason"]
    assert credit_memos(pipeline) == []
    pipeline.run()
    inv_link = link_of(pipeline, inv)
    assert applications(pipeline) == [(inv_link.target_id, "100.00")]
    assert merge_invoice(pipeline, inv_link)["balance"] == 400.0
    assert pipeline.run().writes == 0


@pytest.mark.parametrize("pipeline", ["optimistic", "pessimistic"], indirect=True)
def test_a_credit_pushed_before_its_invoice_is_applied_once_the_invoice_is_pushed(pipeline: Pipeline) -> None:
    project, _, _ = start(pipeline)
    inv = pipeline.coperniq.app.add_invoice(project, LINES, status="DRAFT", issue_date="2025-06-02T00:00:00Z")
    credit = add_credit(pipeline, project, based_on=inv)
    pipeline.run()  # the invoice is a draft (not in invoice_statuses): the credit goes alone, as open credit
    [created] = rows_of(pipeline, credit, "created")
    assert f"invoice {inv['id']} it is based on is not open in QuickBooks (not pushed" in created["reason"]
    assert len(credit_memos(pipeline)) == 1 and applications(pipeline) == []

    set_status(pipeline, inv, "SENT")  # sent in Coperniq: pushed now, and the credit applied to it in the same run
    run = pipeline.run()
    assert run.counts["invoices"]["failed"] == 0
    inv_link = link_of(pipeline, inv)
    assert applications(pipeline) == [(inv_link.target_id, "100.00")]
    assert merge_invoice(pipeline, inv_link)["balance"] == 400.0
    [applied] = rows_of(pipeline, credit, "updated")
    assert applied["reason"] == (
        f"invoice {inv['id']} it is based on is in QuickBooks now; applied 100.00 to invoice #CQ-{inv['uid']} "
        "(open balance 500.00)"
    )
    with pipeline.ledger() as ledger:
        assert ledger.meta_with_prefix(credit_notes.OPEN_META) == {}  # nothing left to look at every run
    assert pipeline.run().writes == 0 and len(applications(pipeline)) == 1


@pytest.mark.parametrize("when", ["before the application", "after the application"])
def test_a_crash_between_the_create_and_the_application_applies_once(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    project, inv, inv_link = start(pipeline)
    credit = add_credit(pipeline, project, based_on=inv)
    original: Callable[..., Any] = credit_notes.apply_credit_note

    def dies(*args: Any) -> Any:
        if when == "after the application":
            original(*args)
        raise Crash(when)

    monkeypatch.setattr(credit_notes, "apply_credit_note", dies)
    with pytest.raises(Crash):
        pipeline.run()
    monkeypatch.undo()
    with pipeline.ledger() as ledger:
        assert "forward:credit_apply:" + str(credit["id"]) in dict(ledger.pending_intents("forward:"))
    pipeline.run()
    assert len(credit_memos(pipeline)) == 1 and applications(pipeline) == [(inv_link.target_id, "100.00")]
    assert merge_invoice(pipeline, inv_link)["balance"] == 400.0
    assert not rows_of(pipeline, credit, "failed")
    with pipeline.ledger() as ledger:
        assert ledger.pending_intents("forward:") == []
    if when == "after the application":
        assert any("by a run that stopped before recording it" in r["reason"] for r in rows_of(pipeline, credit))
    assert pipeline.run().writes == 0 and len(applications(pipeline)) == 1


def test_a_changed_credit_is_updated_and_a_declined_one_zeroed(pipeline: Pipeline) -> None:
    project, _, _ = start(pipeline)
    credit = add_credit(pipeline, project, price=-150)
    pipeline.run()
    headers = {"x-api-key": pipeline.coperniq.api_key}
    line = credit["lineItems"][0]
    body = {"lineItems": [{**{k: line[k] for k in ("catalogItemId", "quantity", "unitCost")}, "unitPrice": -120}]}
    resp = requests.patch(f"{pipeline.coperniq.url}/invoices/{credit['id']}", json=body, headers=headers, timeout=T)
    assert resp.status_code < 300, resp.text
    pipeline.run()
    [memo] = credit_memos(pipeline)
    assert memo["total_amount"] == 120.0
    assert rows_of(pipeline, credit, "updated")[0]["reason"] == "credit changed in Coperniq"
    assert pipeline.run().writes == 0

    resp = requests.patch(
        f"{pipeline.coperniq.url}/invoices/{credit['id']}", json={"status": "DECLINED"}, headers=headers, timeout=T
    )
    assert resp.status_code < 300, resp.text
    pipeline.run()
    assert credit_memos(pipeline)[0]["total_amount"] == 0.0 and link_of(pipeline, credit).status == "zeroed"
    assert "credit is DECLINED in Coperniq; its lines were zeroed" in rows_of(pipeline, credit, "updated")[0]["reason"]
    assert pipeline.run().writes == 0


def test_a_payment_on_a_credit_is_skipped_with_what_to_do(pipeline: Pipeline) -> None:
    """Money Coperniq shows paid on a credit is money paid back: without refund_account it is not recorded
    (test_qbm_credit_refunds.py records it), and never applied to the credit memo as if it were an invoice."""
    project, _, _ = start(pipeline)
    credit = add_credit(pipeline, project, price=-150)
    pipeline.run()
    pipeline.coperniq.app.allow_overpayment = True  # the sandbox's own check would refuse a payment on a credit
    pay = pipeline.coperniq.app.add_payment(credit["id"], 150.0)
    run = pipeline.run()
    assert run.counts["payments"]["failed"] == 0
    [skipped] = [r for r in log_rows(pipeline, stream="payments", action="skipped") if r["source_id"] == str(pay["id"])]
    assert "is money paid back; set refund_account to record it in QuickBooks" in skipped["reason"]
    assert merge_rows(pipeline.merge, "payments") == []
    assert pipeline.run().writes == 0


@pytest.mark.parametrize("pipeline", ["optimistic", "pessimistic"], indirect=True)
def test_a_credit_memo_the_bookkeeper_entered_is_linked_not_created_again(pipeline: Pipeline) -> None:
    project, inv, inv_link = start(pipeline)
    job = merge_invoice(pipeline, inv_link)["contact"]
    merge = pipeline.merge
    own = {  # entered by hand in QuickBooks two days after the Coperniq credit's date, under her own number
        "contact": job,
        "number": "1042",
        "transaction_date": "2025-06-07T00:00:00Z",
        "line_items": [{"description": "Goodwill", "quantity": "1", "unit_price": "150.00"}],
        "total_amount": 150.0,
    }
    headers = {"Authorization": f"Bearer {merge.api_key}", "X-Account-Token": str(merge.account_token)}
    made = requests.post(f"{merge.url}/credit-notes", json={"model": own}, headers=headers, timeout=T)
    assert made.status_code == 201, made.text
    elsewhere = {
        **own,
        "number": "1043",
        "total_amount": 90.0,
        "line_items": [{**own["line_items"][0], "unit_price": "90.00"}],
    }
    assert requests.post(f"{merge.url}/credit-notes", json={"model": elsewhere}, headers=headers, timeout=T).ok
    twin = add_credit(pipeline, project, price=-150, based_on=inv)
    other = add_credit(pipeline, project, price=-40)  # no twin: created
    run = pipeline.run()
    assert run.counts["invoices"]["failed"] == 0
    assert sorted(m["number"] for m in credit_memos(pipeline)) == sorted(["1042", "1043", f"CQ-{other['uid']}"])
    assert link_of(pipeline, twin).target_id == made.json()["model"]["id"]
    [linked] = rows_of(pipeline, twin, "linked")
    assert "the bookkeeper entered in QuickBooks" in linked["reason"] and "not created again" in linked["reason"]
    assert applications(pipeline) == [(inv_link.target_id, "150.00")]  # her memo applied to the invoice, once
    assert pipeline.run().writes == 0
