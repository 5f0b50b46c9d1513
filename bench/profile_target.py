"""Profile target-quickbooks-merge's forward run in-process (cProfile) against the sandboxes.

    .venv/bin/python bench/profile_target.py [--projects 1000] [--top 25] [--parallel 4] [--noop]

The tap runs first (as a process, its output kept in a file), so the profile holds only the target: staging the
records, then the reconcile pass. Prints the phases' wall times and the functions with the most cumulative time.
--noop: run the forward leg once unprofiled, then profile a re-run with the tap's state (nothing changed).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contextlib

from run_all import BIN, forward_cfgs, start_sandboxes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--parallel", type=int, default=4, help="the target's max_parallel_writes")
    parser.add_argument("--noop", action="store_true", help="profile the no-op re-run instead of the first run")
    args = parser.parse_args(argv)

    from target_quickbooks_merge.target import TargetQuickbooksMerge

    cop, merge = start_sandboxes(args.projects)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            tap_cfg, target_cfg = forward_cfgs(
                cop, merge, work / "ledger.duckdb", max_parallel_writes=args.parallel, progress_interval=3600
            )
            (work / "tap.json").write_text(json.dumps(tap_cfg))
            tap_cmd = [str(BIN / "tap-coperniq"), "--config", str(work / "tap.json")]
            if args.noop:
                (work / "target.json").write_text(json.dumps(target_cfg))
                tap = subprocess.Popen(tap_cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                first = subprocess.run(
                    [str(BIN / "target-quickbooks-merge"), "--config", str(work / "target.json")],
                    stdin=tap.stdout,
                    capture_output=True,
                    check=True,
                )
                tap.wait()
                states = [line for line in first.stdout.decode().splitlines() if line.startswith("{")]
                (work / "state.json").write_text(states[-1])  # a target prints each state value on its own line
                tap_cmd += ["--state", str(work / "state.json")]
            started = time.perf_counter()
            with (work / "records.jsonl").open("w") as out:
                subprocess.run(tap_cmd, stdout=out, stderr=subprocess.DEVNULL, check=True)
            tap_s = time.perf_counter() - started
            target = TargetQuickbooksMerge(config=target_cfg)
            profile = cProfile.Profile()
            started = time.perf_counter()
            with (work / "records.jsonl").open() as records:
                profile.enable()
                with contextlib.suppress(SystemExit):
                    target.listen(records)
                profile.disable()
            target_s = time.perf_counter() - started
    finally:
        cop.stop()
        merge.stop()
    stream = io.StringIO()
    pstats.Stats(profile, stream=stream).sort_stats("cumulative").print_stats(args.top)
    print(
        f"tap {tap_s:.1f} s (process), target {target_s:.1f} s in-process under cProfile "
        f"({args.projects:,} projects, max_parallel_writes={args.parallel}{', no-op re-run' if args.noop else ''})"
    )
    print(stream.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
