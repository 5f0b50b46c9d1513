"""The reverse leg on both kinds of taxed QuickBooks company (US on automated sales tax, non-US with a TaxCode on
every line): an invoice entered in QuickBooks arrives in Coperniq with its tax (one adjustment line, so the
Coperniq total is QuickBooks'), its payment pays it off exactly, a void in QuickBooks follows target-coperniq's
`void_policy`, and nothing echoes back to QuickBooks on the next forward run."""

from __future__ import annotations

from decimal import Decimal

import pytest
from reverse_helpers import reverse_run

from tests.target_quickbooks_merge.qbm_helpers import Pipeline
from tests.target_quickbooks_merge.test_qbm_books_companies import NON_US, US_AST, company

__all__ = ["company"]  # the fixture, shared with the forward leg's books tests


@pytest.mark.parametrize("company", [US_AST, NON_US], indirect=True, ids=["us_ast", "non_us"])
def test_taxed_quickbooks_invoices_arrive_whole_and_a_void_follows(company: Pipeline) -> None:
    assert company.run().counts["invoices"]["failed"] == 0
    with company.ledger() as ledger:
        job = next(link for link in ledger.links("coperniq", "project") if link.target_id)
    merge = company.merge.app
    paid = merge.create_invoice(job.target_id, amount=900.0)
    voided = merge.create_invoice(job.target_id, amount=400.0)
    total = Decimal(str(paid["total_amount"]))
    assert total > Decimal("900.00") and Decimal(str(paid["total_tax_amount"])) == total - Decimal("900.00")
    merge.create_payment(job.target_id, float(total), applied_to=[(paid["id"], float(total))])
    before = set(company.coperniq.state.invoices)
    state = reverse_run(company.merge, company.coperniq, company.ledger_path, None)

    made = sorted(set(company.coperniq.state.invoices) - before)
    assert len(made) == 2
    by_amount = {Decimal(str(company.coperniq.state.invoices[i]["amount"])): i for i in made}
    assert total in by_amount  # QuickBooks' total, tax included
    paid_here = company.coperniq.state.invoices[by_amount[total]]
    assert Decimal(str(paid_here["amountPaid"])) == total  # paid off exactly, not overpaid by the tax
    [payment] = company.coperniq.state.payments[paid_here["id"]]
    assert Decimal(str(payment["amount"])) == total

    merge.void_invoice(voided["id"])
    reverse_run(company.merge, company.coperniq, company.ledger_path, state)
    [void_here] = [company.coperniq.state.invoices[i] for i in made if i != by_amount[total]]
    assert void_here["status"] == "DECLINED" and void_here["description"].startswith("[VOIDED IN QUICKBOOKS]")
    assert company.run().writes == 0  # nothing the reverse leg wrote goes back to QuickBooks
