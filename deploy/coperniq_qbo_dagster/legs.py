"""One leg of one company: `meltano run --state-id-suffix <company> <job>`, then what the ledger says it did.

Why not dagster-meltano: its newest release (1.5.5) makes one op per meltano.yml job (from `meltano job list`) that
runs `meltano run <job>` with fixed env; it has no company partition and no state id suffix, which is what one run
per company needs, so an op would still have to build both. A subprocess is all an op needs, and it runs exactly
what a person runs.
Why the ledger for the result: both targets record every run there (status, per-stream counts, failed rows with
their reasons), so the numbers Dagster shows are the ones `coperniq-qbo runs` shows.
Why a .meltano of each run's own: `meltano run` hands a tap its catalog and its state (the company's bookmarks) as
.meltano/run/<plugin>/tap.properties.json and state.json whatever the state id, and deletes them when the run ends;
two companies' runs on one worker could start from each other's bookmarks and break each other's start ("Failed to
copy catalog file"). So each run gets MELTANO_SYS_DIR_ROOT=<.meltano>/lanes/<company>.<leg>.<random>/: its run/
is its own, everything else (installed plugins, logs, the SQLite system database with the state) links to the
worker's .meltano (lane_sys_dir).
Why `--force`: Meltano refuses a run while the last one of the same state id still looks alive (its heartbeat is
younger than 5 minutes), so a worker killed mid-run would block its company for 5 minutes. Overlap is prevented
by Dagster's run queue (one run per company and leg) and, on PostgreSQL, by the ledger's run lock instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync_ledger import Ledger, LedgerError, redact
from sync_ledger.util import DEFAULT_LEDGER_PATH, ledger_place, url_secrets

from .companies import Company

#: The Meltano project (meltano.yml) the runs use; the image puts it at /project.
PROJECT_ROOT = Path(os.environ.get("MELTANO_PROJECT_ROOT") or Path(__file__).resolve().parents[2])
#: meltano.yml's jobs for the two legs (its schedules name the same jobs).
JOBS = {"forward": "coperniq-to-quickbooks", "reverse": "quickbooks-to-coperniq"}
FAILED_ROWS_SHOWN = 20
LANES = "lanes"  # under the worker's .meltano: one sys dir per run of a company's leg (lane_sys_dir)
#: Meltano's per-kind plugin directories and logs, always links in a lane (made in the worker's .meltano if new).
SHARED_DIRS = ("extractors", "loaders", "mappers", "utilities", "transformers", "orchestrators", "files", "logs")


class LegFailed(Exception):
    """`meltano run` exited non-zero (the op fails and Dagster's retry policy decides what next)."""


@dataclass
class LegResult:
    company: str
    direction: str
    returncode: int
    run: dict[str, Any] | None = None  # the ledger's row of this leg's run
    failed_rows: list[dict[str, Any]] = field(default_factory=list)
    log_tail: str = ""

    def metadata(self) -> dict[str, Any]:
        """What Dagster shows for the run: the run's status and counts, totals per action, failed rows."""
        counts: dict[str, dict[str, int]] = (self.run or {}).get("counts") or {}
        totals: dict[str, int] = {}
        for per_stream in counts.values():
            for action, n in per_stream.items():
                totals[action] = totals.get(action, 0) + int(n)
        return {
            "company": self.company,
            "direction": self.direction,
            "ledger_run_id": (self.run or {}).get("run_id") or "",
            "ledger_status": (self.run or {}).get("status") or "unknown",
            "counts": counts,
            **{f"rows_{action}": n for action, n in sorted(totals.items())},
            "failed_rows": [{k: row.get(k) for k in ("stream", "source_id", "reason")} for row in self.failed_rows],
        }


def project_root(env: Mapping[str, str]) -> Path:
    """The Meltano project a run uses: MELTANO_PROJECT_ROOT of its env, else PROJECT_ROOT (absolute)."""
    return Path(env.get("MELTANO_PROJECT_ROOT") or PROJECT_ROOT).resolve()


def meltano_executable() -> str:
    """The meltano next to this interpreter (the image's venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("meltano")
    return str(beside) if beside.exists() else (shutil.which("meltano") or "meltano")


def prepare_system_db(environ: Mapping[str, str] | None = None) -> None:
    """Apply Meltano's system-database migrations once, before runs fan out: the first runs of several companies
    on a new database would otherwise all migrate it at once, and all but one fail (a unique violation)."""
    env = dict(os.environ if environ is None else environ)
    proc = subprocess.run(
        [meltano_executable(), "upgrade", "database"],
        cwd=project_root(env),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        secrets = _database_secrets(env)
        raise LegFailed(f"`meltano upgrade database` exited {proc.returncode}: {redact(proc.stderr[-2000:], secrets)}")


def run_leg(
    company: Company,
    direction: str,
    *,
    environ: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> LegResult:
    """Run one leg; stream its log lines (secrets removed) to on_line; raise LegFailed when it failed."""
    base = dict(os.environ if environ is None else environ)
    env = {**base, **company.resolved_env(base)}
    secrets = _secrets(company, env)
    cmd = [meltano_executable(), "run", "--force", "--state-id-suffix", company.key, JOBS[direction]]
    tail: list[str] = []
    with lane_sys_dir(env, f"{company.key}.{direction}") as lane:
        env["MELTANO_SYS_DIR_ROOT"] = str(lane)
        proc = subprocess.Popen(
            cmd,
            cwd=project_root(env),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = redact(raw.rstrip("\n"), secrets)
            tail = [*tail[-199:], line]
            if on_line is not None:
                on_line(line)
        rc = proc.wait()
    result = LegResult(company.key, direction, rc, log_tail="\n".join(tail[-40:]))
    result.run, result.failed_rows = _ledger_report(env, company.key, direction)
    if rc != 0:
        raise LegFailed(
            f"{direction} leg of company {company.key!r}: `meltano run {JOBS[direction]}` exited {rc}\n"
            f"{result.log_tail}"
        )
    return result


@contextmanager
def lane_sys_dir(env: Mapping[str, str], lane: str) -> Iterator[Path]:
    """A .meltano of this run's own, <.meltano>/lanes/<lane>.<random>/, removed after it: a run/ of its own and
    links to the worker's plugin dirs, logs and meltano.db, made fresh each run (a moved project or a plugin
    installed since is seen; a killed run leaves only its small directory behind). The plugin dirs are made in the
    worker's .meltano first, so a plugin Meltano installs on the run lands there, not in the lane. meltano.db is
    linked even before it exists: SQLite follows the link (its journal goes beside the real file), so the state
    stays in the one system database. Unique per run: two runs of one lane (a company's own job beside
    sync_all_companies) must not share a run/ either (the ledger's run lock stops the second)."""
    # Meltano reads a relative MELTANO_SYS_DIR_ROOT from the project root
    shared = project_root(env) / (env.get("MELTANO_SYS_DIR_ROOT") or ".meltano")
    for name in SHARED_DIRS:
        (shared / name).mkdir(parents=True, exist_ok=True)
    (shared / LANES).mkdir(exist_ok=True)
    own = Path(tempfile.mkdtemp(prefix=f"{lane}.", dir=shared / LANES))
    try:
        (own / "run").mkdir()
        names = {p.name for p in shared.iterdir() if p.is_dir() and p.name not in ("run", LANES)} | {"meltano.db"}
        for name in sorted(names):
            (own / name).symlink_to(shared / name)
        yield own
    finally:
        shutil.rmtree(own, ignore_errors=True)  # the links go, never what they point at


def _ledger_report(env: Mapping[str, str], company: str, direction: str) -> tuple[dict[str, Any] | None, list[Any]]:
    """The company's newest run of this direction and its failed rows, read-only (never creates a ledger)."""
    target = "TARGET_QUICKBOOKS_MERGE" if direction == "forward" else "TARGET_COPERNIQ"
    config = {
        "ledger_url": env.get(f"{target}_LEDGER_URL") or env.get("SYNC_LEDGER_URL"),
        "ledger_path": env.get(f"{target}_LEDGER_PATH") or str(project_root(env) / DEFAULT_LEDGER_PATH),
        "company": company,
    }
    try:
        place, key = ledger_place(config)
        with Ledger(place, company=key, read_only=True, lock_timeout=30) as ledger:
            run = ledger.last_run(direction=direction)
            failed = ledger.log_rows(run_id=run["run_id"], failed_only=True, limit=FAILED_ROWS_SHOWN) if run else []
            return run, failed
    except (LedgerError, ValueError):
        return None, []


def _secrets(company: Company, env: Mapping[str, str]) -> list[str]:
    """Every value a company's env resolves to from a `${...}` reference, plus ledger URLs' passwords."""
    out = [env[name] for name, value in company.env.items() if "${" in value and env.get(name)]
    return [s for s in [*out, *_database_secrets(env)] if len(s) >= 4]


def _database_secrets(env: Mapping[str, str]) -> list[str]:
    """The passwords (and URLs) of the ledger and Meltano's system database (`postgresql+psycopg://`)."""
    out: list[str] = []
    for name in ("SYNC_LEDGER_URL", "MELTANO_DATABASE_URI"):
        out += url_secrets(str(env.get(name) or "").replace("+psycopg", "", 1))
    return out
