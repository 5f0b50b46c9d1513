"""Ledger behaviour that targets rely on: links both ways, staging status rules, intents, log and run counts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sync_ledger import Ledger, LedgerError, LedgerNotFoundError, Link, fingerprint

from .places import BACKENDS, raw_sql


@pytest.fixture(params=BACKENDS)
def ledger_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Every test here runs on both backends: a DuckDB file, and a fresh PostgreSQL database."""
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return tmp_path / ".meltano" / "sync-ledger.duckdb"  # parent does not exist yet: Ledger creates it


@pytest.fixture
def ledger(ledger_path: Path | str):
    with Ledger(ledger_path) as led:
        yield led


def _link(source_id: str = "101", **kw) -> Link:
    base = {
        "source_system": "coperniq",
        "source_type": "account",
        "source_id": source_id,
        "target_system": "quickbooks",
        "target_type": "customer",
        "target_id": f"uuid-{source_id}",
        "target_remote_id": f"qbo-{source_id}",
        "fingerprint": fingerprint({"id": source_id}),
    }
    base.update(kw)
    return Link(**base)


def test_meta_with_prefix_takes_the_prefix_literally(ledger: Ledger) -> None:
    ledger.set_meta("forward:credit_open:7", "5")
    ledger.set_meta("forward:credit_open:12", "9")
    ledger.set_meta("forward:credit_openX1", "no: not the prefix")  # `_` would match any character in LIKE
    ledger.set_meta("forward:credit_applied:7", "inv-1")
    assert ledger.meta_with_prefix("forward:credit_open:") == {
        "forward:credit_open:12": "9",
        "forward:credit_open:7": "5",
    }
    assert ledger.meta_with_prefix("forward:credit_open_") == {}
    assert ledger.meta_with_prefix("nothing") == {}


def test_set_metas_inserts_changes_and_deletes_in_one_call_and_get_metas_reads_them(ledger: Ledger) -> None:
    ledger.set_metas({"forward:payment_set:1": '["10"]', "forward:payment_set:2": '["20", "21"]'})
    ledger.set_metas(
        {
            "forward:payment_set:1": None,  # an empty list: the key goes
            "forward:payment_set:2": '["21"]',  # changed
            "forward:payment_set:3": '["30"]',  # new
            "forward:payment_set:4": None,  # never set: nothing to delete
        }
    )
    assert ledger.get_metas(f"forward:payment_set:{i}" for i in range(1, 5)) == {
        "forward:payment_set:2": '["21"]',
        "forward:payment_set:3": '["30"]',
    }
    assert ledger.get_meta("forward:payment_set:1") is None
    ledger.set_metas({})  # nothing: no transaction, no error
    assert ledger.get_metas([]) == {}


def test_requeue_children_wakes_the_rows_of_parents_changed_since(ledger: Ledger) -> None:
    src = "coperniq"
    ledger.stage(src, "projects", [("1", {"id": 1, "w": "a"}), ("2", {"id": 2, "w": "a"})])
    invoices = [("10", {"record": {"id": 1}}), ("11", {"record": {"id": "1"}}), ("20", {"record": {"id": 2}})]
    ledger.stage(src, "invoices", [*invoices, ("30", {"record": None})])
    for rid in ("10", "20", "30"):
        ledger.mark_staged(src, "invoices", rid, "done")
    ledger.mark_staged(src, "invoices", "11", "failed")  # not in the statuses asked for: left as it is
    ledger.flush()
    since = datetime.now(UTC)
    ledger.stage(src, "projects", [("1", {"id": 1, "w": "b"})])  # project 1 changed after `since`

    def statuses() -> list[str]:
        return [(ledger.staged_status(src, "invoices", r) or ("?",))[0] for r in ("10", "11", "20", "30")]

    assert ledger.requeue_children(src, "invoices", "record.id", "projects", since, ("done",)) == 1
    assert statuses() == ["pending", "failed", "done", "done"]
    assert ledger.requeue_children(src, "invoices", "record.id", "projects", datetime.now(UTC), ("done",)) == 0
    assert ledger.requeue_children(src, "invoices", "record.id", "projects", None, ("done",)) == 1  # ever: 20
    assert statuses() == ["pending", "failed", "pending", "done"]  # 30 names no project
    with pytest.raises(ValueError, match="dotted field"):
        ledger.requeue_children(src, "invoices", "record.id') OR ('1", "projects", None, ("done",))


