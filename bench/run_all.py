"""End-to-end benchmarks of both legs against the sandboxes; writes bench/RESULTS.md.

    .venv/bin/python bench/run_all.py [--sizes 1000,10000,100000] [--quick] [--skip-tap-bench] [--skip-rate-limit]
        [--ledger-backends [--ledger-links 100000]]

Per size N (projects seeded in the Coperniq sandbox, with their invoices and payments):
  forward   tap-coperniq | target-quickbooks-merge (backfill on, both install phases as triggers, invoice_sync)
  forward no-op   the same again with the state of the first run (nothing changed)
  reverse   tap-quickbooks-merge | target-coperniq after QuickBooks-side activity (payments on 1 in 5 synced
            invoices, a new invoice on 1 in 10 synced jobs)
  reverse no-op
Then: draining a forward backlog under the Merge sandbox's rate limit (600 req/min scaled x10 = 6,000/min) and
tap_bench.py (tap-coperniq vs tap-rest-api-msdk), whose table is copied in; with --ledger-backends also
ledger_backends.py (ledger operations per second on DuckDB and PostgreSQL), whose table is copied in too.

Both sandboxes run as separate processes (their CPU and memory are not the plugins'); the plugins run as plain
processes piped like Meltano does; a sampler thread records each plugin's peak RSS (psutil); API calls come from
the sandboxes' own counters (GET /__admin/stats), split by route.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import requests

from target_quickbooks_merge.report import read_run_summary as run_summary

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OUT = ROOT / "bench" / "out"
COP_KEY, MERGE_KEY, TOKEN = "bench-coperniq-key", "bench-merge-key", "bench-account-token"
TRIGGERS = [
    {"workflow": "Residential Solar", "phase": "Install"},
    {"workflow": "HVAC Replacement", "phase": "Installation"},
]


# ------------------------------------------------------------------------------------------------ sandboxes
class Sandbox:
    """A sandbox as a child process on a free port."""

    def __init__(self, module: str, args: list[str], suffix: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "--port", "0", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        if not match:
            raise RuntimeError(f"{module} did not start: {line!r}")
        self.root = match.group(1)
        self.url = self.root + suffix

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = requests.get(f"{self.root}/__admin/stats", timeout=60).json()
        return stats

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        resp = requests.request(method, f"{self.root}/__admin/{path}", json=body, timeout=120)
        resp.raise_for_status()
        return resp.json()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_sandboxes(projects: int, merge_rpm: int = 100_000_000) -> tuple[Sandbox, Sandbox]:
    cop = Sandbox(
        "sandbox.coperniq",
        [
            "--api-key",
            COP_KEY,
            "--seed",
            "42",
            "--projects",
            str(projects),
            "--rate-limit-per-second",
            "0",
            "--rate-limit-per-day",
            "0",
        ],
        "/v1",
    )
    merge = Sandbox(
        "sandbox.merge",
        ["--api-key", MERGE_KEY, "--account-token", TOKEN, "--rate-limit-per-minute", str(merge_rpm)],
        "/api/accounting/v1",
    )
    return cop, merge


def delta(before: dict[str, Any], after: dict[str, Any]) -> tuple[Counter[str], Counter[str]]:
    routes = Counter({k: v - before["by_route"].get(k, 0) for k, v in after["by_route"].items()})
    statuses = Counter({k: v - before["by_status"].get(k, 0) for k, v in after["by_status"].items()})
    return +routes, +statuses


# ------------------------------------------------------------------------------------------------ a pipe run
@dataclass
class PipeResult:
    name: str
    seconds: float
    records: int
    tap_rss_mb: float
    target_rss_mb: float
    tap_rc: int
    target_rc: int
    tap_seconds: float = 0.0  # until the tap exited; the rest of `seconds` is the target after its input ended
    routes: dict[str, Counter[str]] = field(default_factory=dict)  # sandbox -> route -> calls
    statuses: dict[str, Counter[str]] = field(default_factory=dict)
    summary: dict[str, dict[str, int]] = field(default_factory=dict)  # target run summary
    state: dict[str, Any] | None = None
    stderr: str = ""

    def calls(self, sandbox: str, methods: tuple[str, ...] = ("GET",), contains: str = "") -> int:
        return sum(
            n
            for route, n in self.routes.get(sandbox, {}).items()
            if route.split(" ", 1)[0] in methods and contains in route
        )


def run_pipe(
    name: str,
    tap: str,
    tap_cfg: dict[str, Any],
    target: str,
    target_cfg: dict[str, Any],
    sandboxes: dict[str, Sandbox],
    work: Path,
    state: dict[str, Any] | None = None,
) -> PipeResult:
    work.mkdir(parents=True, exist_ok=True)
    tag = re.sub(r"[^A-Za-z0-9]+", "_", name)
    (work / f"{tag}.tap.json").write_text(json.dumps(tap_cfg))
    (work / f"{tag}.target.json").write_text(json.dumps(target_cfg))
    tap_cmd = [str(BIN / tap), "--config", str(work / f"{tag}.tap.json")]
    if state:
        (work / f"{tag}.state.json").write_text(json.dumps(state))
        tap_cmd += ["--state", str(work / f"{tag}.state.json")]
    before = {k: sb.stats() for k, sb in sandboxes.items()}
    OUT.mkdir(parents=True, exist_ok=True)
    tap_err, tgt_err = (OUT / f"{tag}.tap.log").open("w+"), (OUT / f"{tag}.target.log").open("w+")
    started = time.perf_counter()
    tap_p = subprocess.Popen(tap_cmd, stdout=subprocess.PIPE, stderr=tap_err, cwd=work, bufsize=1 << 20)
    tgt_p = subprocess.Popen(
        [str(BIN / target), "--config", str(work / f"{tag}.target.json")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=tgt_err,
        cwd=work,
        bufsize=1 << 20,
    )
    peaks = {tap_p.pid: 0, tgt_p.pid: 0}
    done = threading.Event()

    def sample() -> None:
        """Peaks every 50 ms; every 5 s a line of bench/out/<tag>.rss.csv (seconds, tap MB, target MB), to see
        when in a run the target's peak comes (its log's timestamps say which pass it was in)."""
        procs = {pid: psutil.Process(pid) for pid in peaks}
        next_line = 0.0
        with (OUT / f"{tag}.rss.csv").open("w") as timeline:
            timeline.write("seconds,tap_mb,target_mb\n")
            while not done.is_set():
                now = dict.fromkeys(procs, 0)
                for pid, p in procs.items():
                    with contextlib.suppress(psutil.Error):
                        now[pid] = p.memory_info().rss
                        peaks[pid] = max(peaks[pid], now[pid])
                if (elapsed := time.perf_counter() - started) >= next_line:
                    next_line = elapsed + 5
                    timeline.write(f"{elapsed:.0f},{now[tap_p.pid] / 2**20:.0f},{now[tgt_p.pid] / 2**20:.0f}\n")
                    timeline.flush()
                done.wait(0.05)

    records = 0
    out_lines: list[bytes] = []

    def drain_target() -> None:
        assert tgt_p.stdout is not None
        out_lines.extend(tgt_p.stdout)

    threads = [threading.Thread(target=sample, daemon=True), threading.Thread(target=drain_target, daemon=True)]
    for t in threads:
        t.start()
    assert tap_p.stdout is not None
    assert tgt_p.stdin is not None
    try:
        for line in tap_p.stdout:  # copy the pipe, counting RECORD lines (cheap; the plugins do the real work)
            if b'"RECORD"' in line[:30]:
                records += 1
            tgt_p.stdin.write(line)
    except BrokenPipeError:
        pass
    finally:
        with contextlib.suppress(BrokenPipeError):
            tgt_p.stdin.close()
    tap_p.wait()
    tap_seconds = time.perf_counter() - started
    tgt_p.wait()
    seconds = time.perf_counter() - started
    done.set()
    for t in threads:
        t.join()
    after = {k: sb.stats() for k, sb in sandboxes.items()}
    res = PipeResult(
        name,
        seconds,
        records,
        peaks[tap_p.pid] / 2**20,
        peaks[tgt_p.pid] / 2**20,
        tap_p.returncode,
        tgt_p.returncode,
        tap_seconds=tap_seconds,
    )
    for k in sandboxes:
        res.routes[k], res.statuses[k] = delta(before[k], after[k])
    tgt_err.seek(0)
    res.stderr = tgt_err.read()
    res.summary = run_summary(res.stderr)
    states = [json.loads(line) for line in out_lines if line.startswith(b"{")]
    res.state = states[-1] if states else None
    if tap_p.returncode or tgt_p.returncode:
        tap_err.seek(0)
        print(
            f"  !! {name}: tap exit {tap_p.returncode}, target exit {tgt_p.returncode}\n"
            f"{tap_err.read()[-1500:]}\n{res.stderr[-2500:]}",
            file=sys.stderr,
        )
    tap_err.close()
    tgt_err.close()
    return res


def log_span(stderr: str, start_marker: str, end_marker: str) -> float | None:
    """Seconds between two log lines (their timestamps), e.g. the reconcile pass of a target."""

    def stamp(marker: str) -> datetime | None:
        for line in stderr.splitlines():
            if marker in line:
                try:
                    # naive on purpose: the log's local clock, and only the difference of two stamps is used
                    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")  # noqa: DTZ007
                except ValueError:
                    return None
        return None

    a, b = stamp(start_marker), stamp(end_marker)
    return (b - a).total_seconds() if a and b else None


# ------------------------------------------------------------------------------------------------ scenarios
def forward_cfgs(cop: Sandbox, merge: Sandbox, ledger: Path, **extra: Any) -> tuple[dict, dict]:
    # The tap gets the target's trigger_phases/backfill (as meltano.yml feeds both); the sandbox has no daily cap
    # here, so the tap's own count is off (daily_call_limit 0): quota figures are bench/quota_bench.py's.
    tap = {
        "api_url": cop.url,
        "api_key": COP_KEY,
        "start_date": "2020-01-01T00:00:00Z",
        "max_requests_per_second": 100_000,
        "trigger_phases": TRIGGERS,
        "backfill": True,
        "daily_call_limit": 0,
    }
    target = {
        "merge_api_key": MERGE_KEY,
        "account_token": TOKEN,
        "base_url": merge.url,
        "ledger_path": str(ledger),
        "trigger_phases": TRIGGERS,
        "backfill": True,
        "invoice_sync": True,
        "default_item": "Services",
        "max_requests_per_minute": 100_000_000,
        # pinned so figures compare across versions (the default follows the rate limit, which is unlimited here;
        # bench/latency_bench.py measures the default against realistic write latency)
        "max_parallel_writes": 4,
        "progress_interval": 30,
        **extra,
    }
    return tap, target


def reverse_cfgs(cop: Sandbox, merge: Sandbox, ledger: Path) -> tuple[dict, dict]:
    tap = {
        "merge_api_key": MERGE_KEY,
        "account_token": TOKEN,
        "base_url": merge.url,
        "start_date": "2020-01-01T00:00:00Z",
        "max_requests_per_minute": 100_000_000,
    }
    target = {"api_key": COP_KEY, "api_url": cop.url, "ledger_path": str(ledger), "max_requests_per_second": 100_000}
    return tap, target


def qbo_activity(merge: Sandbox, ledger: Path) -> dict[str, int]:
    """QuickBooks-side work for the reverse leg: payments on 1 in 5 synced invoices, an invoice on 1 in 10 jobs."""
    from sync_ledger import Ledger

    with Ledger(ledger, read_only=True) as led:
        invoices = [lk for lk in led.links("coperniq", "invoice") if lk.target_id]
        jobs = [lk for lk in led.links("coperniq", "project") if lk.target_id]
    made: Counter[str] = Counter()
    for lk in invoices[::5]:
        inv = requests.get(
            f"{merge.url}/invoices/{lk.target_id}",
            timeout=30,
            headers={"Authorization": f"Bearer {MERGE_KEY}", "X-Account-Token": TOKEN},
        ).json()
        balance = float(inv.get("balance") or 0)
        if balance < 1:
            continue
        merge.admin(
            "POST",
            "payments",
            {
                "contact": inv["contact"],
                "total_amount": round(balance / 2, 2),
                "applied_to": [[inv["id"], round(balance / 2, 2)]],
                "transaction_date": "2025-07-01T00:00:00Z",
            },
        )
        made["payments"] += 1
    for lk in jobs[::10]:
        merge.admin(
            "POST", "invoices", {"contact": lk.target_id, "amount": 1234.5, "issue_date": "2025-07-02T00:00:00Z"}
        )
        made["invoices"] += 1
    return dict(made)


def bench_size(n: int, work: Path, full_reread: bool = True, reverse: bool = True) -> dict[str, Any]:
    print(f"== {n:,} projects: seeding sandboxes", flush=True)
    t0 = time.perf_counter()
    cop, merge = start_sandboxes(n)
    seeded = time.perf_counter() - t0
    boxes = {"coperniq": cop, "merge": merge}
    ledger = work / f"ledger-{n}.duckdb"
    try:
        tap_c, tgt_c = forward_cfgs(cop, merge, ledger)
        print("   forward", flush=True)
        fwd = run_pipe(f"forward {n}", "tap-coperniq", tap_c, "target-quickbooks-merge", tgt_c, boxes, work)
        print(f"   forward done in {fwd.seconds:.1f}s; no-op re-run", flush=True)
        noop = run_pipe(
            f"forward no-op {n}", "tap-coperniq", tap_c, "target-quickbooks-merge", tgt_c, boxes, work, state=fwd.state
        )
        reread = None
        if full_reread:
            print("   forward full re-read (no state: every record again, all unchanged)", flush=True)
            reread = run_pipe(
                f"forward full re-read {n}", "tap-coperniq", tap_c, "target-quickbooks-merge", tgt_c, boxes, work
            )
        made: dict[str, int] = {}
        rev = rnoop = None
        if reverse:
            made = qbo_activity(merge, ledger)
            rtap, rtgt = reverse_cfgs(cop, merge, ledger)
            print(f"   reverse ({made})", flush=True)
            rev = run_pipe(f"reverse {n}", "tap-quickbooks-merge", rtap, "target-coperniq", rtgt, boxes, work)
            rnoop = run_pipe(
                f"reverse no-op {n}",
                "tap-quickbooks-merge",
                rtap,
                "target-coperniq",
                rtgt,
                boxes,
                work,
                state=rev.state,
            )
        summary = requests.get(f"{cop.root}/__admin/state/summary", timeout=60).json()
    finally:
        cop.stop()
        merge.stop()
    return {
        "n": n,
        "seed_s": seeded,
        "coperniq": summary,
        "forward": fwd,
        "noop": noop,
        "reread": reread,
        "reverse": rev,
        "rnoop": rnoop,
        "qbo_activity": made,
    }


def bench_rate_limit(
    n: int, work: Path, per_minute: int, *, faults: dict[str, Any] | None = None, **target: Any
) -> dict[str, Any]:
    """Drain a backlog with the Merge sandbox enforcing `per_minute` and the target configured to the same plan.
    `faults`: Merge sandbox faults (e.g. write latency); `target`: target settings on top (None drops a setting,
    so the target's own default applies)."""
    print(f"== rate-limited backlog: {n:,} projects, Merge limit {per_minute}/min", flush=True)
    cop, merge = start_sandboxes(n, merge_rpm=per_minute)
    try:
        if faults:
            merge.admin("POST", "faults", faults)
        tap_c, tgt_c = forward_cfgs(
            cop,
            merge,
            work / f"ledger-rl-{n}.duckdb",
            max_requests_per_minute=per_minute,
            progress_interval=10,
            **target,
        )
        tgt_c = {k: v for k, v in tgt_c.items() if v is not None}
        res = run_pipe(
            f"rate-limited backlog {n}",
            "tap-coperniq",
            tap_c,
            "target-quickbooks-merge",
            tgt_c,
            {"coperniq": cop, "merge": merge},
            work,
        )
    finally:
        cop.stop()
        merge.stop()
    reconcile_s = log_span(res.stderr, "Linked account OK", "Run summary")
    return {"n": n, "limit": per_minute, "res": res, "reconcile_s": reconcile_s}


# ------------------------------------------------------------------------------------------------ report
def machine() -> str:
    mem = psutil.virtual_memory().total / 2**30
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores "
        f"(shared with other work), {mem:.1f} GiB RAM, Python {platform.python_version()}"
    )


