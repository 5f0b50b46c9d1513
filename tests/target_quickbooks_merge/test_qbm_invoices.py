"""Invoices and payments: drafts numbered from Coperniq, lines mapped to items, payments applied; toggle off."""

from __future__ import annotations

import requests

from tests.target_quickbooks_merge.qbm_helpers import Pipeline, log_rows, merge_rows, staged_records


def _synced_project_ids(pipe: Pipeline) -> set[str]:
    with pipe.ledger() as ledger:
        return {link.source_id for link in ledger.links("coperniq", "project")}


def test_invoices_and_payments_sync_as_drafts_applied_to_invoices(pipeline: Pipeline) -> None:
    first = pipeline.run(
        invoice_sync=True, default_item="Services", item_mapping={"PV Install Labor": "Solar Panel Installation"}
    )
    synced = _synced_project_ids(pipeline)
    invoices = staged_records(pipeline, "invoices")
    expected = {iid: inv for iid, inv in invoices.items() if str(inv["record"]["id"]) in synced}
    assert expected, "seed should have invoices on triggered projects"

    merge_invoices = merge_rows(pipeline.merge, "invoices")
    assert sorted(i["number"] for i in merge_invoices) == sorted(f"CQ-{i['uid']}" for i in expected.values())
    # sent as DRAFT; QBO has no invoice status, so the sandbox derives it from the balance like QBO does
    assert all(
        i["type"] == "ACCOUNTS_RECEIVABLE" and i["status"] in {"DRAFT", "OPEN", "PARTIALLY_PAID", "PAID"}
        for i in merge_invoices
    )
    with pipeline.ledger() as ledger:
        for iid, inv in expected.items():
            link = ledger.get_link("coperniq", "invoice", iid)
            job = ledger.get_link("coperniq", "project", str(inv["record"]["id"]))
            row = next(r for r in merge_invoices if r["id"] == link.target_id)
            assert row["contact"] == job.target_id  # billed to the job (sub-customer)
            assert abs(float(row["total_amount"]) - inv["amount"]) < 0.01
    items = {r["id"]: r["name"] for r in merge_rows(pipeline.merge, "items")}
    labor_lines = [
        line
        for inv in merge_invoices
        for line in inv["line_items"]
        if "Install Labor" in (line.get("description") or "")
    ]
    for line in labor_lines:  # item_mapping by catalog name wins over default_item
        assert items[line["item"]] == ("Solar Panel Installation" if "PV" in line["description"] else "Services")

    payments = staged_records(pipeline, "payments")
    expected_pay = {pid: p for pid, p in payments.items() if str(p["invoiceId"]) in expected}
    merge_payments = merge_rows(pipeline.merge, "payments")
    assert expected_pay, "seed should have payments on synced invoices"
    assert len(merge_payments) == len(expected_pay) == first.counts["payments"]["created"]
    with pipeline.ledger() as ledger:
        for pid, pay in expected_pay.items():
            link = ledger.get_link("coperniq", "payment", pid)
            inv_link = ledger.get_link("coperniq", "invoice", str(pay["invoiceId"]))
            row = next(r for r in merge_payments if r["id"] == link.target_id)
            assert [a["related_object_id"] for a in row["applied_to_lines"]] == [inv_link.target_id]
            assert abs(float(row["total_amount"]) - pay["amount"]) < 0.01

    # invoices on projects that never triggered are skipped, with the reason
    skipped = {r["source_id"]: r["reason"] for r in log_rows(pipeline, stream="invoices", action="skipped")}
    assert set(skipped) == set(invoices) - set(expected)
    assert all("not synced" in reason for reason in skipped.values())

    again = pipeline.run(
        invoice_sync=True, default_item="Services", item_mapping={"PV Install Labor": "Solar Panel Installation"}
    )
    assert again.writes == 0
    assert len(merge_rows(pipeline.merge, "invoices")) == len(expected)


