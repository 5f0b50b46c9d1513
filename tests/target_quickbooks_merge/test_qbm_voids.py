"""An invoice pushed to QuickBooks that Coperniq takes back (declined, back to draft, archived) follows `void_policy`:
voided through passthrough exactly once (a no-op re-run writes nothing, also while Merge still shows it open), zeroed
with a note, or left; under lost answers, a crash between the void and the ledger, a stale SyncToken and a void
QuickBooks refuses while a payment is applied; created anew when Coperniq sends a voided invoice again; planned only
in a dry run (target_quickbooks_merge/voids.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from singer_sdk.exceptions import ConfigValidationError

from sync_ledger import Link
from target_quickbooks_merge.context import Context
from target_quickbooks_merge.invoice_deletes import MASS_MIN
from target_quickbooks_merge.merge_client import MergeClient
from target_quickbooks_merge.target import TargetQuickbooksMerge
from tests.target_quickbooks_merge.qbm_helpers import Pipeline, log_rows

CONFIG = {"invoice_sync": True, "default_item": "Services"}
PROFILES = ["optimistic", "pessimistic"]
LINES = [{"quantity": 2, "unitCost": 100, "unitPrice": 250}]
T = 10


class Crash(BaseException):
    """Stands in for the process dying (BaseException: nothing in the target may swallow it)."""


@contextmanager
def crash_before_recording_voids(monkeypatch: pytest.MonkeyPatch, prefix: str = "forward:void:") -> Iterator[None]:
    """The process dies after QuickBooks did a write whose intent starts with `prefix` (a void, by default) and
    before the ledger recorded it (its intent stays)."""
    original = Context.commit_create

    def crash_on_void(self: Context, made: Link, intent_key: str) -> None:
        if intent_key.startswith(prefix):
            raise Crash(f"killed after {intent_key} ({made.target_id})")
        original(self, made, intent_key)

    monkeypatch.setattr(Context, "commit_create", crash_on_void)
    try:
        yield
    finally:
        monkeypatch.setattr(Context, "commit_create", original)


# --------------------------------------------------------------------------------------------------- helpers
def start(pipe: Pipeline, **config: Any) -> tuple[dict[str, Any], Link]:
    """The seeded projects synced, then one SENT invoice of our own pushed. The seeded invoices are deleted first:
    each test watches its own invoice, and a run with nothing of it changed must write nothing."""
    headers = {"x-api-key": pipe.coperniq.api_key}
    for invoice_id in list(pipe.coperniq.state.invoices):
        requests.delete(f"{pipe.coperniq.url}/invoices/{invoice_id}", headers=headers, timeout=T).raise_for_status()
    pipe.config.update(CONFIG, **config)
    pipe.run()
    if pipe.merge.app.assumptions.passthrough_visible_after_sync:  # Merge lists the new jobs at its next sync
        pipe.merge.app.sync()
    with pipe.ledger() as ledger:
        project = int(ledger.links("coperniq", "project")[0].source_id)
    inv = pipe.coperniq.app.add_invoice(
        project, LINES, status="SENT", issue_date="2025-06-01T00:00:00Z", description="Deposit"
    )
    pipe.run()
    return inv, invoice_link(pipe, inv)


def invoice_link(pipe: Pipeline, inv: dict[str, Any]) -> Link:
    with pipe.ledger() as ledger:
        link = ledger.get_link("coperniq", "invoice", str(inv["id"]))
    assert link is not None and link.target_id, "the invoice should be pushed"
    return link


def set_status(pipe: Pipeline, inv: dict[str, Any], status: str) -> None:
    """The invoice's status changed in Coperniq (its API, as a user's edit)."""
    resp = requests.patch(
        f"{pipe.coperniq.url}/invoices/{inv['id']}",
        json={"status": status},
        headers={"x-api-key": pipe.coperniq.api_key},
        timeout=T,
    )
    assert resp.status_code < 300, resp.text


def archive(pipe: Pipeline, inv: dict[str, Any]) -> None:
    """The invoice archived in Coperniq's UI (the sandbox has no API for it: `isArchived` set, `updatedAt` bumped)."""
    from sandbox.coperniq_state import iso

    app = pipe.coperniq.app
    with app.lock:
        row = app.state.invoices[inv["id"]]
        now = app.state.clock.tick()
        row["isArchived"] = True
        row["updatedAt"], row["_u"] = iso(now), now
        app.state.touch("invoices")


def admin(pipe: Pipeline, sub: str) -> Any:
    resp = requests.get(f"{pipe.merge.server.root_url}/__admin/{sub}", timeout=T)
    assert resp.status_code == 200, resp.text
    return resp.json()


