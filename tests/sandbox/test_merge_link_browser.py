"""The Merge Link stand-in in real headless Chromium: a page on another origin loads /link/initialize.js, opens
Link, the Connect button in the iframe is clicked, onSuccess gets a public token that exchanges to a working
account token. Skipped when no Chromium is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import requests

KEY = "sandbox-merge-key"
T = 10
CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _host_page(sandbox_root: str, link_token: str) -> bytes:
    # --disable-web-security lets this host page click inside the cross-origin iframe, like a user would
    return f"""<!doctype html><html><body><pre id="out">pending</pre>
<script src="{sandbox_root}/link/initialize.js"></script>
<script>
MergeLink.initialize({{linkToken: "{link_token}",
  onSuccess: function (publicToken, info) {{
    document.getElementById("out").textContent = "OK " + publicToken + " " + info.integration.slug; }},
  onExit: function () {{ document.getElementById("out").textContent = "EXIT"; }} }});
MergeLink.openLink();
var frame = document.getElementById("merge-link-iframe");
frame.addEventListener("load", function () {{
  var button = frame.contentDocument.getElementById("merge-link-connect");
  if (button.textContent.trim() !== "Connect QuickBooks Online") {{ throw new Error("wrong button"); }}
  button.click(); }});
</script></body></html>""".encode()


@pytest.fixture
def host_server() -> Iterator[dict[str, Any]]:
    """A plain page server on another loopback port (another origin, like the coperniq-qbo connect page)."""
    holder: dict[str, Any] = {"page": b""}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(holder["page"])))
            self.end_headers()
            self.wfile.write(holder["page"])

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    holder["url"] = f"http://127.0.0.1:{server.server_address[1]}/"
    yield holder
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine")
def test_link_connect_in_headless_chromium(merge_sandbox: Any, host_server: dict[str, Any]) -> None:
    org = {"Authorization": f"Bearer {KEY}"}
    r = requests.post(
        f"{merge_sandbox.url}/link-token",
        headers=org,
        timeout=T,
        json={
            "end_user_email_address": "owner@browser.example",
            "end_user_organization_name": "Browser Org",
            "end_user_origin_id": "browser-1",
            "categories": ["accounting"],
            "integration": "quickbooks-online",
        },
    )
    root = merge_sandbox.url.split("/api/")[0]
    host_server["page"] = _host_page(root, r.json()["link_token"])
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-web-security",
                "--disable-features=IsolateOrigins,site-per-process",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                host_server["url"],
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    result = re.findall(r'<pre id="out">(.*?)</pre>', out.stdout)
    assert result and result[0].startswith("OK "), (result, out.stderr[-2000:])
    _, public_token, slug = result[0].split(" ")
    assert slug == "quickbooks-online"
    exchanged = requests.get(f"{merge_sandbox.url}/account-token/{public_token}", headers=org, timeout=T).json()
    details = requests.get(
        f"{merge_sandbox.url}/account-details",
        timeout=T,
        headers={**org, "X-Account-Token": exchanged["account_token"]},
    )
    assert details.status_code == 200 and details.json()["end_user_origin_id"] == "browser-1"
