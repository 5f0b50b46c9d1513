"""`make reconcile`: sync against seeded sandboxes, land both sides into DuckDB, run dbt, print the mismatches.

Steps (each one a Meltano command a user can run by hand):
  1. start both sandboxes (Coperniq seeded, Merge empty) on 127.0.0.1, unless --no-sandboxes (then the URLs of the
     active Meltano environment are used as they are, e.g. already running sandboxes or, with --environment prod,
     the real services);
  2. `meltano run coperniq-to-quickbooks` and `meltano run quickbooks-to-coperniq` (skipped with --skip-sync; a
     failing leg is reported and the reconciliation still runs, so mismatches it left are visible);
  3. `meltano run reconcile`: both taps into the DuckDB warehouse (schemas raw_coperniq, raw_quickbooks), then
     `dbt run` and `dbt test` over the warehouse and the sync ledger (attached read-only), with the dbt var
     tracking_category_mapping = target-quickbooks-merge's setting (`meltano config print`; env
     RECONCILE_TRACKING_CATEGORY_MAPPING, when set, wins);
  4. print the mismatch summary from the warehouse (reconciliation_* and sync_* tables).

With sandboxes started here, everything (ledger, warehouse, Meltano state) lives in --workdir (output/reconcile),
wiped first, so each run is reproducible and never touches the dev ledger or state. With --no-sandboxes the
project's own ledger and state are used (the ledger must not be locked by a running target). A ledger on PostgreSQL
(--ledger-url or env SYNC_LEDGER_URL, company --company or env SYNC_COMPANY) is exported, after the sync legs, to
<workdir>/ledger-snapshot.duckdb (sync_ledger.ledger_export), and dbt reads that file: dbt-duckdb attaches DuckDB
files, and DuckDB's postgres extension cannot be downloaded offline.

Exit code: 0, or 1 when --fail-on-mismatch and a problem is reported, or 2 when the pipeline itself failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script, or loaded from its path (the tests)

from reconcile_report import format_results, problem_count, read_results

__all__ = ["format_results", "main", "pipeline_env", "problem_count", "read_results"]

ROOT = Path(__file__).resolve().parents[1]
# Only the streams the models read (faster extracts; tap-coperniq's catalog_items has an untyped property that
# target-duckdb 0.8.0 cannot load). `meltano run reconcile` on its own lands every selected stream.
# projects and tracking_categories: the classes/departments comparison (tracking_category_mapping).
RECONCILE_SELECT = {
    "TAP_COPERNIQ__SELECT": json.dumps(["accounts.*", "contacts.*", "invoices.*", "projects.*"]),
    "TAP_QUICKBOOKS_MERGE__SELECT": json.dumps(["contacts.*", "invoices.*", "tracking_categories.*"]),
}
#: The dbt var tracking_category_mapping comes from this env var (transform/dbt_project.yml), JSON text.
TRACKING_MAPPING_ENV = "RECONCILE_TRACKING_CATEGORY_MAPPING"
#: With a PostgreSQL ledger (--no-sandboxes), the DuckDB copy dbt reads, in --workdir.
LEDGER_SNAPSHOT = "ledger-snapshot.duckdb"


def meltano_bin() -> str:
    """The meltano next to this interpreter (the dev venv), else the one on PATH."""
    local = Path(sys.executable).parent / "meltano"
    return str(local) if local.exists() else (shutil.which("meltano") or "meltano")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def sandboxes(coperniq_port: int, merge_port: int, seed: int, projects: int, log_dir: Path) -> Iterator[None]:
    """Both sandboxes as child processes; stopped (by their own pids) on exit."""
    procs: list[subprocess.Popen[bytes]] = []
    cmds = [
        (
            "coperniq",
            coperniq_port,
            [
                sys.executable,
                "-m",
                "sandbox.coperniq",
                "--port",
                str(coperniq_port),
                "--seed",
                str(seed),
                "--projects",
                str(projects),
            ],
        ),
        ("merge", merge_port, [sys.executable, "-m", "sandbox.merge", "--port", str(merge_port)]),
    ]
    try:
        for name, port, cmd in cmds:
            if port_open(port):
                raise SystemExit(f"port {port} is in use: stop what runs there, or pass --no-sandboxes to use it")
            log = open(log_dir / f"sandbox-{name}.log", "wb")  # noqa: SIM115 - closed with the process
            procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        for (name, port, _), proc in zip(cmds, procs, strict=True):
            while not port_open(port):
                if proc.poll() is not None:
                    raise SystemExit(f"the {name} sandbox exited (see {log_dir}/sandbox-{name}.log)")
                if time.monotonic() > deadline:
                    raise SystemExit(f"the {name} sandbox did not listen on {port} within 60 s")
                time.sleep(0.1)
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def pipeline_env(
    workdir: Path | None, coperniq_url: str | None, merge_url: str | None, warehouse: Path, ledger: Path | None
) -> dict[str, str]:
    """Environment for the Meltano commands: URLs of the sandboxes and the isolated ledger, warehouse and state."""
    env = dict(os.environ)
    env["MELTANO_PROJECT_ROOT"] = str(ROOT)
    env.setdefault("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
    if coperniq_url:
        env["TAP_COPERNIQ_API_URL"] = env["TARGET_COPERNIQ_API_URL"] = coperniq_url
    if merge_url:
        env["TAP_QUICKBOOKS_MERGE_BASE_URL"] = env["TARGET_QUICKBOOKS_MERGE_BASE_URL"] = merge_url
    for name in (
        "TARGET_DUCKDB_PATH",
        "TARGET_DUCKDB_RAW_COPERNIQ_PATH",
        "TARGET_DUCKDB_RAW_QUICKBOOKS_PATH",
        "DBT_DUCKDB_PATH",
    ):
        env[name] = str(warehouse)
    if ledger is not None:
        for name in (
            "TARGET_QUICKBOOKS_MERGE_LEDGER_PATH",
            "TARGET_COPERNIQ_LEDGER_PATH",
            "COPERNIQ_QBO_LEDGER_PATH",
            "DBT_DUCKDB_LEDGER_PATH",
            "SYNC_LEDGER_PATH",
        ):
            env[name] = str(ledger)
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    if workdir is not None:
        # dbt's target/ (compiled SQL, partial-parse cache) and logs per run: concurrent dbt runs share nothing
        env["DBT_TARGET_PATH"] = str(workdir / "dbt-target")
        env["DBT_LOG_PATH"] = str(workdir / "logs" / "dbt")
        # Meltano state (bookmarks) and run files of this reconciliation only: fresh sandboxes need full extracts,
        # and concurrent Meltano runs in one project share .meltano/run/<plugin>/ (catalog, config files).
        env["MELTANO_SYS_DIR_ROOT"] = str(isolated_sys_dir(workdir))
        env["MELTANO_DATABASE_URI"] = f"sqlite:///{workdir / 'meltano.db'}"
    return env


def isolated_sys_dir(workdir: Path) -> Path:
    """A Meltano system dir of its own that reuses the project's installed plugin venvs (symlinks)."""
    sys_dir = workdir / ".meltano"
    sys_dir.mkdir(parents=True, exist_ok=True)
    shared = ROOT / ".meltano"
    for kind in ("extractors", "loaders", "utilities", "mappers", "transformers", "orchestrators", "files"):
        link = sys_dir / kind
        (shared / kind).mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(shared / kind, target_is_directory=True)
    return sys_dir


