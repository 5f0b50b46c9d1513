"""Money on the reverse leg: QuickBooks amounts (Merge numbers and decimal strings) reach Coperniq to the cent,
through tap-quickbooks-merge and target-coperniq against both sandboxes, and on the wire without float artefacts;
a QuickBooks unit price with more decimals than cents keeps the invoice's total."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from reverse_helpers import (
    link_forward,
    log_rows,
    merge_contact,
    merge_invoice,
    merge_item,
    merge_payment,
    reverse_run,
    run_target,
)

from sync_ledger import to_decimal


def exact(value: Any) -> Decimal:
    """What a sandbox holds, as the exact decimal it is (floats or Decimals)."""
    number = to_decimal(value)
    assert number is not None, value
    return number


def json_numbers(body: str) -> list[str]:
    """The text of every non-integer JSON number in a body, as sent."""
    found: list[str] = []
    json.loads(body, parse_float=found.append)
    return found


@pytest.fixture
def coperniq_wire(monkeypatch: pytest.MonkeyPatch, coperniq_sandbox: Any) -> list[str]:
    """The body of every write sent to the Coperniq sandbox, as bytes on the wire."""
    sent: list[str] = []
    real_send = requests.adapters.HTTPAdapter.send

    def send(self: Any, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        if request.method in ("POST", "PATCH") and str(request.url).startswith(coperniq_sandbox.url):
            sent.append(request.body.decode() if isinstance(request.body, bytes) else str(request.body or ""))
        return real_send(self, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    return sent


def _coperniq_invoice(coperniq: Any, merge_invoice_id: str) -> dict[str, Any]:
    return next(i for i in coperniq.state.invoices.values() if f"qbo-merge:{merge_invoice_id}" in i["description"])


def test_penny_amounts_from_quickbooks_arrive_in_coperniq_exactly(
    coperniq_sandbox: Any, merge_sandbox: Any, tmp_path: Path, coperniq_wire: list[str]
) -> None:
    """Entered in QuickBooks for a synced job: 3 x 0.1 + 3 x 0.2, 3 x 0.1 paid by 0.1 + 0.2, 3 x 19.99 paid in
    full. Coperniq holds 0.90, 0.30 (balance exactly 0) and 59.97 (paid), and no payment exceeds a balance."""
    project = coperniq_sandbox.app.add_project("Penny Residence")
    merge = merge_sandbox.app
    job = merge.add_contact("Penny Residence")
    ledger_path = tmp_path / "ledger.duckdb"
    link_forward(ledger_path, "project", project["id"], "job", job["id"], job["remote_id"])
    wire_01, wire_02, fuse, panel = (merge.add_item(name) for name in ("Wire 0.1", "Wire 0.2", "Fuse", "Panel"))

    def line(item: dict[str, Any], quantity: int, price: float) -> dict[str, Any]:
        return {"item": item["id"], "description": item["name"], "quantity": quantity, "unit_price": price}

    mixed = merge.create_invoice(job["id"], [line(wire_01, 3, 0.1), line(wire_02, 3, 0.2)])
    split = merge.create_invoice(job["id"], [line(fuse, 3, 0.1)])
    panels = merge.create_invoice(job["id"], [line(panel, 3, 19.99)])
    merge.create_payment(job["id"], 0.1, applied_to=[(split["id"], 0.1)])
    merge.create_payment(job["id"], 0.2, applied_to=[(split["id"], 0.2)])
    merge.create_payment(job["id"], 59.97, applied_to=[(panels["id"], 59.97)])

    state = reverse_run(merge_sandbox, coperniq_sandbox, ledger_path, None)

    assert log_rows(ledger_path, action="failed") == []  # no "amount exceeds the invoice balance"
    coperniq = coperniq_sandbox
    got = {name: _coperniq_invoice(coperniq, inv["id"]) for name, inv in (("m", mixed), ("s", split), ("p", panels))}
    assert exact(got["m"]["amount"]) == Decimal("0.90") and exact(got["m"]["amountPaid"]) == 0
    assert sorted((li["quantity"], exact(li["unitPrice"])) for li in got["m"]["lineItems"]) == [
        (3, Decimal("0.1")),
        (3, Decimal("0.2")),
    ]
    assert exact(got["s"]["amount"]) == Decimal("0.30") == exact(got["s"]["amountPaid"])
    assert got["s"]["status"] == "PAID"
    assert sorted(exact(p["amount"]) for p in coperniq.state.payments[got["s"]["id"]]) == [
        Decimal("0.10"),
        Decimal("0.20"),
    ]
    assert exact(got["p"]["amount"]) == Decimal("59.97") == exact(got["p"]["amountPaid"])
    assert got["p"]["status"] == "PAID"
    for inv in (mixed, split, panels):  # Coperniq holds what QuickBooks holds, to the cent
        qbo = merge.record("invoices", inv["id"])["merge"]
        assert exact(_coperniq_invoice(coperniq, inv["id"])["amount"]) == exact(qbo["total_amount"])

    assert coperniq_wire, "the reverse leg wrote to Coperniq"
    for body in coperniq_wire:  # a float sum would show as 0.30000000000000004
        assert all(len(text.partition(".")[2]) <= 2 for text in json_numbers(body)), body

    writes = coperniq.stats.count("POST") + coperniq.stats.count("PATCH")
    reverse_run(merge_sandbox, coperniq_sandbox, ledger_path, state)
    assert coperniq.stats.count("POST") + coperniq.stats.count("PATCH") == writes  # nothing differs once synced


def test_a_unit_price_finer_than_cents_keeps_the_quickbooks_total(coperniq_sandbox: Any, tmp_path: Path) -> None:
    """QuickBooks keeps unit prices with more decimals than cents: 3 x 33.333 is a 100.00 line there. Coperniq
    multiplies the quantity by a unit price in cents, so 3 x 33.33 would be 99.99, and the 100.00 payment would
    then exceed its balance: the line becomes 1 x 100.00 instead."""
    app = coperniq_sandbox.app
    project = app.add_project("Fine Price Residence")
    contact = merge_contact("Fine Price Residence")
    ledger_path = tmp_path / "ledger.duckdb"
    link_forward(ledger_path, "project", project["id"], "job", contact["id"], contact["remote_id"])
    labor = merge_item("PV Install Labor")
    invoice = merge_invoice(contact["id"], [{"item": labor["id"], "quantity": 3, "unit_price": 33.333}])
    assert invoice["total_amount"] == invoice["line_items"][0]["total_amount"] == 100.0
    payment = merge_payment(contact["id"], [(invoice["id"], 100.0)])
    config = {
        "api_url": coperniq_sandbox.url,
        "api_key": coperniq_sandbox.api_key,
        "ledger_path": str(ledger_path),
        "max_requests_per_second": 0,
    }

    run_target(config, [("items", [labor]), ("contacts", [contact]), ("invoices", [invoice]), ("payments", [payment])])

    assert log_rows(ledger_path, action="failed") == []
    [created] = app.state.invoices.values()
    assert exact(created["amount"]) == Decimal("100.00")
    assert [(li["quantity"], exact(li["unitPrice"])) for li in created["lineItems"]] == [(1, Decimal(100))]
    assert exact(created["amountPaid"]) == Decimal("100.00") and created["status"] == "PAID"
