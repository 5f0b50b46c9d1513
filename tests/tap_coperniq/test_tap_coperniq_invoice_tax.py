"""tap-coperniq carries an invoice's tax (`taxId`, `taxRate`) to the target: the schema declares both, so the SDK
keeps them; under the pessimistic profile (`invoice_tax_fields=False`) Coperniq sends neither and records have none."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tap_coperniq.tap import TapCoperniq
from tests.conftest import RunningSandbox, start_coperniq


@pytest.fixture(params=["optimistic", "pessimistic"])
def sandbox(request: pytest.FixtureRequest) -> Iterator[RunningSandbox]:
    """A seeded sandbox per profile (its invoices carry the seed's taxes in both; only the API differs)."""
    sb = start_coperniq(profile=request.param, workflows_v1_share=0.0)
    sb.app.seed(projects=12, seed=7, invoice_taxes=True)
    yield sb
    sb.server.stop()


def invoices_only(config: dict[str, Any]) -> dict[str, Any]:
    catalog = TapCoperniq(config=config).catalog_dict
    for entry in catalog["streams"]:
        for md in entry["metadata"]:
            if md["breadcrumb"] == []:
                md["metadata"]["selected"] = entry["tap_stream_id"] == "invoices"
    return catalog


def test_invoice_records_carry_the_tax(sandbox, tap_runner, make_config) -> None:
    config = make_config(sandbox)
    catalog = invoices_only(config)
    [entry] = [e for e in catalog["streams"] if e["tap_stream_id"] == "invoices"]
    properties = entry["schema"]["properties"]
    assert properties["taxId"]["type"] == ["integer", "null"] and properties["taxRate"]["type"] == ["number", "null"]

    run = tap_runner(config, catalog=catalog)
    records = {r["id"]: r for r in run.records["invoices"]}
    held = sandbox.state.invoices
    assert sorted(records) == sorted(held)
    taxed = [i for i in held.values() if i["taxId"] is not None]
    assert taxed and len(taxed) < len(held)  # the seed taxes some invoices, not all
    if sandbox.app.assumptions.invoice_tax_fields:
        for inv in held.values():
            record = records[inv["id"]]
            assert record["taxId"] == inv["taxId"] and record["taxRate"] == inv["taxRate"], inv["id"]
        austin = next(r for r in records.values() if r["taxRate"] == 8.25)
        assert isinstance(austin["taxId"], int) and austin["amount"] == held[austin["id"]]["amount"]
    else:
        assert all(r.get("taxId") is None and r.get("taxRate") is None for r in records.values())