def meltano(args: list[str], env: dict[str, str], log: Path, *, quiet: bool = False) -> int:
    """Run one Meltano command from the project root; its output goes to `log` (tail printed on failure)."""
    cmd = [meltano_bin(), *args]
    started = time.monotonic()
    with open(log, "wb") as out:
        rc = subprocess.call(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    took = time.monotonic() - started
    if not quiet:
        print(f"  {'ok  ' if rc == 0 else 'FAIL'} meltano {' '.join(args)}  ({took:.1f} s, log {log})", flush=True)
    if rc != 0 and not quiet:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        print("\n".join("       | " + line for line in tail), flush=True)
    return rc


def default_environment() -> str | None:
    """meltano.yml's default_environment (`meltano config` ignores it unless it is passed)."""
    for line in (ROOT / "meltano.yml").read_text().splitlines():
        if line.startswith("default_environment:"):
            return line.split(":", 1)[1].strip().strip("'\"") or None
    return None


def tracking_mapping_from_config(config: dict[str, Any]) -> str:
    """The forward target's tracking_category_mapping as the JSON the dbt var takes ("{}" when unset)."""
    mapping = config.get("tracking_category_mapping")
    if isinstance(mapping, str):  # given as JSON text (an env var Meltano did not parse)
        mapping = json.loads(mapping) if mapping.strip() else None
    return json.dumps(mapping if isinstance(mapping, dict) else {})


def forward_tracking_mapping(env: dict[str, str], log: Path) -> str:
    """`meltano config print target-quickbooks-merge`'s tracking_category_mapping, so the models compare classes
    and departments with what the forward sync was told; "{}" (not configured) when it cannot be read."""
    environment = env.get("MELTANO_ENVIRONMENT") or default_environment()
    cmd = [meltano_bin(), *([f"--environment={environment}"] if environment else [])]
    cmd += ["config", "print", "target-quickbooks-merge", "--format", "json"]
    with open(log, "wb") as err:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, check=False)
    try:
        return tracking_mapping_from_config(json.loads(proc.stdout) if proc.returncode == 0 else {})
    except (ValueError, TypeError):
        return "{}"


