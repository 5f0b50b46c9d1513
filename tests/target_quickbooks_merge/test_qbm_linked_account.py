"""Linked-account status other than COMPLETE: reported, and fatal where nothing could be written."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from target_quickbooks_merge.target import TargetError
from tests.target_quickbooks_merge.qbm_helpers import Pipeline, log_rows, qbo_customers


@pytest.mark.parametrize("status", ["RELINK_NEEDED", "INCOMPLETE"])
def test_a_link_that_cannot_sync_fails_before_any_write(pipeline: Pipeline, status: str) -> None:
    pipeline.merge.app.set_linked_account_status(status)
    with pytest.raises(TargetError, match=status) as info:
        pipeline.run()
    assert "coperniq-qbo connect" in str(info.value)
    assert qbo_customers(pipeline.merge) == {}


def test_an_idle_link_is_reported_and_the_run_goes_on(pipeline: Pipeline, caplog: pytest.LogCaptureFixture) -> None:
    pipeline.merge.app.set_linked_account_status("IDLE")
    with caplog.at_level(logging.WARNING):
        run = pipeline.run()
    assert "link as IDLE" in caplog.text
    assert run.counts["projects"]["created"] > 0 and run.target.result.failed == 0


def test_credentials_refused_mid_run_stop_the_run_instead_of_failing_every_row(
    pipeline: Pipeline, monkeypatch: Any
) -> None:
    """Merge answers writes with CREDENTIAL_REFRESH_FAILED once QuickBooks refuses its token (RELINK_NEEDED)."""
    from target_quickbooks_merge.target import TargetQuickbooksMerge

    app = pipeline.merge.app
    preflight = TargetQuickbooksMerge._preflight

    def preflight_then_break(self: Any, ledger: Any) -> None:
        preflight(self, ledger)
        app.set_linked_account_status("RELINK_NEEDED")  # the token is refused right after the start checks

    monkeypatch.setattr(TargetQuickbooksMerge, "_preflight", preflight_then_break)
    with pytest.raises(TargetError, match=r"mid-run.*CREDENTIAL_REFRESH_FAILED.*coperniq-qbo connect"):
        pipeline.run()
    assert qbo_customers(pipeline.merge) == {}
    assert len(log_rows(pipeline, action="failed")) <= 1  # not one failed row per record