def test_linked_ids_not_in_lists_what_a_sweep_of_the_source_missed(ledger: Ledger) -> None:
    ledger.upsert_links([_link(i, source_type="invoice") for i in ("1", "2", "3")] + [_link("9")])
    ledger.upsert_link(_link("4", source_type="invoice", status="voided"))
    assert ledger.linked_ids_not_in("coperniq", "invoice", ["1", 3, "77"]) == (4, ["2", "4"])
    assert ledger.linked_ids_not_in("coperniq", "invoice", [], skip_status=("voided",)) == (3, ["1", "2", "3"])
    assert ledger.linked_ids_not_in("coperniq", "project", ["1"]) == (0, [])


def test_schema_and_meta_created(ledger: Ledger, ledger_path: Path | str) -> None:
    assert raw_sql(ledger_path, "SELECT value FROM meta WHERE key = 'schema_version'") == [("5",)]
    assert ledger.get_meta("schema_version") == "5"
    ledger.set_meta("disconnected", "2025-01-01T00:00:00Z")
    assert ledger.get_meta("disconnected") == "2025-01-01T00:00:00Z"
    ledger.set_meta("disconnected", None)
    assert ledger.get_meta("disconnected") is None
    assert ledger.get_meta("never-set") is None


def test_link_round_trip_and_lookups(ledger: Ledger) -> None:
    ledger.upsert_link(_link("101"))
    ledger.upsert_link(_link("102", origin="quickbooks", status="voided", target_remote_id=None))

    got = ledger.get_link("coperniq", "account", "101")
    assert got is not None
    assert (got.target_id, got.target_remote_id, got.origin, got.status) == (
        "uuid-101",
        "qbo-101",
        "coperniq",
        "active",
    )
    assert got.fingerprint == fingerprint({"id": "101"})
    assert got.updated_at is not None and got.updated_at.tzinfo == UTC

    assert ledger.get_link("coperniq", "account", 101) == got  # int ids are accepted and stringified
    assert ledger.get_link("coperniq", "project", "101") is None  # type is part of the key
    assert ledger.get_link_by_target("quickbooks", "customer", "uuid-102").source_id == "102"
    assert ledger.get_link_by_target("quickbooks", "job", "uuid-102") is None
    assert ledger.get_link_by_remote("quickbooks", "customer", "qbo-101").source_id == "101"
    assert ledger.get_link_by_remote("quickbooks", "customer", "qbo-102") is None
    assert [ln.source_id for ln in ledger.links("coperniq", "account")] == ["101", "102"]
    assert ledger.links("quickbooks") == []


def test_upsert_replaces_and_reindexes(ledger: Ledger) -> None:
    ledger.upsert_link(_link("101"))
    ledger.upsert_link(_link("101", target_id="uuid-new", target_remote_id="qbo-new", fingerprint="f2"))
    assert len(ledger.links()) == 1
    assert ledger.get_link("coperniq", "account", "101").fingerprint == "f2"
    assert ledger.get_link_by_target("quickbooks", "customer", "uuid-101") is None  # old target id forgotten
    assert ledger.get_link_by_remote("quickbooks", "customer", "qbo-101") is None
    assert ledger.get_link_by_target("quickbooks", "customer", "uuid-new").source_id == "101"


def test_returned_links_are_copies(ledger: Ledger) -> None:
    ledger.upsert_link(_link("101"))
    got = ledger.get_link("coperniq", "account", "101")
    got.target_id = "mutated-but-not-saved"
    assert ledger.get_link("coperniq", "account", "101").target_id == "uuid-101"
    assert ledger.get_link_by_target("quickbooks", "customer", "mutated-but-not-saved") is None


def test_link_requires_key_fields(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="source_id"):
        ledger.upsert_link(_link(""))


