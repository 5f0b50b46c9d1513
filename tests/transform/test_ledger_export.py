"""sync_ledger.ledger_export: a company's PostgreSQL ledger as the DuckDB file the dbt models read, and
transform/reconcile.py using it (`--no-sandboxes` with a ledger URL)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from sync_ledger import Ledger, LedgerNotFoundError, Link
from sync_ledger.ledger_db import schema_for
from sync_ledger.ledger_export import TABLES, export_to_duckdb

sys.path.insert(0, str(Path(__file__).parent))
from reconcile_fixtures import DBT, ROOT, dbt


def fill(place: str, company: str, prefix: str, n: int = 3) -> None:
    """n links, two runs (one finished, one left running), log rows, staged rows and an intent, ids prefixed."""
    with Ledger(place, company=company) as ledger:
        ledger.upsert_links(
            Link("coperniq", "invoice", f"{prefix}{i}", "quickbooks", "invoice", f"{prefix}-qb-{i}", f"r{i}", f"fp{i}")
            for i in range(n)
        )
        run = ledger.start_run("forward")
        for i in range(n):
            ledger.log(run, direction="forward", stream="invoices", source_id=f"{prefix}{i}", action="created")
        ledger.log(run, direction="forward", stream="invoices", source_id=f"{prefix}x", action="failed", reason="boom")
        ledger.finish_run(run, "partial")
        ledger.start_run("reverse", dry_run=True)
        ledger.stage("coperniq", "invoices", [(f"{prefix}{i}", {"id": f"{prefix}{i}", "n": i}) for i in range(n)])
        ledger.mark_staged("coperniq", "invoices", f"{prefix}0", "failed", "HTTP 400")
        ledger.mark_staged("coperniq", "invoices", f"{prefix}1", "waiting", waits_on=f"projects\x1f{prefix}")
        ledger.begin_intent(f"create:{prefix}", {"id": prefix})
        ledger.set_meta("disconnected", prefix)
        acct = f"{prefix}acct"
        ledger.queue_review("coperniq", "accounts", acct, reason="in doubt", candidates=[{"id": f"{prefix}-c"}])
        ledger.request_row_action("coperniq", "accounts", acct, "link", actor="alice", target_id=f"{prefix}-c")
        ledger.apply_row_actions("coperniq", run)  # a decision, and an applied action
        ledger.request_row_action("coperniq", "invoices", f"{prefix}0", "retry", actor="bob")  # still pending


def pg_rows(url: str, company: str, table: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            f"SELECT * FROM {schema_for(company, 'postgres')}.{table} ORDER BY {TABLES[table]}"
        ).fetchall()


def duck_rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY {TABLES[table]}").fetchall()


@pytest.fixture
def ledgers(pg_url: str) -> str:
    fill(pg_url, "acme", "a", n=5)
    fill(pg_url, "globex", "g", n=2)
    return pg_url


def test_export_holds_exactly_the_company_rows(ledgers: str, tmp_path: Path) -> None:
    dest = export_to_duckdb(ledgers, "acme", tmp_path / "snap" / "ledger.duckdb", chunk_rows=2)  # several chunks
    assert dest == tmp_path / "snap" / "ledger.duckdb"
    assert sorted(os.listdir(dest.parent)) == ["ledger.duckdb"]  # no temp file or WAL left behind
    counts = {table: len(duck_rows(dest, table)) for table in TABLES}
    assert counts == {
        "meta": 3,
        "id_map": 5,
        "sync_log": 6,
        "runs": 2,
        "intents": 1,
        "staging": 5,
        "review_queue": 1,
        "row_actions": 2,
        "row_decisions": 1,
    }
    for table in TABLES:  # every column, timestamps and NULLs included, as PostgreSQL has them
        assert duck_rows(dest, table) == pg_rows(ledgers, "acme", table), table
    meta = dict(duck_rows(dest, "meta"))
    assert meta == {"company": "acme", "disconnected": "a", "schema_version": "5"}
    staged = {r[3]: r for r in duck_rows(dest, "staging")}
    assert staged["a0"][7:10] == ("failed", 1, "HTTP 400") and staged["a1"][11] == "projects\x1fa"
    assert staged["a2"][6] is not None and staged["a2"][10] is None  # received_at set, processed_at NULL
    runs = {r[1]: r for r in duck_rows(dest, "runs")}
    assert runs["forward"][6] == "partial" and runs["forward"][3] > runs["forward"][2]
    assert runs["reverse"][3] is None and runs["reverse"][4] is True and runs["reverse"][6] == "running"
    # nothing of globex's, in any table (but the schema_version row both have)
    for table in TABLES:
        theirs = set(pg_rows(ledgers, "globex", table)) - {("schema_version", "5")}
        assert theirs and not theirs & set(duck_rows(dest, table)), table
    ids = [r[3] for r in duck_rows(dest, "id_map")] + [r[5] for r in duck_rows(dest, "sync_log")]
    assert ids and all(i.startswith("a") for i in ids)
    with duckdb.connect(str(dest), read_only=True) as conn:
        schemas = {r[0] for r in conn.execute("SELECT schema_name FROM information_schema.schemata").fetchall()}
        assert not any(s.startswith("company_") for s in schemas)
        # the copy's sequence continues after the copied rows
        seq_max = conn.execute("SELECT max(seq) FROM sync_log").fetchone()
        start = conn.execute("SELECT start_value FROM duckdb_sequences() WHERE sequence_name = 'sync_log_seq'")
        assert seq_max is not None and start.fetchone() == (seq_max[0] + 1,)


def test_exported_file_is_a_ledger(ledgers: str, tmp_path: Path) -> None:
    dest = export_to_duckdb(ledgers, "acme", tmp_path / "ledger.duckdb")
    with Ledger(ledgers, company="acme", read_only=True) as source, Ledger(dest, read_only=True) as copy:
        assert copy.links() == source.links() and len(copy.links()) == 5
        assert copy.runs() == source.runs()
        assert copy.log_rows(limit=50) == source.log_rows(limit=50)
        assert copy.staged("coperniq", "invoices", "a3") == source.staged("coperniq", "invoices", "a3")
        assert copy.staged_status("coperniq", "invoices", "a0") == ("failed", 1, "HTTP 400")
        assert copy.waiting_on("coperniq", "invoices", "a1") == "projects\x1fa"
        assert copy.pending_intents() == source.pending_intents() == [("create:a", {"id": "a"})]
        assert copy.get_meta("schema_version") == "5"


def test_second_export_replaces_the_file(ledgers: str, tmp_path: Path) -> None:
    dest = tmp_path / "ledger.duckdb"
    export_to_duckdb(ledgers, "acme", dest)
    reader = duckdb.connect(str(dest), read_only=True)  # a dbt run still reading the old snapshot
    try:
        with Ledger(ledgers, company="acme") as ledger:
            ledger.upsert_link(Link("coperniq", "account", "a-new", "quickbooks", "customer", "c-new"))
        export_to_duckdb(ledgers, "acme", dest)
        assert reader.execute("SELECT count(*) FROM id_map").fetchone() == (5,)  # the old file, whole
    finally:
        reader.close()
    assert len(duck_rows(dest, "id_map")) == 6
    assert sorted(os.listdir(tmp_path)) == ["ledger.duckdb"]
    # a DuckDB ledger (with companies) exports too, and over an existing file
    local = tmp_path / "local" / "sync-ledger.duckdb"
    fill(str(local), "acme", "d", n=2)
    export_to_duckdb(str(local), "acme", dest)
    assert [r[3] for r in duck_rows(dest, "id_map")] == ["d0", "d1"]


def test_unknown_company_or_empty_database(ledgers: str, pg_url: str, tmp_path: Path) -> None:
    dest = tmp_path / "ledger.duckdb"
    export_to_duckdb(ledgers, "acme", dest)
    with pytest.raises(LedgerNotFoundError):
        export_to_duckdb(ledgers, "initech", dest)
    with pytest.raises(LedgerNotFoundError):  # the default company never synced in this database
        export_to_duckdb(ledgers, None, tmp_path / "other.duckdb")
    assert sorted(os.listdir(tmp_path)) == ["ledger.duckdb"]  # the existing export is left as it was
    assert len(duck_rows(dest, "id_map")) == 5


def load_reconcile() -> Any:
    spec = importlib.util.spec_from_file_location("transform_reconcile_export", ROOT / "transform" / "reconcile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reconcile_gives_dbt_a_snapshot_of_the_postgres_ledger(
    ledgers: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--no-sandboxes with a ledger URL: exported after the sync legs, SYNC_LEDGER_PATH names the snapshot for the
    reconcile job only; the password is never printed (Meltano and the warehouse are stubbed)."""
    reconcile = load_reconcile()
    calls: list[tuple[list[str], dict[str, str]]] = []

    def meltano(args: list[str], env: dict[str, str], log: Path, *, quiet: bool = False) -> int:
        snapshot = Path(env.get("SYNC_LEDGER_PATH", ""))
        calls.append((args, {**env, "links": str(len(duck_rows(snapshot, "id_map")) if snapshot.is_file() else -1)}))
        return 0

    monkeypatch.setattr(reconcile, "meltano", meltano)
    monkeypatch.setattr(reconcile, "read_results", lambda warehouse, limit: {"summary": [], "runs": []})
    monkeypatch.setattr(reconcile, "format_results", lambda results: "results")
    monkeypatch.setenv(reconcile.TRACKING_MAPPING_ENV, "{}")
    monkeypatch.delenv("SYNC_LEDGER_URL", raising=False)
    monkeypatch.delenv("SYNC_COMPANY", raising=False)
    password = str(psycopg.conninfo.conninfo_to_dict(ledgers)["password"])
    assert password
    workdir = tmp_path / "work"
    rc = reconcile.main(["--no-sandboxes", "--workdir", str(workdir), "--ledger-url", ledgers, "--company", "acme"])
    out = capsys.readouterr()
    assert rc == 0, out
    snapshot = workdir / reconcile.LEDGER_SNAPSHOT
    assert [c[0] for c in calls] == [
        ["run", "coperniq-to-quickbooks"],
        ["run", "quickbooks-to-coperniq"],
        ["run", "reconcile"],
    ]
    for args, env in calls:
        assert env["SYNC_LEDGER_URL"] == ledgers and env["SYNC_COMPANY"] == "acme"
        if args == ["run", "reconcile"]:
            assert env["SYNC_LEDGER_PATH"] == env["DBT_DUCKDB_LEDGER_PATH"] == str(snapshot)
            assert env["links"] == "5"
        else:  # the sync legs write the PostgreSQL ledger, never the snapshot
            assert env.get("SYNC_LEDGER_PATH") != str(snapshot)
    assert "exported the sync ledger" in out.out and "(company acme)" in out.out
    assert password not in out.out + out.err

    # a company with no ledger yet: no snapshot (dbt attaches an empty ledger), and an old one is removed
    calls.clear()
    rc = reconcile.main(
        ["--no-sandboxes", "--skip-sync", "--workdir", str(workdir), "--ledger-url", ledgers, "--company", "initech"]
    )
    out = capsys.readouterr()
    assert rc == 0 and not snapshot.exists() and "no sync ledger for" in out.out
    assert [c[1]["links"] for c in calls] == ["-1"]

    # an unreachable server: exit 2, the message without the password
    bad = ledgers.replace(f":{psycopg.conninfo.conninfo_to_dict(ledgers)['port']}/", ":1/")
    monkeypatch.setenv("SYNC_LEDGER_URL", bad)
    rc = reconcile.main(["--no-sandboxes", "--skip-sync", "--workdir", str(workdir)])
    out = capsys.readouterr()
    assert rc == 2 and "FAIL exporting the sync ledger" in out.err
    assert password not in out.out + out.err

    with pytest.raises(SystemExit):  # a ledger URL only where reconcile.py uses an existing ledger
        reconcile.main(["--ledger-url", ledgers])
    assert password not in capsys.readouterr().err


