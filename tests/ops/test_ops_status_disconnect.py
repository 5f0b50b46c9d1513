"""`coperniq-qbo status` and `disconnect` against the Merge sandbox: exit codes, texts, the ledger flag."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sync_ledger import ApiClient, ApiError, Ledger


def _account_details(sandbox: Any, token: str) -> Any:
    client = ApiClient(
        sandbox.url, headers={"Authorization": f"Bearer {sandbox.api_key}", "X-Account-Token": token}, max_retries=0
    )
    return client.get("/account-details")


def test_status_connected_subprocess(ops_project: Any) -> None:
    with Ledger(ops_project.ledger_path) as ledger:
        run_id = ledger.start_run("forward")
        ledger.log(run_id, direction="forward", stream="projects", source_id="7", action="created", target_id="m-7")
        ledger.finish_run(run_id)
    res = ops_project.run(["status"])
    assert res.code == 0, res.err
    assert res.out.startswith("Connected")
    assert "QuickBooks company:" in res.out
    assert "Merge last sync:" in res.out
    assert run_id in res.out and "created 1" in res.out


def test_status_json_in_process(ops_project: Any) -> None:
    res = ops_project.call(["status", "--format", "json"])
    assert res.code == 0, res.err
    data = json.loads(res.out)
    assert data["connected"] is True
    assert data["linked_account_id"]
    assert "merge_sync" in data
    assert "last_run" not in data  # no ledger yet


def test_status_without_token_is_disconnected(ops_project: Any) -> None:
    env = dict(ops_project.env)
    del env["COPERNIQ_QBO_ACCOUNT_TOKEN"]
    res = ops_project.call(["status"], env=env)
    assert res.code == 1
    assert res.out.startswith("Disconnected")
    assert "coperniq-qbo connect" in res.out


def test_status_wrong_token_is_disconnected(ops_project: Any) -> None:
    env = dict(ops_project.env, COPERNIQ_QBO_ACCOUNT_TOKEN="not-a-real-token-123")
    ops_project.add_secret("not-a-real-token-123")
    res = ops_project.run(["status"], env=env)
    assert res.code == 1
    assert "Disconnected" in res.out and "401" in res.out


def test_status_unreachable_merge_is_api_error(ops_project: Any) -> None:
    env = dict(ops_project.env, COPERNIQ_QBO_BASE_URL="http://127.0.0.1:9/api/accounting/v1")
    res = ops_project.call(["status"], env=env)
    assert res.code == 3
    assert "could not reach Merge" in res.err


def test_disconnect_requires_confirmation_without_tty(ops_project: Any, merge_sandbox: Any) -> None:
    res = ops_project.run(["disconnect"], input_text="")
    assert res.code == 2
    assert "--yes" in res.err
    assert _account_details(merge_sandbox, merge_sandbox.account_token)  # still linked
    assert merge_sandbox.state.accounts[merge_sandbox.account_token].deleted is False
    assert not ops_project.ledger_path.exists()


def test_disconnect_deletes_account_flags_ledger_keeps_data(ops_project: Any, merge_sandbox: Any) -> None:
    from sync_ledger import Link

    with Ledger(ops_project.ledger_path) as ledger:
        run_id = ledger.start_run("forward")
        ledger.upsert_link(Link("coperniq", "project", "7", "quickbooks", "job", "m-7"))
        ledger.log(run_id, direction="forward", stream="projects", source_id="7", action="created", target_id="m-7")
        ledger.finish_run(run_id)

    res = ops_project.run(["disconnect", "--yes"])
    assert res.code == 0, res.err
    assert "Disconnected" in res.out and "kept" in res.out

    # Merge: the linked account is gone (account-scoped calls answer 401).
    assert merge_sandbox.state.accounts[merge_sandbox.account_token].deleted is True
    with pytest.raises(ApiError) as info:
        _account_details(merge_sandbox, merge_sandbox.account_token)
    assert info.value.status == 401
    # Ledger: flag set, id map and log intact.
    with Ledger(ops_project.ledger_path, read_only=True) as ledger:
        assert ledger.get_meta("disconnected")
        assert ledger.get_link("coperniq", "project", "7").target_id == "m-7"
        assert len(ledger.log_rows(run_id=run_id)) == 1

    status = ops_project.run(["status"])
    assert status.code == 1 and status.out.startswith("Disconnected")
    assert "Last attempt:" in status.out and run_id in status.out
    assert "Last successful sync:" in status.out

    again = ops_project.call(["disconnect", "--yes"])  # idempotent: already gone
    assert again.code == 0 and "already" in again.out

    doctor = ops_project.call(["doctor", "--no-meltano", "--offline"])
    assert doctor.code == 1 and "[FAIL] disconnected" in doctor.out


def test_no_secrets_in_ledger_file(ops_project: Any) -> None:
    ops_project.run(["disconnect", "--yes"])
    data = ops_project.ledger_path.read_bytes()
    for secret in ops_project.secrets:
        assert secret.encode() not in data


def test_target_fails_fast_after_disconnect(ops_project: Any, merge_sandbox: Any, tmp_path: Any) -> None:
    """The contract with target-quickbooks-merge: after `disconnect`, the next forward run stops at start."""
    import subprocess
    import sys

    assert ops_project.call(["disconnect", "--yes"]).code == 0
    config = tmp_path / "target.json"
    config.write_text(
        json.dumps(
            {
                "merge_api_key": merge_sandbox.api_key,
                "account_token": merge_sandbox.account_token,
                "base_url": merge_sandbox.url,
                "ledger_path": str(ops_project.ledger_path),
                "trigger_phases": [{"workflow": "Residential Solar", "phase": "Install"}],
            }
        )
    )
    schema = {
        "type": "SCHEMA",
        "stream": "accounts",
        "key_properties": ["id"],
        "schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
    }
    proc = subprocess.run(
        [sys.executable, "-m", "target_quickbooks_merge", "--config", str(config)],
        input=json.dumps(schema) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ops_project.root,
        env=ops_project.env,
        check=False,
    )
    ops_project.assert_clean(proc.stdout, proc.stderr)
    assert proc.returncode != 0
    assert "disconnected" in proc.stderr
