"""Sync-ledger operations per second on DuckDB and on PostgreSQL, side by side, at target scale (100k links).

    .venv/bin/python bench/ledger_backends.py [--links 100000] [--backends duckdb,postgres] [--json out.json]

Per backend, in a fresh ledger (a new DuckDB file; a new database on a throwaway PostgreSQL server this script
starts with sandbox.postgres.PostgresServer), each backend in a child process of its own so its peak RSS is its own:
  upsert_links      N links in calls of 1,000, as a first sync writes them (the setup; timed too)
  get_link          5,000 random source ids, one call each (the ledger's 5,000-link cache mostly misses)
  links_for         every id, 1,000 ids per call
  get_link_by_target  5,000 random target ids
  upsert_link       2,000 single updates, each its own transaction (a write-through link after one API create)
  begin+end_intents batches of 50 intents: one begin_intents and one end_intents per batch (a planned batch)
  stage             N records in calls of 1,000 (a sink batch)
  iter_staged_chunks + mark_staged  every staged row read in chunks, one mark_staged per row, then flush()
  log + finish_run  N log rows (buffered), then finish_run (flushes them and counts them)
ops/s = items / seconds (links, ids, records, rows, intents). Peak RSS is the Python process's (ru_maxrss), not the
PostgreSQL server's. The throwaway server runs with fsync, synchronous_commit and full_page_writes off (its data dir
is deleted at stop), which flatters PostgreSQL's commit cost against DuckDB's, which syncs its WAL on commit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the sandbox package lives at the repo root
    sys.path.insert(0, str(ROOT))

BACKENDS = ("duckdb", "postgres")
CALL = 1000  # links / records / ids per bulk call
LOOKUPS = 5000
SINGLE_UPSERTS = 2000
INTENT_BATCH = 50
FSYNC_NOTE = (
    "PostgreSQL: throwaway server (sandbox.postgres) with fsync, synchronous_commit and full_page_writes off, "
    "which flatters its commit cost; DuckDB syncs its WAL on commit."
)


def _payload(i: int, version: int = 0) -> dict[str, Any]:
    return {
        "id": i,
        "title": f"Project {i}",
        "status": "ACTIVE",
        "amount": f"{i * 1.5:.2f}",
        "version": version,
        "address": ["1 Main St", "Springfield"],
        "custom": {"k": "v" * 40},
    }


def run_one(place: str, n: int, seed: int = 42) -> dict[str, Any]:
    """All operations on one fresh ledger at `place`; returns {"ops": [[name, count, seconds], ...], "rss_mb"}."""
    from sync_ledger import Ledger, Link, fingerprint

    rng = random.Random(seed)
    ops: list[list[Any]] = []

    def timed(name: str, count: int, fn: Callable[[], Any]) -> None:
        started = time.perf_counter()
        fn()
        ops.append([name, count, time.perf_counter() - started])

    def link(i: int, version: int = 0) -> Link:
        return Link(
            "coperniq",
            "project",
            str(i),
            "quickbooks",
            "job",
            f"qb-{i}",
            target_remote_id=f"r{i}",
            fingerprint=fingerprint(_payload(i, version)),
        )

    ids = [str(i) for i in range(n)]
    with Ledger(place) as led:

        def bulk_links() -> None:
            for i in range(0, n, CALL):
                led.upsert_links(link(j) for j in range(i, min(i + CALL, n)))

        timed(f"upsert_links ({CALL}/call)", n, bulk_links)

        picks = [rng.randrange(n) for _ in range(min(LOOKUPS, n))]

        def point_lookups() -> None:
            for i in picks:
                assert led.get_link("coperniq", "project", str(i)) is not None

        timed("get_link", len(picks), point_lookups)

        def chunked() -> None:
            for i in range(0, n, CALL):
                assert len(led.links_for("coperniq", "project", ids[i : i + CALL])) == len(ids[i : i + CALL])

        timed(f"links_for ({CALL} ids/call)", n, chunked)

        targets = [rng.randrange(n) for _ in range(min(LOOKUPS, n))]

        def by_target() -> None:
            for i in targets:
                assert led.get_link_by_target("quickbooks", "job", f"qb-{i}") is not None

        timed("get_link_by_target", len(targets), by_target)

        updates = [rng.randrange(n) for _ in range(min(SINGLE_UPSERTS, n))]

        def single_upserts() -> None:
            for i in updates:
                led.upsert_link(link(i, 1))

        timed("upsert_link (1 per transaction)", len(updates), single_upserts)

        batches = max(1, min(n, 10_000) // INTENT_BATCH)

        def intents() -> None:
            for b in range(batches):
                keys = [f"forward:coperniq:project:{b * INTENT_BATCH + k}" for k in range(INTENT_BATCH)]
                led.begin_intents((key, {"op": "create", "n": k}) for k, key in enumerate(keys))
                led.end_intents(keys)

        timed(f"begin_intents+end_intents ({INTENT_BATCH}/batch)", batches * INTENT_BATCH, intents)

        def stage() -> None:
            for i in range(0, n, CALL):
                led.stage("coperniq", "projects", [(str(j), _payload(j)) for j in range(i, min(i + CALL, n))])

        timed(f"stage ({CALL}/call)", n, stage)

        def iterate_and_mark() -> None:
            seen = 0
            for chunk in led.iter_staged_chunks("coperniq", "projects"):
                for rid, _pl, _status, _attempts in chunk:
                    led.mark_staged("coperniq", "projects", rid, "done")
                    seen += 1
            led.flush()
            assert seen == n, seen

        timed("iter_staged_chunks + mark_staged + flush", n, iterate_and_mark)

        def log_rows() -> None:
            run = led.start_run("forward")
            for rid in ids:
                led.log(run, direction="forward", stream="projects", source_id=rid, action="skipped")
            counts = led.finish_run(run)
            assert counts == {"projects": {"skipped": n}}, counts

        timed("log + finish_run", n, log_rows)

    return {"ops": ops, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child(backend: str, place: str, n: int) -> dict[str, Any]:
    """run_one in a child process (its own peak RSS, its own DuckDB instance)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        out_path = Path(out.name)
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", place, "--links", str(n), "--json", str(out_path)],
            cwd=ROOT,
            check=False,
        )
        if proc.returncode:
            raise RuntimeError(f"{backend} bench exited {proc.returncode}")
        result: dict[str, Any] = json.loads(out_path.read_text())
        return result
    finally:
        out_path.unlink(missing_ok=True)