def test_staging_models_read_an_exported_ledger(ledgers: str, tmp_path: Path) -> None:
    """dbt's stg_ledger__* models over the snapshot (an empty warehouse: the models read only the ledger)."""
    if not DBT.exists():
        pytest.skip("dbt-duckdb is not installed (meltano install dbt-duckdb)")
    snapshot = export_to_duckdb(ledgers, "acme", tmp_path / "ledger-snapshot.duckdb")
    warehouse = tmp_path / "warehouse.duckdb"
    proc = dbt("run", tmp_path, warehouse, snapshot, "--select", "staging.ledger")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "attaching sync ledger" in proc.stdout
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        schema = conn.execute(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'stg_ledger__id_map'"
        ).fetchone()
        assert schema is not None
        links = conn.execute(f"SELECT source_id, link_status FROM {schema[0]}.stg_ledger__id_map ORDER BY 1").fetchall()
        assert links == [(f"a{i}", "active") for i in range(5)]
        runs = conn.execute(f"SELECT direction, run_status FROM {schema[0]}.stg_ledger__runs ORDER BY 1").fetchall()
        assert runs == [("forward", "partial"), ("reverse", "running")]
        staged = conn.execute(f"SELECT count(*) FROM {schema[0]}.stg_ledger__staging").fetchone()
        assert staged == (5,)
        failed = conn.execute(f"SELECT count(*) FROM {schema[0]}.stg_ledger__sync_log WHERE action = 'failed'")
        assert failed.fetchone() == (1,)
