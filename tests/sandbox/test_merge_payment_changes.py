"""Merge sandbox payment updates: QuickBooks takes a new amount on PATCH /payments, or (switch
`payment_amount_patch_ignored`, pessimistic) answers 200 with a warning and keeps the old one; a payment on a bank
deposit is refused with QuickBooks' 6540, on update and on void (sandbox/merge_payments.py, merge_voids.py)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.sandbox.test_merge_voids import VOID_PAYMENT, H, T, _Running, get, passthrough, pay, running, setup_invoice


def patch(sb: _Running, payment: dict[str, Any], **fields: Any) -> requests.Response:
    return requests.patch(f"{sb.url}/payments/{payment['id']}", headers=H, json={"model": fields}, timeout=T)


def new_amount(payment: dict[str, Any], invoice_id: str, amount: float) -> dict[str, Any]:
    line = {"applied_amount": f"{amount:.2f}", "related_object_id": invoice_id, "related_object_type": "INVOICE"}
    return {"total_amount": amount, "applied_to_lines": [line]}


@pytest.mark.parametrize("ignored", [False, True])
def test_a_payment_amount_on_update(ignored: bool) -> None:
    with running(profile="pessimistic" if ignored else "optimistic") as sb:
        assert sb.app.assumptions.payment_amount_patch_ignored is ignored
        inv = setup_invoice(sb, 1200.0)
        payment = pay(sb, inv, 200.0)
        r = patch(sb, payment, **new_amount(payment, inv["id"], 300.0), transaction_date="2025-02-03")
        assert r.status_code == 200, r.text
        body = r.json()
        kept = 200.0 if ignored else 300.0
        assert body["model"]["total_amount"] == kept
        assert [w["problem_type"] for w in body["warnings"] if w["problem_type"] == "IGNORED_FIELD"] == (
            ["IGNORED_FIELD"] if ignored else []
        )
        assert body["model"]["transaction_date"].startswith("2025-02-03")  # the other fields are taken either way
        assert get(sb, f"/invoices/{inv['id']}").json()["balance"] == 1200.0 - kept


def test_a_deposited_payment_cannot_be_changed_or_voided() -> None:
    with running() as sb:
        inv = setup_invoice(sb, 1200.0)
        payment = pay(sb, inv, 200.0)
        r = requests.post(f"{sb.root}/__admin/payments/{payment['id']}/deposit", timeout=T)
        assert r.status_code == 200, r.text
        r = patch(sb, payment, **new_amount(payment, inv["id"], 300.0))
        assert r.status_code == 400
        [error] = r.json()["errors"]
        assert error["error_code"] == 6540 and "deposited" in error["detail"]
        out = passthrough(sb, "POST", VOID_PAYMENT, {"Id": payment["remote_id"], "SyncToken": "0", "sparse": True})
        assert out["status"] == 400 and out["response"]["Fault"]["Error"][0]["code"] == "6540"
        assert get(sb, f"/payments/{payment['id']}").json()["total_amount"] == 200.0
        assert get(sb, f"/invoices/{inv['id']}").json()["balance"] == 1000.0
