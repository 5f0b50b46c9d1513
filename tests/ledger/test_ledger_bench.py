"""Ledger throughput at scale (20k records by default, LEDGER_BENCH_N=100000 for the full scale; the figures at 100k
on both backends are bench/ledger_backends.py's, in bench/RESULTS.md).

Prints figures; the only bounds are very generous, so a loaded CI box does not flake while an accidental
per-record SQL round trip (minutes at this scale) still fails."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sync_ledger import Ledger, Link, fingerprint

N = int(os.environ.get("LEDGER_BENCH_N", "20000"))  # LEDGER_BENCH_N=100000 for the full target scale
WRITE_SAMPLE = min(N, 1000)  # write-through calls cost ~1-2 ms each: measure a sample, extrapolate


def _record(i: int, version: int = 0) -> dict:
    return {
        "id": i,
        "title": f"Project {i}",
        "status": "ACTIVE",
        "amount": i * 1.5,
        "version": version,
        "address": ["1 Main St", "Springfield"],
        "custom": {"k": "v" * 40},
    }


def test_ledger_bench_100k(tmp_path: Path) -> None:
    path = tmp_path / "bench.duckdb"
    figures: dict[str, float] = {}

    def timed(name: str, fn) -> None:
        started = time.perf_counter()
        fn()
        figures[name] = time.perf_counter() - started

    records = [(str(i), _record(i)) for i in range(N)]
    with Ledger(path) as led:
        run = led.start_run("forward")
        timed("stage (new)", lambda: led.stage("coperniq", "projects", records))

        sample = records[:WRITE_SAMPLE]

        def first_run_per_record() -> None:  # what a target does per record it creates (write-through link)
            for rid, payload in sample:
                led.upsert_link(
                    Link("coperniq", "project", rid, "quickbooks", "job", f"u{rid}", fingerprint=fingerprint(payload))
                )
                led.mark_staged("coperniq", "projects", rid, "done")
                led.log(run, direction="forward", stream="projects", source_id=rid, action="created")

        timed(f"upsert_link+mark+log x{len(sample)} (per record)", first_run_per_record)
        figures_per = {f"upsert_link+mark+log x{len(sample)} (per record)": len(sample)}
        timed(
            "upsert_links (bulk, rest)",
            lambda: led.upsert_links(
                Link("coperniq", "project", rid, "quickbooks", "job", f"u{rid}", fingerprint=fingerprint(payload))
                for rid, payload in records[WRITE_SAMPLE:]
            ),
        )
        timed("finish_run", lambda: led.finish_run(run))

    with Ledger(path) as led:
        run = led.start_run("forward")
        timed("stage (unchanged, after reopen)", lambda: led.stage("coperniq", "projects", records))

        def unchanged_run() -> None:  # the per-record cost of an unchanged record: lookups and a log line
            # payloads come the way the targets read them, in chunks while iterating (a staged() per record
            # is an index point read since payloads left the in-memory mirror),
            # and their links a chunk at a time (links_for), as the forward target reads them
            for chunk in led.iter_staged_chunks("coperniq", "projects"):
                links = led.links_for("coperniq", "project", [rid for rid, _, _, _ in chunk])
                for rid, payload, _, _ in chunk:
                    link = links.get(rid)
                    assert link is not None and link.fingerprint == fingerprint(payload)
                    led.mark_staged("coperniq", "projects", rid, "done")
                    led.log(run, direction="forward", stream="projects", source_id=rid, action="skipped")

        timed("staged+get_link+mark+log (unchanged)", unchanged_run)
        timed(
            "stage (all changed)",
            lambda: led.stage("coperniq", "projects", [(rid, _record(int(rid), 1)) for rid, _ in records]),
        )
        timed("finish_run", lambda: led.finish_run(run))
        assert led.runs(limit=1)[0]["counts"] == {"projects": {"skipped": N}}
        pending = sum(1 for _ in led.iter_staged("coperniq", "projects", status="pending"))
        assert pending == N

    print(f"\nledger bench, {N} records:")
    for name, seconds in figures.items():
        n = figures_per.get(name, N)
        print(f"  {name:<42} {seconds:7.2f} s  ({seconds / n * 1e6:7.1f} us/record)")
    # 2 ms per record: an accidental per-record SQL round trip costs about that on DuckDB
    assert figures["stage (new)"] < 60 * N / 30_000
    assert figures["staged+get_link+mark+log (unchanged)"] < 60 * N / 30_000
