"""`coperniq-qbo log`, `runs` and `doctor` against a real ledger file (and the merge sandbox for doctor)."""

from __future__ import annotations

import csv
import io
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from sync_ledger import Ledger


@pytest.fixture
def filled_ledger(ops_project: Any) -> dict[str, str]:
    """Two runs: an older clean one and a newer one with a failure whose reason quotes a secret."""
    secret = ops_project.env["COPERNIQ_QBO_ACCOUNT_TOKEN"]
    with Ledger(ops_project.ledger_path) as ledger:
        first = ledger.start_run("forward")
        ledger.log(first, direction="forward", stream="accounts", source_id="1", action="created", target_id="c-1")
        ledger.finish_run(first)
        second = ledger.start_run("forward")
        ledger.log(
            second,
            direction="forward",
            stream="projects",
            source_id="7",
            action="created",
            target_id="j-7",
            request_id="req-7",
        )
        ledger.log(
            second,
            direction="forward",
            stream="invoices",
            source_id="9",
            action="failed",
            reason=f"POST /invoices failed with HTTP 400: line 1 has no item (X-Account-Token: {secret})",
        )
        ledger.log(
            second,
            direction="forward",
            stream="projects",
            source_id="8",
            action="skipped",
            reason="not in a trigger phase",
        )
        ledger.finish_run(second, status="partial")
    return {"first": first, "second": second}


def test_log_table_filters_and_redaction(ops_project: Any, filled_ledger: dict[str, str]) -> None:
    res = ops_project.run(["log"])
    assert res.code == 0, res.err
    assert "ACTION" in res.out and "(4 rows)" in res.out

    last = ops_project.call(["log", "--last"])
    assert filled_ledger["first"] not in last.out and "(3 rows)" in last.out

    failed = ops_project.call(["log", "--failed", "--format", "json"])
    rows = json.loads(failed.out)
    assert [r["source_id"] for r in rows] == ["9"] and rows[0]["action"] == "failed"
    assert "X-Account-Token: ****" in rows[0]["reason"]  # the token quoted in the error is masked

    assert json.loads(ops_project.call(["log", "--action", "failed", "--format", "json"]).out) == rows
    by_stream = json.loads(ops_project.call(["log", "--stream", "projects", "--format", "json"]).out)
    assert {r["source_id"] for r in by_stream} == {"7", "8"}
    by_run = json.loads(ops_project.call(["log", "--run", filled_ledger["first"], "--format", "json"]).out)
    assert [r["stream"] for r in by_run] == ["accounts"]
    assert len(json.loads(ops_project.call(["log", "--limit", "2", "--format", "json"]).out)) == 2

    # exit codes as documented: 0 rows shown, 1 nothing to show (so `log --last --failed` can drive an alert)
    assert ops_project.call(["log", "--last", "--failed"]).code == 0
    nothing = ops_project.run(["log", "--action", "deleted"])
    assert nothing.code == 1 and "no matching log rows" in nothing.out

    as_csv = ops_project.run(["log", "--action", "created", "--format", "csv"])
    parsed = list(csv.DictReader(io.StringIO(as_csv.out)))
    assert {r["source_id"] for r in parsed} == {"1", "7"}
    assert {"run_id", "stream", "action", "reason", "logged_at"} <= set(parsed[0])


def test_runs_lists_counts(ops_project: Any, filled_ledger: dict[str, str]) -> None:
    res = ops_project.call(["runs"])
    assert res.code == 0
    lines = res.out.splitlines()
    assert filled_ledger["second"] in lines[1] and "partial" in lines[1]
    assert "created 1" in lines[1] and "failed 1" in lines[1]
    data = json.loads(ops_project.call(["runs", "--format", "json"]).out)
    assert data[0]["counts"]["invoices"]["failed"] == 1
    assert "run_id" in ops_project.call(["runs", "--format", "csv"]).out.splitlines()[0]


def test_log_without_ledger(ops_project: Any) -> None:
    res = ops_project.call(["log"])
    assert res.code == 1 and "no ledger" in res.err
    assert not ops_project.ledger_path.exists()  # read-only commands never create it


def _write_config(tmp_path: Path, **config: Any) -> str:
    path = tmp_path / "target-config.json"
    path.write_text(json.dumps(config))
    return str(path)


