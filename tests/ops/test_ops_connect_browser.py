"""`coperniq-qbo connect` end to end in real headless Chromium: local page -> Merge Link (sandbox) -> .env.

Needs Debian `chromium` + `chromium-driver` and the `selenium` package. Skipped when they are absent, except
in CI (CI=true), where a missing browser is a failure.
"""

from __future__ import annotations

import re
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser import headless_chromium, require_browser


def _click_connect(driver: Any, timeout: float = 15) -> None:
    """Find Merge Link's connect button wherever the Link stand-in put it (page, iframe or popup) and click."""
    from selenium.common.exceptions import NoSuchElementException, WebDriverException
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for handle in driver.window_handles:
            driver.switch_to.window(handle)
            driver.switch_to.default_content()
            frames = [None, *driver.find_elements(By.TAG_NAME, "iframe")]
            for frame in frames:
                try:
                    if frame is not None:
                        driver.switch_to.frame(frame)
                    driver.find_element(By.ID, "merge-link-connect").click()
                    return
                except (NoSuchElementException, WebDriverException):
                    driver.switch_to.default_content()
        time.sleep(0.2)
    raise AssertionError("Merge Link's #merge-link-connect button never appeared")


def _read_url(stream: Any, found: dict[str, str], lines: list[str]) -> None:
    for line in stream:
        lines.append(line)
        m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        if m and "url" not in found:
            found["url"] = m.group(1)


@pytest.mark.timeout(90)
def test_connect_in_headless_chromium(ops_project: Any, merge_sandbox: Any, tmp_path: Path) -> None:
    require_browser()
    from coperniq_qbo.env import read_env_file
    from sync_ledger import ApiClient, Ledger

    ops_project.env_file.write_text(
        "# my project secrets\nTAP_COPERNIQ_API_KEY=keep-me\nTARGET_QUICKBOOKS_MERGE_ACCOUNT_TOKEN=old-token\n"
    )
    with Ledger(ops_project.ledger_path) as ledger:  # a previous `disconnect` left the flag
        ledger.set_meta("disconnected", "2026-01-01T00:00:00Z")
    env = dict(ops_project.env)
    del env["COPERNIQ_QBO_ACCOUNT_TOKEN"]  # connecting does not need one
    proc = subprocess.Popen(
        [sys.executable, "-m", "coperniq_qbo.cli", "connect", "--no-browser", "--timeout", "60"],
        cwd=ops_project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    found: dict[str, str] = {}
    out_lines: list[str] = []
    reader = threading.Thread(target=_read_url, args=(proc.stdout, found, out_lines), daemon=True)
    reader.start()
    driver = None
    try:
        deadline = time.monotonic() + 20
        while "url" not in found and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert "url" in found, (
            f"connect printed no local URL: {out_lines} {proc.stderr.read() if proc.poll() is not None else ''}"
        )
        driver = headless_chromium(tmp_path)
        driver.set_page_load_timeout(20)
        driver.get(found["url"])
        _click_connect(driver)
        code = proc.wait(timeout=30)
        driver.switch_to.default_content()
        driver.switch_to.window(driver.window_handles[0])
        deadline = time.monotonic() + 10
        from selenium.webdriver.common.by import By

        status_text = ""
        while time.monotonic() < deadline:
            status_text = driver.find_element(By.ID, "status").text
            if status_text.startswith("Connected"):
                break
            time.sleep(0.1)
    finally:
        if driver is not None:
            driver.quit()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    out = "".join(out_lines)
    err = proc.stderr.read()
    assert code == 0, err

    values = read_env_file(ops_project.env_file)
    token = values["TARGET_QUICKBOOKS_MERGE_ACCOUNT_TOKEN"]
    ops_project.add_secret(token)
    ops_project.assert_clean(out, err, status_text)
    assert token not in ("old-token", merge_sandbox.account_token)
    assert values["TAP_QUICKBOOKS_MERGE_ACCOUNT_TOKEN"] == token
    assert values["COPERNIQ_QBO_ACCOUNT_TOKEN"] == token
    assert values["TAP_COPERNIQ_API_KEY"] == "keep-me"
    assert "# my project secrets" in ops_project.env_file.read_text()
    assert stat.S_IMODE(ops_project.env_file.stat().st_mode) == 0o600
    assert "saved to" in out and "(value hidden)" in out and "Connected" in out
    assert "Connected" in status_text

    # The token is the one the sandbox issued for this end user, and it works.
    account = merge_sandbox.state.accounts[token]
    assert account.end_user_origin_id == "sunny-roofs" and not account.deleted
    client = ApiClient(
        merge_sandbox.url,
        headers={"Authorization": f"Bearer {merge_sandbox.api_key}", "X-Account-Token": token},
        max_retries=0,
    )
    details = client.get("/account-details")
    assert details["end_user_organization_name"] == "Sunny Roofs LLC"
    with Ledger(ops_project.ledger_path, read_only=True) as ledger:
        assert ledger.get_meta("disconnected") is None  # connect re-enables syncing

    # A direct run (no token in the environment) picks the new token up from .env.
    status = ops_project.call(["status"], env=env)
    assert status.code == 0 and status.out.startswith("Connected"), status.out + status.err


def test_connect_times_out_clearly(ops_project: Any) -> None:
    res = ops_project.call(["connect", "--no-browser", "--timeout", "0.5"])
    assert res.code == 1
    assert "timed out after" in res.err and "coperniq-qbo connect" in res.err
    assert not ops_project.env_file.exists()


def test_connect_needs_end_user(ops_project: Any) -> None:
    env = {k: v for k, v in ops_project.env.items() if "END_USER" not in k}
    res = ops_project.call(["connect", "--no-browser"], env=env)
    assert res.code == 2 and "end_user_email_address" in res.err


def test_connect_rejects_bad_api_key(ops_project: Any) -> None:
    env = dict(ops_project.env, COPERNIQ_QBO_MERGE_API_KEY="wrong-key-xyz")
    ops_project.add_secret("wrong-key-xyz")
    res = ops_project.run(["connect", "--no-browser"], env=env)
    assert res.code == 3 and "link token" in res.err


def test_local_page_rejects_foreign_posts(ops_project: Any) -> None:
    """Only the page we served (it knows the nonce) can hand us a public token."""
    import requests

    from coperniq_qbo.link_page import LinkPageServer

    server = LinkPageServer("lt-123", "http://127.0.0.1:1/none.js").start()
    try:
        page = requests.get(server.url, timeout=5)
        assert page.status_code == 200 and "lt-123" in page.text and "</script>" in page.text
        bad = requests.post(server.url + "public-token", json={"public_token": "x", "nonce": "guess"}, timeout=5)
        assert bad.status_code == 403
        assert server.wait_for_token(0.1) is None
    finally:
        server.stop()
