"""Invoices are taxed the way the QuickBooks company taxes (US automated sales tax, US manual, non-US), and the
company's home currency is Coperniq's: an invoice that cannot be taxed right fails with the reason, never pushed
untaxed; a currency or tax-code setting QuickBooks does not have stops the run, naming it."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import start_coperniq, start_merge
from tests.target_quickbooks_merge.qbm_helpers import BOTH_TRIGGERS, Pipeline, log_rows, merge_rows

CONFIG = {"invoice_sync": True, "default_item": "Services"}
CENT = Decimal("0.01")


@pytest.fixture
def company(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pipeline]:
    """16 seeded projects against a QuickBooks company with the tax setup (and currency) `request.param` names."""
    from sandbox.seed import seed_coperniq

    options: dict[str, Any] = dict(request.param)
    profile = options.pop("coperniq_profile", "optimistic")
    taxed = options.pop("invoice_taxes", False)
    coperniq, merge = start_coperniq(profile=profile), start_merge(**options)
    seed_coperniq(coperniq.app, projects=16, seed=7, invoice_taxes=taxed)
    currency = options.get("currency", "USD")
    yield Pipeline(
        coperniq,
        merge,
        tmp_path / "ledger.duckdb",
        config={"trigger_phases": BOTH_TRIGGERS, "backfill": True, "currency": currency, **CONFIG},
    )
    coperniq.server.stop()
    merge.server.stop()


def _tax_rate(merge: Any, name: str) -> dict[str, Any]:
    return next(r for r in merge_rows(merge, "tax-rates") if r["name"] == name)


NON_US = {"company_tax": "non_us", "currency": "CAD"}


@pytest.mark.parametrize("company", [NON_US], indirect=True)
def test_non_us_company_needs_a_tax_code_on_every_line(company: Pipeline) -> None:
    first = company.run()
    assert first.counts["invoices"]["failed"] > 0 and first.counts["invoices"]["created"] == 0
    assert merge_rows(company.merge, "invoices") == []  # nothing pushed untaxed
    [reason] = {r["reason"] for r in log_rows(company, stream="invoices", action="failed")}
    assert "needs a tax code on every invoice line" in reason and "default_tax_code" in reason

    company.config["default_tax_code"] = "GST"
    second = company.run()
    assert second.counts["invoices"]["failed"] == 0 and second.counts["invoices"]["created"] > 0
    gst = _tax_rate(company.merge, "GST")
    invoices = merge_rows(company.merge, "invoices")
    assert invoices
    for inv in invoices:
        assert {line["tax_rate"] for line in inv["line_items"]} == {gst["id"]}
        net = sum(Decimal(str(line["total_amount"])) for line in inv["line_items"])
        assert Decimal(str(inv["total_tax_amount"])) == (net * Decimal("0.05")).quantize(CENT, ROUND_HALF_UP)
    assert company.run().writes == 0  # a no-op re-run writes nothing


@pytest.mark.parametrize("company", [{"company_tax": "us_ast"}], indirect=True)
def test_us_automated_sales_tax_company_computes_the_tax_itself(company: Pipeline) -> None:
    company.config["default_tax_code"] = "TAX"  # not sent: QuickBooks computes the tax itself
    run = company.run()
    assert run.counts["invoices"]["created"] > 0 and run.counts["invoices"]["failed"] == 0
    for inv in merge_rows(company.merge, "invoices"):  # QuickBooks' own rate (the sandbox's 8.25%), not ours
        net = sum(Decimal(str(line["total_amount"])) for line in inv["line_items"])
        assert Decimal(str(inv["total_tax_amount"])) == (net * Decimal("0.0825")).quantize(CENT, ROUND_HALF_UP) > 0
    assert company.run().writes == 0


@pytest.mark.parametrize("company", [{"company_tax": "us_manual"}], indirect=True)
def test_us_manual_company_takes_the_default_code_and_is_unchanged_without_one(company: Pipeline) -> None:
    run = company.run()
    assert run.counts["invoices"]["created"] > 0 and run.counts["invoices"]["failed"] == 0
    for inv in merge_rows(company.merge, "invoices"):
        assert all(line["tax_rate"] is None for line in inv["line_items"])


@pytest.mark.parametrize("company", [NON_US], indirect=True)
def test_a_tax_code_quickbooks_does_not_have_stops_the_run_naming_the_setting(company: Pipeline) -> None:
    from singer_sdk.exceptions import FatalAPIError

    company.config["default_tax_code"] = "VAT 20%"
    with pytest.raises(Exception) as info:  # noqa: PT011 - the target's own error type, raised through the SDK
        company.run()
    assert "default_tax_code = 'VAT 20%'" in str(info.value) and "GST" in str(info.value)
    assert not isinstance(info.value, FatalAPIError)
    assert merge_rows(company.merge, "invoices") == []


@pytest.mark.parametrize("company", [NON_US], indirect=True)
def test_a_home_currency_other_than_coperniqs_stops_the_run_before_anything_is_written(company: Pipeline) -> None:
    company.config["currency"] = "USD"
    company.config["default_tax_code"] = "GST"
    with pytest.raises(Exception) as info:  # noqa: PT011
        company.run()
    assert "home currency is CAD" in str(info.value) and "USD" in str(info.value)
    assert merge_rows(company.merge, "contacts") == [] and merge_rows(company.merge, "invoices") == []
    [refused] = log_rows(company, stream="run", action="failed")
    assert "currency" in refused["reason"]


@pytest.mark.parametrize(
    ("setting", "value"), [("tax_mode", "eu"), ("currency", "dollars"), ("tax_code_mapping", {"3": ["GST"]})]
)
def test_tax_settings_are_validated_naming_the_setting(setting: str, value: Any) -> None:
    from singer_sdk.exceptions import ConfigValidationError

    from target_quickbooks_merge.target import TargetQuickbooksMerge

    with pytest.raises(ConfigValidationError) as info:
        TargetQuickbooksMerge(config={"merge_api_key": "k", "account_token": "t", setting: value})
    assert setting in str(info.value.errors)


AUSTIN, TEXAS, EXEMPT = 7001, 7002, 7003  # the Coperniq sandbox's taxes (8.25%, 6.25%, 0%)


def _outcomes(pipe: Pipeline) -> tuple[dict[str, dict[str, Any]], dict[str, Any], dict[str, str]]:
    """Staged invoices, their pushed Merge invoice (by Coperniq id) and the failed rows' reasons."""
    staged = _staged_invoices(pipe)
    by_id = {inv["id"]: inv for inv in merge_rows(pipe.merge, "invoices")}
    with pipe.ledger() as ledger:
        links = {rid: ledger.get_link("coperniq", "invoice", rid) for rid in staged}
    pushed = {rid: by_id[link.target_id] for rid, link in links.items() if link is not None}
    failed = {r["source_id"]: r["reason"] for r in log_rows(pipe, stream="invoices", action="failed")}
    return staged, pushed, failed