def ledger_snapshot(url: str, company: str | None, dest: Path) -> Path | None:
    """Export the company's ledger on PostgreSQL to the DuckDB file `dest` for dbt (replaced atomically); None, and
    no file, when the company has no ledger there yet (dbt then attaches an empty ledger: every pair unlinked)."""
    from sync_ledger.ledger import LedgerNotFoundError
    from sync_ledger.ledger_export import export_to_duckdb

    try:
        return export_to_duckdb(url, company, dest)
    except LedgerNotFoundError:
        dest.unlink(missing_ok=True)  # never let dbt read an older snapshot
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python transform/reconcile.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--no-sandboxes", action="store_true", help="do not start sandboxes; use the environment's URLs")
    p.add_argument("--skip-sync", action="store_true", help="do not run the forward and reverse sync jobs")
    p.add_argument("--environment", default=None, help="Meltano environment (default: the project's, dev)")
    p.add_argument("--coperniq-port", type=int, default=8765)
    p.add_argument("--merge-port", type=int, default=8766)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--projects", type=int, default=50)
    p.add_argument(
        "--workdir",
        type=Path,
        default=ROOT / "output" / "reconcile",
        help="ledger, warehouse, Meltano state and logs of this run (with sandboxes)",
    )
    p.add_argument(
        "--warehouse",
        type=Path,
        default=None,
        help="warehouse file (default <workdir>/warehouse.duckdb, or .meltano/warehouse.duckdb with --no-sandboxes)",
    )
    p.add_argument(
        "--ledger-url",
        default=None,
        help="with --no-sandboxes: the sync ledger on PostgreSQL, postgresql://user:password@host:5432/db (default: "
        "env SYNC_LEDGER_URL), exported to <workdir>/ledger-snapshot.duckdb for dbt; also given to the sync legs. "
        "A secret: prefer the env var (flags show up in `ps`)",
    )
    p.add_argument(
        "--company",
        default=None,
        help="with a PostgreSQL ledger: the company (tenant) to reconcile (default: env SYNC_COMPANY, else the "
        "default company); also given to the sync legs",
    )
    p.add_argument("--fail-on-mismatch", action="store_true", help="exit 1 when a problem is reported")
    p.add_argument("--limit", type=int, default=20, help="rows listed per section")
    a = p.parse_args(argv)

    own_sandboxes = not a.no_sandboxes
    if own_sandboxes and (a.ledger_url or a.company):
        p.error("--ledger-url and --company need --no-sandboxes (with sandboxes the run has a DuckDB ledger)")
    ledger_url: str | None = None
    company: str | None = None
    if not own_sandboxes:
        from sync_ledger.util import is_postgres_url

        ledger_url = (a.ledger_url or os.environ.get("SYNC_LEDGER_URL") or "").strip() or None
        if ledger_url and not is_postgres_url(ledger_url):
            p.error("--ledger-url / SYNC_LEDGER_URL must be a postgresql://user:password@host:5432/db URL")
        company = (a.company or os.environ.get("SYNC_COMPANY") or "").strip() or None
        if a.company and not ledger_url:
            # dbt reads the default company's tables of a DuckDB ledger file (schema main)
            p.error("--company needs a PostgreSQL ledger (--ledger-url or env SYNC_LEDGER_URL)")
    workdir: Path = a.workdir.resolve()
    if own_sandboxes and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    if own_sandboxes:
        warehouse = (a.warehouse or workdir / "warehouse.duckdb").resolve()
        ledger: Path | None = workdir / "sync-ledger.duckdb"
        urls: tuple[str | None, str | None] = (
            f"http://127.0.0.1:{a.coperniq_port}/v1",
            f"http://127.0.0.1:{a.merge_port}/api/accounting/v1",
        )
    else:
        warehouse = (a.warehouse or ROOT / ".meltano" / "warehouse.duckdb").resolve()
        ledger, urls = None, (None, None)
    env = pipeline_env(workdir if own_sandboxes else None, *urls, warehouse, ledger)
    if own_sandboxes:
        # fresh sandboxes: every seeded project is already past its trigger phase, so sync them (backfill)
        env.setdefault("TARGET_QUICKBOOKS_MERGE_BACKFILL", "true")
    if a.environment:
        env["MELTANO_ENVIRONMENT"] = a.environment
    if ledger_url:  # the sync legs read both (meltano.yml: ledger_url $SYNC_LEDGER_URL, company $SYNC_COMPANY)
        env["SYNC_LEDGER_URL"] = ledger_url
        if company:
            env["SYNC_COMPANY"] = company
    # the loaders (duckdb 1.2) must create the warehouse file, not dbt (see meltano.yml target-duckdb)
    if own_sandboxes and warehouse.exists():
        warehouse.unlink()

    @contextmanager
    def maybe_sandboxes() -> Iterator[None]:
        if own_sandboxes:
            print(
                f"starting sandboxes: Coperniq :{a.coperniq_port} (seed {a.seed}, {a.projects} projects), "
                f"Merge :{a.merge_port}",
                flush=True,
            )
            with sandboxes(a.coperniq_port, a.merge_port, a.seed, a.projects, logs):
                yield
        else:
            yield

    pipeline_failed = False
    with maybe_sandboxes():
        if not a.skip_sync:
            print("syncing (forward, then reverse):", flush=True)
            for job in ("coperniq-to-quickbooks", "quickbooks-to-coperniq"):
                if meltano(["run", job], env, logs / f"{job}.log") != 0:
                    print(f"  note: {job} failed; reconciling what there is", flush=True)
        if TRACKING_MAPPING_ENV not in env:
            env[TRACKING_MAPPING_ENV] = forward_tracking_mapping(env, logs / "tracking-mapping.log")
        configured = "set" if env[TRACKING_MAPPING_ENV] != "{}" else "not set: classes are not compared"
        print(f"tracking_category_mapping of target-quickbooks-merge: {configured}", flush=True)
        reconcile_env = {**env, **RECONCILE_SELECT}
        if ledger_url:
            from sync_ledger.ledger_db import redact_url
            from sync_ledger.util import redact, url_secrets

            snapshot = workdir / LEDGER_SNAPSHOT
            where = redact_url(ledger_url) + (f" (company {company})" if company else "")
            started = time.monotonic()
            try:
                exported = ledger_snapshot(ledger_url, company, snapshot)
            except Exception as exc:  # noqa: BLE001 - reported (without the password), then exit 2
                reason = redact(f"{type(exc).__name__}: {exc}", url_secrets(ledger_url))
                print(f"  FAIL exporting the sync ledger {where}: {reason}", file=sys.stderr, flush=True)
                return 2
            if exported is None:
                print(f"  note: no sync ledger for {where} yet: dbt uses an empty ledger", flush=True)
            else:
                took = time.monotonic() - started
                print(f"  ok   exported the sync ledger {where} to {snapshot}  ({took:.1f} s)", flush=True)
            # the dbt-duckdb utility's ledger_path (env SYNC_LEDGER_PATH); the sync legs keep the URL
            reconcile_env["SYNC_LEDGER_PATH"] = reconcile_env["DBT_DUCKDB_LEDGER_PATH"] = str(snapshot)
        print("landing both sides into DuckDB and running dbt:", flush=True)
        rc = meltano(["run", "reconcile"], reconcile_env, logs / "reconcile.log")
        if rc != 0:
            pipeline_failed = True
            print("  the reconcile job failed (a dbt test, or a tap/loader): the summary may be partial", flush=True)
    try:
        results = read_results(warehouse, a.limit)
    except Exception as exc:  # noqa: BLE001 - the warehouse may lack the models if dbt never ran
        print(f"no reconciliation results in {warehouse}: {exc}", file=sys.stderr)
        return 2
    print(format_results(results))
    print(f"warehouse: {warehouse}  (tables reconciliation.*; logs in {logs})")
    if pipeline_failed:
        return 2
    return 1 if a.fail_on_mismatch and problem_count(results) else 0


if __name__ == "__main__":
    sys.exit(main())