def voids_of(pipe: Pipeline, merge_id: str | None) -> list[dict[str, Any]]:
    """Every void QuickBooks accepted for this invoice (a no-op re-void would be listed too)."""
    return [v for v in admin(pipe, "voids")["voids"] if v["entity"] == "Invoice" and v["merge_id"] == merge_id]


def rows_of(pipe: Pipeline, inv: dict[str, Any], action: str | None = None) -> list[dict[str, Any]]:
    """The invoice's integration-log rows, newest first."""
    return [r for r in log_rows(pipe, stream="invoices", action=action) if r["source_id"] == str(inv["id"])]


# ------------------------------------------------------------------------------------------------------ void
@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_a_declined_invoice_is_voided_once_and_a_rerun_writes_nothing(pipeline: Pipeline) -> None:
    inv, link = start(pipeline)
    set_status(pipeline, inv, "DECLINED")
    run = pipeline.run()
    [void] = voids_of(pipeline, link.target_id)
    assert void["changed"] and void["via"] == "passthrough"
    record = admin(pipeline, f"invoices/{link.target_id}")
    assert record["qbo"]["TotalAmt"] == 0 and record["qbo"]["PrivateNote"] == "Voided: Deposit"
    deferred = pipeline.merge.app.assumptions.passthrough_void_visible_after_sync
    assert record["pending_sync"] is deferred  # pessimistic: Merge still shows the invoice open
    assert (record["merge"]["status"] == "VOID") is not deferred
    [logged] = rows_of(pipeline, inv, "updated")
    assert logged["reason"] == "invoice is DECLINED in Coperniq; voided in QuickBooks"
    assert invoice_link(pipeline, inv).status == "voided"
    assert run.counts["invoices"]["failed"] == 0
    logged_before = len(rows_of(pipeline, inv))

    again = pipeline.run()
    assert again.writes == 0 and len(voids_of(pipeline, link.target_id)) == 1
    assert len(rows_of(pipeline, inv)) == logged_before
    if deferred:  # Merge's next sync shows the void: still nothing to do
        pipeline.merge.app.sync()
        assert admin(pipeline, f"invoices/{link.target_id}")["merge"]["status"] == "VOID"
        assert pipeline.run().writes == 0 and len(voids_of(pipeline, link.target_id)) == 1
        assert len(rows_of(pipeline, inv)) == logged_before


def test_an_archived_invoice_is_voided(pipeline: Pipeline) -> None:
    inv, link = start(pipeline)
    archive(pipeline, inv)
    pipeline.run()
    assert len(voids_of(pipeline, link.target_id)) == 1
    [logged] = rows_of(pipeline, inv, "updated")
    assert logged["reason"] == "invoice is archived in Coperniq; voided in QuickBooks"
    assert pipeline.run().writes == 0


@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_an_invoice_deleted_in_coperniq_is_voided_once_two_sweeps_miss_it(pipeline: Pipeline) -> None:
    pipeline.tap_config = {**pipeline.tap_config, "invoice_sweep_interval": 0}  # every run
    inv, link = start(pipeline)
    headers = {"x-api-key": pipeline.coperniq.api_key}
    requests.delete(f"{pipeline.coperniq.url}/invoices/{inv['id']}", headers=headers, timeout=T).raise_for_status()
    first = pipeline.run()  # one sweep's miss may be a row shifted between pages: nothing voided yet
    assert first.writes == 0 and voids_of(pipeline, link.target_id) == []
    with pipeline.ledger() as ledger:
        assert ledger.get_meta("forward:invoices_missing") == json.dumps([str(inv["id"])])
    second = pipeline.run()
    assert second.counts["invoices"]["failed"] == 0
    assert len(voids_of(pipeline, link.target_id)) == 1
    [logged] = rows_of(pipeline, inv, "updated")
    assert logged["reason"] == "invoice is deleted in Coperniq; voided in QuickBooks"
    assert invoice_link(pipeline, inv).status == "voided"
    assert pipeline.run().writes == 0 and len(voids_of(pipeline, link.target_id)) == 1


