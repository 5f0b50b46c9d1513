"""The review queue and a person's row actions: an ambiguous client waits with its candidates instead of being
guessed; `coperniq-qbo link/--new/dismiss/undismiss/retry` decide it, and the next run applies the decision once."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from coperniq_qbo.cli import main
from tests.target_quickbooks_merge.qbm_helpers import (
    Pipeline,
    assert_no_duplicate_names,
    first_triggered_account,
    log_rows,
    merge_rows,
    qbo_customers,
    qbo_jobs,
)


def cli(
    pipe: Pipeline, *args: str, extra_env: dict[str, str] | None = None, process: bool = False
) -> tuple[int, str, str]:
    """coperniq-qbo on the pipeline's ledger (and its Merge sandbox): in-process, or as its own process."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        (
            "COPERNIQ_QBO_LEDGER_URL"
            if str(pipe.ledger_path).startswith("postgresql://")
            else "COPERNIQ_QBO_LEDGER_PATH"
        ): str(pipe.ledger_path),
        "COPERNIQ_QBO_MERGE_API_KEY": pipe.merge.api_key,
        "COPERNIQ_QBO_ACCOUNT_TOKEN": pipe.merge.account_token,
        "COPERNIQ_QBO_BASE_URL": pipe.merge.url,
        "COPERNIQ_QBO_LOCK_TIMEOUT": "5",
        **(extra_env or {}),
    }
    if process:
        env["PYTHONPATH"] = os.pathsep.join(sys.path)
        proc = subprocess.run(
            [sys.executable, "-m", "coperniq_qbo.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return proc.returncode, proc.stdout, proc.stderr
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=out, stderr=err, environ=env)
    return code, out.getvalue(), err.getvalue()


def queue(pipe: Pipeline, **kw: Any) -> list[dict[str, Any]]:
    with pipe.ledger() as ledger:
        return ledger.review_items(**kw)


def projects_of(pipe: Pipeline, account_id: str) -> list[str]:
    with pipe.ledger() as ledger:
        return [
            rid for rid, p, _, _ in ledger.iter_staged("coperniq", "projects") if str(p.get("accountId")) == account_id
        ]


@pytest.fixture
def ambiguous(pipeline: Pipeline) -> tuple[dict[str, Any], dict[str, Any]]:
    """A triggered client and a same-name QuickBooks customer with another email: in doubt, never guessed."""
    account = first_triggered_account(pipeline)
    other = pipeline.merge.app.add_contact(account["title"], email="someone-else@unrelated.example")
    pipeline.config.update(invoice_sync=True, default_item="Services")
    return account, other


@pytest.mark.parametrize("pipeline", ["optimistic", "optimistic-postgres"], indirect=True)
def test_ambiguous_client_waits_in_the_queue_and_a_link_by_hand_syncs_it_once(
    pipeline: Pipeline, ambiguous: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    account, other = ambiguous
    aid = str(account["id"])
    before = len(qbo_customers(pipeline.merge))
    first = pipeline.run()
    assert first.counts["accounts"]["review"] == 1 and first.counts["accounts"]["failed"] == 0
    with pipeline.ledger() as ledger:
        assert ledger.get_link("coperniq", "account", aid) is None  # not guessed: neither linked nor created
        assert ledger.staged_status("coperniq", "accounts", aid)[0] == "waiting"
    [item] = queue(pipeline)
    assert (item["stream"], item["record_id"], item["status"]) == ("accounts", aid, "open")
    assert [c["id"] for c in item["candidates"]] == [other["id"]]
    assert "different email" in item["candidates"][0]["why"]
    ours = [c for c in qbo_customers(pipeline.merge).values() if c["DisplayName"].startswith(account["title"])]
    assert len(ours) == 1, "nothing created for the client in doubt"
    assert not any(
        str(j.get("ParentRef", {}).get("value")) == str(other["remote_id"]) for j in qbo_jobs(pipeline.merge)
    )
    created_elsewhere = len(qbo_customers(pipeline.merge)) - before
    assert created_elsewhere > 0, "the other clients synced"

    second = pipeline.run()  # still undecided: nothing new, no second queue line
    assert second.writes == 0 and second.counts["accounts"]["review"] == 0

    code, out, _ = cli(pipeline, "status")
    assert "Review queue:       1 row(s) wait for a person" in out
    code, out, _ = cli(pipeline, "review")
    assert code == 0 and f"accounts:{aid}" in out and str(other["remote_id"]) in out and "different email" in out
    code, out, err = cli(pipeline, "link", f"accounts:{aid}", str(other["remote_id"]), "--by", "alice")
    assert code == 0, err
    assert "alice asked to link to QuickBooks customer" in out
    [asked] = [r for r in log_rows(pipeline, action="operator") if r["run_id"] == "operator"]
    assert asked["source_id"] == aid and "alice" in asked["reason"]

    third = pipeline.run()
    with pipeline.ledger() as ledger:
        link = ledger.get_link("coperniq", "account", aid)
    assert link is not None and link.target_id == other["id"] and link.origin == "quickbooks"
    assert third.counts["accounts"]["linked"] == 1 and third.counts["accounts"]["operator"] == 1
    linked = [r for r in log_rows(pipeline, stream="accounts", action="linked") if r["source_id"] == aid]
    assert "as alice decided in the review queue" in linked[0]["reason"]
    jobs = [j for j in qbo_jobs(pipeline.merge) if str(j["ParentRef"]["value"]) == str(other["remote_id"])]
    assert jobs and len(jobs) == third.counts["projects"]["created"], "the client's jobs followed in the same run"
    with pipeline.ledger() as ledger:
        links = [ledger.get_link("coperniq", "project", pid) for pid in projects_of(pipeline, aid)]
    job_ids = {link.target_id for link in links if link is not None}
    billed = [i for i in merge_rows(pipeline.merge, "invoices") if i["contact"] in job_ids]
    assert billed and third.counts["invoices"]["created"] == len(billed), "its invoices followed under its jobs"
    assert_no_duplicate_names(pipeline.merge)
    assert queue(pipeline) == [] and queue(pipeline, status="resolved")[0]["record_id"] == aid
    assert pipeline.run().writes == 0  # once: the decision is used up, nothing is written again


def test_new_by_hand_creates_a_customer_of_its_own(
    pipeline: Pipeline, ambiguous: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    account, other = ambiguous
    aid = str(account["id"])
    pipeline.run()
    code, _, err = cli(pipeline, "link", f"accounts:{aid}", "--new")
    assert code == 0, err
    run = pipeline.run()
    assert run.counts["accounts"]["created"] == 1
    with pipeline.ledger() as ledger:
        link = ledger.get_link("coperniq", "account", aid)
    assert link is not None and link.target_id != other["id"]
    ours = next(r for r in merge_rows(pipeline.merge, "contacts") if r["id"] == link.target_id)
    assert ours["name"] == f"{account['title']} (#{account['number']})"
    assert_no_duplicate_names(pipeline.merge)
    assert pipeline.run().writes == 0


def test_create_new_setting_keeps_the_suffix_behaviour(
    pipeline: Pipeline, ambiguous: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    account, _ = ambiguous
    run = pipeline.run(ambiguous_match="create_new")
    assert run.counts["accounts"]["review"] == 0 and queue(pipeline) == []
    with pipeline.ledger() as ledger:
        assert ledger.get_link("coperniq", "account", str(account["id"])) is not None


def test_dismiss_leaves_a_row_alone_until_undismissed(
    pipeline: Pipeline, ambiguous: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    account, _ = ambiguous
    aid = str(account["id"])
    pipeline.run()
    code, _, err = cli(pipeline, "dismiss", f"accounts:{aid}")
    assert code != 0 and "--reason" in err  # why a row is left alone is always kept
    code, _, err = cli(pipeline, "dismiss", f"accounts:{aid}", "--reason", "test client", "--by", "bob")
    assert code == 0, err
    run = pipeline.run()
    assert run.counts["accounts"]["operator"] == 1 and run.writes == 0
    with pipeline.ledger() as ledger:
        status, _, why = ledger.staged_status("coperniq", "accounts", aid)
    assert status == "skipped" and "dismissed by bob: test client" in (why or "")
    assert queue(pipeline) == [] and queue(pipeline, status="dismissed")[0]["record_id"] == aid
    # a change in Coperniq does not bring a dismissed row back
    resp = requests.patch(
        f"{pipeline.coperniq.url}/accounts/{aid}",
        json={"primaryEmail": "new@example.com"},
        headers={"x-api-key": pipeline.coperniq.api_key},
        timeout=10,
    )
    assert resp.status_code < 300, resp.text
    assert pipeline.run().counts["accounts"]["review"] == 0
    code, _, err = cli(pipeline, "undismiss", f"accounts:{aid}")
    assert code == 0, err
    again = pipeline.run()
    assert again.counts["accounts"]["review"] == 1  # evaluated again: still in doubt, so queued again


def test_retry_evaluates_rows_again_and_bad_row_references_are_refused(pipeline: Pipeline) -> None:
    pipeline.run()
    with pipeline.ledger() as ledger:
        skipped = [
            rid
            for rid, _, status, _ in ledger.iter_staged("coperniq", "projects")
            if status == "skipped" and ledger.get_link("coperniq", "project", rid) is None
        ]
    assert skipped, "the seed has projects not at a trigger phase"
    pid = skipped[0]
    quiet = pipeline.run()
    assert quiet.counts["projects"]["skipped"] == 0  # a skipped row is not evaluated again on its own
    code, out, err = cli(pipeline, "retry", f"projects:{pid}", "--by", "carol")
    assert code == 0 and "carol asked to retry" in out, err
    code, out, err = cli(pipeline, "retry", "--failed")
    assert code == 0 and "retry every failed row" in out, err
    run = pipeline.run()
    assert run.counts["projects"]["skipped"] == 1 and run.counts["projects"]["operator"] == 1
    assert run.counts["run"]["operator"] == 1  # --failed, applied by this leg (the reverse leg applies its own)
    again = [r for r in log_rows(pipeline, stream="projects", action="skipped") if r["source_id"] == pid]
    operator = [r for r in log_rows(pipeline, stream="projects", action="operator") if r["source_id"] == pid]
    assert len(again) == 2 and again[0]["run_id"] == operator[0]["run_id"] != "operator"  # this run evaluated it
    with pipeline.ledger() as ledger:
        actions = ledger.row_actions()
    assert {a["source_system"]: bool(a["applied_run"]) for a in actions} == {"coperniq": True, "quickbooks": False}
    for bad, message in (
        (["retry", "accounts"], "stream:id"),
        (["retry", "accounts:no-such-id"], "no row accounts:no-such-id"),
        (["link", "projects:1", "5"], "only a Coperniq client"),
        (["link", "accounts:1"], "--new"),
    ):
        code, _, err = cli(pipeline, *bad)
        assert code != 0 and message in err, (bad, err)
    code, out, _ = cli(pipeline, "review", "--format", "json")
    assert code == 0 and json.loads(out) == []


def test_a_choice_that_cannot_be_linked_is_a_failed_row_naming_who_chose_it(
    pipeline: Pipeline, ambiguous: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    account, other = ambiguous
    aid = str(account["id"])
    pipeline.run()
    vendor = pipeline.merge.app.add_contact("Some Vendor", is_customer=False, is_supplier=True)
    for choice, why in ((str(vendor["id"]), "is not a customer"), ("no-such-id", "is not among")):
        code, _, err = cli(pipeline, "link", f"accounts:{aid}", choice, "--by", "dora")
        assert code == 0, err
        run = pipeline.run()
        assert run.counts["accounts"]["failed"] == 1
        [failed] = [r for r in log_rows(pipeline, stream="accounts", action="failed") if r["run_id"] != "operator"][:1]
        assert why in failed["reason"] and "chosen by dora" in failed["reason"]
        with pipeline.ledger() as ledger:
            assert ledger.get_link("coperniq", "account", aid) is None
    code, _, err = cli(pipeline, "link", f"accounts:{aid}", str(other["remote_id"]))  # a new decision replaces it
    assert code == 0, err
    pipeline.run()
    with pipeline.ledger() as ledger:
        link = ledger.get_link("coperniq", "account", aid)
    assert link is not None and link.target_id == other["id"]


def test_now_runs_the_rows_leg_in_the_meltano_project(pipeline: Pipeline, tmp_path: Path) -> None:
    """`--now` runs `meltano run <tap> <target>` of the row's leg in the project (a stand-in meltano records it)."""
    pipeline.run()
    with pipeline.ledger() as ledger:
        pid = next(rid for rid, _, _, _ in ledger.iter_staged("coperniq", "projects"))
    bin_dir, project = tmp_path / "bin", tmp_path / "project"
    bin_dir.mkdir()
    project.mkdir()
    calls = tmp_path / "calls.txt"
    fake = bin_dir / "meltano"
    fake.write_text(f'#!/bin/sh\necho "$PWD $* $SYNC_COMPANY" >> {calls}\nexit 3\n')
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "MELTANO_PROJECT_ROOT": str(project)}
    code, out, err = cli(pipeline, "retry", f"projects:{pid}", "--now", extra_env=env)
    assert code == 3, err  # the leg's exit code
    assert calls.read_text().split() == [str(project), "run", "tap-coperniq", "target-quickbooks-merge"]
    assert "meltano run tap-coperniq target-quickbooks-merge" in out


@pytest.mark.parametrize("pipeline", ["optimistic-postgres"], indirect=True)
def test_an_action_asked_during_a_run_waits_for_the_next_run(
    pipeline: Pipeline, ambiguous: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    """On PostgreSQL a person can act while a run of the leg holds its run lock: the action is stored at once and
    applied by the next run, not by the running one."""
    account, other = ambiguous
    aid = str(account["id"])
    pipeline.run()
    with pipeline.ledger() as running:
        run_id = running.start_run("forward")  # a run in progress (holds the company's forward run lock)
        code, _, err = cli(pipeline, "link", f"accounts:{aid}", str(other["remote_id"]), process=True)
        assert code == 0, err  # another process: not held up by the run lock
        assert [a["applied_run"] for a in running.row_actions()] == [None]
        running.finish_run(run_id, "success")
    pipeline.run()
    with pipeline.ledger() as ledger:
        link = ledger.get_link("coperniq", "account", aid)
        assert link is not None and link.target_id == other["id"]
        [action] = ledger.row_actions()
    assert action["applied_run"] not in (None, run_id)