def test_reopen_persists_everything(ledger_path: Path | str) -> None:
    with Ledger(ledger_path) as led:
        led.upsert_link(_link("7"))
        led.stage("coperniq", "projects", [("1", {"id": 1, "name": "Roof"})])
        led.mark_staged("coperniq", "projects", "1", "failed", "HTTP 400")
        run = led.start_run("forward")
        led.log(run, direction="forward", stream="projects", source_id="1", action="failed", reason="HTTP 400")
        led.begin_intent("forward:invoice:9", {"name": "x"})
    with Ledger(ledger_path) as led:
        assert led.get_link("coperniq", "account", "7").target_id == "uuid-7"
        assert led.staged("coperniq", "projects", "1") == {"id": 1, "name": "Roof"}
        assert led.staged_status("coperniq", "projects", "1") == ("failed", 1, "HTTP 400")
        assert [r["reason"] for r in led.log_rows(run_id=run)] == ["HTTP 400"]
        assert led.pending_intents() == [("forward:invoice:9", {"name": "x"})]
    # and the data is plain SQL for the CLI and dbt
    assert raw_sql(ledger_path, "SELECT status, attempts FROM staging") == [("failed", 1)]
    assert raw_sql(ledger_path, "SELECT count(*) FROM sync_log") == [(1,)]


def test_staging_status_semantics(ledger: Ledger) -> None:
    ledger.stage("coperniq", "invoices", [("1", {"id": 1, "amount": 10}), ("2", {"id": 2, "amount": 20})])
    assert {r[0]: (r[2], r[3]) for r in ledger.iter_staged("coperniq", "invoices")} == {
        "1": ("pending", 0),
        "2": ("pending", 0),
    }

    ledger.mark_staged("coperniq", "invoices", "1", "done")
    ledger.mark_staged("coperniq", "invoices", "2", "failed", "no customer")
    ledger.mark_staged("coperniq", "invoices", "2", "failed", "still no customer")
    assert ledger.staged_status("coperniq", "invoices", "2") == ("failed", 2, "still no customer")

    # unchanged payloads keep their status (key order does not matter: fingerprint is canonical)
    ledger.stage("coperniq", "invoices", [("1", {"amount": 10, "id": 1}), ("2", {"id": 2, "amount": 20})])
    assert ledger.staged_status("coperniq", "invoices", "1") == ("done", 0, None)
    assert ledger.staged_status("coperniq", "invoices", "2") == ("failed", 2, "still no customer")

    # a changed payload goes back to pending with attempts reset
    ledger.stage("coperniq", "invoices", [("2", {"id": 2, "amount": 25})])
    assert ledger.staged_status("coperniq", "invoices", "2") == ("pending", 0, None)
    assert ledger.staged("coperniq", "invoices", "2") == {"id": 2, "amount": 25}

    assert [r[0] for r in ledger.iter_staged("coperniq", "invoices", status="pending")] == ["2"]
    assert [r[0] for r in ledger.iter_staged("coperniq", "invoices", status=("done", "pending"))] == ["1", "2"]
    assert ledger.staged("coperniq", "invoices", "3") is None
    assert ledger.staged("coperniq", "payments", "1") is None
    assert ledger.staged("quickbooks", "invoices", "1") is None  # source system is part of the key


def test_staging_survives_reopen_with_status(ledger_path: Path | str) -> None:
    """Buffered mark_staged must reach the file, and a stage() after it must still reset status."""
    with Ledger(ledger_path) as led:
        led.stage("coperniq", "payments", [(str(i), {"id": i}) for i in range(10)])
        for i in range(10):
            led.mark_staged("coperniq", "payments", str(i), "done")
        led.stage("coperniq", "payments", [("3", {"id": 3, "amount": 1})])
    with Ledger(ledger_path) as led:
        statuses = {r[0]: r[2] for r in led.iter_staged("coperniq", "payments")}
    assert statuses["3"] == "pending"
    assert sorted(k for k, v in statuses.items() if v == "done") == [str(i) for i in range(10) if i != 3]


def test_stage_duplicate_ids_in_one_batch_last_wins(ledger: Ledger) -> None:
    ledger.stage("coperniq", "projects", [("5", {"v": 1}), ("5", {"v": 2})])
    assert ledger.staged("coperniq", "projects", "5") == {"v": 2}


