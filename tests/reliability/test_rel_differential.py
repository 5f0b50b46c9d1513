"""Differential check under the pessimistic profiles: the same seed synced once cleanly, and once with lost
responses and 5xx on every Merge write route followed by a clean re-run, leaves QuickBooks holding the same
records (no duplicate, nothing missing), whether or not Merge honours the Idempotency-Key."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sandbox.seed import seed_coperniq

from tests.conftest import start_coperniq, start_merge
from tests.target_quickbooks_merge.qbm_helpers import BOTH_TRIGGERS, Pipeline, merge_rows, qbo_customers

PROJECTS = 200
CONFIG = {"trigger_phases": BOTH_TRIGGERS, "backfill": True, "invoice_sync": True, "default_item": "Services"}


def books(merge: Any) -> dict[str, Counter[tuple[Any, ...]]]:
    """What QuickBooks holds, by natural keys only (ids differ between two worlds)."""
    customers = qbo_customers(merge)
    names = {c["Id"]: c["DisplayName"] for c in customers.values()}
    contacts = {r["id"]: r["name"] for r in merge.state.contacts.order}
    invoices = merge_rows(merge, "invoices")
    numbers = {i["id"]: i["number"] for i in invoices}
    return {
        "customers": Counter((c["DisplayName"], bool(c.get("Job")), names.get((c.get("ParentRef") or {}).get("value")))
                             for c in customers.values()),
        "invoices": Counter((i["number"], contacts.get(i["contact"]), round(float(i["total_amount"]), 2))
                            for i in invoices),
        "payments": Counter((round(float(p["total_amount"]), 2),
                             tuple(sorted(numbers.get(a["related_object_id"], "?") for a in p["applied_to_lines"])))
                            for p in merge_rows(merge, "payments")),
    }


def sync_world(tmp_path: Path, name: str, *, faults: dict[str, Any] | None) -> dict[str, Counter[tuple[Any, ...]]]:
    coperniq = start_coperniq(rate_limit_per_day=None, rate_limit_per_second=None, profile="pessimistic")
    merge = start_merge(rate_limit_per_minute=1_000_000, profile="pessimistic")
    try:
        seed_coperniq(coperniq.app, projects=PROJECTS, seed=11)
        pipe = Pipeline(coperniq, merge, tmp_path / f"{name}.duckdb", config=CONFIG)
        if faults:
            merge.faults.update(**faults)
        pipe.run()
        merge.faults.reset()
        for _ in range(2):  # Merge's periodic sync makes passthrough jobs visible; their invoices follow
            merge.app.sync()
            pipe.run()
        if faults:
            assert sum(n for s, n in merge.stats.by_status.items() if s >= 500) >= 20, "faults must have happened"
        return books(merge.app)
    finally:
        coperniq.server.stop()
        merge.server.stop()


@pytest.mark.timeout(600)
def test_lost_responses_and_5xx_then_a_clean_rerun_hold_the_same_books_as_a_clean_sync(tmp_path: Path) -> None:
    clean = sync_world(tmp_path, "clean", faults=None)
    assert sum(clean["customers"].values()) > 50 and clean["invoices"] and clean["payments"]
    faulted = sync_world(tmp_path, "faulted", faults={"lost_response_rate": 0.2, "error_rate": 0.1,
                                                      "error_status": 503, "seed": 5})
    for kind in ("customers", "invoices", "payments"):
        extra, missing = faulted[kind] - clean[kind], clean[kind] - faulted[kind]
        assert not extra and not missing, f"{kind}: duplicates/extra {list(extra)[:5]}, missing {list(missing)[:5]}"