def table(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    head = f"{'operation':<44} {'count':>8}" + "".join(f" {b + ' s':>11} {b + ' ops/s':>15}" for b in names)
    lines = [head, "-" * len(head)]
    rows: dict[str, dict[str, tuple[int, float]]] = {}
    for backend, res in results.items():
        for name, count, seconds in res["ops"]:
            rows.setdefault(name, {})[backend] = (count, seconds)
    for name, per in rows.items():
        count = next(iter(per.values()))[0]
        line = f"{name:<44} {count:>8,}"
        for b in names:
            if b in per:
                c, s = per[b]
                line += f" {s:>11.2f} {c / s if s else 0:>15,.0f}"
            else:
                line += f" {'':>11} {'':>15}"
        lines.append(line)
    lines.append(
        f"{'peak RSS MB (Python process)':<44} {'':>8}"
        + "".join(f" {'':>11} {results[b]['rss_mb']:>15,.0f}" for b in names)
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--links", type=int, default=100_000)
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated: duckdb,postgres")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here as JSON")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: run one backend at this place
    args = parser.parse_args(argv)
    if args.child:
        res = run_one(args.child, args.links)
        if args.json:
            args.json.write_text(json.dumps(res))
        return 0
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(BACKENDS)
    if unknown or not backends:
        parser.error(f"--backends: choose from {', '.join(BACKENDS)} (got {args.backends!r})")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="ledger-backends-") as tmp:
        for backend in backends:
            print(f"== {backend}: {args.links:,} links", file=sys.stderr, flush=True)
            if backend == "duckdb":
                results[backend] = child(backend, str(Path(tmp) / "ledger.duckdb"), args.links)
            else:
                from sandbox.postgres import PostgresServer

                with PostgresServer() as server:
                    url = server.create_database("ledger_bench")
                    version = server.execute("SHOW server_version")[0][0]
                    results[backend] = child(backend, url, args.links)
                    results[backend]["server_version"] = version
    import duckdb

    versions = [f"DuckDB {duckdb.__version__}"]
    if "postgres" in results:
        versions.append(f"PostgreSQL {results['postgres']['server_version']}")
    print(
        f"sync ledger, {args.links:,} links, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{', '.join(versions)}"
    )
    print(table(results))
    if "postgres" in results:
        print(FSYNC_NOTE)
    if args.json:
        args.json.write_text(json.dumps({"links": args.links, "note": FSYNC_NOTE, "backends": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
