"""The ledger holds nothing whole in memory (schema 3): links and staging statuses are read by query through bounded
caches. These tests shrink the caches to a few entries, so every read after an eviction goes to DuckDB, and check
the answers stay exact, including status changes still buffered in memory when their row was evicted."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync_ledger import Ledger, Link, fingerprint, ledger_links, ledger_rows


@pytest.fixture
def tiny_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_links, "LINK_CACHE", 3)
    monkeypatch.setattr(ledger_rows, "ROW_CACHE", 2)


def _link(i: int, **kw: object) -> Link:
    fields: dict[str, object] = {
        "source_system": "coperniq",
        "source_type": "project",
        "source_id": str(i),
        "target_system": "quickbooks",
        "target_type": "job",
        "target_id": f"merge-{i}",
        "target_remote_id": f"qbo-{i}",
        "fingerprint": f"fp-{i}",
    }
    fields.update(kw)
    return Link(**fields)  # type: ignore[arg-type]


def test_links_stay_exact_through_a_tiny_cache(tmp_path: Path, tiny_caches: None) -> None:
    with Ledger(tmp_path / "l.duckdb") as led:
        led.upsert_links(_link(i) for i in range(10))
        assert [led.get_link("coperniq", "project", str(i)).target_id for i in range(10)] == [  # type: ignore[union-attr]
            f"merge-{i}" for i in range(10)
        ]
        assert len(led._c.link_cache) <= 3
        # a chunk's links in one query, absent ones left out
        found = led.links_for("coperniq", "project", [*map(str, range(10)), "404"])
        assert sorted(found, key=int) == [str(i) for i in range(10)]
        assert led.get_link("coperniq", "project", "404") is None
        # an update is seen whether the record is cached (9) or was evicted (0)
        led.upsert_links([_link(0, fingerprint="new-0"), _link(9, fingerprint="new-9")])
        assert led.get_link("coperniq", "project", "0").fingerprint == "new-0"  # type: ignore[union-attr]
        assert led.get_link("coperniq", "project", "9").fingerprint == "new-9"  # type: ignore[union-attr]
        # a record first known absent, then linked
        led.upsert_link(_link(404))
        assert led.get_link("coperniq", "project", "404") is not None
        # by target and by the provider's id, one and many
        assert led.get_link_by_target("quickbooks", "job", "merge-3").source_id == "3"  # type: ignore[union-attr]
        assert led.get_link_by_remote("quickbooks", "job", "qbo-4").source_id == "4"  # type: ignore[union-attr]
        assert set(led.links_to("quickbooks", "job", ["merge-1", "merge-2", "nope"])) == {"merge-1", "merge-2"}
        assert led.is_linked_target("quickbooks", "merge-5") and not led.is_linked_target("quickbooks", "merge-99")
        assert [lk.source_id for lk in led.links("coperniq", "project", limit=3)] == ["0", "1", "2"]
    with Ledger(tmp_path / "l.duckdb", read_only=True) as led:
        assert led.get_link("coperniq", "project", "0").fingerprint == "new-0"  # type: ignore[union-attr]
        assert led.get_link_by_target("quickbooks", "job", "merge-404") is not None


def test_buffered_statuses_survive_eviction(tmp_path: Path, tiny_caches: None) -> None:
    path = tmp_path / "s.duckdb"
    rows = [(str(i), {"id": i}) for i in range(6)]
    with Ledger(path, flush_rows=10_000, flush_interval=3600) as led:  # marks stay buffered
        led.stage("coperniq", "projects", rows)
        for rid, _ in rows:
            led.mark_staged("coperniq", "projects", rid, "failed", f"boom {rid}")
        assert len(led._c.rows) <= 2 and led._c.mark_buf  # evicted, still unwritten
        for rid, _ in rows:  # read back from the table with the buffered change laid over it
            assert led.staged_status("coperniq", "projects", rid) == ("failed", 1, f"boom {rid}")
        for rid, _ in rows:  # attempts count on from the buffered value, not the table's
            led.mark_staged("coperniq", "projects", rid, "failed")
        assert led.staged_status("coperniq", "projects", "0") == ("failed", 2, "boom 0")
        # an unchanged payload keeps its status; a changed one is pending again with attempts reset
        led.stage("coperniq", "projects", [*rows[:3], ("5", {"id": 5, "v": 2})])
        assert led.staged_status("coperniq", "projects", "1") == ("failed", 2, "boom 1")
        assert led.staged_status("coperniq", "projects", "5") == ("pending", 0, None)
        # a pass sees the buffered statuses
        failed = [rid for rid, _, _, _ in led.iter_staged("coperniq", "projects", status="failed")]
        assert failed == ["0", "1", "2", "3", "4"]
        led.mark_staged("coperniq", "projects", "0", "waiting", "no customer", waits_on="link:account:7")
        assert led.waiting_on("coperniq", "projects", "0") == "link:account:7"
    with Ledger(path) as led:
        assert led.staged_status("coperniq", "projects", "4") == ("failed", 2, "boom 4")
        assert led.wake("coperniq", ["link:account:7"]) == 1
        assert led.staged_status("coperniq", "projects", "0") == ("pending", 2, "no customer")


def test_requeue_is_one_update_and_sees_buffered_marks(tmp_path: Path, tiny_caches: None) -> None:
    with Ledger(tmp_path / "r.duckdb", flush_rows=10_000, flush_interval=3600) as led:
        led.stage("coperniq", "projects", [(str(i), {"id": i}) for i in range(6)])
        for i in range(6):
            status = ("skipped", "waiting", "done")[i % 3]
            led.mark_staged("coperniq", "projects", str(i), status, "why", waits_on="link:account:1")
        assert led.requeue("coperniq", "projects", ["0", "1", "2"], ("skipped",)) == 1  # only 0 is skipped
        assert led.wake_all("coperniq", ["projects"], ("skipped", "waiting")) == 3  # 1, 3, 4
        statuses = {rid: st for rid, _, st, _ in led.iter_staged("coperniq", "projects")}
        assert statuses == {"0": "pending", "1": "pending", "2": "done", "3": "pending", "4": "pending", "5": "done"}
        assert led.waiting_on("coperniq", "projects", "1") is None
        assert led.wake("coperniq", ["link:account:1"]) == 0  # nobody waits any more
        assert led.staged_many("coperniq", "projects", ["1", "9"]) == {"1": {"id": 1}}
        chunks = list(led.iter_staged_chunks("coperniq", "projects", status="pending"))
        assert [[rid for rid, _, _, _ in chunk] for chunk in chunks] == [["0", "1", "3", "4"]]
        assert fingerprint(chunks[0][0][1]) == fingerprint({"id": 0})