def test_doctor_flags_missing_triggers_and_invoice_sync(
    ops_project: Any, tmp_path: Path, filled_ledger: dict[str, str]
) -> None:
    with Ledger(ops_project.ledger_path) as ledger:
        ledger.stage("coperniq", "invoices", [("9", {"id": 9, "amount": 100})])
    cfg = _write_config(tmp_path, trigger_phases=[], invoice_sync=False)
    res = ops_project.run(["doctor", "--config", cfg])
    assert res.code == 1
    assert "[FAIL] trigger phases: no trigger phase configured" in res.out
    assert "[WARN] invoice sync: off while 1 Coperniq invoice(s) arrived" in res.out
    assert f"[WARN] last run: {filled_ledger['second']}" in res.out and "1 failed row(s)" in res.out
    assert "[PASS] connection: connected" in res.out


def test_doctor_checks_phases_against_workflows(ops_project: Any, tmp_path: Path) -> None:
    with Ledger(ops_project.ledger_path) as ledger:
        ledger.stage(
            "coperniq",
            "workflows",
            [
                (
                    "1",
                    {
                        "id": 1,
                        "name": "Residential Solar",
                        "phases": [{"id": 11, "name": "Design"}, {"id": 12, "name": "Install"}],
                    },
                ),
                ("2", {"id": 2, "name": "HVAC Replacement", "phases": [{"id": 21, "name": "Installation"}]}),
            ],
        )
        ledger.stage(
            "coperniq",
            "projects",
            [
                (
                    "100",
                    {
                        "id": 100,
                        "workflowId": 1,
                        "workflowName": "Residential Solar",
                        "phase": {"templateId": 11, "name": "Design"},
                    },
                ),
                (
                    "101",
                    {
                        "id": 101,
                        "workflowId": 2,
                        "workflowName": "HVAC Replacement",
                        "phase": {"templateId": 21, "name": "Installation"},
                    },
                ),
            ],
        )
    cfg = _write_config(
        tmp_path,
        invoice_sync=True,
        trigger_phases=[
            {"workflow": "Residential Solar", "phase": "Install"},
            {"workflow": "HVAC Replacement", "phase": "Installation"},
            {"workflow": "Roofing", "phase": "Tear-off"},
        ],
    )
    res = ops_project.call(["doctor", "--config", cfg, "--offline", "--format", "json"])
    checks = json.loads(res.out)
    by = [(c["level"], c["name"], c["message"]) for c in checks]
    assert by[1][:2] == ("PASS", "trigger phases")
    assert any(lvl == "WARN" and "none has reached 'Residential Solar -> Install'" in msg for lvl, _, msg in by)
    assert any(lvl == "PASS" and "HVAC Replacement -> Installation: 1 of 1" in msg for lvl, _, msg in by)
    assert any(lvl == "FAIL" and "'Roofing' is not among Coperniq's workflows" in msg for lvl, _, msg in by)
    assert any(c["name"] == "connection" and c["level"] == "INFO" for c in checks)
    assert res.code == 1


def test_doctor_reads_target_env_vars_when_no_meltano(ops_project: Any) -> None:
    env = dict(
        ops_project.env,
        TARGET_QUICKBOOKS_MERGE_TRIGGER_PHASES='[{"workflow": "A", "phase": "B"}]',
        TARGET_QUICKBOOKS_MERGE_INVOICE_SYNC="true",
    )
    res = ops_project.call(["doctor", "--no-meltano"], env=env)
    assert "TARGET_QUICKBOOKS_MERGE_* environment variables" in res.out
    assert "[PASS] trigger phases: 1 configured: A -> B" in res.out
    assert "[PASS] invoice sync: on" in res.out
    assert "[WARN] ledger: no ledger" in res.out
    assert res.code == 0, res.out


def test_doctor_connection_failure(ops_project: Any, tmp_path: Path) -> None:
    env = dict(ops_project.env, COPERNIQ_QBO_ACCOUNT_TOKEN="revoked-token-abc")
    ops_project.add_secret("revoked-token-abc")
    cfg = _write_config(tmp_path, trigger_phases=[{"workflow": "A", "phase": "B"}], invoice_sync=True)
    res = ops_project.run(["doctor", "--config", cfg], env=env)
    assert res.code == 1 and "[FAIL] connection: Merge rejects the account token (HTTP 401)" in res.out


def test_env_file_update_is_atomic_and_private(tmp_path: Path) -> None:
    from coperniq_qbo.env import read_env_file, update_env_file

    path = tmp_path / ".env"
    path.write_text("A=1\nexport B=2\n# comment\nB=dup\nC='x y'\n")
    path.chmod(0o644)
    update_env_file(path, {"B": "new", "D": 'with space"q', "A": None})
    text = path.read_text()
    assert text.splitlines()[0] == "B=new" and "# comment" in text and "dup" not in text
    values = read_env_file(path)
    assert values == {"B": "new", "C": "x y", "D": 'with space"q'}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [".env"]  # no temp files left behind
