"""Crash safety, dry run, bad rows, rate limits, disconnected account and config validation."""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

import pytest
from singer_sdk.exceptions import ConfigValidationError

from target_quickbooks_merge.context import Context
from target_quickbooks_merge.target import TargetError, TargetQuickbooksMerge
from tests.target_quickbooks_merge.qbm_helpers import (
    Pipeline,
    assert_no_duplicate_names,
    log_rows,
    merge_rows,
    qbo_customers,
)

INVOICES = {"invoice_sync": True, "default_item": "Services"}


class Crash(BaseException):
    """Stands in for the process dying (BaseException: nothing in the target may swallow it)."""


def _merge_counts(pipe: Pipeline) -> Counter[str]:
    return Counter(
        {
            "customers": len(qbo_customers(pipe.merge)),
            "invoices": len(merge_rows(pipe.merge, "invoices")),
            "payments": len(merge_rows(pipe.merge, "payments")),
        }
    )


@pytest.mark.parametrize("kind", ["customer", "job", "invoice", "payment"])
def test_crash_after_write_before_ledger_commit_does_not_duplicate(
    pipeline: Pipeline, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Context.commit_create
    crashed: list[str] = []

    def crash_once(self: Context, link: Any, intent_key: str) -> None:
        if link.target_type == kind and not crashed:
            crashed.append(link.source_id)
            raise Crash(f"killed after creating {kind} {link.target_id}")
        original(self, link, intent_key)

    monkeypatch.setattr(Context, "commit_create", crash_once)
    with pytest.raises(Crash):
        pipeline.run(**INVOICES)
    assert crashed
    with pipeline.ledger() as ledger:
        left = {key.rsplit(":", 1)[1] for key, _ in ledger.pending_intents("forward:")}
        assert crashed[0] in left
        assert ledger.runs(1)[0]["status"] == "failed"
    monkeypatch.setattr(Context, "commit_create", original)

    pipeline.tap_state = None  # the crashed run emitted no STATE: the tap re-sends everything
    pipeline.run(**INVOICES)
    after = _merge_counts(pipeline)
    with pipeline.ledger() as ledger:
        assert ledger.pending_intents("forward:") == []
        links = Counter(link.target_type for link in ledger.links("coperniq"))
    assert after["customers"] == links["customer"] + links["job"]
    assert after["invoices"] == links["invoice"] and after["payments"] == links["payment"]
    assert_no_duplicate_names(pipeline.merge)
    recovered = {r["source_id"] for r in log_rows(pipeline, action="linked") if "interrupted run" in r["reason"]}
    # the crashed record, plus (invoices, payments) the rest of its batch that was sent before the crash
    assert crashed[0] in recovered and recovered <= left

    assert pipeline.run(**INVOICES).writes == 0


def test_dry_run_writes_nothing_and_prints_the_plan(pipeline: Pipeline, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    run = pipeline.run(dry_run=True, **INVOICES)
    assert run.writes == 0
    assert qbo_customers(pipeline.merge) == {} and merge_rows(pipeline.merge, "invoices") == []
    plan = run.target.result.plan
    actions = Counter((p.stream, p.action) for p in plan)
    assert actions[("projects", "created")] > 0 and actions[("accounts", "created")] > 0
    assert actions[("invoices", "created")] > 0 and actions[("projects", "skipped")] > 0
    assert "DRY RUN plan" in caplog.text and "quickbooks name" in caplog.text and "CREATE" in caplog.text
    with pipeline.ledger() as ledger:
        assert ledger.links("coperniq") == []
        assert {r["action"] for r in ledger.log_rows(limit=10000)} <= {"planned", "skipped", "failed"}
        assert ledger.runs(1)[0]["dry_run"] is True

    real = pipeline.run(**INVOICES)  # the tap sends nothing new; the staged snapshot is still pending
    assert real.counts["projects"]["created"] == actions[("projects", "created")]
    assert real.counts["invoices"]["created"] == actions[("invoices", "created")]


def _singer(*messages: dict[str, Any]) -> str:
    return "\n".join(json.dumps(m) for m in messages) + "\n"


SCHEMA = {
    "type": "SCHEMA",
    "stream": "projects",
    "key_properties": ["id"],
    "schema": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "title": {"type": ["string", "null"]},
            "updatedAt": {"type": ["string", "null"], "format": "date-time"},
        },
    },
}


def test_schema_invalid_records_become_failed_rows_and_the_run_continues(pipeline: Pipeline) -> None:
    lines = _singer(
        SCHEMA,
        {
            "type": "RECORD",
            "stream": "projects",
            "record": {"id": 1, "title": "ok", "updatedAt": "2025-01-01T00:00:00Z"},
        },
        {"type": "RECORD", "stream": "projects", "record": {"id": 2, "title": 42}},
        {"type": "RECORD", "stream": "projects", "record": {"title": "no id"}},
        {"type": "STATE", "value": {"bookmarks": {"projects": {"replication_key_value": "2025-01-01"}}}},
    )
    run = pipeline.run(lines=lines)
    failed = {r["source_id"]: r["reason"] for r in log_rows(pipeline, action="failed")}
    assert "schema validation failed" in failed["2"] and "42" in failed["2"]
    assert "no id" in failed[None]
    assert run.states == [{"bookmarks": {"projects": {"replication_key_value": "2025-01-01"}}}]
    with pipeline.ledger() as ledger:
        ok = ledger.staged("coperniq", "projects", "1")
        assert ok["updatedAt"] == "2025-01-01T00:00:00Z"  # datetimes re-serialized, not Python objects
        assert ledger.staged_status("coperniq", "projects", "2")[0] == "failed"


