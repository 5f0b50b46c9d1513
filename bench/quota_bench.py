"""The Coperniq API budget of tap-coperniq: calls per project and days of a 5,000-calls-a-day key.

    .venv/bin/python bench/quota_bench.py [--sizes 1000,10000,100000] [--seed 42]

Per size N (projects seeded in a Coperniq sandbox process, no rate limit), each scenario is tap-coperniq as a
process, with the calls counted by the sandbox (GET /__admin/stats), never timed:
  before        the previous defaults (phase history read for every project, payments of every invoice)
  first, backfill off   trigger_phases set on the tap (the meltano.yml default feeds both plugins)
  first, backfill on
  a day of 15-minute runs   96 incremental runs after the first (backfill on), with activity between runs (N/2,000
                phase moves and N/4,000 payments per 15 minutes); the sweep interval (default 4 h) is simulated
                by moving the state's `last_sweep_at` back 15 minutes per run
"Days of a key" = calls / 5,000 (the key's whole day; the default `daily_call_reserve` keeps 1,000 of it for
other integrations, so a first run spreads over calls / 4,000 days). Prints a Markdown table; --output appends
it to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from run_all import COP_KEY, TRIGGERS, Sandbox  # noqa: E402

BIN = Path(sys.executable).parent
KEY_PER_DAY = 5000
RUNS_PER_DAY = 96


def tap_run(cop: Sandbox, work: Path, config: dict[str, Any], state: dict[str, Any] | None) -> tuple[int, dict]:
    """One tap-coperniq process; returns (Coperniq calls it made, its final state)."""
    cfg = work / "tap.json"
    cfg.write_text(
        json.dumps(
            {
                "api_url": cop.url,
                "api_key": COP_KEY,
                "max_requests_per_second": 100_000,
                "daily_call_limit": 0,
                **config,
            }
        )
    )
    args = [str(BIN / "tap-coperniq"), "--config", str(cfg)]
    if state:
        (work / "state.json").write_text(json.dumps(state))
        args += ["--state", str(work / "state.json")]
    before = cop.stats()["total"]
    env = {**os.environ, "TAP_COPERNIQ_LOGLEVEL": "WARNING"}
    proc = subprocess.run(args, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    final: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        if line.startswith(('{"type":"STATE"', '{"type": "STATE"')):
            final = json.loads(line)["value"]
    return cop.stats()["total"] - before, final


def activity(cop: Sandbox, n: int, rng: random.Random) -> None:
    """What 15 minutes of a contractor's day looks like to the API: some phase moves, some payments."""
    first_project, first_invoice = 48001, 66001  # where the seed numbers them (unknown ids are skipped)
    for _ in range(max(1, n // 2000)):
        pid = first_project + rng.randrange(n)
        try:
            cop.admin("POST", f"projects/{pid}/phase", {"phase": "Install"})
        except Exception:  # noqa: BLE001 - a project of another workflow has no such phase: pick the next one
            continue
    for _ in range(max(1, n // 4000)):
        iid = first_invoice + rng.randrange(n)
        try:
            cop.admin("POST", f"invoices/{iid}/payments", {"amount": 1.0})
        except Exception:  # noqa: BLE001 - paid in full or not an invoice id: skip
            continue


def older_sweep(state: dict[str, Any], minutes: int) -> dict[str, Any]:
    projects = state.get("bookmarks", {}).get("projects", {})
    if projects.get("last_sweep_at"):
        at = datetime.fromisoformat(projects["last_sweep_at"]) - timedelta(minutes=minutes)
        projects["last_sweep_at"] = at.isoformat()
    return state


def bench_size(n: int, seed: int) -> dict[str, Any]:
    cop = Sandbox(
        "sandbox.coperniq",
        [
            "--api-key",
            COP_KEY,
            "--seed",
            str(seed),
            "--projects",
            str(n),
            "--rate-limit-per-second",
            "0",
            "--rate-limit-per-day",
            "0",
        ],
        "/v1",
    )
    out: dict[str, Any] = {"n": n}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            out["before"], _ = tap_run(cop, work, {"phase_history": True}, None)
            out["first_off"], _ = tap_run(cop, work, {"trigger_phases": TRIGGERS}, None)
            out["first_on"], state = tap_run(cop, work, {"trigger_phases": TRIGGERS, "backfill": True}, None)
            rng = random.Random(seed)
            day = 0
            for _ in range(RUNS_PER_DAY):
                activity(cop, n, rng)
                calls, state = tap_run(
                    cop, work, {"trigger_phases": TRIGGERS, "backfill": True}, older_sweep(state, 15)
                )
                day += calls
            out["day"] = day
    finally:
        cop.stop()
    return out


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| projects | scenario | Coperniq calls | calls / project | days of a 5,000/day key |",
        "|---:|---|---:|---:|---:|",
    ]
    names = [
        (
            "before",
            (
                "first run, phase history on, no trigger_phases on the tap (near the old defaults, which "
                "also read unpaid invoices' payments)"
            ),
        ),
        ("first_off", "first run, backfill off (trigger_phases on the tap)"),
        ("first_on", "first run, backfill on"),
        ("day", "a day of 15-minute runs after it (96 runs, 6 sweeps, activity)"),
    ]
    for r in results:
        for key, label in names:
            calls = r[key]
            rows.append(f"| {r['n']:,} | {label} | {calls:,} | {calls / r['n']:.3f} | {calls / KEY_PER_DAY:.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    results = []
    for n in (int(x) for x in args.sizes.split(",")):
        results.append(bench_size(n, args.seed))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    text = table(results)
    print(text)
    if args.output:
        with args.output.open("a") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
