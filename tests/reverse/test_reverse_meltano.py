"""`meltano run tap-quickbooks-merge target-coperniq` as a process against both sandboxes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from reverse_helpers import link_forward, log_rows

ROOT = Path(__file__).resolve().parents[2]
MELTANO = ROOT / ".venv" / "bin" / "meltano"


def private_sys_dir(tmp_path: Path) -> Path:
    """A .meltano of our own (run dir, system db) reusing the installed plugin venvs: other engineers' Meltano
    processes share /work/main/.meltano/run/<plugin>/ and would overwrite our catalog/state files."""
    sys_dir = tmp_path / "meltano-sys"
    sys_dir.mkdir()
    for kind in ("extractors", "loaders"):
        (sys_dir / kind).mkdir()
        for name in ("tap-quickbooks-merge", "target-coperniq"):
            if (ROOT / ".meltano" / kind / name).exists():
                (sys_dir / kind / name).symlink_to(ROOT / ".meltano" / kind / name)
    return sys_dir


def meltano_run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MELTANO), "run", "tap-quickbooks-merge", "target-coperniq"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,  # the caller asserts returncode, with stderr in the message
    )


@pytest.mark.meltano
def test_meltano_run_reverse_leg(coperniq_sandbox: Any, merge_sandbox: Any, tmp_path: Path) -> None:
    coperniq, merge = coperniq_sandbox.app, merge_sandbox.app
    project = coperniq.add_project("Garcia Heat Pump")
    customer = merge.add_contact("Garcia")
    job = merge.add_contact("Garcia Heat Pump", parent=customer["id"])
    stranger = merge.add_contact("Cash Sale Customer")
    ledger_path = tmp_path / "sync-ledger.duckdb"
    link_forward(ledger_path, "account", project["accountId"], "customer", customer["id"], customer["remote_id"])
    link_forward(ledger_path, "project", project["id"], "job", job["id"], job["remote_id"])
    invoice = merge.create_invoice(
        job["id"], [{"description": "Heat pump install", "quantity": 1, "unit_price": 12000.0, "total_amount": 12000.0}]
    )
    merge.create_payment(job["id"], 4000.0, applied_to=[(invoice["id"], 4000.0)])
    merge.create_invoice(stranger["id"], amount=75.0)

    env = {
        **os.environ,
        "TAP_QUICKBOOKS_MERGE_BASE_URL": merge_sandbox.url,
        "TAP_QUICKBOOKS_MERGE_MERGE_API_KEY": merge_sandbox.api_key,
        "TAP_QUICKBOOKS_MERGE_ACCOUNT_TOKEN": merge_sandbox.account_token,
        "TARGET_COPERNIQ_API_URL": coperniq_sandbox.url,
        "TARGET_COPERNIQ_API_KEY": coperniq_sandbox.api_key,
        "TARGET_COPERNIQ_LEDGER_PATH": str(ledger_path),
        "MELTANO_STATE_BACKEND_URI": f"file://{tmp_path / 'state'}",
        "MELTANO_ENVIRONMENT": "dev",
        "MELTANO_SYS_DIR_ROOT": str(private_sys_dir(tmp_path)),
    }
    first = meltano_run(env)
    assert first.returncode == 0, first.stderr[-4000:]

    [created] = coperniq.state.invoices.values()
    assert created["_record"] == ("project", project["id"]) and created["amount"] == 12000.0
    [payment] = coperniq.state.payments[created["id"]]
    assert payment["amount"] == 4000.0 and created["amountPaid"] == 4000.0
    assert any(r["reason"] == "customer not synced from Coperniq" for r in log_rows(ledger_path, action="skipped"))
    assert merge_sandbox.api_key not in first.stderr and coperniq_sandbox.api_key not in first.stderr
    assert (tmp_path / "state").exists(), "Meltano saved the tap's bookmarks"

    writes = coperniq_sandbox.stats.count("POST") + coperniq_sandbox.stats.count("PATCH")
    second = meltano_run(env)
    assert second.returncode == 0, second.stderr[-4000:]
    assert coperniq_sandbox.stats.count("POST") + coperniq_sandbox.stats.count("PATCH") == writes
    assert len(coperniq.state.invoices) == 1 and len(coperniq.state.payments[created["id"]]) == 1