def test_iter_staged_allows_marking_while_iterating(ledger: Ledger) -> None:
    ledger.stage("coperniq", "projects", [(str(i), {"id": i}) for i in range(1, 12)])
    seen = []
    for record_id, payload, status, attempts in ledger.iter_staged("coperniq", "projects", status="pending"):
        assert payload == {"id": int(record_id)} and status == "pending" and attempts == 0
        ledger.mark_staged("coperniq", "projects", record_id, "done")
        seen.append(record_id)
    assert seen == [str(i) for i in range(1, 12)]  # numeric ids in numeric order
    assert list(ledger.iter_staged("coperniq", "projects", status="pending")) == []


def test_mark_staged_validates(ledger: Ledger) -> None:
    ledger.stage("coperniq", "projects", [("1", {})])
    with pytest.raises(ValueError, match="staging status"):
        ledger.mark_staged("coperniq", "projects", "1", "bogus")
    with pytest.raises(KeyError, match="never staged"):
        ledger.mark_staged("coperniq", "projects", "404", "done")


def test_intents(ledger: Ledger) -> None:
    ledger.begin_intent("forward:customer:1", {"name": "Acme"})
    ledger.begin_intent("forward:invoice:2", {"number": "INV-2"})
    ledger.begin_intent("reverse:payment:3", {"amount": 5})
    assert [k for k, _ in ledger.pending_intents()] == ["forward:customer:1", "forward:invoice:2", "reverse:payment:3"]
    assert ledger.pending_intents("forward:") == [
        ("forward:customer:1", {"name": "Acme"}),
        ("forward:invoice:2", {"number": "INV-2"}),
    ]
    ledger.end_intent("forward:customer:1")
    ledger.end_intent("never-begun")  # idempotent
    assert [k for k, _ in ledger.pending_intents("forward:")] == ["forward:invoice:2"]
    assert ledger.pending_intents("%") == []  # prefix is literal, not a LIKE pattern


def test_batched_intents_begin_in_one_commit_and_replace_payloads(ledger: Ledger) -> None:
    ledger.begin_intent("forward:customer:1", {"name": "Old"})
    ledger.begin_intents(
        [
            ("forward:customer:1", {"name": "Acme (#2)"}),
            ("forward:invoice:2", {"number": "2"}),
            ("forward:invoice:3", {"number": "3"}),
        ]
    )
    ledger.begin_intents([])
    assert dict(ledger.pending_intents()) == {
        "forward:customer:1": {"name": "Acme (#2)"},
        "forward:invoice:2": {"number": "2"},
        "forward:invoice:3": {"number": "3"},
    }

    def crash_mid_batch() -> None:
        with ledger.transaction():
            ledger.begin_intents([("forward:payment:4", {}), ("forward:payment:5", {})])
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError):  # all or nothing: a batch is never half durable
        crash_mid_batch()
    assert not any(k.startswith("forward:payment") for k, _ in ledger.pending_intents())
    ledger.end_intents(["forward:invoice:2", "forward:customer:1", "never-begun", "forward:invoice:2"])
    assert [k for k, _ in ledger.pending_intents()] == ["forward:invoice:3"]


def test_transaction_groups_writes_and_rolls_back(ledger: Ledger) -> None:
    ledger.begin_intent("k", {"a": 1})

    def crash_before_commit() -> None:
        with ledger.transaction():
            ledger.upsert_link(_link("9"))
            ledger.end_intent("k")
            raise RuntimeError("crash between API call and commit")

    with pytest.raises(RuntimeError):
        crash_before_commit()
    assert ledger.get_link("coperniq", "account", "9") is None  # mirror not touched by a rolled-back write
    assert [k for k, _ in ledger.pending_intents()] == ["k"]
    with ledger.transaction():
        ledger.upsert_link(_link("9"))
        ledger.end_intent("k")
    assert ledger.get_link("coperniq", "account", "9") is not None
    assert ledger.pending_intents() == []


