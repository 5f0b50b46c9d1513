"""Connecting to a QuickBooks company that already has history: matching looks at what a record *is*.

The QuickBooks company is pre-filled the way a real one is (a job of another customer and an inactive customer
holding our clients' names, a top-level customer holding a job's name), then the forward leg runs. And the other
direction of the same rule: sync, lose the ledger, sync again: everything is re-linked, nothing is written.
Both sandbox profiles; assertions on what QuickBooks holds.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.reliability.rel_helpers import assert_forward_complete, expected_forward
from tests.target_quickbooks_merge.qbm_helpers import Pipeline, log_rows, merge_rows, qbo_customers

PROFILES = ["optimistic", "pessimistic"]


def triggered_clients(pipe: Pipeline) -> list[dict[str, Any]]:
    """Clients of projects that sync (from the Coperniq sandbox itself), in id order."""
    st = pipe.coperniq.app.state
    ids = sorted({p["accountId"] for p in expected_forward(pipe.coperniq)["projects"].values()})
    return [st.accounts[i] for i in ids]


def qbo(pipe: Pipeline, entity: str, body: dict[str, Any]) -> dict[str, Any]:
    app = pipe.merge.app
    with app.lock:
        return app.state.qbo.create(entity, body)


def settle(pipe: Pipeline) -> None:
    """Merge's next sync (the pessimistic profile lists passthrough writes only after it)."""
    with pipe.merge.app.lock:
        pipe.merge.app.sync()


@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_names_held_by_a_job_of_another_customer_or_an_inactive_customer_are_not_linked(pipeline: Pipeline) -> None:
    pipeline.config["ambiguous_match"] = "create_new"  # the suffix rule (review: test_qbm_review.py)
    pipeline.config.update(invoice_sync=True, default_item="Services")
    clients = triggered_clients(pipeline)
    assert len(clients) >= 3
    as_job, inactive = clients[0], clients[1]
    other = qbo(pipeline, "Customer", {"DisplayName": "Other Parent LLC"})
    job = qbo(
        pipeline,
        "Customer",
        {"DisplayName": as_job["title"], "Job": True, "BillWithParent": True, "ParentRef": {"value": other["Id"]}},
    )
    old = qbo(
        pipeline,
        "Customer",
        {
            "DisplayName": inactive["title"],
            "Active": False,
            "PrimaryEmailAddr": {"Address": inactive.get("primaryEmail") or ""},
        },
    )
    project = next(
        p for p in expected_forward(pipeline.coperniq)["projects"].values() if p["accountId"] == clients[2]["id"]
    )
    job_name = f"{project['title']} ({project['number']})"
    stranger = qbo(
        pipeline, "Customer", {"DisplayName": job_name, "PrimaryEmailAddr": {"Address": "stranger@example.com"}}
    )
    settle(pipeline)
    pipeline.run()
    settle(pipeline)
    pipeline.run()

    held = {job["Id"], old["Id"], stranger["Id"], other["Id"]}
    everything = list(qbo_customers(pipeline.merge).values())
    by_id = {str(c["Id"]): c for c in everything}
    ours = [c for c in everything if str(c["Id"]) not in held]
    # nothing was hung under the other customer, and the pre-existing records are as they were
    assert [c for c in everything if (c.get("ParentRef") or {}).get("value") == other["Id"]] == [by_id[job["Id"]]]
    assert by_id[old["Id"]].get("Active") is False and not by_id[stranger["Id"]].get("Job")
    for client in (as_job, inactive):  # each got a customer of its own: top level, active, suffixed name
        mine = [c for c in ours if not c.get("Job") and c["DisplayName"].startswith(client["title"] + " (#")]
        assert len(mine) == 1 and mine[0].get("Active", True), (client["title"], [c["DisplayName"] for c in ours])
        assert [c for c in ours if (c.get("ParentRef") or {}).get("value") == mine[0]["Id"]]  # its jobs hang here
    # the project whose job name a stranger holds got its job, suffixed, under its own client's customer
    mine = [c for c in ours if c.get("Job") and c["DisplayName"].startswith(job_name + " (#")]
    parent = by_id[mine[0]["ParentRef"]["value"]] if len(mine) == 1 else {}
    assert parent.get("DisplayName", "").startswith(clients[2]["title"]), [c["DisplayName"] for c in ours]
    exp = expected_forward(pipeline.coperniq)
    assert len([c for c in ours if c.get("Job")]) == len(exp["projects"])
    assert len([c for c in ours if not c.get("Job")]) == len(exp["accounts"])
    names = [c["DisplayName"].casefold() for c in everything]
    assert len(names) == len(set(names))
    numbers = sorted(i["number"] for i in merge_rows(pipeline.merge, "invoices"))
    assert numbers == exp["invoice_numbers"]