SYNCED_TYPES = {"accounts": "customer", "projects": "job", "invoices": "invoice", "payments": "payment"}


def forward_rows(r: dict[str, Any]) -> list[str]:
    n, fwd, noop = r["n"], r["forward"], r["noop"]
    created = {k: v.get("created", 0) + v.get("linked", 0) + v.get("updated", 0) for k, v in fwd.summary.items()}
    synced = sum(created.get(k, 0) for k in SYNCED_TYPES)
    failed = sum(v.get("failed", 0) for v in fwd.summary.values())
    m_reads, m_writes = fwd.calls("merge", ("GET",)), fwd.calls("merge", ("POST", "PATCH"))
    c_reads = fwd.calls("coperniq", ("GET",))
    rows = [
        (
            f"| {n:,} | forward | {fwd.seconds:.1f} (tap {fwd.tap_seconds:.0f}) | {fwd.records:,} | "
            f"{fwd.records / fwd.seconds:,.0f} | "
            f"{c_reads:,} ({c_reads / max(fwd.records, 1):.3f}/rec) | {m_reads:,} / {m_writes:,} "
            f"({m_reads / max(synced, 1):.2f} / {m_writes / max(synced, 1):.2f} per synced) | "
            f"{fwd.tap_rss_mb:.0f} / {fwd.target_rss_mb:.0f} | {synced:,} synced, {failed} failed | "
            f"{fwd.tap_rc}/{fwd.target_rc} |"
        ),
        (
            f"| {n:,} | forward no-op | {noop.seconds:.1f} | {noop.records:,} | {noop.records / noop.seconds:,.0f} | "
            f"{noop.calls('coperniq'):,} | {noop.calls('merge', ('GET',)):,} / "
            f"{noop.calls('merge', ('POST', 'PATCH')):,} | {noop.tap_rss_mb:.0f} / {noop.target_rss_mb:.0f} | "
            f"{sum(v.get('created', 0) + v.get('updated', 0) for v in noop.summary.values())} written | "
            f"{noop.tap_rc}/{noop.target_rc} |"
        ),
    ]
    if r["reread"] is None:
        return rows
    return [
        *rows,
        (
            f"| {n:,} | forward full re-read, all unchanged | {r['reread'].seconds:.1f} "
            f"(tap {r['reread'].tap_seconds:.0f}) | {r['reread'].records:,} | "
            f"{r['reread'].records / r['reread'].seconds:,.0f} | {r['reread'].calls('coperniq'):,} | "
            f"{r['reread'].calls('merge', ('GET',)):,} / {r['reread'].calls('merge', ('POST', 'PATCH')):,} | "
            f"{r['reread'].tap_rss_mb:.0f} / {r['reread'].target_rss_mb:.0f} | "
            f"{sum(v.get('created', 0) + v.get('updated', 0) for v in r['reread'].summary.values())} written | "
            f"{r['reread'].tap_rc}/{r['reread'].target_rc} |"
        ),
    ]


