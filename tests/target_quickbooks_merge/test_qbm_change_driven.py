"""A run's work follows what changed, not how much the ledger holds (issue: cost grows with history).

Rows that wait on something (an invoice whose project has not triggered, a payment whose invoice is not synced)
are kept `waiting` with the key of what they wait on, and evaluated again only when that is linked or changes; a
run with nothing new evaluates nothing. Both sandbox profiles (the pessimistic one re-sends the whole project list
every run here, since a phase change does not bump `updatedAt` there).
"""

from __future__ import annotations

import pytest

from tests.target_quickbooks_merge.qbm_helpers import Pipeline, log_rows, staged_records

TRIGGERS = {"Residential Solar": "Install", "HVAC Replacement": "Installation"}


def statuses(pipe: Pipeline, stream: str) -> dict[str, str]:
    with pipe.ledger() as ledger:
        return {rid: status for rid, _, status, _ in ledger.iter_staged("coperniq", stream)}


def unkeyed_waits(pipe: Pipeline) -> int:
    """Rows waiting on something outside the ledger (a job Merge has not synced yet): tried every run."""
    with pipe.ledger() as ledger:
        return sum(
            1
            for stream in ("projects", "accounts", "invoices", "payments")
            for rid, _, status, _ in ledger.iter_staged("coperniq", stream, status="waiting")
            if ledger.waiting_on("coperniq", stream, rid) is None
        )


@pytest.mark.parametrize("pipeline", ["optimistic", "pessimistic"], indirect=True)
def test_waiting_rows_are_evaluated_when_what_they_wait_on_changes(
    pipeline: Pipeline, request: pytest.FixtureRequest
) -> None:
    pipeline.config.update(invoice_sync=True, default_item="Services")
    pipeline.tap_config = {"phase_sweep_interval": 0}
    first = pipeline.run()
    with pipeline.ledger() as ledger:  # invoices of projects that have not triggered: woken by the project's link
        waiting = [
            iid
            for iid, st in statuses(pipeline, "invoices").items()
            if st == "waiting" and (ledger.waiting_on("coperniq", "invoices", iid) or "").startswith("link:project:")
        ]
    assert waiting and first.target.result.evaluated > len(waiting)

    outside = unkeyed_waits(pipeline)  # none in the optimistic profile (Merge lists a new job at once)
    if request.node.callspec.params["pipeline"] == "optimistic":
        assert outside == 0
    again = pipeline.run()
    assert again.target.result.evaluated == outside and again.writes == 0

    invoices, projects = staged_records(pipeline, "invoices"), staged_records(pipeline, "projects")
    app = pipeline.coperniq.app
    pid, workflow = next(
        (str(invoices[iid]["record"]["id"]), projects[str(invoices[iid]["record"]["id"])]["workflowName"])
        for iid in waiting
        if projects.get(str(invoices[iid]["record"]["id"]), {}).get("workflowName") in TRIGGERS
        and projects[str(invoices[iid]["record"]["id"])].get("isActive") is not False
    )
    its_invoices = {iid for iid in waiting if str(invoices[iid]["record"]["id"]) == pid}
    app.move_project_to_phase(int(pid), TRIGGERS[workflow])

    third = pipeline.run()
    created = {r["source_id"] for r in log_rows(pipeline, stream="invoices", action="created")}
    optimistic = request.node.callspec.params["pipeline"] == "optimistic"
    if optimistic:
        assert its_invoices <= created  # in the same run as its job
    with pipeline.ledger() as ledger:  # pessimistic: Merge lists a passthrough job only after its next sync
        for iid in its_invoices - created:
            assert ledger.staged_status("coperniq", "invoices", iid)[0] == "waiting"
            assert ledger.waiting_on("coperniq", "invoices", iid) is None  # no longer on the project: on Merge
    assert third.counts["projects"]["created"] == 1
    payments = staged_records(pipeline, "payments")
    its_payments = {p for p, pay in payments.items() if str(pay.get("invoiceId")) in its_invoices}
    # the moved project, its invoices and their payments, and what waits on Merge: nothing else
    assert third.target.result.evaluated <= outside + 1 + len(its_invoices) + len(its_payments)
    assert pipeline.run().target.result.evaluated == unkeyed_waits(pipeline)