@pytest.mark.parametrize("company", [{**NON_US, "invoice_taxes": True}], indirect=True)
def test_a_coperniq_tax_maps_to_its_quickbooks_code_and_an_unmapped_one_fails(company: Pipeline) -> None:
    company.config["tax_code_mapping"] = {str(AUSTIN): "HST ON", str(EXEMPT): "Exempt"}
    company.run()
    staged, pushed, failed = _outcomes(company)
    codes = {name: _tax_rate(company.merge, name)["id"] for name in ("HST ON", "Exempt")}
    expected = {AUSTIN: codes["HST ON"], EXEMPT: codes["Exempt"]}
    seen: set[Any] = set()
    for rid, inv in staged.items():
        tax = inv.get("taxId")
        if rid in pushed:
            assert tax in expected, (rid, tax)  # only a mapped tax is pushed
            assert {line["tax_rate"] for line in pushed[rid]["line_items"]} == {expected[tax]}
            seen.add(tax)
        elif rid in failed:
            why = "has no entry in tax_code_mapping" if tax is not None else "needs a tax code on every invoice line"
            assert why in failed[rid], (tax, failed[rid])
            seen.add(("failed", tax is None))
    assert {AUSTIN, ("failed", True), ("failed", False)} <= seen, seen  # each case happened
    assert company.run().writes == 0


@pytest.mark.parametrize("company", [{"company_tax": "us_manual", "invoice_taxes": True}], indirect=True)
def test_a_tax_code_merge_would_drop_fails_the_invoice_instead_of_pushing_it_untaxed(company: Pipeline) -> None:
    company.config["tax_code_mapping"] = {str(AUSTIN): "Austin", str(TEXAS): "TAX", str(EXEMPT): "NON"}
    company.run()
    staged, pushed, failed = _outcomes(company)
    assert pushed and failed
    for rid in pushed:
        assert staged[rid].get("taxId") is None  # untaxed invoices go as before
    for rid, reason in failed.items():
        assert staged[rid].get("taxId") is not None and "invoices/meta/post" in reason
    assert company.run().writes == 0


@pytest.mark.parametrize(
    "company",
    [{"company_tax": "non_us", "currency": "CAD", "invoice_taxes": True, "coperniq_profile": "pessimistic"}],
    indirect=True,
)
def test_without_tax_fields_from_coperniq_the_default_code_taxes_every_invoice(company: Pipeline) -> None:
    company.config["default_tax_code"] = "HST ON"
    company.config["tax_code_mapping"] = {str(AUSTIN): "GST"}  # never used: Coperniq shows no taxId
    run = company.run()
    assert run.counts["invoices"]["created"] > 0 and run.counts["invoices"]["failed"] == 0
    hst = _tax_rate(company.merge, "HST ON")
    for inv in merge_rows(company.merge, "invoices"):
        assert {line["tax_rate"] for line in inv["line_items"]} == {hst["id"]}


def _staged_invoices(pipe: Pipeline) -> dict[str, dict[str, Any]]:
    with pipe.ledger() as ledger:
        return {rid: payload for rid, payload, _, _ in ledger.iter_staged("coperniq", "invoices")}