def test_a_sweep_missing_an_invoice_once_or_missing_most_of_them_voids_nothing(pipeline: Pipeline) -> None:
    inv, link = start(pipeline)
    others = [
        pipeline.coperniq.app.add_invoice(
            int(inv["record"]["id"]), LINES, status="SENT", issue_date="2025-06-02T00:00:00Z", description=f"n{i}"
        )
        for i in range(MASS_MIN + 1)
    ]
    pipeline.run()
    pushed = [str(i["id"]) for i in (inv, *others)]

    sweeps = iter(range(1, 10))

    def sweep(ids: list[str]) -> Any:
        return pipeline.run(lines=sweep_lines(ids, f"2026-01-0{next(sweeps)}T00:00:00+00:00"))

    sweep(pushed[1:])  # missed once ...
    sweep(pushed)  # ... and listed again: it was never deleted
    with pipeline.ledger() as ledger:
        assert ledger.get_meta("forward:invoices_missing") == "[]"
    sweep(pushed[1:])
    assert voids_of(pipeline, link.target_id) == []
    sweep([])  # every pushed invoice missing, twice: the key lost access, not a mass delete
    lost = sweep([])
    assert lost.writes == 0 and all(invoice_link(pipeline, i).status != "voided" for i in (inv, *others))
    assert any("taken as lost access" in w for w in lost.target.result.warnings)


def sweep_lines(ids: list[str], at: str) -> str:
    """What tap-coperniq's invoice sweep sends (tap_coperniq.streams.InvoiceSweepStream), and its STATE."""
    from tap_coperniq.tap import TapCoperniq

    schema = TapCoperniq(config={"api_key": "k"}, validate_config=False).streams["invoice_sweeps"].schema
    record = {"id": "invoices", "sweptAt": at, "count": len(ids), "invoiceIds": sorted(ids)}
    messages = [
        {"type": "SCHEMA", "stream": "invoice_sweeps", "schema": schema, "key_properties": ["id"]},
        {"type": "RECORD", "stream": "invoice_sweeps", "record": record},
        {"type": "STATE", "value": {"bookmarks": {"invoice_sweeps": {"last_sweep_at": at}}}},
    ]
    return "\n".join(json.dumps(m) for m in messages) + "\n"


def test_an_invoice_deleted_in_quickbooks_is_recorded_not_failed(pipeline: Pipeline) -> None:
    inv, link = start(pipeline)
    pipeline.merge.app.delete("invoices", link.target_id)  # the bookkeeper deleted it there
    set_status(pipeline, inv, "DECLINED")
    pipeline.run()
    assert voids_of(pipeline, link.target_id) == [] and not rows_of(pipeline, inv, "failed")
    [skip] = rows_of(pipeline, inv, "skipped")
    assert "no longer has invoice" in skip["reason"] and "nothing to void" in skip["reason"]
    assert invoice_link(pipeline, inv).status == "deleted"
    assert pipeline.run().writes == 0


# ------------------------------------------------------------------------------------------- other policies
def test_leave_logs_the_invoice_once_and_a_policy_change_voids_it(pipeline: Pipeline) -> None:
    inv, link = start(pipeline, void_policy="leave")
    total = admin(pipeline, f"invoices/{link.target_id}")["merge"]["total_amount"]
    set_status(pipeline, inv, "DECLINED")
    pipeline.run()
    [skip] = rows_of(pipeline, inv, "skipped")
    assert "now DECLINED in Coperniq; left unchanged in QuickBooks (void_policy: leave)" in skip["reason"]
    assert voids_of(pipeline, link.target_id) == []
    assert admin(pipeline, f"invoices/{link.target_id}")["merge"]["total_amount"] == total
    assert pipeline.run().writes == 0 and len(rows_of(pipeline, inv, "skipped")) == 1  # once per version

    pipeline.config["void_policy"] = "void"  # a setting that decides skipped rows: they are evaluated again
    pipeline.run()
    assert len(voids_of(pipeline, link.target_id)) == 1
    assert pipeline.run().writes == 0


def test_zero_and_note_zeroes_the_lines_with_a_note_and_restores_them_when_sent_again(pipeline: Pipeline) -> None:
    inv, link = start(pipeline, void_policy="zero_and_note")
    total = admin(pipeline, f"invoices/{link.target_id}")["merge"]["total_amount"]
    assert total > 0
    set_status(pipeline, inv, "DECLINED")
    pipeline.run()
    merge_invoice = admin(pipeline, f"invoices/{link.target_id}")["merge"]
    assert merge_invoice["total_amount"] == 0 and merge_invoice["status"] != "VOID"
    assert all(line["total_amount"] == 0 for line in merge_invoice["line_items"])
    assert merge_invoice["memo"] == "Zeroed by the Coperniq sync: invoice is DECLINED in Coperniq. Deposit"
    assert voids_of(pipeline, link.target_id) == []
    [logged] = rows_of(pipeline, inv, "updated")
    assert "lines were zeroed in QuickBooks with a note" in logged["reason"]
    assert invoice_link(pipeline, inv).status == "zeroed"
    assert pipeline.run().writes == 0

    set_status(pipeline, inv, "SENT")
    pipeline.run()
    merge_invoice = admin(pipeline, f"invoices/{link.target_id}")["merge"]
    assert merge_invoice["total_amount"] == total and merge_invoice["memo"] == "Deposit"
    restored = invoice_link(pipeline, inv)
    assert restored.status == "active" and restored.target_id == link.target_id
    assert "lines and amounts are back in QuickBooks" in rows_of(pipeline, inv, "updated")[0]["reason"]
    assert pipeline.run().writes == 0


