"""QuickBooks has no draft invoices: only the Coperniq statuses in `invoice_statuses` are pushed, and an invoice
that leaves them after it was pushed is logged, not silently ignored."""

from __future__ import annotations

import requests

from tests.target_quickbooks_merge.qbm_helpers import Pipeline, log_rows, merge_rows

CONFIG = {"invoice_sync": True, "default_item": "Services", "void_policy": "leave"}


def _synced_project(pipe: Pipeline) -> int:
    with pipe.ledger() as ledger:
        return int(ledger.links("coperniq", "project")[0].source_id)


def test_drafts_wait_until_sent_and_a_declined_pushed_invoice_is_logged(pipeline: Pipeline) -> None:
    pipeline.run(**CONFIG)
    app = pipeline.coperniq.app
    project = _synced_project(pipeline)
    draft = app.add_invoice(project, status="DRAFT")
    sent = app.add_invoice(project, status="SENT", issue_date="2025-06-01T00:00:00Z")
    pipeline.run(**CONFIG)
    numbers = {i["number"] for i in merge_rows(pipeline.merge, "invoices")}
    assert f"CQ-{sent['uid']}" in numbers and f"CQ-{draft['uid']}" not in numbers
    [skip] = [r for r in log_rows(pipeline, stream="invoices", action="skipped") if r["source_id"] == str(draft["id"])]
    assert "DRAFT in Coperniq" in skip["reason"] and "invoice_statuses" in skip["reason"]

    headers = {"x-api-key": pipeline.coperniq.api_key}
    for invoice, status in ((draft, "SENT"), (sent, "DECLINED")):
        resp = requests.patch(
            f"{pipeline.coperniq.url}/invoices/{invoice['id']}", json={"status": status}, headers=headers, timeout=10
        )
        assert resp.status_code < 300, resp.text
    pipeline.run(**CONFIG)
    numbers = {i["number"] for i in merge_rows(pipeline.merge, "invoices")}
    assert f"CQ-{draft['uid']}" in numbers  # sent now: pushed
    declined = [r for r in log_rows(pipeline, stream="invoices", action="skipped") if r["source_id"] == str(sent["id"])]
    assert declined and "now DECLINED in Coperniq; left unchanged in QuickBooks" in declined[0]["reason"]
    assert pipeline.run(**CONFIG).writes == 0  # logged once per change, nothing re-sent


def test_invoice_statuses_is_validated_naming_the_setting() -> None:
    import pytest
    from singer_sdk.exceptions import ConfigValidationError

    from target_quickbooks_merge.target import TargetQuickbooksMerge

    with pytest.raises(ConfigValidationError) as info:
        TargetQuickbooksMerge(
            config={"merge_api_key": "k", "account_token": "t", "invoice_statuses": ["SENT", "SHIPPED"]}
        )
    assert "invoice_statuses" in str(info.value.errors) and "SHIPPED" in str(info.value.errors)
