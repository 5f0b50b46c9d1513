"""`coperniq-qbo ui` in real headless Chromium: an ambiguous client waits in the review queue, the operator filters
the integration log, links the client to the QuickBooks customer in the browser and turns invoice sync on (saved in
meltano.yml), and the next run syncs the client under that customer with its jobs and invoices.

Plain requests check the gate: no token, a bad CSRF token, a foreign Host header, no password off loopback, and no
secret on any page. Needs Debian `chromium` + `chromium-driver` and `selenium` for the browser part (skipped when
absent, except in CI, where that is a failure). Screenshots of each step go to tests/artifacts/console/.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from coperniq_qbo.cli import main
from tests.browser import headless_chromium, require_browser
from tests.conftest import ROOT
from tests.target_quickbooks_merge.qbm_helpers import (
    BOTH_TRIGGERS,
    Pipeline,
    assert_no_duplicate_names,
    first_triggered_account,
    merge_rows,
    qbo_jobs,
)

ARTIFACTS = ROOT / "tests" / "artifacts" / "console"


def wait_for(check: Callable[[], Any], timeout: float = 15, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy (a condition, not a sleep for timing)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class RunningConsole:
    url: str  # with the token
    base: str  # http://127.0.0.1:PORT
    project: Path
    proc: subprocess.Popen[str]
    lines: list[str]


def console_env(pipe: Pipeline, project: Path) -> dict[str, str]:
    """The console on the pipeline's ledger and Merge sandbox, saving settings into `project` (env prod: no
    invoice_sync there yet, the trigger phases shared through SYNC_TRIGGER_PHASES)."""
    return {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "HOME": os.environ.get("HOME", str(project)),
        "USER": "tester",
        "COPERNIQ_QBO_LEDGER_PATH": str(pipe.ledger_path),
        "COPERNIQ_QBO_MERGE_API_KEY": pipe.merge.api_key,
        "COPERNIQ_QBO_ACCOUNT_TOKEN": pipe.merge.account_token,
        "COPERNIQ_QBO_BASE_URL": pipe.merge.url,
        "COPERNIQ_QBO_LOCK_TIMEOUT": "1",  # the page says "busy" after this long when a sync holds the ledger
        "MELTANO_PROJECT_ROOT": str(project),
        "MELTANO_ENVIRONMENT": "prod",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "SYNC_TRIGGER_PHASES": json.dumps(BOTH_TRIGGERS),
    }


@pytest.fixture
def console(pipeline: Pipeline, tmp_path: Path) -> Iterator[RunningConsole]:
    """`coperniq-qbo ui --no-browser` in a subprocess, as an operator starts it; its URL read from stdout."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "meltano.yml", project / "meltano.yml")
    proc = subprocess.Popen(
        [sys.executable, "-m", "coperniq_qbo", "ui", "--no-browser"],
        cwd=project,
        env=console_env(pipeline, project),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    found: dict[str, str] = {}

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r"(http://127\.0\.0\.1:\d+)/\?token=(\S+)", line)
            if m and "url" not in found:
                found["url"], found["base"] = m.group(0), m.group(1)

    threading.Thread(target=read, daemon=True).start()
    try:
        wait_for(lambda: "url" in found or proc.poll() is not None, 30, "the console's URL")
        assert "url" in found, f"the console printed no URL: {''.join(lines)}"
        yield RunningConsole(found["url"], found["base"], project, proc, lines)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def queued(pipeline: Pipeline) -> tuple[dict[str, Any], dict[str, Any]]:
    """A triggered client with a same-name QuickBooks customer of another email: it waits in the review queue."""
    account = first_triggered_account(pipeline)
    other = pipeline.merge.app.add_contact(account["title"], email="someone-else@unrelated.example")
    pipeline.config.update(invoice_sync=True, default_item="Services")
    first = pipeline.run()
    assert first.counts["accounts"]["review"] == 1
    return account, other


def submit(driver: Any, button: Any, what: str) -> str:
    """Click a form's button and return the text of the next page's success message.

    The page before may already show a message (the link's, before the save): the old page has to be gone before
    the new one's message is read, or the read races the navigation (a stale element)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.expected_conditions import staleness_of

    old_page_gone = staleness_of(driver.find_element(By.TAG_NAME, "html"))
    button.click()
    wait_for(lambda: old_page_gone(driver), 30, f"the page after the click ({what})")
    return str(wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".flash-ok"), 30, what)[0].text)


def shot(driver: Any, name: str, max_height: int = 3000) -> Path:
    """A screenshot of the page (up to `max_height` pixels of it) as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(800, min(int(height) + 40, max_height)))
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def saved_target_config(project: Path) -> dict[str, Any]:
    doc = yaml.safe_load((project / "meltano.yml").read_text())
    prod = next(e for e in doc["environments"] if e["name"] == "prod")
    loaders = prod["config"]["plugins"]["loaders"]
    return next(p for p in loaders if p["name"] == "target-quickbooks-merge").get("config") or {}