# ----------------------------------------------------------------------------------------------- failures
@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_a_void_whose_answer_is_lost_is_read_back_not_voided_twice(pipeline: Pipeline) -> None:
    inv, link = start(pipeline)
    set_status(pipeline, inv, "DECLINED")
    pipeline.merge.faults.update(lost_response_rate=1.0, only_paths=["operation=void"])
    pipeline.run()
    pipeline.merge.faults.reset()
    [void] = voids_of(pipeline, link.target_id)
    assert void["changed"]
    assert not rows_of(pipeline, inv, "failed")
    [logged] = rows_of(pipeline, inv, "updated")
    assert "voided in QuickBooks; its answer was lost" in logged["reason"]
    assert pipeline.run().writes == 0 and len(voids_of(pipeline, link.target_id)) == 1
    assert len(rows_of(pipeline, inv, "updated")) == 1


def test_a_crash_between_the_void_and_the_ledger_is_settled_by_reading_quickbooks(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv, link = start(pipeline)
    set_status(pipeline, inv, "DECLINED")
    with crash_before_recording_voids(monkeypatch), pytest.raises(Crash):
        pipeline.run()
    with pipeline.ledger() as ledger:
        assert [key for key, _ in ledger.pending_intents("forward:void:")] == [f"forward:void:invoice:{inv['id']}"]
        assert ledger.get_link("coperniq", "invoice", str(inv["id"])).status == "active"  # type: ignore[union-attr]
    assert len(voids_of(pipeline, link.target_id)) == 1

    pipeline.run()
    assert len(voids_of(pipeline, link.target_id)) == 1  # read back, not voided again
    [logged] = rows_of(pipeline, inv, "updated")
    assert "voided in QuickBooks by a run that stopped before recording it" in logged["reason"]
    assert not rows_of(pipeline, inv, "failed")
    with pipeline.ledger() as ledger:
        assert ledger.pending_intents("forward:") == []
    assert invoice_link(pipeline, inv).status == "voided"
    assert pipeline.run().writes == 0


def test_a_stale_sync_token_is_read_again_and_the_void_retried_once(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv, link = start(pipeline)
    set_status(pipeline, inv, "DECLINED")
    read, void = MergeClient.qbo_transaction, MergeClient.void_transaction
    edited: list[str] = []
    tokens: list[str] = []

    def read_then_edit(self: MergeClient, entity: str, qbo_id: str) -> dict[str, Any] | None:
        record = read(self, entity, qbo_id)
        if not edited:  # the bookkeeper edits the invoice between our read and our void: its SyncToken moves on
            edited.append(qbo_id)
            pipeline.merge.app.update("invoices", str(link.target_id), memo="Deposit (edited in QuickBooks)")
        return record

    def counted(self: MergeClient, entity: str, qbo_id: str, sync_token: str) -> Any:
        tokens.append(sync_token)
        return void(self, entity, qbo_id, sync_token)

    monkeypatch.setattr(MergeClient, "qbo_transaction", read_then_edit)
    monkeypatch.setattr(MergeClient, "void_transaction", counted)
    pipeline.run()
    assert len(tokens) == 2 and tokens[0] != tokens[1]  # 5010 on the first, read again, voided with the new one
    assert len(voids_of(pipeline, link.target_id)) == 1 and not rows_of(pipeline, inv, "failed")
    assert rows_of(pipeline, inv, "updated")[0]["reason"] == "invoice is DECLINED in Coperniq; voided in QuickBooks"
    monkeypatch.undo()
    assert pipeline.run().writes == 0


@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_a_declined_invoice_with_a_payment_applied(pipeline: Pipeline) -> None:
    """Pessimistic (`void_refused_with_payments`): QuickBooks refuses the void; a failed row names the payment and is
    retried until the bookkeeper voids the payment there. Optimistic: voided, the payment stays as credit."""
    inv, link = start(pipeline)
    pay = pipeline.coperniq.app.add_payment(inv["id"], 100.0)
    pipeline.run()
    with pipeline.ledger() as ledger:
        pay_link = ledger.get_link("coperniq", "payment", str(pay["id"]))
    assert pay_link is not None and pay_link.target_remote_id
    named = f"QuickBooks payment {pay_link.target_remote_id} (Coperniq payment {pay['id']})"
    set_status(pipeline, inv, "DECLINED")
    pipeline.run()
    if pipeline.merge.app.assumptions.void_refused_with_payments:
        assert voids_of(pipeline, link.target_id) == []
        [failed] = rows_of(pipeline, inv, "failed")
        assert "QuickBooks refused to void invoice" in failed["reason"] and named in failed["reason"]
        assert "retried next run" in failed["reason"]
        assert invoice_link(pipeline, inv).status == "active"
        pipeline.run()  # retried: still refused, nothing voided
        assert len(rows_of(pipeline, inv, "failed")) == 2 and voids_of(pipeline, link.target_id) == []
        pipeline.merge.app.void_payment(str(pay_link.target_id))  # the bookkeeper voids the payment in QuickBooks
        pipeline.run()
        assert len(voids_of(pipeline, link.target_id)) == 1
        assert rows_of(pipeline, inv, "updated")[0]["reason"] == "invoice is DECLINED in Coperniq; voided in QuickBooks"
    else:
        assert len(voids_of(pipeline, link.target_id)) == 1
        [logged] = rows_of(pipeline, inv, "updated")
        assert f"{named} stays in QuickBooks as the customer's unapplied credit" in logged["reason"]
        payment = admin(pipeline, f"payments/{pay_link.target_id}")
        assert payment["merge"]["applied_to_lines"] == [] and payment["qbo"]["UnappliedAmt"] == 100.0
    assert invoice_link(pipeline, inv).status == "voided"
    assert pipeline.run().writes == 0


# ------------------------------------------------------------------------------------- sent again, dry run
@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_an_invoice_sent_again_after_its_void_is_created_anew_under_a_suffixed_number(pipeline: Pipeline) -> None:
    inv, first = start(pipeline)
    set_status(pipeline, inv, "DRAFT")  # back to draft: out of the books
    pipeline.run()
    assert len(voids_of(pipeline, first.target_id)) == 1
    assert rows_of(pipeline, inv, "updated")[0]["reason"] == "invoice is DRAFT in Coperniq; voided in QuickBooks"

    set_status(pipeline, inv, "SENT")
    pipeline.run()
    second = invoice_link(pipeline, inv)
    assert second.target_id != first.target_id and second.status == "active"
    assert admin(pipeline, f"invoices/{second.target_id}")["merge"]["number"] == f"CQ-{inv['uid']}-2"
    assert admin(pipeline, f"invoices/{first.target_id}")["qbo"]["TotalAmt"] == 0  # the voided one stays voided
    created = rows_of(pipeline, inv, "created")[0]["reason"]
    assert created.startswith(f"invoice #CQ-{inv['uid']}-2: ") and "QuickBooks cannot un-void" in created
    assert pipeline.run().writes == 0

    set_status(pipeline, inv, "DECLINED")
    pipeline.run()
    set_status(pipeline, inv, "SENT")
    pipeline.run()
    third = invoice_link(pipeline, inv)
    assert admin(pipeline, f"invoices/{third.target_id}")["merge"]["number"] == f"CQ-{inv['uid']}-3"
    assert len(voids_of(pipeline, first.target_id)) == 1 and len(voids_of(pipeline, second.target_id)) == 1
    assert voids_of(pipeline, third.target_id) == [] and not rows_of(pipeline, inv, "failed")
    assert pipeline.run().writes == 0


def test_dry_run_plans_the_void_and_writes_nothing(pipeline: Pipeline) -> None:
    inv, link = start(pipeline)
    set_status(pipeline, inv, "DECLINED")
    dry = pipeline.run(dry_run=True)
    assert dry.writes == 0 and voids_of(pipeline, link.target_id) == []
    [planned] = rows_of(pipeline, inv, "planned")
    assert planned["reason"] == "would be updated: invoice is DECLINED in Coperniq; would be voided in QuickBooks"
    assert [p.reason for p in dry.target.result.plan if p.source_id == str(inv["id"])]  # type: ignore[union-attr]
    assert invoice_link(pipeline, inv).status == "active"
    with pipeline.ledger() as ledger:
        assert ledger.pending_intents("forward:") == []

    pipeline.run()  # the real run does it (the row stayed pending)
    assert len(voids_of(pipeline, link.target_id)) == 1


def test_void_policy_is_validated_naming_the_setting() -> None:
    with pytest.raises(ConfigValidationError) as info:
        TargetQuickbooksMerge(config={"merge_api_key": "k", "account_token": "t", "void_policy": "delete"})
    assert "void_policy" in str(info.value.errors) or "void_policy" in str(info.value)
