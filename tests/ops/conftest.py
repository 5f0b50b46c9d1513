"""Helpers for the `coperniq-qbo` CLI tests: an isolated project dir, and runners that check redaction."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "coperniq_qbo.cli"]


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@dataclass
class OpsProject:
    """A throwaway Meltano-like project dir wired to the merge sandbox through COPERNIQ_QBO_* env vars."""

    root: Path
    env: dict[str, str]
    secrets: list[str]

    @property
    def ledger_path(self) -> Path:
        return Path(self.env["COPERNIQ_QBO_LEDGER_PATH"])

    @property
    def env_file(self) -> Path:
        return self.root / ".env"

    def assert_clean(self, *texts: str) -> None:
        """No configured secret (API key, account tokens) appears in any output."""
        for text in texts:
            for secret in self.secrets:
                assert secret not in text, f"secret leaked into output: {text!r}"

    def run(
        self,
        args: Sequence[str],
        *,
        input_text: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> CliResult:
        """The CLI as a subprocess (what `meltano invoke coperniq-qbo` runs)."""
        proc = subprocess.run(
            [*CLI, *args],
            cwd=self.root,
            env=env or self.env,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.assert_clean(proc.stdout, proc.stderr)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    def call(self, args: Sequence[str], *, env: dict[str, str] | None = None) -> CliResult:
        """The CLI in-process (fast, and exercises the same main())."""
        from coperniq_qbo.cli import main

        out, err = io.StringIO(), io.StringIO()
        code = main(list(args), stdout=out, stderr=err, environ=env or self.env)
        self.assert_clean(out.getvalue(), err.getvalue())
        return CliResult(code, out.getvalue(), err.getvalue())

    def add_secret(self, value: str) -> None:
        self.secrets.append(value)


def _base_env(root: Path) -> dict[str, str]:
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COPERNIQ_QBO_", "TARGET_QUICKBOOKS_MERGE_", "TAP_QUICKBOOKS_MERGE_", "MELTANO_"))
    }
    keep["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), keep.get("PYTHONPATH", "")]))
    keep["MELTANO_PROJECT_ROOT"] = str(root)
    return keep


@pytest.fixture
def ops_project(tmp_path: Path, merge_sandbox: Any) -> OpsProject:
    root = tmp_path / "project"
    root.mkdir()
    env = _base_env(root)
    env.update(
        {
            "COPERNIQ_QBO_MERGE_API_KEY": merge_sandbox.api_key,
            "COPERNIQ_QBO_ACCOUNT_TOKEN": merge_sandbox.account_token,
            "COPERNIQ_QBO_BASE_URL": merge_sandbox.url,
            "COPERNIQ_QBO_LEDGER_PATH": str(root / ".meltano" / "sync-ledger.duckdb"),
            "COPERNIQ_QBO_LINK_JS_URL": merge_sandbox.url.split("/api/")[0] + "/link/initialize.js",
            "COPERNIQ_QBO_END_USER_EMAIL_ADDRESS": "ops@example.com",
            "COPERNIQ_QBO_END_USER_ORGANIZATION_NAME": "Sunny Roofs LLC",
            "COPERNIQ_QBO_END_USER_ORIGIN_ID": "sunny-roofs",
            "COPERNIQ_QBO_LOCK_TIMEOUT": "5",
        }
    )
    return OpsProject(root, env, [merge_sandbox.api_key, merge_sandbox.account_token])
