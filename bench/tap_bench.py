"""Benchmark tap-coperniq against the Coperniq sandbox, and tap-rest-api-msdk on the same endpoint.

    .venv/bin/python bench/tap_bench.py [--projects 100000] [--seed 42] [--changed 500] [--skip-msdk]
                                        [--noop RUNS] [--noop-only]

Scenarios, all on one in-process sandbox (same machine, same run, no server-side rate limit):
  1. tap-coperniq, `projects` only, full extraction (the like-for-like comparison: list endpoint only);
  2. tap-rest-api-msdk configured for GET /v1/projects (page/page_size, x-api-key), full extraction;
  3. tap-coperniq incremental run after `--changed` projects moved phase, with the phase history stream:
     what a scheduled run costs against Coperniq's 5,000 requests/day.
  4. with `--noop RUNS` (`--noop-only`: this one alone): tap-coperniq, every stream, with the forward leg's settings
     (run_all.py: trigger phases, backfill), a first run, then RUNS re-runs with its final state and nothing
     changed: the tap's share of the forward no-op run (wall time includes interpreter start-up).
Each tap runs as a subprocess; we measure wall time, records/s (RECORD lines on stdout), peak RSS of the
process tree (psutil), and API calls (sandbox GET /__admin/stats, before/after). Prints a table; writes
bench/out/tap_bench.json. tap-rest-api-msdk is installed into bench/out/.venv-msdk on first use; if that
fails, the reason is printed and the other scenarios still run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox._server import SandboxServer  # noqa: E402
from sandbox.coperniq import CoperniqApp  # noqa: E402

API_KEY = "bench-coperniq-key"
OUT = ROOT / "bench" / "out"
MSDK_VENV = OUT / ".venv-msdk"
MSDK_SPEC = "tap-rest-api-msdk==1.4.2"
PAGE_SIZE = 100


@dataclass
class Result:
    scenario: str
    records: int
    seconds: float
    peak_rss_mb: float
    api_calls: int
    returncode: int
    note: str = ""
    routes: dict[str, int] | None = None
    state_bytes: int = 0  # all STATE lines together

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def api_stats(base: str) -> dict[str, Any]:
    stats: dict[str, Any] = requests.get(f"{base}/__admin/stats", timeout=30).json()
    return stats


def run_tap(
    name: str, argv: list[str], base_url: str, *, env: dict[str, str] | None = None, state_out: Path | None = None
) -> Result:
    """Run a tap, count RECORD lines as they stream, sample the RSS of its process tree."""
    before = api_stats(base_url)
    peak = 0
    records = 0
    last_state: str | None = None
    state_bytes = 0
    stderr_path = OUT / f"{re.sub(r'[^A-Za-z0-9.-]+', '_', name).strip('_')}.stderr.log"
    start = time.perf_counter()
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=stderr, env={**os.environ, **(env or {})}, cwd=ROOT, bufsize=1 << 20
        )
        ps = psutil.Process(proc.pid)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                try:
                    rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
                    peak = max(peak, rss)
                except psutil.Error:
                    pass
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith((b'{"type":"RECORD"', b'{"type": "RECORD"')):
                records += 1
            elif b'"STATE"' in line[:40]:
                last_state = line.decode()
                state_bytes += len(line)
        proc.wait()
        done.set()
        sampler.join()
    seconds = time.perf_counter() - start
    if state_out is not None and last_state:
        state_out.write_text(json.dumps(json.loads(last_state)["value"]))
    note = "" if proc.returncode == 0 else f"exit {proc.returncode}, see {stderr_path.relative_to(ROOT)}"
    after = api_stats(base_url)
    routes = {
        k: v - before["by_route"].get(k, 0) for k, v in after["by_route"].items() if v != before["by_route"].get(k, 0)
    }
    calls = after["total"] - before["total"]
    return Result(name, records, seconds, peak / 2**20, calls, proc.returncode, note, routes, state_bytes)


def tap_coperniq_catalog(config: Path, streams: set[str]) -> Path:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "tap-coperniq"), "--config", str(config), "--discover"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    catalog = json.loads(out)
    for entry in catalog["streams"]:
        for md in entry["metadata"]:
            if md["breadcrumb"] == []:
                md["metadata"]["selected"] = entry["tap_stream_id"] in streams
    path = config.with_name(f"catalog-{'-'.join(sorted(streams))}.json")
    path.write_text(json.dumps(catalog))
    return path


def ensure_msdk() -> tuple[Path | None, str]:
    """tap-rest-api-msdk in its own venv (it pins an older singer-sdk than ours)."""
    exe = MSDK_VENV / "bin" / "tap-rest-api-msdk"
    if exe.exists():
        return exe, ""
    try:
        subprocess.run([sys.executable, "-m", "venv", str(MSDK_VENV)], check=True, capture_output=True)
        subprocess.run(
            [str(MSDK_VENV / "bin" / "pip"), "install", "-q", MSDK_SPEC],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        return None, f"could not install {MSDK_SPEC}: {str(detail).strip().splitlines()[-1:]}"
    return (exe, "") if exe.exists() else (None, f"{MSDK_SPEC} installed no tap-rest-api-msdk executable")


def msdk_config(api_url: str) -> dict[str, Any]:
    """GET /v1/projects with page/page_size. Coperniq returns a bare array with no has-more flag, so the
    page-number paginator is told there is a next page when element [page_size-1] exists."""
    return {
        "api_url": api_url,
        "auth_method": "api_key",
        "api_keys": {"x-api-key": API_KEY},
        "pagination_request_style": "page_number_paginator",
        "pagination_response_style": "page",
        "pagination_initial_offset": 1,
        "next_page_token_path": f"$[{PAGE_SIZE - 1}]",
        "streams": [
            {
                "name": "projects",
                "path": "/projects",
                "params": {"page_size": PAGE_SIZE, "include_archived": "true"},
                "primary_keys": ["id"],
                "records_path": "$[*]",
                "num_inference_records": 50,
            }
        ],
    }


def print_table(results: list[Result]) -> None:
    header = f"{'scenario':<58} {'records':>9} {'seconds':>8} {'records/s':>10} {'peak RSS MB':>12} {'API calls':>10}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.scenario:<58} {r.records:>9} {r.seconds:>8.1f} {r.records_per_second:>10.0f} "
            f"{r.peak_rss_mb:>12.1f} {r.api_calls:>10}" + (f"  ({r.note})" if r.note else "")
        )
        if r.routes and len(r.routes) > 1:
            print(" " * 4 + ", ".join(f"{route}: {n}" for route, n in sorted(r.routes.items())))


def noop_runs(work: Path, api_url: str, base: str, runs: int) -> list[Result]:
    """Scenario 4: a first run of every stream, then `runs` re-runs with its state (nothing changed)."""
    config = work / "config-noop.json"
    config.write_text(
        json.dumps(
            {
                "api_key": API_KEY,
                "api_url": api_url,
                "start_date": "2020-01-01T00:00:00Z",
                "max_requests_per_second": 0,
                "trigger_phases": [
                    {"workflow": "Residential Solar", "phase": "Install"},
                    {"workflow": "HVAC Replacement", "phase": "Installation"},
                ],
                "backfill": True,
                "daily_call_limit": 0,
            }
        )
    )
    tap = str(Path(sys.executable).parent / "tap-coperniq")
    quiet = {"TAP_COPERNIQ_LOGLEVEL": "WARNING"}
    state = work / "state-noop.json"
    results = [
        run_tap(
            "tap-coperniq: all streams, first run", [tap, "--config", str(config)], base, env=quiet, state_out=state
        )
    ]
    print_table(results[-1:])
    for i in range(runs):
        res = run_tap(
            f"tap-coperniq: all streams, no-op re-run {i + 1}",
            [tap, "--config", str(config), "--state", str(state)],
            base,
            env=quiet,
        )
        res.note = res.note or f"STATE {res.state_bytes / 1000:,.0f} kB"
        results.append(res)
        print_table(results[-1:])
    times = sorted(r.seconds for r in results[1:])
    if times:
        print(f"no-op re-runs: median {times[len(times) // 2]:.2f} s, min {times[0]:.2f} s, max {times[-1]:.2f} s")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--changed", type=int, default=500, help="projects moved to another phase before run 3")
    parser.add_argument("--skip-msdk", action="store_true")
    parser.add_argument("--noop", type=int, default=0, help="no-op re-runs of every stream after a first run")
    parser.add_argument("--noop-only", action="store_true", help="only the no-op scenario (--noop, default 5)")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)

    app = CoperniqApp(api_key=API_KEY, rate_limit_per_second=None, rate_limit_per_day=None)
    t0 = time.perf_counter()
    summary = app.seed(projects=args.projects, seed=args.seed)
    print(f"seeded sandbox in {time.perf_counter() - t0:.1f}s: {summary}", flush=True)
    server = SandboxServer(app).start()
    base, api_url = server.root_url, f"{server.root_url}/v1"
    results: list[Result] = []
    try:
        with tempfile.TemporaryDirectory(prefix="tap-bench-") as tmp:
            work = Path(tmp)
            if args.noop_only:
                results = noop_runs(work, api_url, base, args.noop or 5)
                return finish(args.projects, results)
            config = work / "config.json"
            # 0 = no client-side limit: measure the tap, not the throttle (production default is 10/s)
            config.write_text(
                json.dumps(
                    {
                        "api_key": API_KEY,
                        "api_url": api_url,
                        "page_size": PAGE_SIZE,
                        "start_date": "2000-01-01T00:00:00Z",
                        "max_requests_per_second": 0,
                    }
                )
            )
            tap = str(Path(sys.executable).parent / "tap-coperniq")
            quiet = {"TAP_COPERNIQ_LOGLEVEL": "WARNING"}

            state = work / "state.json"
            cat = tap_coperniq_catalog(config, {"projects"})
            results.append(
                run_tap(
                    f"tap-coperniq: projects, full ({args.projects:,})",
                    [tap, "--config", str(config), "--catalog", str(cat)],
                    base,
                    env=quiet,
                    state_out=state,
                )
            )
            print_table(results[-1:])

            if args.skip_msdk:
                print("tap-rest-api-msdk: skipped (--skip-msdk)")
            else:
                exe, why = ensure_msdk()
                if exe is None:
                    print(f"tap-rest-api-msdk: not run: {why}")
                else:
                    mcfg = work / "msdk.json"
                    mcfg.write_text(json.dumps(msdk_config(api_url)))
                    results.append(
                        run_tap(
                            f"tap-rest-api-msdk 1.4.2: projects, full ({args.projects:,})",
                            [str(exe), "--config", str(mcfg)],
                            base,
                            env={"TAP_REST_API_MSDK_LOGLEVEL": "WARNING"},
                        )
                    )
                    print_table(results[-1:])

            # a scheduled incremental run: a few hundred projects changed phase since the last run
            ids = sorted(app.state.projects)[:: max(1, len(app.state.projects) // max(1, args.changed))]
            moved = 0
            for pid in ids[: args.changed]:
                target = next((i[1] for i in app.state.phase_instances.get(pid, []) if i[2] != "IN_PROGRESS"), None)
                if target is not None:
                    app.move_project_to_phase(pid, target)
                    moved += 1
            time.sleep(0.05)
            cat2 = tap_coperniq_catalog(config, {"projects", "project_phase_instances"})
            if state.exists():
                results.append(
                    run_tap(
                        f"tap-coperniq: incremental, {moved} changed + phase history",
                        [tap, "--config", str(config), "--catalog", str(cat2), "--state", str(state)],
                        base,
                        env=quiet,
                    )
                )
            if args.noop:
                results.extend(noop_runs(work, api_url, base, args.noop))
    finally:
        server.stop()
    return finish(args.projects, results)


def finish(projects: int, results: list[Result]) -> int:
    """The summary table and bench/out/tap_bench.json."""
    print()
    print(
        f"Coperniq sandbox, {projects:,} projects, page_size {PAGE_SIZE}, Python {sys.version.split()[0]}, "
        f"{psutil.cpu_count()} CPUs"
    )
    print_table(results)
    (OUT / "tap_bench.json").write_text(
        json.dumps([asdict(r) | {"records_per_second": r.records_per_second} for r in results], indent=2)
    )
    return 0 if all(r.returncode == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
