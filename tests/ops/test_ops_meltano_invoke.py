"""`meltano invoke coperniq-qbo ...` in the real project: the utility's settings reach the CLI as env vars."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.meltano
@pytest.mark.timeout(180)
def test_meltano_invoke_status_and_log(ops_project: Any, merge_sandbox: Any) -> None:
    meltano = shutil.which("meltano") or str(ROOT / ".venv" / "bin" / "meltano")
    if not Path(meltano).exists():
        pytest.skip("meltano is not installed")
    env = {k: v for k, v in ops_project.env.items() if k != "MELTANO_PROJECT_ROOT"}
    # dev env config names the fixed dev port; env vars beat it, exactly as a user's .env would.
    env.update(MELTANO_ENVIRONMENT="dev", MELTANO_SEND_ANONYMOUS_USAGE_STATS="false")
    env["COPERNIQ_QBO_ENV_FILE"] = str(ops_project.env_file)
    proc = subprocess.run(
        [meltano, "invoke", "coperniq-qbo:status"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    ops_project.assert_clean(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Connected" in proc.stdout and "QuickBooks company" in proc.stdout

    proc = subprocess.run(
        [meltano, "invoke", "coperniq-qbo", "log", "--format", "json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    ops_project.assert_clean(proc.stdout, proc.stderr)
    assert proc.returncode == 1 and "no ledger at" in proc.stdout + proc.stderr
    assert str(ops_project.ledger_path) in proc.stdout + proc.stderr  # the env var beat the meltano.yml default