def reverse_rows(r: dict[str, Any]) -> list[str]:
    out = []
    for label, res in (("reverse", r["reverse"]), ("reverse no-op", r["rnoop"])):
        if res is None:
            continue
        written = res.calls("coperniq", ("POST", "PATCH", "DELETE"))
        out.append(
            f"| {r['n']:,} | {label} | {res.seconds:.1f} | {res.records:,} | {res.records / res.seconds:,.0f} | "
            f"{res.calls('merge'):,} | {res.calls('coperniq'):,} / {written:,} | "
            f"{res.tap_rss_mb:.0f} / {res.target_rss_mb:.0f} | "
            f"{sum(v.get('failed', 0) for v in res.summary.values())} failed | {res.tap_rc}/{res.target_rc} |"
        )
    return out


def route_table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| size | run | sandbox | route | calls | per synced record of its type |", "|---|---|---|---|---|---|"]
    per_type = {
        "POST /api/accounting/v1/contacts": "accounts",
        "POST /api/accounting/v1/passthrough": "projects",
        "POST /api/accounting/v1/invoices": "invoices",
        "GET /api/accounting/v1/invoices": "invoices",
        "POST /api/accounting/v1/payments": "payments",
    }
    for r in results:
        fwd = r["forward"]
        for sb in ("coperniq", "merge"):
            for route, calls in sorted(fwd.routes[sb].items(), key=lambda kv: -kv[1]):
                stream = per_type.get(route)
                ratio = ""
                if stream and fwd.summary.get(stream):
                    done = fwd.summary[stream].get("created", 0) + fwd.summary[stream].get("linked", 0)
                    ratio = f"{calls / max(done, 1):.2f} per {SYNCED_TYPES[stream]}"
                lines.append(f"| {r['n']:,} | forward | {sb} | `{route}` | {calls:,} | {ratio} |")
    return lines