def test_log_and_finish_run_counts(ledger: Ledger) -> None:
    run = ledger.start_run("forward", dry_run=True)
    other = ledger.start_run("reverse")
    for i, action in enumerate(["created", "created", "skipped", "failed"]):
        ledger.log(run, direction="forward", stream="accounts", source_id=str(i), action=action)
    ledger.log(run, direction="forward", stream="invoices", source_id="9", action="planned", target_id="t9")
    ledger.log(other, direction="reverse", stream="payments", source_id="p", action="created")
    counts = ledger.finish_run(run, status="partial")
    assert counts == {"accounts": {"created": 2, "skipped": 1, "failed": 1}, "invoices": {"planned": 1}}
    runs = {r["run_id"]: r for r in ledger.runs()}
    assert runs[run]["counts"] == counts and runs[run]["status"] == "partial" and runs[run]["dry_run"] is True
    assert runs[run]["finished_at"] >= runs[run]["started_at"]
    assert runs[other]["status"] == "running" and runs[other]["finished_at"] is None
    assert ledger.finish_run(other) == {"payments": {"created": 1}}
    with pytest.raises(KeyError):
        ledger.finish_run("no-such-run")
    with pytest.raises(ValueError, match="action"):
        ledger.log(run, direction="forward", stream="accounts", source_id="1", action="exploded")


def test_log_rows_filters_newest_first(ledger: Ledger) -> None:
    r1 = ledger.start_run("forward")
    r2 = ledger.start_run("forward")
    for i in range(5):
        ledger.log(r1, direction="forward", stream="accounts", source_id=str(i), action="created")
    ledger.log(
        r1,
        direction="forward",
        stream="projects",
        source_id="p1",
        action="failed",
        reason="HTTP 400: bad",
        request_id="req-1",
    )
    ledger.log(r2, direction="forward", stream="accounts", source_id="a", action="skipped")

    rows = ledger.log_rows()
    assert [r["source_id"] for r in rows] == ["a", "p1", "4", "3", "2", "1", "0"]
    assert [r["source_id"] for r in ledger.log_rows(limit=2)] == ["a", "p1"]
    assert [r["source_id"] for r in ledger.log_rows(run_id=r1, stream="accounts")] == ["4", "3", "2", "1", "0"]
    assert [r["source_id"] for r in ledger.log_rows(action="skipped")] == ["a"]
    failed = ledger.log_rows(failed_only=True)
    assert len(failed) == 1
    assert failed[0]["reason"] == "HTTP 400: bad" and failed[0]["request_id"] == "req-1"
    assert failed[0]["logged_at"].tzinfo == UTC
    assert ledger.log_rows(run_id=r2, failed_only=True) == []


def test_log_rows_direction_filter_is_applied_before_the_limit(ledger: Ledger) -> None:
    """`coperniq-qbo log --direction reverse --limit 2` must find an older reverse row behind newer forward ones."""
    rev = ledger.start_run("reverse")
    ledger.log(rev, direction="reverse", stream="invoices", source_id="qbo-1", action="created")
    fwd = ledger.start_run("forward")
    for i in range(5):
        ledger.log(fwd, direction="forward", stream="projects", source_id=str(i), action="skipped")
    assert [r["source_id"] for r in ledger.log_rows(direction="reverse", limit=2)] == ["qbo-1"]
    assert len(ledger.log_rows(direction="forward", limit=2)) == 2


def test_runs_newest_first(ledger: Ledger) -> None:
    ids = [ledger.start_run("forward") for _ in range(3)]
    assert [r["run_id"] for r in ledger.runs()] == ids[::-1]
    assert len(ledger.runs(limit=2)) == 2


def test_run_statuses_tell_the_truth(ledger: Ledger) -> None:
    """A killed run is `interrupted` once the next run of its direction starts; a refused one is recorded with its
    reason; a dry run is never a successful sync; `last_run(successful=True)` skips all of those."""
    good = ledger.start_run("forward")
    ledger.finish_run(good, "success")
    killed = ledger.start_run("forward")  # never finished: the process was killed
    reverse = ledger.start_run("reverse")  # another direction's running run is left alone
    dry = ledger.start_run("forward", dry_run=True)
    ledger.finish_run(dry, "success")
    refused = ledger.refuse_run("forward", "trigger_phases is not set")
    status = {r["run_id"]: r["status"] for r in ledger.runs()}
    assert status == {good: "success", killed: "interrupted", reverse: "running", dry: "dry-run", refused: "refused"}
    assert ledger.last_run()["run_id"] == refused
    assert ledger.last_run(successful=True)["run_id"] == good
    assert ledger.last_run(direction="reverse")["run_id"] == reverse
    [row] = ledger.log_rows(run_id=refused)
    assert row["stream"] == "run" and row["action"] == "failed" and "trigger_phases" in row["reason"]