def test_rate_limited_merge_is_retried_honouring_retry_after(pipeline: Pipeline) -> None:
    pipeline.merge.faults.update(burst_429=3, retry_after=0.2, only_paths=["/contacts", "/passthrough"])
    run = pipeline.run()
    assert run.target.client.api.retries >= 3
    assert run.target.result.failed == 0 and qbo_customers(pipeline.merge)


def test_merge_400_is_a_failed_row_with_detail(pipeline: Pipeline) -> None:
    # Every job create answered 400 (names over QuickBooks' limit no longer provoke one: they are cut to fit)
    pipeline.merge.faults.update(error_rate=1.0, error_status=400, only_paths=["/passthrough"])
    run = pipeline.run()
    failed = log_rows(pipeline, stream="projects", action="failed")
    assert failed and run.counts["projects"]["failed"] == len(failed)
    assert all("QuickBooks" in r["reason"] or "refused" in r["reason"] for r in failed)
    assert run.states  # continued and saved state


def test_disconnected_flag_fails_fast_with_reconnect_hint(pipeline: Pipeline) -> None:
    with pipeline.ledger() as ledger:
        ledger.set_meta("disconnected", "2025-06-01T00:00:00Z by coperniq-qbo disconnect")
    with pytest.raises(TargetError, match="coperniq-qbo connect"):
        pipeline.run()
    assert qbo_customers(pipeline.merge) == {}


def test_rejected_account_token_fails_fast(pipeline: Pipeline) -> None:
    with pytest.raises(TargetError, match="coperniq-qbo connect") as info:
        pipeline.run(account_token="wrong-token")
    assert "wrong-token" not in str(info.value)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"matching_strategy": "merge"}, "matching_strategy"),
        ({"trigger_phases": [{"workflow": "Residential Solar"}]}, "trigger_phases[0]: missing phase"),
        (
            {"trigger_phases": [{"workflow": "A", "phase": "X"}, {"workflow": "a", "phase": "Y"}]},
            "one phase per workflow",
        ),
        ({"job_name_template": "{title} {nope}"}, "job_name_template"),
    ],
)
def test_bad_config_fails_fast_naming_the_setting(override: dict[str, Any], needle: str) -> None:
    config = {"merge_api_key": "k", "account_token": "t", **override}
    with pytest.raises(ConfigValidationError) as info:
        TargetQuickbooksMerge(config=config)
    assert any(needle in e for e in info.value.errors) or needle in str(info.value)


def test_fail_on_error_raises_only_after_state_and_ledger_are_saved(pipeline: Pipeline) -> None:
    import contextlib
    import io

    from tests.target_quickbooks_merge.qbm_helpers import tap_lines

    lines, _ = tap_lines(pipeline.coperniq)
    target = TargetQuickbooksMerge(config=pipeline.target_config(invoice_sync=True, fail_on_error=True))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        target.process_lines(io.StringIO(lines))
        with pytest.raises(TargetError, match="fail_on_error"):
            target.process_endofpipe()
    assert '"bookmarks"' in out.getvalue()  # STATE went out before the non-zero exit
    with pipeline.ledger() as ledger:
        assert ledger.runs(1)[0]["status"] == "partial"
        assert ledger.log_rows(action="failed", stream="invoices")


def test_merge_unreachable_mid_run_stops_the_run_after_unreachable_timeout(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Merge answers the pre-flight, then only 503s: rows fail until `unreachable_timeout` has passed, then the
    run stops with one message naming Merge's URL, non-zero, and the run is recorded `failed` (not a success
    with failed rows). Request retries are shortened; the breaker itself is what is tested."""
    from sync_ledger.http import ApiClient

    monkeypatch.setattr(ApiClient, "_backoff", lambda self, attempt: 0.001)
    pipeline.merge.faults.update(error_rate=1.0, error_status=503, only_paths=["/contacts", "/passthrough"])
    with pytest.raises(TargetError, match=r"has not answered for \d+ s \(unreachable_timeout\)") as err:
        pipeline.run(unreachable_timeout=0)
    assert pipeline.merge.url in str(err.value)
    with pipeline.ledger() as ledger:
        run = ledger.last_run()
        assert run["status"] == "failed"
        failed = [r for r in ledger.log_rows(run_id=run["run_id"]) if r["action"] == "failed"]
    assert 1 <= len([r for r in failed if r["stream"] != "run"]) <= 2  # stopped at once, not after every record