def write_results(
    results: list[dict[str, Any]],
    rl: dict[str, Any] | None,
    tap_table: str,
    notes: list[str],
    path: Path = ROOT / "bench" / "RESULTS.md",
    ledger_table: str = "",
) -> Path:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` (`bench/run_all.py`) on {now}.",
        "",
        f"Machine: {machine()}.",
        "",
        (
            "Both sandboxes run as their own processes on 127.0.0.1 with no server-side rate limit (except the "
            "rate-limit scenario); the plugins run as processes piped like Meltano (tap | target). Wall time covers "
            "both processes from start to exit (interpreter start-up included); '(tap N)' is when the tap exited, the "
            "rest is the target's reconcile pass after its input ended (it stages while the tap runs). Peak RSS is "
            "sampled every 50 ms per process. API calls are the sandboxes' own counters. The target runs with its "
            "defaults (max_parallel_writes 4)."
        ),
        "",
        "## End-to-end runs",
        "",
        (
            "Forward: tap-coperniq | target-quickbooks-merge, backfill on, triggers Residential Solar/Install and HVAC "
            "Replacement/Installation, invoice_sync on. Records = Singer RECORDs the tap emitted (all streams). "
            "'synced' = customers + jobs + invoices + payments created/linked/updated in QuickBooks. "
            "The no-op re-run uses the first run's state (nothing changed in Coperniq); the full re-read runs the tap "
            "without state, so the target receives every record again, all unchanged: its Merge calls must stay at the "
            "one pre-flight `GET /account-details` (an unchanged record costs a ledger lookup, not an API call)."
        ),
        "",
        (
            "| projects | run | wall s | records | records/s | Coperniq reads | Merge reads / writes | peak RSS MB "
            "tap / target | result | exit tap/target |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines += forward_rows(r)
    lines += [
        "",
        (
            "Reverse: tap-quickbooks-merge | target-coperniq after QuickBooks-side activity (payments on 1 in 5 "
            "synced invoices, one new QBO invoice on 1 in 10 synced jobs); the forward-created invoices come back "
            "too and are echo-suppressed."
        ),
        "",
        (
            "| projects | run | wall s | records | records/s | Merge reads | Coperniq reads / writes | peak RSS MB "
            "tap / target | result | exit tap/target |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines += reverse_rows(r)
        lines.append(f"| | (QBO activity: {r['qbo_activity']}) | | | | | | | | |")
    lines += ["", "### API calls by route (forward first run)", "", *route_table(results)]
    lines += ["", "### Data per size", "", "| projects | Coperniq sandbox holds | seeding s |", "|---|---|---|"]
    for r in results:
        lines.append(f"| {r['n']:,} | {json.dumps(r['coperniq'])} | {r['seed_s']:.1f} |")
    if rl:
        res = rl["res"]
        calls = sum(res.routes["merge"].values())
        span = rl["reconcile_s"] or res.seconds
        used = calls / (span / 60) / rl["limit"] if span else 0
        failed = sum(v.get("failed", 0) for v in res.summary.values())
        lines += [
            "",
            "## Draining a backlog under a rate limit",
            "",
            (
                f"Forward run of {rl['n']:,} projects (first run: everything is backlog) with the Merge sandbox "
                f"enforcing {rl['limit']:,} requests/min (Merge's 600/min plan scaled x10 to keep the run short) "
                "and the target's `max_requests_per_minute` set to the same value."
            ),
            "",
            (
                "| Merge calls | target active s | achieved req/min | fraction of limit used | 429s seen | "
                "retries logged | failed rows | exit |"
            ),
            "|---|---|---|---|---|---|---|---|",
            (
                f"| {calls:,} | {span:.1f} | {calls / (span / 60):,.0f} | {used:.0%} | "
                f"{res.statuses['merge'].get('429', 0)} | {res.stderr.count('retry ')} | {failed} | "
                f"{res.target_rc} |"
            ),
        ]
    if tap_table:
        lines += ["", "## tap-coperniq vs tap-rest-api-msdk (bench/tap_bench.py)", "", "```", tap_table.strip(), "```"]
    if ledger_table:
        lines += ["", "## Ledger backends, DuckDB vs PostgreSQL (bench/ledger_backends.py)", "", "```"]
        lines += [ledger_table.strip(), "```"]
    if notes:
        lines += ["", "## Notes", ""] + [f"* {n}" for n in notes]
    path.write_text("\n".join(lines) + "\n")
    return path