def test_read_only(ledger_path: Path | str) -> None:
    with pytest.raises(LedgerNotFoundError, match="ledger_path" if isinstance(ledger_path, Path) else "run a sync"):
        Ledger(ledger_path, read_only=True)
    with Ledger(ledger_path) as led:
        led.upsert_link(_link("1"))
    with Ledger(ledger_path, read_only=True) as ro:
        assert ro.get_link("coperniq", "account", "1") is not None
        with pytest.raises(LedgerError, match="read-only"):
            ro.set_meta("x", "y")
        with pytest.raises(LedgerError, match="read-only"):
            ro.log("r", direction="forward", stream="s", source_id="1", action="created")


def test_handles_in_one_process_share_state(ledger_path: Path | str) -> None:
    """A CLI or test opening the ledger while a target holds it in-process sees the target's writes."""
    with Ledger(ledger_path) as a:
        run = a.start_run("forward")
        a.log(run, direction="forward", stream="s", source_id="1", action="created")
        with Ledger(ledger_path, read_only=True) as b:
            assert b.log_rows(run_id=run)[0]["source_id"] == "1"  # buffered row flushed for the reader
            a.upsert_link(_link("5"))
            assert b.get_link("coperniq", "account", "5") is not None
        a.upsert_link(_link("6"))  # a still usable after b closed
    with Ledger(ledger_path) as c:
        assert len(c.links()) == 2


def test_closed_handle_refuses_writes(ledger_path: Path | str) -> None:
    led = Ledger(ledger_path)
    led.close()
    led.close()  # idempotent
    with pytest.raises(LedgerError, match="closed"):
        led.set_meta("a", "b")


def test_upsert_links_bulk(ledger_path: Path | str) -> None:
    with Ledger(ledger_path) as led:
        led.upsert_link(_link("1"))
        led.upsert_links([_link("1", target_id="uuid-1b"), _link("2"), _link("3"), _link("3", fingerprint="last")])
        led.upsert_links([])
        assert [ln.target_id for ln in led.links()] == ["uuid-1b", "uuid-2", "uuid-3"]
        assert led.get_link("coperniq", "account", "3").fingerprint == "last"
        assert led.get_link_by_target("quickbooks", "customer", "uuid-1") is None
    with Ledger(ledger_path) as led:  # the file agrees with the mirror
        assert [(ln.source_id, ln.target_id, ln.fingerprint) for ln in led.links()] == [
            ("1", "uuid-1b", fingerprint({"id": "1"})),
            ("2", "uuid-2", fingerprint({"id": "2"})),
            ("3", "uuid-3", "last"),
        ]


def test_log_buffer_flushes_by_size_and_age(ledger_path: Path | str) -> None:
    def on_disk() -> int:
        return int(raw_sql(ledger_path, "SELECT count(*) FROM sync_log")[0][0])

    with Ledger(ledger_path, flush_rows=3, flush_interval=0.3) as led:
        run = led.start_run("forward")
        led.log(run, direction="forward", stream="s", source_id="1", action="skipped")
        led.log(run, direction="forward", stream="s", source_id="2", action="skipped")
        assert on_disk() == 0  # buffered
        led.log(run, direction="forward", stream="s", source_id="3", action="skipped")
        assert on_disk() == 3  # size reached
        led.log(run, direction="forward", stream="s", source_id="4", action="skipped")
        import time

        time.sleep(0.35)
        led.log(run, direction="forward", stream="s", source_id="5", action="skipped")
        assert on_disk() == 5  # age reached
        led.log(run, direction="forward", stream="s", source_id="6", action="skipped")
        led.flush()
        assert on_disk() == 6


