"""Changes after sync: a pushed payment whose amount changed in Coperniq is updated in QuickBooks, or, where
QuickBooks keeps the old amount (sandbox switch `payment_amount_patch_ignored`, pessimistic), voided and created
again with both steps in the log, exactly once across a crash between them; a payment on a bank deposit (QuickBooks
6540) is a failed row that says so; an invoice whose new total is below what was applied to it is a failed row with
QuickBooks' reason (target_quickbooks_merge/payment_changes.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from sync_ledger import Link
from target_quickbooks_merge.context import Context
from tests.target_quickbooks_merge.qbm_helpers import Pipeline, log_rows
from tests.target_quickbooks_merge.test_qbm_payment_voids import invoice_balance, paid, payment_link, rows_of
from tests.target_quickbooks_merge.test_qbm_voids import Crash, admin, invoice_link

PROFILES = ["optimistic", "pessimistic"]
T = 10


def set_payment_amount(pipe: Pipeline, inv: dict[str, Any], pay: dict[str, Any], amount: float) -> None:
    """The payment's amount corrected in Coperniq's UI (its API has no payment update): the payment and its invoice
    change the way the sandbox's own writes change them (amountPaid, status, `updatedAt`), so tap-coperniq emits
    the invoice again and reads its payments."""
    from sandbox.coperniq_state import iso

    app = pipe.coperniq.app
    with app.lock:
        [row] = [p for p in app.state.payments[inv["id"]] if p["id"] == pay["id"]]
        invoice = app.state.invoices[inv["id"]]
        now = app.state.clock.tick()
        invoice["amountPaid"] = round(invoice["amountPaid"] - row["amount"] + amount, 2)
        row["amount"], row["updatedAt"] = amount, iso(now)
        invoice["updatedAt"], invoice["_u"] = iso(now), now
        app.state.touch("invoices")


def qbo_payments_of(pipe: Pipeline, link: Link) -> list[dict[str, Any]]:
    """Every payment QuickBooks holds on the pushed payment's customer/job, voided ones included."""
    contact = admin(pipe, f"payments/{link.target_id}")["merge"]["contact"]
    return [p for p in pipe.merge.app.state.data.t("payments").order if p["contact"] == contact]


@contextmanager
def crash_after_replacing_void(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process dies right after the ledger recorded the replacing void, before the new payment is created."""
    original = Context.commit_create

    def crash(self: Context, made: Link, intent_key: str) -> None:
        original(self, made, intent_key)
        if intent_key.startswith("forward:replace:payment:"):
            self.journal.flush()
            raise Crash(f"killed after voiding {made.target_id} to replace it")

    monkeypatch.setattr(Context, "commit_create", crash)
    try:
        yield
    finally:
        monkeypatch.setattr(Context, "commit_create", original)


# ---------------------------------------------------------------------------------------------------- payments
@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_a_changed_payment_amount_reaches_quickbooks_once(pipeline: Pipeline) -> None:
    inv, pay, link = paid(pipeline)
    set_payment_amount(pipeline, inv, pay, 150.0)
    pipeline.run()
    now = payment_link(pipeline, pay)
    assert admin(pipeline, f"payments/{now.target_id}")["merge"]["total_amount"] == 150.0
    assert invoice_balance(pipeline, inv) == 350.0
    live = [p for p in qbo_payments_of(pipeline, now) if not p.get("_voided")]
    assert [p["total_amount"] for p in live] == [150.0]  # never the old and the new amount both
    if pipeline.merge.app.assumptions.payment_amount_patch_ignored:  # QuickBooks kept 100.00: voided, made again
        assert now.target_id != link.target_id and now.status == "active"
        assert admin(pipeline, f"payments/{link.target_id}")["qbo"]["TotalAmt"] == 0
        [voided] = rows_of(pipeline, pay, "updated")
        assert "QuickBooks kept 100.00 on update" in voided["reason"] and "voided in QuickBooks" in voided["reason"]
        created = rows_of(pipeline, pay, "created")
        assert created[0]["reason"].startswith("created again with 150.00") and created[0]["target_id"] == (
            now.target_id
        )
    else:
        assert now.target_id == link.target_id
        [updated] = rows_of(pipeline, pay, "updated")
        assert updated["reason"] == "payment changed in Coperniq"
    assert not rows_of(pipeline, pay, "failed")
    assert pipeline.run().writes == 0


@pytest.mark.parametrize("pipeline", ["pessimistic"], indirect=True)
def test_a_crash_between_the_void_and_the_new_payment_creates_it_once(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv, pay, link = paid(pipeline)
    set_payment_amount(pipeline, inv, pay, 150.0)
    with crash_after_replacing_void(monkeypatch), pytest.raises(Crash):
        pipeline.run()
    assert payment_link(pipeline, pay).status == "replaced"
    assert invoice_balance(pipeline, inv) == 500.0  # voided, not paid again yet
    pipeline.run()
    now = payment_link(pipeline, pay)
    assert now.status == "active" and now.target_id != link.target_id
    live = [p for p in qbo_payments_of(pipeline, now) if not p.get("_voided")]
    assert [p["total_amount"] for p in live] == [150.0]
    assert invoice_balance(pipeline, inv) == 350.0
    [created] = [r for r in rows_of(pipeline, pay, "created") if r["target_id"] == now.target_id]
    assert created["reason"].startswith("created again")
    assert pipeline.run().writes == 0


@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_a_payment_on_a_bank_deposit_is_a_failed_row_that_says_so(pipeline: Pipeline) -> None:
    inv, pay, link = paid(pipeline)
    resp = requests.post(f"{pipeline.merge.server.root_url}/__admin/payments/{link.target_id}/deposit", timeout=T)
    assert resp.status_code == 200, resp.text
    set_payment_amount(pipeline, inv, pay, 150.0)
    pipeline.run()
    [failed] = rows_of(pipeline, pay, "failed")
    assert "it is on a bank deposit" in failed["reason"] and "retried next run" in failed["reason"]
    assert admin(pipeline, f"payments/{link.target_id}")["merge"]["total_amount"] == 100.0
    assert payment_link(pipeline, pay).target_id == link.target_id  # nothing voided, nothing created
    assert [p for p in qbo_payments_of(pipeline, link) if not p.get("_voided")] == [
        pipeline.merge.app.state.data.t("payments").get(link.target_id)
    ]


# ---------------------------------------------------------------------------------------------------- invoices
def test_an_invoice_total_below_what_was_applied_is_a_failed_row_with_the_reason(pipeline: Pipeline) -> None:
    inv, _, _ = paid(pipeline)  # 500.00, 100.00 applied
    link = invoice_link(pipeline, inv)
    [line] = pipeline.coperniq.app.state.invoices[inv["id"]]["lineItems"]
    body = {"lineItems": [{**line, "quantity": 1, "unitPrice": 60.0}]}
    resp = requests.patch(
        f"{pipeline.coperniq.url}/invoices/{inv['id']}",
        json=body,
        headers={"x-api-key": pipeline.coperniq.api_key},
        timeout=T,
    )
    assert resp.status_code < 300, resp.text
    pipeline.run()
    [failed] = [r for r in log_rows(pipeline, stream="invoices", action="failed") if r["source_id"] == str(inv["id"])]
    assert "can't be less than the payments applied (100.00)" in failed["reason"], failed["reason"]
    assert admin(pipeline, f"invoices/{link.target_id}")["merge"]["total_amount"] == 500.0
