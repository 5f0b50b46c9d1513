"""Helpers for the reliability tests: tap -> target as real processes (a pipe, like Meltano) against the
in-process sandboxes, a SIGKILL switch watching the sandbox's own counters, and QuickBooks-side assertions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from target_quickbooks_merge.settings import DEFAULT_INVOICE_NUMBER_PREFIX, DEFAULT_INVOICE_STATUSES

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
TRIGGERS = [
    {"workflow": "Residential Solar", "phase": "Install"},
    {"workflow": "HVAC Replacement", "phase": "Installation"},
]


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def tap_config(coperniq: Any, **extra: Any) -> dict[str, Any]:
    return {
        "api_url": coperniq.url,
        "api_key": coperniq.api_key,
        "start_date": "2020-01-01T00:00:00Z",
        "max_requests_per_second": 1000,
        **extra,
    }


def target_config(merge: Any, ledger: Path | str, **extra: Any) -> dict[str, Any]:
    """`ledger`: a DuckDB file, or a postgresql:// URL (then ledger_url)."""
    place = {"ledger_url": ledger} if str(ledger).startswith("postgresql://") else {"ledger_path": str(ledger)}
    return {
        "merge_api_key": merge.api_key,
        "account_token": merge.account_token,
        "base_url": merge.url,
        **place,
        "trigger_phases": TRIGGERS,
        "backfill": True,
        "invoice_sync": True,
        "default_item": "Services",
        "max_requests_per_minute": 600000,
        "progress_interval": 1,
        **extra,
    }


