"""Two real processes on one ledger file: the second waits on DuckDB's lock, then succeeds or fails clearly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sync_ledger import Ledger, LedgerLockedError, Link

from .places import WRITER, start_script

HOLDER = textwrap.dedent(
    """
    import sys, time
    from sync_ledger import Ledger
    with Ledger(sys.argv[1]) as led:
        led.set_meta("holder", "yes")
        print("locked", flush=True)
        if sys.argv[2] == "stdin":
            sys.stdin.readline()
        else:
            time.sleep(float(sys.argv[2]))
    """
)


def _start(script: str, *args: str) -> subprocess.Popen[str]:
    proc, line = start_script(script, *args)
    if line != "locked":
        proc.kill()
        raise AssertionError(f"holder did not start: {line!r}")
    return proc


def test_second_process_waits_then_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "ledger.duckdb"
    holder = _start(HOLDER, str(path), "1.5")
    try:
        started = time.monotonic()
        with Ledger(path, lock_timeout=30) as led:
            waited = time.monotonic() - started
            assert led.get_meta("holder") == "yes"  # sees the other process's committed write
        assert 0.5 < waited < 20, waited
    finally:
        holder.kill()
        holder.wait()


def test_lock_timeout_gives_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "ledger.duckdb"
    holder = _start(HOLDER, str(path), "stdin")
    try:
        started = time.monotonic()
        with pytest.raises(LedgerLockedError) as info:
            Ledger(path, lock_timeout=0.8)
        assert 0.7 < time.monotonic() - started < 10
        message = str(info.value)
        assert str(path) in message
        assert "another pipeline" in message and "ledger_path" in message and "lock_timeout" in message
        with pytest.raises(LedgerLockedError):  # read-only opens wait on a writer too
            Ledger(path, lock_timeout=0.3, read_only=True)
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=20) == 0
        with Ledger(path, lock_timeout=10, read_only=True) as ro:  # free again
            assert ro.get_meta("holder") == "yes"
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_killed_writer_leaves_consistent_ledger(tmp_path: Path) -> None:
    """kill -9 in the middle of writes: every committed link has its intent cleared (same transaction)."""
    path = tmp_path / "ledger.duckdb"
    writer = _start(WRITER, str(path))
    time.sleep(1.0)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    with Ledger(path, lock_timeout=10) as led:
        links = led.links()
        assert links, "writer made no progress"
        assert led.pending_intents() == []
        ids = sorted(int(link.source_id) for link in links)
        assert ids == list(range(len(ids)))  # no gaps: each transaction fully there or fully absent
        staged = sorted(int(r[0]) for r in led.iter_staged("coperniq", "accounts"))
        assert staged and staged == list(range(len(staged)))
        assert len(staged) in (len(ids), len(ids) - 1)
        # the file is still writable after the crash
        led.upsert_link(Link("coperniq", "account", "after", "quickbooks", "customer", "x"))
        assert led.get_link("coperniq", "account", "after") is not None


def test_unclosed_ledger_is_flushed_at_exit(tmp_path: Path) -> None:
    """A target that forgets close() still leaves its buffered log rows and statuses on disk."""
    path = tmp_path / "ledger.duckdb"
    script = textwrap.dedent(
        """
        import sys
        from sync_ledger import Ledger
        led = Ledger(sys.argv[1])
        run = led.start_run("reverse")
        led.stage("quickbooks", "payments", [("p1", {"id": "p1"})])
        led.mark_staged("quickbooks", "payments", "p1", "done")
        for i in range(5):
            led.log(run, direction="reverse", stream="payments", source_id=str(i), action="created")
        """
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=60)
    with Ledger(path, read_only=True) as led:
        assert len(led.log_rows()) == 5
        assert led.staged_status("quickbooks", "payments", "p1") == ("done", 0, None)
