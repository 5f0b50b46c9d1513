"""tap-coperniq as a process: the console script, and `meltano invoke tap-coperniq` from the project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox._server import SandboxServer
from sandbox.coperniq import CoperniqApp

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SECRET = "tap-secret-7c1e94d2b8"  # distinctive, so a leak in any output is detectable


@pytest.fixture
def secret_sandbox() -> Iterator[SandboxServer]:
    server = SandboxServer(CoperniqApp(api_key=SECRET, rate_limit_per_day=None)).start()
    server.app.seed(projects=12, seed=5)
    yield server
    server.stop()


def parse(stdout: str) -> tuple[Counter[str], list[dict[str, Any]]]:
    messages = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return Counter(m["stream"] for m in messages if m["type"] == "RECORD"), [
        m for m in messages if m["type"] == "STATE"
    ]


def test_cli_process_logs_usage_and_never_the_key(secret_sandbox: SandboxServer, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "api_key": SECRET,
                "api_url": f"{secret_sandbox.root_url}/v1",
                "start_date": "2000-01-01T00:00:00Z",
                "max_requests_per_second": 1000,
                "phase_history": True,
            }
        )
    )
    proc = subprocess.run(
        [str(BIN / "tap-coperniq"), "--config", str(config)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts, states = parse(proc.stdout)
    assert counts["projects"] == len(secret_sandbox.app.state.projects)
    assert counts["project_phase_instances"] > 0 and counts["payments"] > 0
    assert states[-1]["value"]["bookmarks"]["projects"]["replication_key_value"]
    assert "Coperniq API usage after stream 'projects'" in proc.stderr
    assert "X-RateLimit-Remaining" in proc.stderr
    assert SECRET not in proc.stdout and SECRET not in proc.stderr

    # bad key as a process: non-zero exit, the message names the setting, not the key
    config.write_text(json.dumps({"api_key": "wrong-" + SECRET[::-1], "api_url": f"{secret_sandbox.root_url}/v1"}))
    proc = subprocess.run(
        [str(BIN / "tap-coperniq"), "--config", str(config)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode != 0
    assert "`api_key` setting" in proc.stderr and SECRET[::-1] not in proc.stderr


@pytest.mark.meltano
def test_meltano_invoke_tap_coperniq(secret_sandbox: SandboxServer) -> None:
    env = {
        **os.environ,
        "MELTANO_PROJECT_ROOT": str(ROOT),
        "MELTANO_ENVIRONMENT": "dev",
        "TAP_COPERNIQ_API_URL": f"{secret_sandbox.root_url}/v1",
        "TAP_COPERNIQ_API_KEY": SECRET,
        "TAP_COPERNIQ_MAX_REQUESTS_PER_SECOND": "1000",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    proc = subprocess.run(
        [str(BIN / "meltano"), "invoke", "tap-coperniq"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts, states = parse(proc.stdout)
    assert counts["projects"] == len(secret_sandbox.app.state.projects)
    assert counts["invoices"] == len(secret_sandbox.app.state.invoices)
    assert states and SECRET not in proc.stdout and SECRET not in proc.stderr
    assert secret_sandbox.app.stats.by_route["GET /v1/projects"] >= 1