@dataclass
class PipeRun:
    tap_rc: int | None
    target_rc: int | None
    stdout: str  # the target's stdout (STATE lines)
    tap_stderr: str
    target_stderr: str
    killed: bool

    @property
    def states(self) -> list[dict[str, Any]]:
        """Singer targets print each state value as one JSON line."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    @property
    def last_state(self) -> dict[str, Any] | None:
        states = self.states
        return states[-1] if states else None


def run_pipe(
    tap: str,
    tap_cfg: dict[str, Any],
    target: str,
    target_cfg: dict[str, Any],
    workdir: Path,
    *,
    state: dict[str, Any] | None = None,
    kill_when: Callable[[], bool] | None = None,
    timeout: float = 90.0,
    env: dict[str, str] | None = None,
    tag: str = "run",
) -> PipeRun:
    """`tap --config c [--state s] | target --config c`, as Meltano runs them; optionally SIGKILL the target
    as soon as `kill_when()` is true (polled every few ms)."""
    workdir.mkdir(parents=True, exist_ok=True)
    tc = write_json(workdir / f"{tag}-tap.json", tap_cfg)
    gc = write_json(workdir / f"{tag}-target.json", target_cfg)
    tap_cmd = [str(BIN / tap), "--config", str(tc)]
    if state:
        tap_cmd += ["--state", str(write_json(workdir / f"{tag}-state.json", state))]
    tap_err = open(workdir / f"{tag}-tap.err", "w+")  # noqa: SIM115
    tgt_err = open(workdir / f"{tag}-target.err", "w+")  # noqa: SIM115
    tgt_out = open(workdir / f"{tag}-target.out", "w+")  # noqa: SIM115
    penv = {**os.environ, **(env or {})}
    tap_p = subprocess.Popen(tap_cmd, stdout=subprocess.PIPE, stderr=tap_err, env=penv, cwd=workdir)
    tgt_p = subprocess.Popen(
        [str(BIN / target), "--config", str(gc)],
        stdin=tap_p.stdout,
        stdout=tgt_out,
        stderr=tgt_err,
        env=penv,
        cwd=workdir,
    )
    assert tap_p.stdout is not None
    tap_p.stdout.close()  # the target holds the read end; the tap gets SIGPIPE if the target dies
    killed = False
    deadline = time.monotonic() + timeout
    try:
        while tgt_p.poll() is None:
            if kill_when is not None and kill_when():
                tgt_p.send_signal(signal.SIGKILL)
                killed = True
                tgt_p.wait()
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{tag}: pipeline did not finish in {timeout}s")
            time.sleep(0.002)
        if killed:
            tap_p.kill()
        tap_p.wait(timeout=30)
    finally:
        for p in (tap_p, tgt_p):
            if p.poll() is None:
                p.kill()
                p.wait()
    outs = []
    for f in (tgt_out, tap_err, tgt_err):
        f.seek(0)
        outs.append(f.read())
        f.close()
    return PipeRun(tap_p.returncode, tgt_p.returncode, outs[0], outs[1], outs[2], killed)


# ------------------------------------------------------------------------------------------- QuickBooks side
def merge_rows(merge: Any, table: str) -> list[dict[str, Any]]:
    return [r for r in merge.state.table(table).order if not r.get("remote_was_deleted")]


def qbo_customers(merge: Any) -> list[dict[str, Any]]:
    return list(merge.state.qbo.entities["Customer"].values())


def duplicates(values: list[Any]) -> dict[Any, int]:
    return {v: n for v, n in Counter(values).items() if n > 1}


def writes(merge: Any) -> int:
    """API writes the Merge sandbox answered (POST/PATCH to models and passthrough)."""
    return sum(
        n
        for route, n in merge.stats.by_route.items()
        if route.split(" ", 1)[0] in {"POST", "PATCH"} and "/link" not in route
    )


# ------------------------------------------------------------------------------------------- expectations
def qbo_number(invoice: Mapping[str, Any]) -> str:
    """The DocNumber a Coperniq invoice gets in QuickBooks (the default `invoice_number_prefix` + its uid)."""
    return f"{DEFAULT_INVOICE_NUMBER_PREFIX}{invoice['uid']}"


def expected_forward(coperniq: Any, triggers: dict[str, str] | None = None) -> dict[str, Any]:
    """What QuickBooks must hold after a complete forward run, computed from the Coperniq sandbox itself (not
    from the target): triggered projects, their clients, their invoices (by number) and payments per invoice."""
    triggers = triggers or {t["workflow"]: t["phase"] for t in TRIGGERS}
    st = coperniq.state
    projects: dict[int, dict[str, Any]] = {}
    for pid, project in st.projects.items():
        phase = triggers.get(project.get("workflowName"))
        if phase is None or project.get("isActive") is False:  # archived projects are not synced
            continue
        for _iid, template_id, _status, started, _completed in st.phase_instances.get(pid, []):
            if st.phase_templates[template_id]["name"] == phase and started is not None:
                projects[pid] = project
                break
    accounts = {p["accountId"] for p in projects.values()}
    invoices = {
        iid: st.invoices[iid]
        for pid in projects
        for iid in st.invoices_by_project.get(pid, [])
        if st.invoices[iid]["status"] in DEFAULT_INVOICE_STATUSES
    }  # drafts/declined are not pushed
    payments = {qbo_number(st.invoices[iid]): len(st.payments.get(iid, [])) for iid in invoices}
    return {
        "projects": projects,
        "accounts": accounts,
        "invoice_numbers": sorted(qbo_number(i) for i in invoices.values()),
        "payments_per_invoice": {k: v for k, v in payments.items() if v},
    }


def assert_forward_complete(
    coperniq: Any,
    merge: Any,
    ignore_remote_ids: set[str] = frozenset(),
    ignore_numbers: set[str] = frozenset(),
    *,
    invoices: bool = True,
) -> dict[str, Any]:
    """QuickBooks holds every expected customer/job/invoice/payment exactly once (rows made from records that are
    not in the Coperniq sandbox, e.g. a test corpus, are left out by QBO Id / invoice number). `invoices=False`:
    invoice_sync was off, so QuickBooks must hold no invoice or payment at all."""
    exp = expected_forward(coperniq)
    if not invoices:
        exp = {**exp, "invoice_numbers": [], "payments_per_invoice": {}}
    everything = qbo_customers(merge)
    names = [c["DisplayName"].casefold() for c in everything]
    ours = [c for c in everything if str(c["Id"]) not in ignore_remote_ids]
    customers = [c for c in ours if not c.get("Job")]
    jobs = [c for c in ours if c.get("Job")]
    assert not duplicates(names), f"duplicate QBO DisplayNames: {duplicates(names)}"
    assert len(customers) == len(exp["accounts"]), (len(customers), len(exp["accounts"]))
    assert len(jobs) == len(exp["projects"]), (len(jobs), len(exp["projects"]))
    job_names = {j["DisplayName"] for j in jobs}
    for p in exp["projects"].values():
        assert f"{p['title']} ({p['number']})" in job_names, f"job of project {p['id']} missing"
    account_titles = {coperniq.state.accounts[a]["title"].casefold() for a in exp["accounts"]}
    assert {c["DisplayName"].casefold() for c in customers} <= account_titles | {
        n for n in (c["DisplayName"].casefold() for c in customers) if any(n.startswith(t) for t in account_titles)
    }
    numbers = [i["number"] for i in merge_rows(merge, "invoices") if i["number"] not in ignore_numbers]
    assert not duplicates(numbers), f"duplicate invoice numbers: {duplicates(numbers)}"
    assert sorted(numbers) == exp["invoice_numbers"]
    by_id = {i["id"]: i["number"] for i in merge_rows(merge, "invoices")}
    per_invoice: Counter[str] = Counter()
    for pay in merge_rows(merge, "payments"):
        for line in pay.get("applied_to_lines") or []:
            if by_id[line["related_object_id"]] not in ignore_numbers:
                per_invoice[by_id[line["related_object_id"]]] += 1
    assert dict(per_invoice) == exp["payments_per_invoice"], "payments per invoice differ (missing or duplicated)"
    return exp
