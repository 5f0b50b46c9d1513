"""tap-quickbooks-merge against the Merge sandbox over HTTP: the SDK's standard tap tests plus behaviour tests
(incremental bookmarks, cursor paging, deletions, 429 with Retry-After, 401 without leaking secrets)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from reverse_helpers import run_tap, tap_config
from singer_sdk.exceptions import FatalAPIError
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from sandbox._server import SandboxServer
from sandbox.merge import MergeApp
from sandbox.merge_store import dt_us
from sync_ledger import RateLimiter
from sync_ledger.http import RateLimitedSession
from tap_quickbooks_merge.tap import TapQuickbooksMerge


def seed(app: MergeApp) -> dict[str, Any]:
    """One customer with a job, an item, an invoice with two lines and a payment on it."""
    customer = app.add_contact("Smith Residence")
    job = app.add_contact("Smith Residence Solar", parent=customer["id"])
    item = app.add_item("PV Install Labor", unit_price=3750.0)
    invoice = app.create_invoice(
        job["id"],
        [
            {"description": "Labor", "quantity": 1, "unit_price": 3750.0, "total_amount": 3750.0, "item": item["id"]},
            {"description": "Permit", "quantity": 1, "unit_price": 250.0, "total_amount": 250.0},
        ],
    )
    payment = app.create_payment(job["id"], 1000.0, applied_to=[(invoice["id"], 1000.0)])
    return {"customer": customer, "job": job, "item": item, "invoice": invoice, "payment": payment}


# --- the SDK's standard tap suite, against one module-wide sandbox --------------------------------------------
_SUITE_APP = MergeApp()
_SUITE_SERVER = SandboxServer(_SUITE_APP)
seed(_SUITE_APP)
_SUITE_CONFIG = {
    "base_url": f"{_SUITE_SERVER.root_url}/api/accounting/v1",
    "merge_api_key": "sandbox-merge-key",
    "account_token": "sandbox-account-token",
    "start_date": "2020-01-01T00:00:00Z",
    "max_requests_per_minute": 60000,
}


@pytest.fixture(scope="module", autouse=True)
def _suite_sandbox() -> Iterator[None]:
    _SUITE_SERVER.start()
    yield
    _SUITE_SERVER.stop()


TestTapQuickbooksMergeStandard = get_tap_test_class(
    tap_class=TapQuickbooksMerge,
    config=_SUITE_CONFIG,
    suite_config=SuiteConfig(max_records_limit=50),
)


# --- behaviour ----------------------------------------------------------------------------------------------
def test_streams_carry_what_the_reverse_target_needs(merge_sandbox: Any) -> None:
    data = seed(merge_sandbox.app)
    out = run_tap(tap_config(merge_sandbox))
    [invoice] = out["records"]["invoices"]
    assert invoice["id"] == data["invoice"]["id"] and invoice["contact"] == data["job"]["id"]
    assert [li["total_amount"] for li in invoice["line_items"]] == [3750.0, 250.0]
    assert invoice["line_items"][0]["item"] == data["item"]["id"]
    assert invoice["payments"] == [data["payment"]["id"]]  # expanded objects reduced to ids
    assert invoice["applied_payments"][0]["applied_amount"] == 1000.0
    [payment] = out["records"]["payments"]
    line = payment["applied_to_lines"][0]
    assert line["related_object_id"] == data["invoice"]["id"] and line["applied_amount"] == 1000.0
    assert {c["id"] for c in out["records"]["contacts"]} == {data["customer"]["id"], data["job"]["id"]}
    assert "PV Install Labor" in {i["name"] for i in out["records"]["items"]}
    assert "accounts" in out["records"]
    bookmarks = out["state"]["bookmarks"]
    assert bookmarks["invoices"]["replication_key_value"] == invoice["modified_at"]


def test_incremental_pages_and_deletions(merge_sandbox: Any) -> None:
    app = merge_sandbox.app
    data = seed(app)
    first = run_tap(tap_config(merge_sandbox, page_size=1))
    contacts_calls = merge_sandbox.stats.count("GET", "/contacts")
    assert contacts_calls >= 2, "page_size=1 with two contacts must follow the cursor"
    assert len(first["records"]["contacts"]) == 2

    extra = app.create_invoice(data["job"]["id"], amount=99.0)
    app.delete("invoices", data["invoice"]["id"])
    second = run_tap(tap_config(merge_sandbox), state=first["state"])
    by_id = {i["id"]: i for i in second["records"].get("invoices", [])}
    assert set(by_id) == {extra["id"], data["invoice"]["id"]}
    assert by_id[data["invoice"]["id"]]["remote_was_deleted"] is True
    assert "contacts" not in second["records"]  # unchanged since the bookmark

    third = run_tap(tap_config(merge_sandbox), state=second["state"])
    assert third["records"].get("invoices", []) == []


def test_a_row_stamped_before_the_bookmark_but_visible_late_is_read_once(merge_sandbox: Any) -> None:
    """Merge stamps modified_at when its sync job writes a row; the row can become visible after the tap read
    past that time. The lookback re-reads the window and drops rows it already emitted unchanged."""
    app = merge_sandbox.app
    seed(app)
    first = run_tap(tap_config(merge_sandbox))
    bookmark = dt_us(first["state"]["bookmarks"]["contacts"]["replication_key_value"])
    late = app.add_contact("Late Visible Residence")
    app.state.contacts.touch(app.state.contacts.get(late["id"]), ts=bookmark - 60_000_000)  # a minute before
    without_lookback = run_tap(tap_config(merge_sandbox, lookback_window=0), state=first["state"])
    assert "contacts" not in without_lookback["records"]  # what a plain modified_after bookmark loses
    second = run_tap(tap_config(merge_sandbox), state=first["state"])
    assert [c["id"] for c in second["records"]["contacts"]] == [late["id"]]
    third = run_tap(tap_config(merge_sandbox), state=second["state"])
    assert "contacts" not in third["records"]


def test_a_link_that_is_not_complete_is_reported_and_the_read_goes_on(
    merge_sandbox: Any, caplog: pytest.LogCaptureFixture
) -> None:
    seed(merge_sandbox.app)
    merge_sandbox.app.set_linked_account_status("RELINK_NEEDED")
    out = run_tap(tap_config(merge_sandbox))
    assert "link as RELINK_NEEDED" in caplog.text
    assert len(out["records"]["invoices"]) == 1  # Merge still answers reads from its copy
    caplog.clear()
    merge_sandbox.app.set_linked_account_status("COMPLETE")
    run_tap(tap_config(merge_sandbox))
    assert "not COMPLETE" not in caplog.text


def test_429_is_retried_after_retry_after(merge_sandbox: Any) -> None:
    seed(merge_sandbox.app)
    merge_sandbox.faults.update(burst_429=1, retry_after=1, only_paths=["/invoices"])
    out = run_tap(tap_config(merge_sandbox))
    assert len(out["records"]["invoices"]) == 1
    assert merge_sandbox.stats.by_status[429] == 1


def test_every_request_waits_for_the_tap_wide_rate_limiter(merge_sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tap = TapQuickbooksMerge(config=tap_config(merge_sandbox), parse_env_config=False)
    for stream in tap.streams.values():
        assert isinstance(stream.requests_session, RateLimitedSession)  # not the SDK's plain Session
        assert stream.requests_session.limiter is tap.rate_limiter
    seed(merge_sandbox.app)
    acquired: list[float] = []
    monkeypatch.setattr(RateLimiter, "acquire", lambda self: acquired.append(self.per_second))
    run_tap(tap_config(merge_sandbox, max_requests_per_minute=6000))
    assert acquired and acquired == [100.0] * merge_sandbox.stats.count()


def test_bad_credentials_fail_with_setting_names_not_values(
    merge_sandbox: Any, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "wrong-merge-key-s3cr3t"
    with pytest.raises(FatalAPIError) as excinfo:
        run_tap(tap_config(merge_sandbox, merge_api_key=secret))
    message = str(excinfo.value)
    assert "merge_api_key" in message and "account_token" in message
    assert secret not in message and secret not in caplog.text and secret not in capsys.readouterr().err


def test_settings_are_secret() -> None:
    props = TapQuickbooksMerge.config_jsonschema["properties"]
    assert props["merge_api_key"].get("secret") and props["account_token"].get("secret")
