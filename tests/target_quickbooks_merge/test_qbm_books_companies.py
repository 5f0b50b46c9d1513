"""The books rules together, on both kinds of QuickBooks company the issue names: a US company on automated sales
tax and a non-US company (a TaxCode on every line). Invoices land taxed and classed, a credit arrives as a credit
memo taxed like them and applied to its invoice, a changed payment reaches QuickBooks once, a credit paid back
becomes a check linked to its credit memo; a changed line re-taxes its invoice, a declined invoice is voided, a
refunded payment becomes a refund receipt and a deleted one is voided; a no-op re-run writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from target_quickbooks_merge.target import TargetError
from tests.conftest import start_coperniq, start_merge
from tests.target_quickbooks_merge.qbm_helpers import (
    BOTH_TRIGGERS,
    Pipeline,
    coperniq_patch,
    merge_rows,
    staged_records,
)
from tests.target_quickbooks_merge.test_qbm_changes import set_payment_amount
from tests.target_quickbooks_merge.test_qbm_payment_voids import payment_voids, set_payment_status
from tests.target_quickbooks_merge.test_qbm_tracking import MAPPING, _category_ids
from tests.target_quickbooks_merge.test_qbm_voids import set_status, voids_of

US_AST = {"company_tax": "us_ast"}
NON_US = {"company_tax": "non_us", "currency": "CAD"}


@pytest.fixture
def company(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pipeline]:
    """8 seeded projects against the company `request.param` describes, with invoices, classes and taxes on."""
    from sandbox.seed import seed_coperniq

    options: dict[str, Any] = dict(request.param)
    coperniq, merge = start_coperniq(), start_merge(**options)
    seed_coperniq(coperniq.app, projects=8, seed=7)
    config: dict[str, Any] = {
        "trigger_phases": BOTH_TRIGGERS,
        "backfill": True,
        "invoice_sync": True,
        "default_item": "Services",
        "currency": options.get("currency", "USD"),
        "tracking_category_mapping": MAPPING,
        "default_tax_code": "GST" if options["company_tax"] == "non_us" else "TAX",
    }
    yield Pipeline(coperniq, merge, tmp_path / "ledger.duckdb", config=config)
    coperniq.server.stop()
    merge.server.stop()


def _link(pipe: Pipeline, kind: str, source_id: Any) -> Any:
    with pipe.ledger() as ledger:
        return ledger.get_link("coperniq", kind, str(source_id))


@pytest.mark.parametrize("company", [US_AST, NON_US], indirect=True, ids=["us_ast", "non_us"])
def test_invoices_credits_and_payment_changes_keep_the_books_right(company: Pipeline) -> None:
    non_us = company.merge.app.tax_setup.company_tax == "non_us"
    first = company.run()
    assert first.counts["invoices"]["failed"] == 0 and first.counts["invoices"]["created"] > 0
    gst = next((r["id"] for r in merge_rows(company.merge, "tax-rates") if r["name"] == "GST"), None)
    classes = {v for (kind, _), v in _category_ids(company).items() if kind == "CLASS"}
    invoices = merge_rows(company.merge, "invoices")
    for inv in invoices:
        assert Decimal(str(inv["total_tax_amount"])) > 0  # taxed: by its code (non-US) or by QuickBooks (AST)
        if non_us:  # (a US AST company picks its own code: Merge shows the one QuickBooks applied)
            assert {line["tax_rate"] for line in inv["line_items"]} == {gst}
        assert set(inv["line_items"][0]["tracking_categories"]) <= classes and inv["tracking_categories"]

    # a credit on an open pushed invoice, and a payment whose amount is corrected afterwards
    staged = staged_records(company, "invoices")
    by_id = {i["id"]: i for i in invoices}
    with company.ledger() as ledger:
        links = {link.source_id: link.target_id for link in ledger.links("coperniq", "invoice")}
    source_id, target = next(  # open in both systems: room for a credit of 100 and a payment of 50
        (sid, by_id[tid])
        for sid, tid in links.items()
        if staged[sid]["amount"] - staged[sid]["amountPaid"] > 200 and Decimal(str(by_id[tid]["balance"])) > 200
    )
    balance = Decimal(str(target["balance"]))
    inv = staged[source_id]
    credit = company.coperniq.app.add_invoice(
        inv["record"]["id"],
        [{"quantity": 1, "unitCost": 0, "unitPrice": -100, "description": "Goodwill credit"}],
        issue_date="2025-06-05T00:00:00Z",
        based_on=inv["id"],
    )
    pay = company.coperniq.app.add_payment(inv["id"], 50.0)
    second = company.run()
    assert second.counts["invoices"]["failed"] == 0 and second.counts["payments"]["failed"] == 0
    [memo] = [
        m
        for m in merge_rows(company.merge, "credit-notes")
        if m["id"] == _link(company, "invoice", credit["id"]).target_id
    ]
    if non_us:
        assert {line["tax_rate"] for line in memo["line_items"]} == {gst}
    [(applied_to, applied)] = [(a["invoice"], Decimal(a["applied_amount"])) for a in memo["applied_to_lines"]]
    assert applied_to == target["id"] and applied > 0
    after = company.merge.app.state.table("invoices").row(target["id"])
    assert Decimal(str(after["balance"])) == balance - applied - Decimal("50.00")

    set_payment_amount(company, inv, pay, 60.0)
    company.run()
    payment = company.merge.app.state.table("payments").row(_link(company, "payment", pay["id"]).target_id)
    assert payment["total_amount"] == 60.0
    assert company.run().writes == 0

    # a credit left open, then paid back to the customer: a check to A/R linked to its credit memo
    company.config["refund_account"] = "Checking"
    open_credit = company.coperniq.app.add_invoice(
        inv["record"]["id"],
        [{"quantity": 1, "unitCost": 0, "unitPrice": -80, "description": "Overpayment returned"}],
        issue_date="2025-06-06T00:00:00Z",
    )
    company.run()
    memo_id = _link(company, "invoice", open_credit["id"]).target_id
    left = Decimal(str(company.merge.app.state.table("credit-notes").row(memo_id)["remaining_credit"]))
    company.coperniq.app.allow_overpayment = True  # the sandbox's own check would refuse a payment on a credit
    company.coperniq.app.add_payment(open_credit["id"], 80.0)
    third = company.run()
    assert third.counts["payments"]["failed"] == 0
    [check] = company.merge.app.state.qbo.purchases.all()
    assert check["TotalAmt"] == 80.0 and check["PaymentType"] == "Check"
    after_refund = company.merge.app.state.table("credit-notes").row(memo_id)
    assert Decimal(str(after_refund["remaining_credit"])) == left - Decimal("80.00")
    assert company.run().writes == 0


def _patch_line_price(pipe: Pipeline, inv: dict[str, Any], more: int) -> Decimal:
    """The first line of the invoice `more` dearer per unit, edited through Coperniq's API; returns the net change."""
    lines = [
        {k: line[k] for k in ("id", "catalogItemId", "quantity", "unitCost", "unitPrice") if k in line}
        for line in pipe.coperniq.app.state.invoices[inv["id"]]["lineItems"]
    ]
    before = Decimal(str(pipe.coperniq.app.state.invoices[inv["id"]]["amount"]))
    lines[0]["unitPrice"] = lines[0]["unitPrice"] + more
    after = coperniq_patch(pipe.coperniq, f"/invoices/{inv['id']}", {"lineItems": lines})
    return Decimal(str(after["amount"])) - before