@pytest.mark.timeout(120)
def test_console_links_a_queued_client_in_headless_chromium(
    pipeline: Pipeline, queued: tuple[dict[str, Any], dict[str, Any]], console: RunningConsole, tmp_path: Path
) -> None:
    require_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    account, other = queued
    aid = str(account["id"])
    driver = headless_chromium(tmp_path, "--window-size=1280,1000")
    driver.set_page_load_timeout(30)
    try:
        driver.get(console.url)
        assert "token=" not in driver.current_url, "the token is swapped for a cookie and leaves the address bar"
        assert driver.find_element(By.ID, "badge").text == "Connected"
        company = driver.find_element(By.ID, "company").text
        assert company and company != "-"
        queued_row = driver.find_element(By.ID, f"queued-accounts-{aid}")
        assert account["title"] in queued_row.text and "someone-else@unrelated.example" in queued_row.text
        phases = {
            s.get_attribute("id"): Select(s).first_selected_option.text
            for s in driver.find_elements(By.CSS_SELECTOR, "select[id^=phase-]")
        }
        assert {"Install", "Installation"} <= set(phases.values()), phases
        shot(driver, "1-queued", max_height=1350)  # also docs/images/console.png

        Select(driver.find_element(By.ID, "filter-stream")).select_by_value("accounts")
        driver.find_element(By.ID, "filter-q").send_keys(aid)
        driver.find_element(By.ID, "apply-filter").click()
        wait_for(lambda: "stream=accounts" in driver.current_url, what="the filtered log")
        rows = driver.find_elements(By.CSS_SELECTOR, "#log-rows tr.log-row")
        assert rows and all(r.find_element(By.CSS_SELECTOR, "td.stream").text == "accounts" for r in rows)
        assert any("review" in r.text and aid in r.text for r in rows)
        shot(driver, "2-log-filtered")

        flash = submit(driver, driver.find_element(By.ID, f"link-{aid}-1"), "the link's message")
        assert f"console:tester asked to link to QuickBooks customer {other['remote_id']}" in flash
        assert (
            f"Asked: link {other['remote_id']} by console:tester"
            in driver.find_element(By.ID, f"queued-accounts-{aid}").text
        )
        assert "stream=accounts" in driver.current_url, "the log filters are kept"
        shot(driver, "3-linked")

        box = driver.find_element(By.ID, "invoice-sync")
        assert not box.is_selected()
        box.click()
        flash = submit(driver, driver.find_element(By.ID, "save-settings"), "the save's message")
        assert "invoice sync on" in flash, flash
        assert driver.find_element(By.ID, "invoice-sync").is_selected()
        shot(driver, "4-invoice-sync-saved")
        assert saved_target_config(console.project).get("invoice_sync") is True
        assert "trigger_phases" not in saved_target_config(console.project), "only what changed is saved"
    finally:
        driver.quit()

    run = pipeline.run()
    with pipeline.ledger() as ledger:
        link = ledger.get_link("coperniq", "account", aid)
        projects = [r for r, p, _, _ in ledger.iter_staged("coperniq", "projects") if str(p.get("accountId")) == aid]
        job_ids = {lk.target_id for lk in (ledger.get_link("coperniq", "project", p) for p in projects) if lk}
    assert link is not None and link.target_id == other["id"]
    assert run.counts["accounts"]["linked"] == 1 and run.counts["accounts"]["operator"] == 1
    jobs = [j for j in qbo_jobs(pipeline.merge) if str(j["ParentRef"]["value"]) == str(other["remote_id"])]
    assert jobs and len(jobs) == run.counts["projects"]["created"]
    billed = [i for i in merge_rows(pipeline.merge, "invoices") if i["contact"] in job_ids]
    assert billed and run.counts["invoices"]["created"] == len(billed)
    assert_no_duplicate_names(pipeline.merge)


