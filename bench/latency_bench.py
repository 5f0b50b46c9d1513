"""How much of a Merge rate limit the forward leg uses when writes are as slow as the real ones.

    .venv/bin/python bench/latency_bench.py [--projects 1000] [--per-minute 600] [--write-latency-ms 300]
                                            [--read-latency-ms 0] [--parallel 4]

A real Merge write waits for QuickBooks (0.3-1 s); the sandbox answers in a millisecond, so the other benches can
not tell whether the writer keeps a plan's limit busy. Here the Merge sandbox adds `--write-latency-ms` to every
POST/PATCH (and `--read-latency-ms` to every request) and enforces `--per-minute`, and the target is configured to
the same plan (`max_requests_per_minute`). Prints the fraction of the limit the reconcile pass used, the 429s, the
failed rows, and what that means for a first sync of 100,000 projects on that plan.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_all import OUT, bench_rate_limit

from target_quickbooks_merge.report import read_run_summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--per-minute", type=int, default=600)
    parser.add_argument("--write-latency-ms", type=int, default=300)
    parser.add_argument("--read-latency-ms", type=int, default=0)
    parser.add_argument(
        "--parallel", type=int, default=None, help="the target's max_parallel_writes (default: its own, from the rate)"
    )
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="latency-bench-") as tmp:
        rl = bench_rate_limit(
            args.projects,
            Path(tmp),
            args.per_minute,
            faults={"write_latency_ms": args.write_latency_ms, "latency_ms": args.read_latency_ms},
            max_parallel_writes=args.parallel,  # None: the target's default, from the rate
        )
    res = rl["res"]
    span = rl["reconcile_s"] or res.seconds
    calls = sum(res.routes["merge"].values())
    used = calls / (span / 60) / args.per_minute
    summary = res.summary or read_run_summary(res.stderr)
    failed = sum(row.get("failed", 0) for row in summary.values())
    synced = sum(row.get("created", 0) + row.get("linked", 0) for row in summary.values())
    per_project = calls / args.projects
    hours_100k = per_project * 100_000 / (args.per_minute * used) / 60 if used else float("nan")
    print(
        f"| {args.projects:,} | {args.write_latency_ms} / {args.read_latency_ms} | {args.per_minute} | "
        f"{args.parallel or 'auto'} | {calls:,} | {span:.0f} | {calls / (span / 60):,.0f} | {used:.0%} | "
        f"{res.statuses['merge'].get('429', 0)} | {failed} | {synced:,} | {res.target_rc} | {hours_100k:.1f} |"
    )
    return 1 if res.target_rc or failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