def _net(invoice: dict[str, Any]) -> Decimal:
    return Decimal(str(invoice["total_amount"])) - Decimal(str(invoice["total_tax_amount"]))


@pytest.mark.parametrize("company", [US_AST, NON_US], indirect=True, ids=["us_ast", "non_us"])
def test_changes_voids_deletes_and_refunds_keep_the_books_right(company: Pipeline) -> None:
    """After the first sync, on both companies: a line changed in Coperniq reaches the QuickBooks invoice, re-taxed;
    a declined invoice is voided; a refunded payment becomes a refund receipt (on the non-US company with the tax
    code every line needs there, one that adds no tax) and a deleted one is voided; a no-op re-run writes nothing."""
    non_us = company.merge.app.tax_setup.company_tax == "non_us"
    company.config.update(refund_policy="refund_receipt", refund_account="Checking")
    if non_us:
        company.config["refund_tax_code"] = "Exempt"
    assert company.run().counts["invoices"]["failed"] == 0
    staged = staged_records(company, "invoices")
    rows = company.merge.app.state.table("invoices")
    with company.ledger() as ledger:
        links = {link.source_id: link.target_id for link in ledger.links("coperniq", "invoice")}
    open_ones = [
        (sid, tid)
        for sid, tid in sorted(links.items())
        if staged[sid]["amount"] - staged[sid]["amountPaid"] > 200 and Decimal(str(rows.row(tid)["balance"])) > 200
    ]
    (changed_id, changed_target), (declined_id, declined_target) = open_ones[:2]
    changed, declined = staged[changed_id], staged[declined_id]
    before = dict(rows.row(changed_target))  # (the table's own row: a copy of what it holds now)

    net_change = _patch_line_price(company, changed, 100)
    set_status(company, declined, "DECLINED")
    refunded = company.coperniq.app.add_payment(changed["id"], 50.0)
    deleted = company.coperniq.app.add_payment(changed["id"], 30.0)
    second = company.run()
    assert second.counts["invoices"]["failed"] == 0 and second.counts["payments"]["failed"] == 0
    after = rows.row(changed_target)
    assert net_change > 0 and _net(after) - _net(before) == net_change  # the line's change, exactly
    assert Decimal(str(after["total_tax_amount"])) > Decimal(str(before["total_tax_amount"]))  # and taxed on it
    if non_us:
        assert {line["tax_rate"] for line in after["line_items"]} == {
            next(r["id"] for r in merge_rows(company.merge, "tax-rates") if r["name"] == "GST")
        }
    assert len(voids_of(company, declined_target)) == 1

    set_payment_status(company, changed, refunded, "REFUNDED")
    company.coperniq.app.delete_payment(changed["id"], deleted["id"])
    third = company.run()
    assert third.counts["payments"]["failed"] == 0
    [receipt] = company.merge.app.state.qbo.refund_receipts.all()
    [line] = receipt["Line"]
    if non_us:
        exempt = next(r["remote_id"] for r in merge_rows(company.merge, "tax-rates") if r["name"] == "Exempt")
        assert line["SalesItemLineDetail"]["TaxCodeRef"] == {"value": exempt}
        assert receipt["TxnTaxDetail"]["TotalTax"] == 0
    else:
        assert "TaxCodeRef" not in line["SalesItemLineDetail"]
    assert receipt["TotalAmt"] == 50.0
    deleted_link = _link(company, "payment", deleted["id"])
    assert len(payment_voids(company, deleted_link.target_id)) == 1
    assert _link(company, "payment", refunded["id"]).status == "refunded"
    assert company.run().writes == 0


@pytest.mark.parametrize("company", [NON_US], indirect=True, ids=["non_us"])
def test_a_refund_receipt_on_a_non_us_company_needs_refund_tax_code(company: Pipeline) -> None:
    """Every line of a non-US company's refund receipt needs a tax code: without refund_tax_code the run stops at
    its start naming the setting (nothing written), as with an unknown one."""
    company.config.update(refund_policy="refund_receipt", refund_account="Checking")
    with pytest.raises(TargetError, match="refund_tax_code: required"):
        company.run()
    assert merge_rows(company.merge, "contacts") == [] and merge_rows(company.merge, "invoices") == []
    company.config["refund_tax_code"] = "No Such Code"
    with pytest.raises(TargetError, match="refund_tax_code = 'No Such Code'"):
        company.run()
    company.config["refund_tax_code"] = "Exempt"
    assert company.run().counts["invoices"]["failed"] == 0