def test_invoice_sync_off_writes_no_invoices_and_warns(pipeline: Pipeline) -> None:
    run = pipeline.run(invoice_sync=False)
    assert merge_rows(pipeline.merge, "invoices") == []
    assert merge_rows(pipeline.merge, "payments") == []
    invoices = staged_records(pipeline, "invoices")
    assert run.counts["invoices"]["skipped"] == len(invoices) > 0
    assert {r["reason"] for r in log_rows(pipeline, stream="invoices")} == {"invoice_sync is off"}
    assert any("invoice_sync is off" in w for w in run.target.result.warnings)
    assert len(merge_rows(pipeline.merge, "contacts")) > 0  # customers/jobs still sync


def test_missing_item_mapping_is_a_failed_row_retried_next_run(pipeline: Pipeline) -> None:
    first = pipeline.run(invoice_sync=True)
    failed = log_rows(pipeline, stream="invoices", action="failed")
    assert failed and first.counts["invoices"]["failed"] == len(failed)
    assert all("item_mapping" in r["reason"] and "default_item" in r["reason"] for r in failed)
    assert merge_rows(pipeline.merge, "invoices") == []
    assert first.states, "the run continued past bad rows and saved state"

    # Next run: the tap sends nothing new (state), but failed staged rows are retried with the fixed config.
    second = pipeline.run(invoice_sync=True, default_item="Services")
    assert second.counts["invoices"]["created"] == len(failed)
    assert len(merge_rows(pipeline.merge, "invoices")) == len(failed)
    assert second.counts["payments"]["created"] == len(merge_rows(pipeline.merge, "payments"))


def test_invoice_numbers_carry_a_prefix_so_the_bookkeepers_own_numbers_never_clash(pipeline: Pipeline) -> None:
    """QuickBooks numbers its own invoices from 1001, as Coperniq does. The bookkeeper's invoice 1001 on another
    customer stays; Coperniq's becomes CQ-1001 and syncs."""
    cop_invoices = sorted(pipeline.coperniq.app.state.invoices.values(), key=lambda i: i["uid"])
    app = pipeline.merge.app
    stranger = app.add_contact("Walk-in Customer")
    held = cop_invoices[:30]
    for inv in held:
        app.create_invoice(stranger["id"], amount=10.0, number=str(inv["uid"]))
    run = pipeline.run(invoice_sync=True, default_item="Services")
    assert run.counts["invoices"]["created"] > 0 and not run.counts["invoices"]["failed"]
    numbers = [i["number"] for i in merge_rows(pipeline.merge, "invoices")]
    ours = [n for n in numbers if n.startswith("CQ-")]
    assert ours and len(numbers) == len(set(numbers))  # no number twice
    assert sum(1 for n in numbers if not n.startswith("CQ-")) == len(held)  # the bookkeeper's are untouched


def test_an_invoice_pushed_without_the_prefix_keeps_its_number(pipeline: Pipeline) -> None:
    """Invoices pushed with another prefix (here none) are never renumbered: an unchanged one costs nothing, a
    changed one is updated without touching its number."""
    pipeline.run(invoice_sync=True, default_item="Services", invoice_number_prefix="")
    before = {i["id"]: i["number"] for i in merge_rows(pipeline.merge, "invoices")}
    assert before and not any(n.startswith("CQ-") for n in before.values())
    assert pipeline.run(invoice_sync=True, default_item="Services").writes == 0
    synced = _synced_project_ids(pipeline)
    iid = next(
        i
        for i, inv in pipeline.coperniq.app.state.invoices.items()
        if str((inv.get("_record") or ("", ""))[1]) in synced and str(inv["uid"]) in before.values()
    )
    resp = requests.patch(
        f"{pipeline.coperniq.url}/invoices/{iid}",
        json={"dueDate": "2031-01-31T00:00:00Z"},
        headers={"x-api-key": pipeline.coperniq.api_key},
        timeout=10,
    )
    resp.raise_for_status()
    run = pipeline.run(invoice_sync=True, default_item="Services")
    assert run.counts["invoices"]["updated"] == 1
    after = {i["id"]: i["number"] for i in merge_rows(pipeline.merge, "invoices")}
    assert after == before