def bench_script(name: str, args: list[str], notes: list[str]) -> str:
    """Run another bench script of bench/ and keep the end of its output (its table) for RESULTS.md."""
    print(f"== {name} {' '.join(args)}", flush=True)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / name), *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if proc.returncode:
        notes.append(f"{name} exited {proc.returncode}: {proc.stderr[-300:]}")
    return proc.stdout[-6000:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--quick", action="store_true", help="1,000 projects only, small rate-limit run")
    parser.add_argument("--skip-tap-bench", action="store_true")
    parser.add_argument("--skip-rate-limit", action="store_true")
    parser.add_argument("--skip-reverse", action="store_true", help="forward runs only")
    parser.add_argument("--rate-limit-projects", type=int, default=1000)
    parser.add_argument("--rate-limit-per-minute", type=int, default=6000)
    parser.add_argument("--tap-bench-projects", type=int, default=None)
    parser.add_argument(
        "--ledger-backends",
        action="store_true",
        help="also run bench/ledger_backends.py (ledger ops/s on DuckDB and a throwaway PostgreSQL; off by default)",
    )
    parser.add_argument(
        "--ledger-links", type=int, default=None, help="its --links (default 100000; 2000 with --quick)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="where the figures go (default bench/RESULTS.md; bench/out/RESULTS.quick.md with --quick)",
    )
    parser.add_argument(
        "--full-reread-max",
        type=int,
        default=10_000,
        help="run the forward full re-read only for sizes up to this (it re-reads everything)",
    )
    args = parser.parse_args(argv)
    sizes = [1000] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    OUT.mkdir(parents=True, exist_ok=True)
    output = args.output or (OUT / "RESULTS.quick.md" if args.quick else ROOT / "bench" / "RESULTS.md")
    notes: list[str] = []
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        for n in sizes:
            results.append(bench_size(n, work, full_reread=n <= args.full_reread_max, reverse=not args.skip_reverse))
            write_results(results, None, "", notes, output)  # keep partial figures if a later size is interrupted
        rl = (
            None
            if args.skip_rate_limit
            else bench_rate_limit(300 if args.quick else args.rate_limit_projects, work, args.rate_limit_per_minute)
        )
    tap_table = ""
    if not args.skip_tap_bench:
        tap_n = args.tap_bench_projects or (2000 if args.quick else max(sizes))
        tap_table = bench_script("tap_bench.py", ["--projects", str(tap_n)], notes)
    ledger_table = ""
    if args.ledger_backends:
        links = args.ledger_links or (2000 if args.quick else 100_000)
        ledger_table = bench_script("ledger_backends.py", ["--links", str(links)], notes)
    path = write_results(results, rl, tap_table, notes, output, ledger_table=ledger_table)
    print(path.read_text())
    bad = [
        r["n"]
        for r in results
        for k in ("forward", "noop", "reread", "reverse", "rnoop")
        if r[k] is not None and (r[k].target_rc or r[k].tap_rc)
    ]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