@pytest.mark.timeout(90)
def test_console_gate_refuses_strangers_and_shows_no_secret(
    pipeline: Pipeline, queued: tuple[dict[str, Any], dict[str, Any]], console: RunningConsole
) -> None:
    account, other = queued
    aid = str(account["id"])
    assert requests.get(console.base + "/", timeout=10).status_code == 403
    assert requests.get(console.base + "/?token=wrong", timeout=10).status_code == 403
    assert requests.get(console.url, headers={"Host": "evil.example"}, timeout=10).status_code == 403

    s = requests.Session()
    first = s.get(console.url, allow_redirects=False, timeout=10)
    assert first.status_code == 303 and first.headers["location"] == "/"
    cookie = first.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = s.get(console.base + "/", timeout=30)
    assert page.status_code == 200 and f"accounts:{aid}" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    forged = {"ref": f"accounts:{aid}", "action": "link", "target_id": str(other["remote_id"])}
    for bad in ({}, {"csrf": "forged"}):
        r = s.post(console.base + "/row", data={**forged, **bad}, allow_redirects=False, timeout=10)
        assert r.status_code == 403
    r = s.post(console.base + "/disconnect", data={"csrf": "x", "confirm": "yes"}, allow_redirects=False, timeout=10)
    assert r.status_code == 403
    with pipeline.ledger() as ledger:
        [item] = ledger.review_items()
        assert item["decision"] is None and ledger.get_meta("disconnected") is None, "nothing changed"

    with pipeline.ledger():  # a sync holds the ledger: the page says so instead of failing
        busy = s.get(console.base + "/", timeout=30)
    assert busy.status_code == 200 and "The ledger is busy" in busy.text and "Traceback" not in busy.text

    pages = [page.text, busy.text, s.get(console.base + "/?stream=accounts&q=" + aid, timeout=30).text]
    confirm = s.get(console.base + "/disconnect", timeout=10)
    assert "Yes, disconnect" in confirm.text
    done = s.post(console.base + "/disconnect", data={"csrf": csrf.group(1), "confirm": "yes"}, timeout=30)
    assert done.status_code == 200 and "Disconnected: Merge deleted the linked" in done.text
    assert 'id="badge">Disconnected' in done.text
    with pipeline.ledger() as ledger:
        assert ledger.get_meta("disconnected"), "flagged as `coperniq-qbo disconnect` flags it"
    for text in [*pages, confirm.text, done.text]:
        for secret in (pipeline.merge.api_key, pipeline.merge.account_token):
            assert secret not in text


def test_console_off_loopback_needs_allow_host_and_a_password(pipeline: Pipeline, tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "COPERNIQ_QBO_LEDGER_PATH": str(tmp_path / "none.duckdb")}
    err = io.StringIO()
    assert main(["ui", "--host", "0.0.0.0"], stdout=io.StringIO(), stderr=err, environ=env) != 0
    assert "--allow-host" in err.getvalue()
    err = io.StringIO()
    code = main(["ui", "--host", "0.0.0.0", "--allow-host", "console.test"], stderr=err, environ=env)
    assert code != 0 and "COPERNIQ_QBO_UI_PASSWORD" in err.getvalue()

    from coperniq_qbo.console import Console
    from coperniq_qbo.settings import Settings
    from coperniq_qbo.ui import UiServer
    from coperniq_qbo.ui_app import build_app
    from coperniq_qbo.ui_config import ConfigStore
    from coperniq_qbo.ui_security import LOOPBACK_HOSTS, Gate

    gate = Gate("tok", frozenset({*LOOPBACK_HOSTS, "console.test"}), password="s3cret-pass")
    settings = Settings(ledger_path=tmp_path / "none.duckdb", base_url=pipeline.merge.url)
    app = build_app(settings, ConfigStore(tmp_path, {"PATH": ""}), gate, Console(["s3cret-pass"]))
    server = UiServer(app, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{server.port}/?token=tok"
        assert requests.get(url, timeout=10).status_code == 401
        wrong = base64.b64encode(b"ann:nope").decode()
        assert requests.get(url, headers={"Authorization": f"Basic {wrong}"}, timeout=10).status_code == 401
        right = {"Authorization": "Basic " + base64.b64encode(b"ann:s3cret-pass").decode(), "Host": "console.test"}
        r = requests.get(url, headers=right, allow_redirects=False, timeout=10)
        assert r.status_code == 303
        page = requests.get(
            f"http://127.0.0.1:{server.port}/", headers=right, cookies=r.cookies, timeout=30, allow_redirects=False
        )
        assert page.status_code == 200 and "signed in as ann" in page.text and "s3cret-pass" not in page.text
    finally:
        server.stop()
