"""`make demo`: start both sandboxes, run the forward and reverse legs with Meltano, print what was synced.

Everything runs on 127.0.0.1. The demo uses its own ledger and Meltano state so it can be run again and again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
COPERNIQ = "http://127.0.0.1:8765"
MERGE = "http://127.0.0.1:8766"
DEMO_DIR = ROOT / ".meltano" / "demo"
PROJECTS = int(os.environ.get("DEMO_PROJECTS", "40"))


COPERNIQ_AUTH = {"x-api-key": "sandbox-coperniq-key"}
MERGE_AUTH = {"Authorization": "Bearer sandbox-merge-key", "X-Account-Token": "sandbox-account-token"}


def http(method: str, url: str, body: dict | None = None, headers: dict[str, str] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:  # loopback only
        raw = resp.read()
    return json.loads(raw) if raw else None


def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(
                f"sandbox at {url} exited with code {proc.returncode} (port in use? run `make sandboxes` elsewhere?)"
            )
        try:
            http("GET", f"{url}/__admin/health")
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"sandbox at {url} did not start within 30 s")


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def meltano(*args: str, env: dict[str, str], ledger: Path) -> None:
    """Run a Meltano command; on success print that run's counts from the integration log."""
    print(f"$ meltano {' '.join(args)}", flush=True)
    result = subprocess.run(
        [str(BIN / "meltano"), *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-8000:])
        sys.exit(f"meltano {' '.join(args)} failed with exit code {result.returncode}")
    from sync_ledger import Ledger  # the dev venv has it; imported late so a broken setup fails above first

    with Ledger(ledger, read_only=True) as log:
        run = log.runs(limit=1)[0]
        print(f"  run {run['run_id']}:")
        for stream, counts in sorted(run["counts"].items()):
            print(f"    {stream:<26}" + "  ".join(f"{action} {n}" for action, n in sorted(counts.items())))
        notable = [
            row
            for row in log.log_rows(run_id=run["run_id"], limit=500)
            if row["action"] in ("created", "failed") or "echo" in row["reason"]
        ]
        for row in notable[::-1][:6]:  # oldest first: customer, job, invoice, payment
            print(f"      {row['action']:<8} {row['stream']:<10} {row['source_id']:<38} {row['reason'][:80]}")
        if len(notable) > 6:
            print(f"      ... {len(notable) - 6} more (coperniq-qbo log --run {run['run_id']})")


def advance_projects(count: int) -> list[dict[str, Any]]:
    """Move a few Residential Solar projects that are before Install into Install (what a PM does in Coperniq)."""
    projects = http("GET", f"{COPERNIQ}/v1/projects?page_size=100", headers=COPERNIQ_AUTH)
    early = {"Sale", "Site Survey", "Design", "Permitting"}
    chosen = [
        p
        for p in projects
        if p.get("workflowName") == "Residential Solar" and (p.get("phase") or {}).get("name") in early
    ][:count]
    for project in chosen:
        http("POST", f"{COPERNIQ}/__admin/projects/{project['id']}/phase", {"phase": "Install"})
    return chosen


def bookkeeper_invoices_a_job() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Create an invoice and a payment directly in QuickBooks for a job the forward leg synced."""
    contacts = http(
        "GET", f"{MERGE}/api/accounting/v1/contacts?page_size=100&include_remote_data=true", headers=MERGE_AUTH
    )["results"]

    def is_job(contact: dict[str, Any]) -> bool:
        return any((rd.get("data") or {}).get("Job") for rd in contact.get("remote_data") or [])

    job = next(c for c in contacts if is_job(c))
    invoice = http(
        "POST",
        f"{MERGE}/__admin/invoices",
        {"contact": job["id"], "amount": 1250.0, "number": "QB-9001", "memo": "Change order: extra panel"},
    )
    payment = http(
        "POST",
        f"{MERGE}/__admin/payments",
        {"contact": job["id"], "total_amount": 500.0, "applied_to": [[invoice["id"], 500.0]]},
    )
    return job, invoice, payment


def main() -> None:
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True)
    ledger = DEMO_DIR / "sync-ledger.duckdb"
    env = {
        **os.environ,
        "MELTANO_PROJECT_ROOT": str(ROOT),
        "MELTANO_ENVIRONMENT": "dev",
        "MELTANO_STATE_BACKEND_URI": f"file://{DEMO_DIR / 'state'}",
        "TARGET_QUICKBOOKS_MERGE_LEDGER_PATH": str(ledger),
        "TARGET_COPERNIQ_LEDGER_PATH": str(ledger),
        "COPERNIQ_QBO_LEDGER_PATH": str(ledger),
    }
    with ExitStack() as stack:
        banner(f"Starting the sandboxes (Coperniq {COPERNIQ}, Merge/QuickBooks {MERGE}, {PROJECTS} projects)")
        procs = []
        for module, url, extra in (
            ("sandbox.coperniq", COPERNIQ, ["--seed", "42", "--projects", str(PROJECTS)]),
            ("sandbox.merge", MERGE, []),
        ):
            port = url.rsplit(":", 1)[1]
            proc = subprocess.Popen(
                [str(BIN / "python"), "-m", module, "--port", port, *extra], cwd=ROOT, stdout=subprocess.DEVNULL
            )
            stack.callback(proc.wait, 10)
            stack.callback(proc.terminate)
            procs.append((url, proc))
        for url, proc in procs:
            wait_healthy(url, proc)

        banner(
            "Forward leg, first run: Coperniq -> QuickBooks (projects already past their trigger phase are backfilled)"
        )
        meltano("run", "coperniq-to-quickbooks", env=env, ledger=ledger)

        banner("Three projects enter a trigger phase in Coperniq")
        for project in advance_projects(3):
            print(f"  project {project['id']} '{project['title']}' ({project['workflowName']}) -> Install")
        banner("Forward leg, second run (only what changed)")
        meltano("run", "coperniq-to-quickbooks", env=env, ledger=ledger)

        banner("In QuickBooks, the bookkeeper invoices a synced job and records a payment")
        job, invoice, payment = bookkeeper_invoices_a_job()
        print(
            f"  invoice {invoice['number']} for {invoice['total_amount']} on job '{job['name']}',"
            f" payment {payment['total_amount']} applied"
        )
        banner("Reverse leg: QuickBooks -> Coperniq")
        meltano("run", "quickbooks-to-coperniq", env=env, ledger=ledger)

        banner("Forward leg again: nothing echoes back")
        meltano("run", "coperniq-to-quickbooks", env=env, ledger=ledger)

        banner("Integration log: runs")
        subprocess.run(
            [str(BIN / "coperniq-qbo"), "runs", "--ledger-path", str(ledger)], cwd=ROOT, env=env, check=False
        )
        banner("What each side holds now")
        print("  Coperniq:", json.dumps(http("GET", f"{COPERNIQ}/__admin/state/summary")))
        print("  QuickBooks (Merge):", json.dumps(http("GET", f"{MERGE}/__admin/summary")))
    print("\nDemo finished; sandboxes stopped. Ledger kept at", ledger.relative_to(ROOT))


if __name__ == "__main__":
    main()
