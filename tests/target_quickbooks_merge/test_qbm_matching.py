"""Matching when no link exists yet (enrich / replace / skip), DisplayName collisions, triggers and backfill."""

from __future__ import annotations

import pytest
import requests

from target_quickbooks_merge.target import TargetError
from tests.target_quickbooks_merge.qbm_helpers import (
    Pipeline,
    assert_no_duplicate_names,
    coperniq_patch,
    first_triggered_account,
    log_rows,
    merge_rows,
    qbo_jobs,
    qbo_top_customers,
    staged_records,
)


@pytest.mark.parametrize("strategy", ["enrich", "replace", "skip"])
def test_existing_customer_is_matched_by_name(pipeline: Pipeline, strategy: str) -> None:
    account = first_triggered_account(pipeline)
    existing = pipeline.merge.app.add_contact(account["title"].upper())

    run = pipeline.run(matching_strategy=strategy)
    with pipeline.ledger() as ledger:
        link = ledger.get_link("coperniq", "account", str(account["id"]))
    assert link.target_id == existing["id"] and link.origin == "quickbooks"
    row = next(r for r in merge_rows(pipeline.merge, "contacts") if r["id"] == existing["id"])
    if strategy == "skip":
        assert row["email_address"] in (None, "")  # left unchanged
        assert row["name"] == account["title"].upper()
    elif strategy == "enrich":
        assert row["email_address"] == account["primaryEmail"]  # empty field filled in
        assert row["name"] == account["title"].upper()  # same name (normalized): not rewritten
    else:
        assert row["email_address"] == account["primaryEmail"]
        assert row["name"] == account["title"]  # overwritten with Coperniq's value
    linked = [r for r in log_rows(pipeline, stream="accounts", action="linked") if r["source_id"] == str(account["id"])]
    assert linked and strategy in linked[0]["reason"]
    same_name = [
        c for c in qbo_top_customers(pipeline.merge) if c["DisplayName"].casefold() == account["title"].casefold()
    ]
    assert len(same_name) == 1, "matched, not duplicated"
    assert run.counts["accounts"]["created"] == len(qbo_top_customers(pipeline.merge)) - 1
    assert pipeline.run(matching_strategy=strategy).writes == 0


def test_enrich_never_blanks_out_existing_values(pipeline: Pipeline) -> None:
    account = first_triggered_account(pipeline)
    existing = pipeline.merge.app.add_contact(
        account["title"], email=account["primaryEmail"], PrimaryPhone={"FreeFormNumber": "+1 555 000 1111"}
    )
    pipeline.run(matching_strategy="enrich")
    row = next(r for r in merge_rows(pipeline.merge, "contacts") if r["id"] == existing["id"])
    assert row["email_address"] == account["primaryEmail"]
    assert [p["number"] for p in row["phone_numbers"]] == [account["primaryPhone"]]  # differed -> updated


def test_display_name_collision_with_unrelated_record_gets_deterministic_suffix(pipeline: Pipeline) -> None:
    pipeline.config["ambiguous_match"] = "create_new"  # the suffix rule (review: test_qbm_review.py)
    account = first_triggered_account(pipeline)
    other = pipeline.merge.app.add_contact(account["title"], email="someone-else@unrelated.example")
    pipeline.run()
    with pipeline.ledger() as ledger:
        link = ledger.get_link("coperniq", "account", str(account["id"]))
    assert link.target_id != other["id"] and link.origin == "coperniq"
    ours = next(r for r in merge_rows(pipeline.merge, "contacts") if r["id"] == link.target_id)
    assert ours["name"] == f"{account['title']} (#{account['number']})"
    created = [
        r for r in log_rows(pipeline, stream="accounts", action="created") if r["source_id"] == str(account["id"])
    ]
    assert "unrelated" in created[0]["reason"]
    untouched = next(r for r in merge_rows(pipeline.merge, "contacts") if r["id"] == other["id"])
    assert untouched["email_address"] == "someone-else@unrelated.example"
    assert_no_duplicate_names(pipeline.merge)
    assert pipeline.run().writes == 0  # the suffixed name is remembered, no rename loop


def test_vendor_holding_the_name_is_not_matched_and_gets_a_suffix(pipeline: Pipeline) -> None:
    """A vendor is not a customer candidate, but QBO names are unique across customers and vendors."""
    pipeline.config["ambiguous_match"] = "create_new"  # the suffix rule (review: test_qbm_review.py)
    account = first_triggered_account(pipeline)
    pipeline.merge.app.add_contact(account["title"], is_customer=False, is_supplier=True)
    run = pipeline.run()
    assert run.counts["accounts"]["failed"] == 0
    with pipeline.ledger() as ledger:
        link = ledger.get_link("coperniq", "account", str(account["id"]))
    ours = next(r for r in merge_rows(pipeline.merge, "contacts") if r["id"] == link.target_id)
    assert ours["name"] != account["title"] and ours["name"].startswith(account["title"])


