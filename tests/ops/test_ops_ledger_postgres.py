"""`coperniq-qbo` on a PostgreSQL ledger shared by two companies: each command sees only its company, a company
with nothing synced reads as "no ledger yet", and the URL's password never reaches the output."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from sync_ledger import Ledger, LedgerNotFoundError
from sync_ledger.ledger_db import redact_url
from sync_ledger.util import url_secrets


@dataclass
class Companies:
    url: str
    display: str  # the URL as messages show it (no password)
    password: str
    acme: list[str]  # run ids, oldest first
    globex: list[str]


def _fill(url: str, company: str, streams: list[str]) -> list[str]:
    """One run per stream, each with one created row whose source id names the company."""
    runs = []
    with Ledger(url, company=company) as ledger:
        for i, stream in enumerate(streams):
            run_id = ledger.start_run("forward")
            ledger.log(
                run_id,
                direction="forward",
                stream=stream,
                source_id=f"{company}-{i}",
                action="created",
                target_id=f"q-{company}-{i}",
            )
            ledger.finish_run(run_id)
            runs.append(run_id)
    return runs


@pytest.fixture
def companies(ops_project: Any, pg_url: str) -> Companies:
    """ops_project pointed at a PostgreSQL ledger (env COPERNIQ_QBO_LEDGER_URL) holding companies acme and globex."""
    password = urlsplit(pg_url).password
    assert password
    for secret in url_secrets(pg_url):
        ops_project.add_secret(secret)
    acme = _fill(pg_url, "acme", ["accounts", "projects"])
    globex = _fill(pg_url, "globex", ["invoices"])
    ops_project.env["COPERNIQ_QBO_LEDGER_URL"] = pg_url
    return Companies(pg_url, redact_url(pg_url), password, acme, globex)


def _env(ops_project: Any, **extra: str) -> dict[str, str]:
    return dict(ops_project.env, **extra)


def test_runs_and_log_show_only_the_chosen_company(ops_project: Any, companies: Companies) -> None:
    runs = ops_project.run(["runs", "--company", "acme", "--format", "json"])  # a process, as meltano runs it
    assert runs.code == 0, runs.err
    assert sorted(r["run_id"] for r in json.loads(runs.out)) == sorted(companies.acme)

    env = _env(ops_project, COPERNIQ_QBO_COMPANY="globex")  # the setting as meltano passes it
    runs = ops_project.call(["runs", "--format", "json"], env=env)
    assert [r["run_id"] for r in json.loads(runs.out)] == companies.globex

    log = ops_project.run(["log", "--format", "json"], env=env)
    assert log.code == 0, log.err
    rows = json.loads(log.out)
    assert [(r["source_id"], r["stream"]) for r in rows] == [("globex-0", "invoices")]

    table = ops_project.call(["log", "--company", "acme"])
    assert table.code == 0 and "(2 rows)" in table.out
    assert "acme-0" in table.out and "acme-1" in table.out and "globex" not in table.out
    last = json.loads(ops_project.call(["log", "--company", "acme", "--last", "--format", "json"]).out)
    assert [r["run_id"] for r in last] == [companies.acme[-1]]

    table = ops_project.call(["runs", "--company", "acme"])
    assert table.code == 0 and "(2 rows)" in table.out and companies.globex[0] not in table.out


def test_status_reports_the_chosen_company(ops_project: Any, companies: Companies) -> None:
    res = ops_project.run(["status", "--company", "acme"])
    assert res.code == 0, res.err
    assert res.out.startswith("Connected")
    assert companies.acme[-1] in res.out and companies.globex[0] not in res.out

    data = json.loads(ops_project.call(["status", "--company", "globex", "--format", "json"]).out)
    assert data["connected"] is True
    assert data["last_run"]["run_id"] == companies.globex[0]
    assert data["last_successful_run"]["run_id"] == companies.globex[0]


def test_company_with_nothing_synced_is_no_ledger_yet(ops_project: Any, companies: Companies) -> None:
    for command in (["log"], ["runs"]):
        res = ops_project.run([*command, "--company", "initech"])
        assert res.code == 1, res.err  # exactly as a DuckDB ledger file that does not exist yet
        assert f"no ledger at {companies.display} (company initech) yet: nothing has synced" in res.err
        assert res.out == ""

    # the default company of this database has nothing synced either (acme and globex have their own schemas)
    res = ops_project.call(["log"])
    assert res.code == 1 and f"no ledger at {companies.display} yet" in res.err

    status = ops_project.call(["status", "--company", "initech"])
    assert status.code == 0, status.err
    assert "Last sync run:      no ledger yet" in status.out
    assert "last_run" not in json.loads(ops_project.call(["status", "--company", "initech", "--format", "json"]).out)

    doctor = ops_project.call(["doctor", "--no-meltano", "--offline", "--company", "initech"])
    assert "[WARN] ledger: no ledger at" in doctor.out and "(company initech)" in doctor.out
    doctor = ops_project.call(["doctor", "--no-meltano", "--offline", "--company", "acme"])
    assert f"[PASS] ledger: {companies.display} (company acme)" in doctor.out

    with pytest.raises(LedgerNotFoundError):  # read-only commands created nothing
        Ledger(companies.url, company="initech", read_only=True)


def test_disconnect_flags_only_that_company(ops_project: Any, companies: Companies, merge_sandbox: Any) -> None:
    res = ops_project.run(["disconnect", "--yes", "--company", "acme"])
    assert res.code == 0, res.err
    assert f"the ledger {companies.display} (company acme) is flagged disconnected" in res.out
    assert merge_sandbox.state.accounts[merge_sandbox.account_token].deleted is True

    with Ledger(companies.url, company="acme", read_only=True) as acme:
        assert acme.get_meta("disconnected")
        assert len(acme.log_rows()) == 2  # data kept
    with Ledger(companies.url, company="globex", read_only=True) as globex:
        assert globex.get_meta("disconnected") is None

    acme_doctor = ops_project.call(["doctor", "--no-meltano", "--offline", "--company", "acme"])
    assert "[FAIL] disconnected" in acme_doctor.out
    globex_doctor = ops_project.call(["doctor", "--no-meltano", "--offline", "--company", "globex"])
    assert "[FAIL] disconnected" not in globex_doctor.out
    status = json.loads(ops_project.call(["status", "--company", "acme", "--format", "json"]).out)
    assert status["connected"] is False and status["disconnected_at"]


def test_connect_clears_the_flag_of_its_company_only(ops_project: Any, companies: Companies) -> None:
    """What `connect` does to the ledger once Merge Link is done (the browser flow itself: test_ops_connect_browser)."""
    from coperniq_qbo.cli import build_parser
    from coperniq_qbo.connect import clear_disconnected
    from coperniq_qbo.console import Console
    from coperniq_qbo.settings import resolve_settings

    for company in ("acme", "globex"):
        with Ledger(companies.url, company=company) as ledger:
            ledger.set_meta("disconnected", "2026-01-01T00:00:00Z")

    def clear(company: str) -> str:
        args = build_parser().parse_args(["status", "--company", company])
        out = io.StringIO()
        clear_disconnected(resolve_settings(args, ops_project.env), Console(out=out, err=out))
        ops_project.assert_clean(out.getvalue())
        return out.getvalue()

    assert "Cleared the ledger's disconnected flag" in clear("acme")
    with Ledger(companies.url, company="acme", read_only=True) as acme:
        assert acme.get_meta("disconnected") is None
    with Ledger(companies.url, company="globex", read_only=True) as globex:
        assert globex.get_meta("disconnected") == "2026-01-01T00:00:00Z"

    assert clear("initech") == ""  # nothing synced: nothing to clear, and no company created
    with pytest.raises(LedgerNotFoundError):
        Ledger(companies.url, company="initech", read_only=True)


def test_wrong_password_is_a_clear_error_without_the_password(
    ops_project: Any, companies: Companies, merge_sandbox: Any
) -> None:
    wrong = "Wr0ngPassw0rdXyz"
    bad_url = companies.url.replace(f":{companies.password}@", f":{wrong}@")
    assert bad_url != companies.url
    ops_project.add_secret(wrong)
    env = _env(ops_project, COPERNIQ_QBO_LEDGER_URL=bad_url)

    for command in (["runs"], ["log"], ["disconnect", "--yes"]):
        res = ops_project.run([*command, "--company", "acme"], env=env)
        assert res.code == 3, (command, res.out, res.err)
        assert f"Cannot connect to the sync ledger {companies.display}" in res.err
        assert wrong not in res.out + res.err and companies.password not in res.out + res.err
    assert "nothing changed" in res.err  # disconnect stops before deleting the linked account at Merge
    assert merge_sandbox.state.accounts[merge_sandbox.account_token].deleted is False

    status = ops_project.run(["status", "--company", "acme"], env=env)  # Merge is still worth reporting
    assert status.out.startswith("Connected")
    assert "Last sync run:      unknown (Cannot connect to the sync ledger" in status.out

    doctor = ops_project.call(["doctor", "--no-meltano", "--offline"], env=env)
    assert doctor.code == 3 and "Cannot connect to the sync ledger" in doctor.err


def test_ledger_url_flag_and_ledger_path_flag(ops_project: Any, companies: Companies) -> None:
    env = dict(ops_project.env)
    del env["COPERNIQ_QBO_LEDGER_URL"]
    res = ops_project.call(["runs", "--ledger-url", companies.url, "--company", "globex", "--format", "json"], env=env)
    assert res.code == 0, res.err
    assert [r["run_id"] for r in json.loads(res.out)] == companies.globex

    # an explicit --ledger-path means that DuckDB file, even with COPERNIQ_QBO_LEDGER_URL in the environment
    res = ops_project.call(["runs", "--ledger-path", str(ops_project.ledger_path)])
    assert res.code == 1 and f"no ledger at {ops_project.ledger_path} yet" in res.err
    assert not ops_project.ledger_path.exists()


def test_bad_ledger_url_names_the_setting(ops_project: Any, companies: Companies) -> None:
    env = _env(ops_project, COPERNIQ_QBO_LEDGER_URL=f"mysql://sync:{companies.password}@127.0.0.1/db")
    res = ops_project.run(["runs"], env=env)
    assert res.code == 2
    assert "coperniq-qbo runs: ledger_url: must be a postgresql://" in res.err


def test_duckdb_ledger_with_companies(ops_project: Any) -> None:
    """`company` works on a DuckDB file too: a company the file does not hold yet is "no ledger yet"."""
    acme = _fill(str(ops_project.ledger_path), "acme", ["projects"])
    res = ops_project.call(["runs", "--company", "acme", "--format", "json"])
    assert [r["run_id"] for r in json.loads(res.out)] == acme
    res = ops_project.call(["log", "--company", "globex"])
    assert res.code == 1 and f"no ledger at {ops_project.ledger_path} (company globex) yet" in res.err
