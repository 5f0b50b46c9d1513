"""Profile target-quickbooks-merge's forward run in-process (cProfile) against the sandboxes.

    .venv/bin/python bench/profile_target.py [--projects 1000] [--top 25] [--parallel 4] [--noop]

The tap runs first (as a process, its output kept in a file), so the profile holds only the target: staging the
records, then the reconcile pass. Prints the phases' wall times and the functions with the most cumulative time.
--noop: run the forward leg once unprofiled, then profile a re-run with the tap's state (nothing changed).
--memory: instead of cProfile, trace Python allocations (tracemalloc) and print what was held when the traced total
peaked, by source line, beside the process's peak RSS (DuckDB's own memory is in RSS only).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import resource
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contextlib

from run_all import BIN, forward_cfgs, start_sandboxes


class PeakSnapshots:
    """Samples the traced total every half second and keeps a snapshot whenever it grew 10% past the last one."""

    def __init__(self) -> None:
        self.snapshot: tracemalloc.Snapshot | None = None
        self.held = 0
        self.duckdb: dict[str, int] = {}  # DuckDB's own memory by tag when the snapshot was taken
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        tracemalloc.start(1)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.5):
            current, _ = tracemalloc.get_traced_memory()
            if current > self.held * 1.1:
                self.snapshot = tracemalloc.take_snapshot()
                self.held = current
                self.duckdb = duckdb_memory() or self.duckdb

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        self.traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

    def report(self, out: io.StringIO, top: int) -> None:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"peak RSS {rss:.0f} MB; traced peak {self.traced_peak / 2**20:.0f} MB; "
            f"held at the last snapshot {self.held / 2**20:.0f} MB",
            file=out,
        )
        if self.snapshot:
            for stat in self.snapshot.statistics("lineno")[:top]:
                print(f"{stat.size / 2**20:8.1f} MB {stat.count:>9,} blocks  {stat.traceback}", file=out)


def duckdb_memory() -> dict[str, int]:
    """DuckDB's memory by tag, read through the target's own ledger connection (under its lock)."""
    from sync_ledger.ledger_core import _REGISTRY

    for core in list(_REGISTRY.values()):
        try:
            with core.lock:
                rows = core.conn.execute(
                    "SELECT tag, memory_usage_bytes FROM duckdb_memory() WHERE memory_usage_bytes > 0"
                ).fetchall()
            return {str(tag): int(size) for tag, size in rows}
        except Exception:  # noqa: BLE001 - closed at the end of the run
            continue
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--parallel", type=int, default=4, help="the target's max_parallel_writes")
    parser.add_argument("--noop", action="store_true", help="profile the no-op re-run instead of the first run")
    parser.add_argument("--memory", action="store_true", help="what Python held at its peak (tracemalloc)")
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
            peak = PeakSnapshots() if args.memory else None
            started = time.perf_counter()
            with (work / "records.jsonl").open() as records:
                if peak:
                    peak.start()
                else:
                    profile.enable()
                with contextlib.suppress(SystemExit):
                    target.listen(records)
                if peak:
                    peak.stop()
                else:
                    profile.disable()
            target_s = time.perf_counter() - started
    finally:
        cop.stop()
        merge.stop()
    stream = io.StringIO()
    if peak:
        peak.report(stream, args.top)
    else:
        pstats.Stats(profile, stream=stream).sort_stats("cumulative").print_stats(args.top)
    print(
        f"tap {tap_s:.1f} s (process), target {target_s:.1f} s in-process under cProfile "
        f"({args.projects:,} projects, max_parallel_writes={args.parallel}{', no-op re-run' if args.noop else ''})"
    )
    print(stream.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