def test_no_trigger_configured_refuses_the_run_and_records_it(pipeline: Pipeline) -> None:
    with pytest.raises(TargetError, match="trigger_phases is not set"):
        pipeline.run(trigger_phases=[])
    assert merge_rows(pipeline.merge, "contacts") == []
    with pipeline.ledger() as ledger:
        run = ledger.last_run()
        assert run is not None and run["status"] == "refused"
        assert ledger.last_run(successful=True) is None
    [row] = [r for r in log_rows(pipeline, stream="run") if r["run_id"] == run["run_id"]]
    assert "trigger_phases is not set" in row["reason"]


def test_trigger_names_that_match_nothing_refuse_the_run_naming_the_valid_ones(pipeline: Pipeline) -> None:
    with pytest.raises(TargetError) as err:
        pipeline.run(
            trigger_phases=[
                {"workflow": "Residential Solr", "phase": "Install"},
                {"workflow": "HVAC Replacement", "phase": "Instalation"},
            ]
        )
    message = str(err.value)
    assert "'Residential Solr' matches no workflow" in message and "known: Residential Solar" in message
    assert "'Instalation' matches no phase" in message and "Installation" in message
    assert merge_rows(pipeline.merge, "contacts") == []
    with pipeline.ledger() as ledger:
        assert ledger.last_run()["status"] == "refused"


def test_one_misspelt_trigger_of_two_warns_and_the_other_syncs(pipeline: Pipeline) -> None:
    run = pipeline.run(
        trigger_phases=[
            {"workflow": "Residential Solar", "phase": "Install"},
            {"workflow": "HVAC Replacement", "phase": "Instalation"},
        ]
    )
    warnings = " | ".join(run.target.result.warnings)
    assert "'Instalation' matches no phase" in warnings
    assert run.counts["projects"]["created"] > 0


def test_single_workflow_trigger_by_ids(pipeline: Pipeline) -> None:
    pipeline.run(dry_run=True)  # stages workflows
    wf = next(w for w in staged_records(pipeline, "workflows").values() if w["name"] == "HVAC Replacement")
    phase = next(p for p in wf["phases"] if p["name"] == "Installation")
    pipeline.run(trigger_phases=[{"workflow": wf["id"], "phase": phase["id"]}])
    projects = staged_records(pipeline, "projects")
    with pipeline.ledger() as ledger:
        synced = [projects[link.source_id] for link in ledger.links("coperniq", "project")]
    assert synced and {p["workflowName"] for p in synced} == {"HVAC Replacement"}
    assert len(qbo_jobs(pipeline.merge)) == len(synced)


def test_backfill_off_syncs_only_projects_entering_the_phase_after_enabling(pipeline: Pipeline) -> None:
    first = pipeline.run(backfill=False)
    assert merge_rows(pipeline.merge, "contacts") == [] and first.writes == 0
    reasons = [r["reason"] for r in log_rows(pipeline, stream="projects", action="skipped")]
    assert any("when the sync was enabled" in r and "set backfill: true" in r for r in reasons)

    projects = staged_records(pipeline, "projects")
    target = next(
        p
        for p in projects.values()
        if p["workflowName"] == "Residential Solar"
        and p["phase"]["name"] in {"Sale", "Site Survey", "Design", "Permitting"}
    )
    pipeline.coperniq.app.move_project_to_phase(target["id"], "Install")
    second = pipeline.run(backfill=False)
    assert second.counts["projects"]["created"] == 1
    jobs = qbo_jobs(pipeline.merge)
    assert len(jobs) == 1 and jobs[0]["DisplayName"].startswith(target["title"])
    assert len(qbo_top_customers(pipeline.merge)) == 1


@pytest.mark.parametrize("pipeline", ["optimistic", "pessimistic"], indirect=True)
def test_a_long_name_that_collides_keeps_its_suffix(pipeline: Pipeline) -> None:
    """QuickBooks allows 100 characters: the collision suffix is kept and the base name cut, so a 120-character
    client whose first 100 characters are an unrelated customer's name still syncs, as a name of its own."""
    pipeline.config["ambiguous_match"] = "create_new"  # the suffix rule (review: test_qbm_review.py)
    long_title = (
        "Sunrise Community Solar Cooperative of the Greater Austin Metropolitan Area "
        "and Surrounding Counties Incorporated"
    )
    assert len(long_title) > 100
    held = long_title[:100].rstrip()
    with pipeline.merge.app.lock:
        pipeline.merge.app.state.qbo.create(
            "Customer", {"DisplayName": held, "PrimaryEmailAddr": {"Address": "other@example.com"}}
        )
    cop = pipeline.coperniq.app
    account = cop.add_account(long_title, primaryEmail="billing@sunrise.example")
    cop.add_project("Sunrise Array", account_id=account["id"], workflow="Residential Solar", phase="Install")
    pipeline.run()
    names = [c["DisplayName"] for c in qbo_top_customers(pipeline.merge)]
    ours = [n for n in names if n != held and n.startswith(long_title[:40])]
    assert len(ours) == 1 and len(ours[0]) <= 100 and ours[0].endswith(")") and "(#" in ours[0], names
    assert held in names  # the unrelated customer is untouched
    assert not [
        r for r in log_rows(pipeline, stream="accounts", action="failed") if r["source_id"] == str(account["id"])
    ]


