"""Money on the forward leg, tap-coperniq -> target-quickbooks-merge against both sandboxes: 0.1 + 0.2-style
amounts arrive in QuickBooks to the cent (0.30, 59.97, a balance of exactly 0 after full payment), go over the
wire without a float's artefacts, and an invoice synced while money was a float is not pushed again."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from sync_ledger import to_decimal, to_money
from tests.target_quickbooks_merge.qbm_helpers import Pipeline, log_rows, merge_rows

TRIGGER = [{"workflow": "Residential Solar", "phase": "Install"}]
CONFIG = {"trigger_phases": TRIGGER, "backfill": True, "invoice_sync": True, "default_item": "Services"}


def json_numbers(body: str) -> list[str]:
    """The text of every non-integer JSON number in a body, as sent."""
    found: list[str] = []
    json.loads(body, parse_float=found.append)
    return found


def exact(value: Any) -> Decimal:
    """What the sandbox holds, as the exact decimal it is (it keeps floats or Decimals)."""
    number = to_decimal(value)
    assert number is not None, value
    return number


def seed_penny_invoices(app: Any) -> dict[str, dict[str, Any]]:
    """One project at its trigger phase with invoices whose float sums are off: 3 x 0.1 + 3 x 0.2 (0.90), 3 x 0.1
    paid by 0.1 + 0.2, 3 x 19.99 paid in full (59.97), 1 x 10.10 and 1 x 1000 (float 10.1 and 1000.0 before)."""
    project = app.add_project("Penny Residence", phase="Install")
    pid = project["id"]

    def line(name: str, quantity: int, price: float) -> dict[str, Any]:
        return {"name": name, "quantity": quantity, "unitCost": 0.05, "unitPrice": price}

    invoices = {
        "mixed": app.add_invoice(pid, [line("Wire 0.1", 3, 0.1), line("Wire 0.2", 3, 0.2)]),
        "split_paid": app.add_invoice(pid, [line("Fuse", 3, 0.1)]),
        "panels": app.add_invoice(pid, [line("Panel 19.99", 3, 19.99)]),
        "round": app.add_invoice(pid, [line("Permit", 1, 10.1), line("Design", 1, 1000.0)]),
    }
    app.add_payment(invoices["split_paid"]["id"], 0.1)
    app.add_payment(invoices["split_paid"]["id"], 0.2)
    app.add_payment(invoices["panels"]["id"], 59.97)
    return invoices


@pytest.fixture
def money_pipeline(coperniq_sandbox: Any, merge_sandbox: Any, tmp_path: Path) -> Pipeline:
    return Pipeline(coperniq_sandbox, merge_sandbox, tmp_path / "ledger.duckdb", config=dict(CONFIG))


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch, merge_sandbox: Any) -> list[tuple[str, str, str]]:
    """(method, path, body) of every write sent to the Merge sandbox, as bytes on the wire."""
    sent: list[tuple[str, str, str]] = []
    real_send = requests.adapters.HTTPAdapter.send

    def send(self: Any, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        url = str(request.url)
        if request.method in ("POST", "PATCH") and url.startswith(merge_sandbox.url):
            body = request.body.decode() if isinstance(request.body, bytes) else str(request.body or "")
            sent.append((str(request.method), url[len(merge_sandbox.url) :], body))
        return real_send(self, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    return sent


def model_writes(merge: Any) -> int:
    """Creates and updates of invoices and payments the Merge sandbox answered (reads through passthrough, a POST
    too, are no write)."""
    return sum(
        1
        for e in merge.stats.log
        if e["method"] in ("POST", "PATCH") and re.search(r"/(invoices|payments)(/[^/]+)?$", e["path"])
    )


def _by_number(merge: Any) -> dict[str, dict[str, Any]]:
    return {str(i["number"]): i for i in merge_rows(merge, "invoices")}


def test_penny_amounts_arrive_in_quickbooks_exactly(money_pipeline: Pipeline, wire: list[tuple[str, str, str]]) -> None:
    pipe = money_pipeline
    seeded = seed_penny_invoices(pipe.coperniq.app)
    run = pipe.run()

    assert log_rows(pipe, action="failed") == []  # no "payment exceeds balance", no 6070 "Amount is not ..."
    assert run.counts["invoices"]["created"] == 4 and run.counts["payments"]["created"] == 3
    invoices = _by_number(pipe.merge)
    mixed, split, panels, rounded = (invoices[f"CQ-{seeded[k]['uid']}"] for k in seeded)
    assert [exact(li["total_amount"]) for li in mixed["line_items"]] == [Decimal("0.30"), Decimal("0.60")]
    assert exact(mixed["total_amount"]) == Decimal("0.90") == exact(mixed["balance"])
    assert [exact(li["total_amount"]) for li in split["line_items"]] == [Decimal("0.30")]
    assert exact(split["total_amount"]) == Decimal("0.30")
    assert exact(split["balance"]) == 0 and split["status"] == "PAID"  # 0.30 - 0.10 - 0.20, exactly
    assert [exact(li["total_amount"]) for li in panels["line_items"]] == [Decimal("59.97")]
    assert exact(panels["total_amount"]) == Decimal("59.97") and exact(panels["balance"]) == 0
    assert panels["status"] == "PAID"
    assert exact(rounded["total_amount"]) == Decimal("1010.10")

    payments = merge_rows(pipe.merge, "payments")
    applied = sorted(
        (exact(a["applied_amount"]), a["related_object_id"]) for p in payments for a in p["applied_to_lines"]
    )
    assert applied == sorted(
        [(Decimal("0.10"), split["id"]), (Decimal("0.20"), split["id"]), (Decimal("59.97"), panels["id"])]
    )
    assert sorted(exact(p["total_amount"]) for p in payments) == [Decimal("0.10"), Decimal("0.20"), Decimal("59.97")]
    for inv in seeded.values():  # QuickBooks holds what Coperniq holds, to the cent
        coperniq = pipe.coperniq.state.invoices[inv["id"]]
        assert exact(invoices[f"CQ-{inv['uid']}"]["total_amount"]) == to_money(coperniq["amount"])

    # on the wire: Decimals as plain JSON numbers, never a float's 0.30000000000000004
    writes = [(m, path, body) for m, path, body in wire if path in ("/invoices", "/payments")]
    assert len(writes) == 7
    for _, _, body in writes:  # a float sum would show as 0.30000000000000004
        assert all(len(text.partition(".")[2]) <= 2 for text in json_numbers(body)), body
    bodies = [json.loads(body, parse_float=Decimal)["model"] for _, path, body in writes if path == "/invoices"]
    lines = sorted(li["total_amount"] for b in bodies for li in b["line_items"])
    assert lines == sorted(Decimal(x) for x in ("0.3", "0.6", "0.3", "59.97", "10.1", "1000.0"))
    payment_bodies = [json.loads(body)["model"] for _, path, body in writes if path == "/payments"]
    assert sorted(b["applied_to_lines"][0]["applied_amount"] for b in payment_bodies) == ["0.10", "0.20", "59.97"]

    written = model_writes(pipe.merge)
    pipe.run()
    assert model_writes(pipe.merge) == written  # nothing differs once synced


def test_payments_on_a_matched_invoice_fit_its_balance_exactly(money_pipeline: Pipeline) -> None:
    """The bookkeeper entered the 0.30 invoice in QuickBooks already: it is matched, and each payment is checked
    against the open balance QuickBooks shows (0.30, then 0.20), in cents, not floats with a tolerance."""
    pipe = money_pipeline
    app = pipe.coperniq.app
    project = app.add_project("Matched Residence", phase="Install")
    invoice = app.add_invoice(project["id"], [{"name": "Fuse", "quantity": 3, "unitCost": 0.05, "unitPrice": 0.1}])
    pipe.run(invoice_sync=False)  # customer and job
    with pipe.ledger() as ledger:
        job = ledger.get_link("coperniq", "project", str(project["id"]))
    assert job is not None and job.target_id
    pipe.merge.app.create_invoice(
        job.target_id,
        [{"description": "Fuse", "quantity": 3, "unit_price": 0.1, "total_amount": 0.3}],
        number=f"CQ-{invoice['uid']}",
    )
    app.add_payment(invoice["id"], 0.1)
    app.add_payment(invoice["id"], 0.2)

    run = pipe.run()
    assert log_rows(pipe, action="failed") == []
    assert run.counts["invoices"]["linked"] == 1 and run.counts["payments"]["created"] == 2
    [qbo] = merge_rows(pipe.merge, "invoices")
    assert exact(qbo["balance"]) == 0 and qbo["status"] == "PAID"
    written = model_writes(pipe.merge)
    pipe.run()
    assert model_writes(pipe.merge) == written


# ------------------------------------------------------------------ an invoice synced while money was a float
# The forward mapping before sync_ledger.money (commit a414285), verbatim: what the links in a ledger written by
# that version were fingerprinted from.
def legacy_money(value: Any) -> float:
    return round(float(value or 0), 2)


def legacy_invoice_line(line: Mapping[str, Any], item_id: str) -> dict[str, Any]:
    qty = line.get("quantity") or 0
    price = legacy_money(line.get("unitPrice"))
    catalog = line.get("catalogItem") or {}
    description = line.get("description") or catalog.get("name") or ""
    return {
        "description": str(description),
        "quantity": qty,
        "unit_price": price,
        "total_amount": round(float(qty) * price, 2),
        "item": item_id,
    }


def legacy_payment_payload(
    payment: Mapping[str, Any], *, contact_id: str, account_id: str, invoice_id: str
) -> dict[str, Any]:
    when = payment.get("paymentDate") or payment.get("createdAt")
    amount = legacy_money(payment.get("amount"))
    return {
        "transaction_date": when,
        "contact": contact_id,
        "account": account_id,
        "total_amount": amount,
        "type": "ACCOUNTS_RECEIVABLE",
        "applied_to_lines": [
            {
                "applied_amount": f"{amount:.2f}",
                "applied_date": when,
                "related_object_id": invoice_id,
                "related_object_type": "INVOICE",
            }
        ],
    }


def legacy_fingerprint(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_an_invoice_synced_while_money_was_a_float_is_not_pushed_again(money_pipeline: Pipeline) -> None:
    """Run 1 with the float mapping (as the version before this change wrote the ledger), then every invoice
    and payment is evaluated again with the Decimal mapping: none differs, so nothing is written. A link whose
    fingerprint does differ is updated (the comparison really happens)."""
    import target_quickbooks_merge.invoices as invoices_module
    import target_quickbooks_merge.mapping as mapping_module
    import target_quickbooks_merge.payments as payments_module

    pipe = money_pipeline
    seed_penny_invoices(pipe.coperniq.app)
    with pytest.MonkeyPatch.context() as legacy:
        legacy.setattr(mapping_module, "money", legacy_money)  # invoice_payload's total_amount
        legacy.setattr(mapping_module, "fingerprint", legacy_fingerprint)  # invoice_fingerprint
        legacy.setattr(invoices_module, "invoice_line", legacy_invoice_line)
        legacy.setattr(invoices_module, "fingerprint", legacy_fingerprint)
        legacy.setattr(payments_module, "payment_payload", legacy_payment_payload)
        legacy.setattr(payments_module, "fingerprint", legacy_fingerprint)
        first = pipe.run()
    assert first.counts["invoices"]["created"] == 4 and first.counts["payments"]["created"] == 3
    with pipe.ledger() as ledger:
        before = {(link.source_type, link.source_id): link.fingerprint for link in ledger.links("coperniq")}
        for stream in ("invoices", "payments"):  # as if each had changed in Coperniq in a way that is no money
            for rid, _, _, _ in ledger.iter_staged("coperniq", stream):
                ledger.mark_staged("coperniq", stream, rid, "pending")

    written = model_writes(pipe.merge)
    again = pipe.run()
    assert model_writes(pipe.merge) == written
    assert again.counts["invoices"]["updated"] == 0 and again.counts["payments"]["updated"] == 0
    with pipe.ledger() as ledger:
        assert {(link.source_type, link.source_id): link.fingerprint for link in ledger.links("coperniq")} == before
        statuses = {status for s in ("invoices", "payments") for _, _, status, _ in ledger.iter_staged("coperniq", s)}
        assert statuses == {"done"}  # every row was evaluated again
        stale = next(link for link in ledger.links("coperniq", "invoice"))
        ledger.upsert_link(replace(stale, fingerprint="fingerprint of other amounts"))
        ledger.mark_staged("coperniq", "invoices", stale.source_id, "pending")
    control = pipe.run()
    assert control.counts["invoices"]["updated"] == 1 and model_writes(pipe.merge) == written + 1


# ------------------------------------------------------------------ the mapping on its own (no sandbox)
def test_the_mapping_rounds_half_up_once() -> None:
    from target_quickbooks_merge.mapping import invoice_line, money, payment_payload

    assert [money(v) for v in (2.675, 1.005, 0.125, None)] == [
        Decimal("2.68"),  # the float mapping made 2.67, 1.0 and 0.12 of these
        Decimal("1.01"),
        Decimal("0.13"),
        Decimal("0.00"),
    ]
    line = invoice_line({"quantity": 3, "unitPrice": 0.1, "description": "Wire"}, "item-1")
    assert line["unit_price"] == Decimal("0.10") and line["total_amount"] == Decimal("0.30")
    assert invoice_line({"quantity": 3, "unitPrice": 19.99}, "item-1")["total_amount"] == Decimal("59.97")
    paid = payment_payload({"amount": 0.1, "paymentDate": "2025-01-02"}, contact_id="c", account_id="a", invoice_id="i")
    assert paid["total_amount"] == Decimal("0.10") and paid["applied_to_lines"][0]["applied_amount"] == "0.10"


def test_merge_decimal_strings_are_the_same_amount_when_matching() -> None:
    """Merge may answer "100.00" where we send 100.0: matching an existing invoice patches no amount for that."""
    from target_quickbooks_merge.mapping import diff_for_strategy

    desired = {"total_amount": Decimal("100.00"), "memo": "x"}
    assert diff_for_strategy(desired, {"total_amount": "100.00", "memo": "x"}, "replace") == {}
    assert diff_for_strategy(desired, {"total_amount": 100.0, "memo": "x"}, "enrich") == {}
    assert diff_for_strategy(desired, {"total_amount": "100.01", "memo": "x"}, "enrich") == {
        "total_amount": Decimal("100.00")
    }


def test_fingerprints_equal_the_float_mappings_for_any_amount_in_cents() -> None:
    """2,000 random invoices and payments, staged as the target stages them: the Decimal mapping fingerprints
    each exactly as the float mapping did (so no synced invoice or payment is pushed again on upgrade)."""
    import random

    from sync_ledger import to_jsonable
    from target_quickbooks_merge.mapping import invoice_fingerprint, invoice_payload, payment_payload
    from target_quickbooks_merge.mapping import invoice_line as new_line
    from target_quickbooks_merge.payments import fingerprint

    rng = random.Random(7)
    for _ in range(2000):
        lines = [
            {"quantity": rng.randint(1, 40), "unitPrice": Decimal(rng.randint(0, 10**7)) / 100, "description": "x"}
            for _ in range(rng.randint(1, 4))
        ]
        amount = sum(Decimal(li["quantity"]) * li["unitPrice"] for li in lines)
        record = {"id": 1, "uid": 1001, "amount": amount, "lineItems": lines, "issueDate": "2025-01-01T00:00:00Z"}
        staged = json.loads(json.dumps(to_jsonable(record)))  # what the ledger gives back
        new = invoice_payload(staged, "c", [new_line(li, "i") for li in staged["lineItems"]])
        old = {**new, "total_amount": legacy_money(staged["amount"])}
        old["line_items"] = [legacy_invoice_line(li, "i") for li in staged["lineItems"]]
        assert invoice_fingerprint(new) == legacy_fingerprint({k: v for k, v in old.items() if k != "number"})
        pay = {"amount": staged["amount"], "paymentDate": "2025-01-02T00:00:00Z"}
        ids = {"contact_id": "c", "account_id": "a", "invoice_id": "i"}
        assert fingerprint(payment_payload(pay, **ids)) == legacy_fingerprint(legacy_payment_payload(pay, **ids))
