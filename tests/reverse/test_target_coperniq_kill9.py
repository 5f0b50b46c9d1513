"""kill -9 of target-coperniq in the middle of a batch of parallel creates, then a re-run: Coperniq ends up with
every invoice and payment exactly once.

The target runs as a process (stdin from a file, as Meltano pipes it). Writes take 50 ms and go 4 at a time, and a
batch's answers are applied only once all of it was sent, so the kill, from a watcher on the sandbox's own store,
lands after some creates reached Coperniq and before their links were committed: the window the batch's intents
(made durable in one commit before any of its calls) exist for. Each invoice gets two payments of the same amount,
so a re-run that took its own interrupted create for a payment recorded in both systems (a "twin") would show.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from reverse_helpers import link_forward, log_rows, merge_contact, merge_invoice, merge_payment, singer_lines

from sync_ledger import Ledger
from tests.conftest import RunningSandbox, start_coperniq

TARGET = Path(sys.executable).parent / "target-coperniq"
INVOICES = 10


def invoices_held(sb: RunningSandbox) -> int:
    with sb.app.lock:
        return len(sb.app.state.invoices)


def payments_held(sb: RunningSandbox) -> int:
    with sb.app.lock:
        return sum(len(paid) for paid in sb.app.state.payments.values())


KILL_POINTS: dict[str, Callable[[RunningSandbox], int]] = {"invoices": invoices_held, "payments": payments_held}


@pytest.fixture(params=["duckdb", "postgres"])
def world(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The same kills with the ledger in a DuckDB file and on PostgreSQL (ledger_url)."""
    sb = start_coperniq(rate_limit_per_day=None)
    sb.faults.update(write_latency_ms=50)
    project = sb.app.add_project("Smith Residence Solar")
    contact = merge_contact("Smith Residence Solar")
    ledger: Path | str = tmp_path / "ledger.duckdb"
    place: dict[str, str] = {"ledger_path": str(ledger)}
    if request.param == "postgres":
        ledger = str(request.getfixturevalue("pg_url"))
        place = {"ledger_url": ledger}
    link_forward(ledger, "project", project["id"], "job", contact["id"], contact["remote_id"])
    invoices = [
        merge_invoice(contact["id"], [{"quantity": 1, "unit_price": 1000.0 + n}], number=f"K-{n}")
        for n in range(INVOICES)
    ]
    payments = [
        merge_payment(contact["id"], [(inv["id"], 300.0)], transaction_date=f"2026-01-{day}T00:00:00Z")
        for inv in invoices
        for day in (12, 14)
    ]
    lines = singer_lines([("contacts", [contact]), ("invoices", invoices), ("payments", payments)])
    (tmp_path / "input.jsonl").write_text(lines)
    config = {
        "api_url": sb.url,
        "api_key": sb.api_key,
        **place,
        "max_requests_per_second": 0,
        "max_parallel_writes": 4,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    yield {"sb": sb, "ledger": ledger, "dir": tmp_path, "invoices": invoices, "payments": payments}
    sb.server.stop()


def run_target_process(
    workdir: Path, tag: str, kill_when: Callable[[], bool] | None = None, timeout: float = 120.0
) -> tuple[int, str]:
    """target-coperniq --config config.json < input.jsonl; SIGKILLed as soon as `kill_when()` is true."""
    with (
        open(workdir / "input.jsonl") as stdin,
        open(workdir / f"{tag}.out", "w") as stdout,
        open(workdir / f"{tag}.err", "w+") as stderr,
    ):
        proc = subprocess.Popen(
            [str(TARGET), "--config", str(workdir / "config.json")],
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            cwd=workdir,
        )
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None:
                if kill_when is not None and kill_when():
                    proc.send_signal(signal.SIGKILL)
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{tag}: target-coperniq did not finish in {timeout}s")
                time.sleep(0.002)
        finally:
            if proc.poll() is None:
                proc.kill()  # killed on purpose, or timed out
            rc = proc.wait()
        stderr.seek(0)
        return rc, stderr.read()


def assert_complete(world: dict[str, Any]) -> None:
    """Each QuickBooks invoice is one Coperniq invoice holding both its payments, each once; nothing is open."""
    app = world["sb"].app
    copies: dict[str, list[dict[str, Any]]] = {}
    for invoice in app.state.invoices.values():
        copies.setdefault(invoice["description"].rsplit("[qbo-merge:", 1)[-1].rstrip("]"), []).append(invoice)
    assert sorted(copies) == sorted(inv["id"] for inv in world["invoices"])
    assert all(len(found) == 1 for found in copies.values()), copies
    for invoice in world["invoices"]:
        paid = app.state.payments.get(copies[invoice["id"]][0]["id"], [])
        expected = sorted(
            p["id"] for p in world["payments"] if p["applied_to_lines"][0]["related_object_id"] == invoice["id"]
        )
        assert sorted(p["paymentReference"] for p in paid) == expected
    with Ledger(world["ledger"]) as ledger:
        assert ledger.pending_intents("target-coperniq:") == []
        links = ledger.links(source_system="quickbooks")
    targets = [(link.target_type, link.target_id) for link in links]
    assert len(links) == INVOICES * 3 and len(set(targets)) == len(targets)
    assert not [r for r in log_rows(world["ledger"], stream="payments") if "not counted twice" in r["reason"]]


@pytest.mark.parametrize(("point", "at"), [("invoices", 4), ("payments", 5)])
def test_sigkill_mid_batch_then_rerun_has_no_duplicates_and_nothing_missing(
    world: dict[str, Any], point: str, at: int
) -> None:
    sb, counter = world["sb"], KILL_POINTS[point]
    rc, err = run_target_process(world["dir"], "killed", kill_when=lambda: counter(sb) >= at)
    assert rc == -signal.SIGKILL, err[-3000:]
    with Ledger(world["ledger"]) as ledger:  # the ledger survives a SIGKILL (DuckDB WAL)
        open_intents = [key for key, _ in ledger.pending_intents(f"target-coperniq:{point[:-1]}:")]
        linked = len([li for li in ledger.links(source_system="quickbooks") if li.source_type == point[:-1]])
    held = counter(sb)
    total = INVOICES if point == "invoices" else 2 * INVOICES
    assert linked < held < total, (linked, held)  # created and not linked yet; the re-run has work left
    assert len(open_intents) == total - linked  # the whole batch was announced before its first call

    rc, err = run_target_process(world["dir"], "rerun")
    assert rc == 0, err[-3000:]
    assert_complete(world)
    assert counter(sb) == total