@pytest.mark.parametrize("pipeline", ["optimistic", "pessimistic"], indirect=True)
def test_renaming_a_synced_client_to_a_name_held_in_quickbooks_gets_a_suffix(pipeline: Pipeline) -> None:
    """QuickBooks refuses the rename (6240: a vendor Merge has not listed yet holds the name): the
    customer takes the suffixed name, as a create would, and the next run does not try again."""
    pipeline.run()
    account = next(
        a
        for a in staged_records(pipeline, "accounts").values()
        if any(lk.source_id == str(a["id"]) for lk in pipeline.ledger().links("coperniq", "account"))
    )
    new_title = "Renamed Holdings LLC"
    with pipeline.merge.app.lock:
        pipeline.merge.app.state.qbo.create("Vendor", {"DisplayName": new_title}, notify=False)
    coperniq_patch(pipeline.coperniq, f"/accounts/{account['id']}", {"title": new_title})
    run = pipeline.run()
    assert run.counts["accounts"]["updated"] == 1 and not run.counts["accounts"]["failed"]
    names = [c["DisplayName"] for c in qbo_top_customers(pipeline.merge)]
    key = str(account.get("number") or account["id"])
    assert f"{new_title} (#{key})" in names, names
    assert pipeline.run().writes == 0  # remembered: no rename attempt next run


@pytest.mark.parametrize("strategy", ["enrich", "replace"])
def test_replace_clears_what_coperniq_emptied_and_enrich_never_blanks(pipeline: Pipeline, strategy: str) -> None:
    """A matched customer with a phone Coperniq does not have: `replace` clears it, `enrich` keeps it; either way
    the log says per field what changed, old -> new. Later, an email emptied in Coperniq: replace clears it too."""
    account = first_triggered_account(pipeline)
    with pipeline.merge.app.lock:
        pipeline.merge.app.state.qbo.create(
            "Customer",
            {
                "DisplayName": account["title"],
                "PrimaryEmailAddr": {"Address": account["primaryEmail"]},
                "PrimaryPhone": {"FreeFormNumber": "555-0100"},
            },
        )
    cop = pipeline.coperniq.app
    cop.state.accounts[account["id"]]["primaryPhone"] = None
    cop.state.accounts[account["id"]]["_u"] = cop.state.clock.tick()
    pipeline.run(matching_strategy=strategy)
    qbo = next(c for c in qbo_top_customers(pipeline.merge) if c["DisplayName"] == account["title"])
    [row] = [r for r in log_rows(pipeline, stream="accounts", action="linked") if r["source_id"] == str(account["id"])]
    if strategy == "replace":
        assert not qbo.get("PrimaryPhone") and "phone_numbers: 555-0100 -> (empty)" in row["reason"], row["reason"]
    else:
        assert qbo["PrimaryPhone"]["FreeFormNumber"] == "555-0100"
        assert "phone_numbers" not in row["reason"]
    resp = requests.patch(
        f"{pipeline.coperniq.url}/accounts/{account['id']}",
        json={"primaryEmail": None},
        headers={"x-api-key": pipeline.coperniq.api_key},
        timeout=10,
    )
    resp.raise_for_status()
    pipeline.run(matching_strategy=strategy)
    qbo = next(c for c in qbo_top_customers(pipeline.merge) if c["DisplayName"] == account["title"])
    assert bool(qbo.get("PrimaryEmailAddr")) == (strategy == "enrich")


@pytest.mark.parametrize("evidence", ["different phone and address", "same phone"])
def test_without_emails_to_compare_phone_and_address_decide(pipeline: Pipeline, evidence: str) -> None:
    """A same-name QuickBooks customer without an email: a different phone *and* a different address mean another
    party (a suffixed customer is created); a shared phone is enough to link."""
    pipeline.config["ambiguous_match"] = "create_new"  # the suffix rule (review: test_qbm_review.py)
    account = first_triggered_account(pipeline)
    assert account.get("primaryPhone") and account.get("address")
    phone = account["primaryPhone"] if evidence == "same phone" else "212-555-0000"
    with pipeline.merge.app.lock:
        other = pipeline.merge.app.state.qbo.create(
            "Customer",
            {
                "DisplayName": account["title"],
                "PrimaryPhone": {"FreeFormNumber": phone},
                "BillAddr": {
                    "Line1": "9 Elsewhere Rd",
                    "City": "Boston",
                    "CountrySubDivisionCode": "MA",
                    "PostalCode": "02101",
                },
            },
        )
    pipeline.run()
    with pipeline.ledger() as ledger:
        link = ledger.get_link("coperniq", "account", str(account["id"]))
    assert link is not None
    if evidence == "same phone":
        assert link.target_remote_id == other["Id"]
    else:
        assert link.target_remote_id != other["Id"]
        names = [c["DisplayName"] for c in qbo_top_customers(pipeline.merge)]
        assert any(n.startswith(account["title"] + " (#") for n in names), names