@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_sync_lose_the_ledger_sync_again_relinks_everything_and_writes_nothing(pipeline: Pipeline) -> None:
    """With collisions, so some names carry our suffix, and with invoices paid: the second sync against the same
    QuickBooks company with an empty ledger links every record and creates, updates and pays nothing."""
    pipeline.config["ambiguous_match"] = "create_new"  # the suffix rule (review: test_qbm_review.py)
    pipeline.config.update(invoice_sync=True, default_item="Services")
    clients = triggered_clients(pipeline)
    qbo(pipeline, "Vendor", {"DisplayName": clients[0]["title"]})  # forces a suffixed customer name
    settle(pipeline)
    pipeline.run()
    settle(pipeline)
    pipeline.run()
    before = snapshot(pipeline)
    assert_forward_complete(pipeline.coperniq, pipeline.merge, ignore_remote_ids=set())

    pipeline.ledger_path.unlink()
    pipeline.tap_state = None
    again = pipeline.run()
    created = sum(c["created"] for c in again.counts.values())
    updated = sum(c["updated"] for c in again.counts.values())
    assert created == 0 and updated == 0, {k: dict(v) for k, v in again.counts.items()}
    linked = Counter({stream: c["linked"] for stream, c in again.counts.items()})
    exp = expected_forward(pipeline.coperniq)
    assert linked["projects"] == len(exp["projects"]) and linked["accounts"] == len(exp["accounts"])
    assert linked["invoices"] == len(exp["invoice_numbers"])
    assert linked["payments"] == sum(exp["payments_per_invoice"].values())
    assert snapshot(pipeline) == before  # QuickBooks holds exactly what it held


def snapshot(pipe: Pipeline) -> dict[str, Any]:
    """Every Merge row (with its modification stamp: an update would move it) and every QBO customer."""
    rows = {
        table: sorted((str(r.get("id")), str(r.get("modified_at"))) for r in merge_rows(pipe.merge, table))
        for table in ("contacts", "invoices", "payments")
    }
    rows["qbo_customers"] = sorted((k, str(v.get("SyncToken"))) for k, v in qbo_customers(pipe.merge).items())
    return rows


@pytest.mark.parametrize("pipeline", PROFILES, indirect=True)
def test_a_payment_quickbooks_cannot_take_on_a_matched_invoice_is_a_failed_row_not_a_second_payment(
    pipeline: Pipeline,
) -> None:
    """The matched invoice is already paid in QuickBooks (by the entry the sync made before the ledger was lost)
    and Coperniq now shows a different amount: no twin, and the open balance there is smaller, so the payment is
    a failed row with the reason; QuickBooks' paid total does not move."""
    pipeline.config.update(invoice_sync=True, default_item="Services")
    pipeline.run()
    settle(pipeline)
    pipeline.run()
    payments_before = merge_rows(pipeline.merge, "payments")
    st = pipeline.coperniq.app.state
    synced = {str(i) for i in expected_forward(pipeline.coperniq)["projects"]}
    _inv_id, pays = next(
        (i, p)
        for i, p in sorted(st.payments.items())
        if p and st.invoices[i]["status"] == "PAID" and str((st.invoices[i].get("_record") or ("", ""))[1]) in synced
    )
    pays[0]["amount"] = round(pays[0]["amount"] + 50.0, 2)  # Coperniq's record of it now differs
    pipeline.ledger_path.unlink()
    pipeline.tap_state = None
    again = pipeline.run()
    assert again.counts["payments"]["created"] == 0
    failed = [r for r in log_rows(pipeline, stream="payments", action="failed") if r["source_id"] == str(pays[0]["id"])]
    assert failed and "more than the open balance" in failed[0]["reason"], failed
    assert len(merge_rows(pipeline.merge, "payments")) == len(payments_before)