def test_a_version_1_ledger_is_migrated_in_place(ledger_path: Path | str) -> None:
    """A ledger written before staging.waits_on existed: read-only opens (the CLI) still read it, the first
    writable open migrates it, and its rows keep their statuses (the same versioned migration on both backends)."""
    path = ledger_path
    with Ledger(path) as led:
        led.stage("coperniq", "invoices", [("1", {"n": 1}), ("2", {"n": 2})])
        led.mark_staged("coperniq", "invoices", "2", "skipped", "old reason")
    raw_sql(path, "ALTER TABLE staging DROP COLUMN waits_on")
    raw_sql(path, "UPDATE meta SET value = '1' WHERE key = 'schema_version'")

    with Ledger(path, read_only=True) as led:
        assert led.staged_status("coperniq", "invoices", "2") == ("skipped", 0, "old reason")
        assert led.get_meta("schema_version") == "1"
    with Ledger(path) as led:
        assert led.get_meta("schema_version") == "5"
        led.mark_staged("coperniq", "invoices", "1", "waiting", "no project", waits_on="link:project:7")
        assert led.wake("coperniq", ["link:project:7"]) == 1
        assert led.staged_status("coperniq", "invoices", "1") == ("pending", 0, "no project")
        assert led.staged_status("coperniq", "invoices", "2") == ("skipped", 0, "old reason")


def index_names_sql(place: Path | str) -> str:
    if str(place).startswith("postgresql://"):
        return "SELECT indexname FROM pg_indexes WHERE tablename = 'id_map' AND schemaname = current_schema()"
    return "SELECT index_name FROM duckdb_indexes() WHERE table_name = 'id_map'"


def test_a_version_4_ledger_gets_target_hashes_and_its_links_are_found_by_target(ledger_path: Path | str) -> None:
    """Version 5 indexes id_map by a 64-bit hash of target_id: a ledger written before it is read as it is by a
    read-only open, and the first writable open fills the hash of every link (lookups by target id find them)."""
    path = ledger_path
    with Ledger(path) as led:
        led.upsert_links([_link(str(i), target_id=f"merge-{i}") for i in range(3)])
        led.upsert_link(_link("9", target_id=None))
    raw_sql(path, "DROP INDEX IF EXISTS id_map_target_hash")
    raw_sql(path, "DROP INDEX IF EXISTS id_map_remote")
    raw_sql(path, "ALTER TABLE id_map DROP COLUMN target_hash")
    raw_sql(path, "CREATE INDEX id_map_target ON id_map (target_id)")
    raw_sql(path, "UPDATE meta SET value = '4' WHERE key = 'schema_version'")

    with Ledger(path, read_only=True) as led:
        found = led.get_link_by_target("quickbooks", "customer", "merge-1")
        assert found is not None and found.source_id == "1" and led.is_linked_target("quickbooks", "merge-2")
        assert set(led.links_to("quickbooks", "customer", ["merge-0", "merge-2", "nope"])) == {"merge-0", "merge-2"}
    with Ledger(path) as led:
        assert led.get_meta("schema_version") == "5"
        found = led.get_link_by_target("quickbooks", "customer", "merge-1")
        assert found is not None and found.source_id == "1"
        assert set(led.links_to("quickbooks", "customer", ["merge-0", "merge-2", "nope"])) == {"merge-0", "merge-2"}
        assert not led.is_linked_target("quickbooks", "nope")
        led.upsert_link(_link("1", target_id="merge-1b"))  # a link moved to another target is found there only
        assert led.get_link_by_target("quickbooks", "customer", "merge-1") is None
        assert led.is_linked_target("quickbooks", "merge-1b")
    hashes = raw_sql(path, "SELECT source_id, target_hash FROM id_map ORDER BY source_id")
    assert [sid for sid, h in hashes if h is None] == ["9"]  # (no target id, no hash)
    indexes = {name for (name,) in raw_sql(path, index_names_sql(path))}
    assert {"id_map_target_hash", "id_map_remote"} <= indexes and "id_map_target" not in indexes


def test_waiting_rows_wake_on_their_key_or_when_their_record_arrives(ledger: Ledger, ledger_path: Path | str) -> None:
    ledger.stage("coperniq", "invoices", [("1", {"n": 1}), ("2", {"n": 2}), ("3", {"n": 3})])
    ledger.mark_staged("coperniq", "invoices", "1", "waiting", "project 7 not synced", waits_on="link:project:7")
    ledger.mark_staged("coperniq", "invoices", "2", "waiting", "project 8 not received", waits_on="record:projects:8")
    ledger.mark_staged("coperniq", "invoices", "3", "waiting", "Merge has not synced the job")
    ledger.flush()
    with Ledger(ledger_path) as again:  # a later run: the index of waiting rows comes from the table
        assert [r[0] for r in again.iter_staged("coperniq", "invoices", status=("pending", "failed"))] == []
        assert [r[0] for r in again.iter_staged("coperniq", "invoices", status="pending", unkeyed_waits=True)] == ["3"]
        assert again.wake("coperniq", ["link:project:99"]) == 0
        assert again.wake("coperniq", ["link:project:7"]) == 1
        again.stage("coperniq", "projects", [("8", {"title": "arrived"})])  # wakes invoice 2
        assert [r[0] for r in again.iter_staged("coperniq", "invoices", status="pending")] == ["1", "2"]
        assert again.wake("coperniq", ["link:project:7"]) == 0  # woken once; no longer waiting


def test_a_record_arriving_in_a_later_run_wakes_what_waits_on_it(ledger_path: Path | str) -> None:
    """The sinks stage before anything else runs: staging itself must wake the rows waiting on the record."""
    with Ledger(ledger_path) as led:
        led.stage("coperniq", "projects", [("1", {"accountId": 7})])
        led.mark_staged("coperniq", "projects", "1", "waiting", "client 7 not received", waits_on="record:accounts:7")
    with Ledger(ledger_path) as led:  # the next run: a fresh handle, nothing loaded yet
        led.stage("coperniq", "accounts", [("7", {"title": "Smith"})])
        assert led.staged_status("coperniq", "projects", "1")[0] == "pending"


def test_a_lost_wake_is_healed_at_the_next_run(ledger_path: Path | str) -> None:
    """A crash after a link's commit but before the buffered status of the rows it woke: the link exists, the row
    still says waiting. heal_waits finds it; a row whose link does not exist stays waiting."""
    with Ledger(ledger_path) as led:
        led.stage("coperniq", "invoices", [("1", {"n": 1}), ("2", {"n": 2})])
        led.mark_staged("coperniq", "invoices", "1", "waiting", "project 7 not synced", waits_on="link:project:7")
        led.mark_staged("coperniq", "invoices", "2", "waiting", "project 8 not synced", waits_on="link:project:8")
        led.flush()
        led.upsert_link(_link("7", source_type="project", target_type="job"))  # written without waking anything
    with Ledger(ledger_path) as led:
        assert led.staged_status("coperniq", "invoices", "1")[0] == "waiting"
        assert led.heal_waits("coperniq") == 1
        assert led.staged_status("coperniq", "invoices", "1")[0] == "pending"
        assert led.staged_status("coperniq", "invoices", "2")[0] == "waiting"
        assert led.heal_waits("coperniq") == 0


def test_companies_share_one_ledger_apart(ledger_path: Path | str) -> None:
    """Both engines keep each company in its own schema: same keys, separate rows; a read of a company (or of the
    default one) that never synced finds nothing rather than an error about the file."""
    with Ledger(ledger_path, company="acme") as a, Ledger(ledger_path, company="globex") as b:
        a.upsert_link(_link("1"))
        b.upsert_link(_link("1", target_id="uuid-globex"))
        a.begin_intent("forward:customer:1", {"n": 1})
        assert b.get_link("coperniq", "account", "1").target_id == "uuid-globex"
        assert b.pending_intents() == [] and len(a.links()) == 1
        assert "acme" in a.where
    with pytest.raises(LedgerNotFoundError):
        Ledger(ledger_path, read_only=True)  # the default company never synced here
    with pytest.raises(LedgerNotFoundError):
        Ledger(ledger_path, company="initech", read_only=True)
    with Ledger(ledger_path, company="acme", read_only=True) as a:
        assert a.get_link("coperniq", "account", "1").target_id == "uuid-1"
