"""Small hand-made warehouse and ledger for the dbt models: the tables target-duckdb and sync_ledger write.

Why: the models must be testable without the taps, targets and sandboxes, and fast. The shapes follow what
target-duckdb 0.8.0 writes (lower-cased column names, nested objects as JSON) and docs/CONTRACTS.md's ledger tables.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]
# the dbt of the dbt-duckdb utility's venv; RECONCILE_DBT names another (e.g. a venv without meltano)
DBT = Path(os.environ.get("RECONCILE_DBT") or ROOT / ".meltano" / "utilities" / "dbt-duckdb" / "venv" / "bin" / "dbt")


def dbt(command: str, tmp: Path, warehouse: Path, ledger: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`dbt <command>` of the transform project over this warehouse and ledger file (target and logs in tmp)."""
    env = {
        **os.environ,
        "DBT_DUCKDB_PATH": str(warehouse),
        "SYNC_LEDGER_PATH": str(ledger),
        "DBT_PROFILES_DIR": str(ROOT / "transform" / "profiles" / "duckdb"),
        "DBT_TARGET_PATH": str(tmp / "dbt-target"),
        "DBT_LOG_PATH": str(tmp / "dbt-logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MELTANO_ENVIRONMENT": "dev",
    }
    return subprocess.run(
        [str(DBT), command, "--project-dir", str(ROOT / "transform"), *extra],
        cwd=ROOT / "transform",
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )


LEDGER_DDL = """
create table id_map (source_system varchar, source_type varchar, source_id varchar, target_system varchar,
    target_type varchar, target_id varchar, target_remote_id varchar, fingerprint varchar, origin varchar,
    status varchar, updated_at timestamp);
create table sync_log (run_id varchar, logged_at timestamp, direction varchar, stream varchar, source_id varchar,
    action varchar, reason varchar, target_id varchar, request_id varchar);
create table runs (run_id varchar, direction varchar, started_at timestamp, finished_at timestamp, dry_run boolean,
    counts_json varchar, status varchar);
create table staging (source_system varchar, stream varchar, record_id varchar, payload_json varchar,
    received_at timestamp, status varchar, attempts integer, last_error varchar);
"""

# Taxes and voids (issue 16 part 7), all on account 1 / QuickBooks customer c-1, linked by LINK_STATUS.
# Coperniq: (id, status, amount, amountPaid, isArchived, taxId, taxRate); balance is left to the model (amount - paid).
TAX_AND_VOID_INVOICES = [
    (110, "SENT", 10.10, 0.0, False, 3, 2.0),  # tax match: 2 % of 10.10 = 0.20, total 10.30 (10.3 - 0.2 exactly)
    (
        111,
        "PARTIALLY_PAID",
        0.30,
        0.10,
        False,
        4,
        0.0,
    ),  # 0.1 + 0.2: balance 0.30 - 0.10 = 0.20 exactly; a 0 % tax matches 0
    (112, "SENT", 100.0, 0.0, False, 5, 8.25),  # tax mismatch: QuickBooks charged 7.00, Coperniq implies 8.25
    (113, "SENT", 100.0, 0.0, False, None, None),  # no Coperniq tax: QuickBooks' 5.00 is not comparable
    (114, "DECLINED", 200.0, 0.0, False, None, None),  # voided in both
    (115, "DECLINED", 300.0, 0.0, False, None, None),  # declined in Coperniq, still open in QuickBooks
    (116, "SENT", 400.0, 0.0, False, None, None),  # voided in QuickBooks only
    (117, "DECLINED", 500.0, 0.0, False, None, None),  # zeroed by void_policy zero_and_note
    (118, "SENT", 600.0, 0.0, True, None, None),  # archived, left in QuickBooks by void_policy leave (sync_log)
    (119, "SENT", 50.0, 0.0, False, None, None),  # zeroed, but sent again in Coperniq
    (120, "DECLINED", 70.0, 0.0, False, None, None),  # the sync voided it; Merge does not show the void yet
]
# QuickBooks: (Merge id, status, total_amount, balance, sub_total, total_tax_amount, tracking_categories)
QBO_TAX_AND_VOID_INVOICES = [
    ("q-110", "OPEN", 10.3, 10.3, 10.1, 0.2, ["tc-class-1"]),
    ("q-111", "PARTIALLY_PAID", 0.3, 0.2, 0.3, 0.0, []),
    ("q-112", "OPEN", 107.0, 107.0, 100.0, 7.0, []),
    ("q-113", "OPEN", 105.0, 105.0, 100.0, 5.0, []),
    ("q-114", "VOID", 0.0, 0.0, 0.0, 0.0, []),
    ("q-115", "OPEN", 300.0, 300.0, 300.0, 0.0, []),
    ("q-116", "VOID", 0.0, 0.0, 0.0, 0.0, []),
    ("q-117", "PAID", 0.0, 0.0, 0.0, 0.0, []),
    ("q-118", "OPEN", 600.0, 600.0, 600.0, 0.0, []),
    ("q-119", "PAID", 0.0, 0.0, 0.0, 0.0, []),
    ("q-120", "OPEN", 70.0, 70.0, 70.0, 0.0, []),
]
# Classes and departments (tracking_category_mapping, issue 16 part 7): QuickBooks' categories (Merge id, remote id,
# name, type, parent), Coperniq projects (id, workflowName, trades, custom) and invoices on them.
TRACKING_CATEGORIES = [
    ("tc-class-1", "5000000000000000001", "Solar", "CLASS", None),
    ("tc-class-2", "5000000000000000002", "HVAC", "CLASS", None),
    ("tc-class-3", "5000000000000000003", "Other", "CLASS", None),
    ("tc-class-4", "5000000000000000004", "Commercial", "CLASS", "tc-class-1"),  # Solar:Commercial
    ("tc-dept-1", "1", "Austin", "DEPARTMENT", None),
    ("tc-dept-2", "2", "Dallas", "DEPARTMENT", None),
]
PROJECTS = [
    (931, "Residential Solar", ["Solar"], {"branch": "Austin"}),
    (932, "HVAC Replacement", ["HVAC"], {"branch": "Dallas"}),
    (933, "Commercial Wind", [], {"branch": "Austin"}),  # no `values` entry: the default
    (934, "residential-solar", ["Solar"], {"branch": "Austin"}),  # matched case- and punctuation-insensitively
]
# The mapping the tracking tests build with (a dbt var, as reconcile.py passes the forward target's setting).
TRACKING_MAPPING = {
    "class": {
        "field": "workflowName",
        "values": {"Residential Solar": "Solar", "HVAC Replacement": "HVAC"},
        "default": "Other",
    },
    "location": {"field": "custom.branch"},
}
# Coperniq invoice (id, project) and its QuickBooks invoice's categories (on the invoice, on its lines); all 100.00.
TRACKING_INVOICES = [
    (130, 931, ["tc-class-1", "tc-dept-1"], [["tc-class-1"]]),  # class and department match
    (131, 932, ["tc-dept-2"], [["tc-class-1"], ["tc-class-1"]]),  # class on the lines: Solar, the mapping says HVAC
    (132, 933, ["tc-class-3"], [[]]),  # Other (the default) matches; the department is missing in QuickBooks
    (133, 934, ["tc-dept-1"], [["tc-class-1"]]),  # 'residential-solar' -> Solar
    (134, 935, ["tc-class-1"], [["tc-class-1"]]),  # the project did not land: not comparable
]
LINK_STATUS = {114: "voided", 117: "zeroed", 119: "zeroed", 120: "voided"}  # the others: active
LEFT_BY_POLICY = (
    "invoice pushed to QuickBooks earlier is now archived in Coperniq; left unchanged in QuickBooks "
    "(void_policy: leave): review it there"
)


def build_warehouse(path: Path) -> None:
    """Raw schemas as the two target-duckdb loaders leave them."""
    con = duckdb.connect(str(path))
    con.execute("""
    create schema raw_coperniq; create schema raw_quickbooks;
    create table raw_coperniq.projects (id hugeint, title varchar, workflowname varchar, trades json, custom json,
        updatedat timestamp);
    create table raw_quickbooks.tracking_categories (id varchar, remote_id varchar, name varchar, status varchar,
        category_type varchar, parent_category varchar, company varchar, remote_was_deleted boolean,
        modified_at timestamp);
    create table raw_coperniq.accounts (id hugeint, title varchar, primaryemail varchar, primaryphone varchar,
        isactive boolean, updatedat timestamp, _sdc_extracted_at timestamp);
    create table raw_coperniq.invoices (id hugeint, uid bigint, status varchar, amount double, amountpaid double,
        balance double, account json, record json, isarchived boolean, updatedat timestamp, taxid bigint,
        taxrate double);
    create table raw_quickbooks.contacts (id varchar, remote_id varchar, name varchar, email_address varchar,
        phone_numbers json, is_customer boolean, is_supplier boolean, status varchar, remote_was_deleted boolean,
        modified_at timestamp);
    create table raw_quickbooks.invoices (id varchar, remote_id varchar, number varchar, contact varchar,
        type varchar, status varchar, total_amount double, balance double, remote_was_deleted boolean,
        modified_at timestamp, sub_total double, total_tax_amount double, inclusive_of_tax boolean,
        tracking_categories json);
    """)
    acc = [
        (1, "Jane Smith", "jane@example.com", "(555) 010-0001"),
        (2, "Bob Jones", "bob@example.com", "555-010-0002"),
        (3, "Carla Diaz", "carla@example.com", None),  # email differs in QBO
        (4, "Dan Wu", None, None),  # linked, but deleted in QBO
        (5, "Eve Unsynced", None, None),  # never synced
    ]
    for i, t, e, p in acc:
        con.execute("insert into raw_coperniq.accounts values (?, ?, ?, ?, true, '2025-01-01', now())", [i, t, e, p])
    inv = [
        (101, 1001, "SENT", 1000.0, 0.0, 1000.0, 1),  # matches (QBO open)
        (102, 1002, "PARTIALLY_PAID", 500.0, 200.0, 300.0, 2),  # QBO total 550: amount + balance mismatch
        (103, 1003, "PAID", 700.0, 700.0, 0.0, 1),  # QBO still open: status + balance mismatch
        (104, 1004, "DRAFT", 90.0, 0.0, 90.0, 3),  # linked, gone from QBO
        (105, 1005, "DRAFT", 10.0, 0.0, 10.0, 5),  # not synced
        (106, 1006, "SENT", 250.0, 0.0, 250.0, 1),  # born in QuickBooks, synced back (reverse)
    ]
    for i, uid, st, amt, paid, bal, a in inv:
        con.execute(
            "insert into raw_coperniq.invoices values (?, ?, ?, ?, ?, ?, ?, ?, false, '2025-01-02', null, null)",
            [i, uid, st, amt, paid, bal, json.dumps({"id": a, "title": "x"}), json.dumps({"id": 900 + a})],
        )
    for i, st, amt, paid, archived, tax_id, rate in TAX_AND_VOID_INVOICES:
        con.execute(
            "insert into raw_coperniq.invoices values (?, ?, ?, ?, ?, null, ?, ?, ?, '2025-01-02', ?, ?)",
            [
                i,
                900 + i,
                st,
                amt,
                paid,
                json.dumps({"id": 1, "title": "x"}),
                json.dumps({"id": 901}),
                archived,
                tax_id,
                rate,
            ],
        )
    contacts = [
        ("c-1", "61", "Jane Smith (1207)", "jane@example.com", [{"number": "+1 555 010 0001"}], False),
        ("c-2", "62", "Bob Jones", "bob@example.com", [], False),
        ("c-3", "63", "Carla Diaz", "carla@other.example", [], False),
        ("c-4", "64", "Dan Wu", None, [], True),
        ("c-9", "69", "Walk-in Customer", None, [], False),  # only in QBO
    ]
    for i, rid, n, e, ph, deleted in contacts:
        con.execute(
            "insert into raw_quickbooks.contacts values (?, ?, ?, ?, ?, true, false, 'ACTIVE', ?, '2025-01-03')",
            [i, rid, n, e, json.dumps(ph), deleted],
        )
    qinv = [
        ("q-101", "1001", "c-1", "OPEN", 1000.0, 1000.0, False),
        ("q-102", "1002", "c-2", "PARTIALLY_PAID", 550.0, 350.0, False),
        ("q-103", "1003", "c-1", "OPEN", 700.0, 700.0, False),
        ("q-104", "1004", "c-3", "DRAFT", 90.0, 90.0, True),
        ("q-106", "2001", "c-1", "OPEN", 250.0, 250.0, False),
        ("q-200", "2002", "c-9", "OPEN", 75.0, 75.0, False),  # only in QBO
    ]
    for i, n, c, st, tot, bal, deleted in qinv:
        con.execute(
            "insert into raw_quickbooks.invoices values (?, ?, ?, ?, 'ACCOUNTS_RECEIVABLE', ?, ?, ?, ?, '2025-01-03', "
            "null, null, null, null)",
            [i, i.removeprefix("q-"), n, c, st, tot, bal, deleted],
        )
    for i, st, tot, bal, sub, tax, tracking in QBO_TAX_AND_VOID_INVOICES:
        con.execute(
            "insert into raw_quickbooks.invoices values (?, ?, ?, 'c-1', 'ACCOUNTS_RECEIVABLE', ?, ?, ?, false, "
            "'2025-01-03', ?, ?, false, ?)",
            [
                i,
                i.removeprefix("q-"),
                f"{900 + int(i.removeprefix('q-'))}",
                st,
                tot,
                bal,
                sub,
                tax,
                json.dumps(tracking),
            ],
        )
    add_tracking(con)
    con.close()


def add_tracking(con: duckdb.DuckDBPyConnection) -> None:
    """Projects, categories and the invoices of TRACKING_INVOICES (tax 0 %, everything else matching)."""
    for pid, workflow, trades, custom in PROJECTS:
        con.execute(
            "insert into raw_coperniq.projects values (?, ?, ?, ?, ?, '2025-01-01')",
            [pid, f"Project {pid}", workflow, json.dumps(trades), json.dumps(custom)],
        )
    for cid, rid, name, kind, parent in TRACKING_CATEGORIES:
        con.execute(
            "insert into raw_quickbooks.tracking_categories values "
            "(?, ?, ?, 'ACTIVE', ?, ?, null, false, '2025-01-01')",
            [cid, rid, name, kind, parent],
        )
    con.execute("alter table raw_quickbooks.invoices add column line_items json")
    for i, pid, header, lines in TRACKING_INVOICES:
        con.execute(
            "insert into raw_coperniq.invoices values "
            "(?, ?, 'SENT', 100.0, 0.0, null, ?, ?, false, '2025-01-02', 6, 0.0)",
            [i, 900 + i, json.dumps({"id": 1, "title": "x"}), json.dumps({"id": pid})],
        )
        items = [
            {"id": f"l-{i}-{n}", "total_amount": 100.0 / len(lines), "tracking_categories": c}
            for n, c in enumerate(lines)
        ]
        con.execute(
            "insert into raw_quickbooks.invoices (id, remote_id, number, contact, type, status, total_amount, balance, "
            "remote_was_deleted, modified_at, sub_total, total_tax_amount, inclusive_of_tax, tracking_categories, "
            "line_items) values (?, ?, ?, 'c-1', 'ACCOUNTS_RECEIVABLE', 'OPEN', 100.0, 100.0, false, '2025-01-03', "
            "100.0, 0.0, false, ?, ?)",
            [f"q-{i}", str(i), str(900 + i), json.dumps(header), json.dumps(items)],
        )


def build_ledger(path: Path) -> None:
    """id_map links for the pairs above, three forward runs with a row failing in all three, one reverse run."""
    con = duckdb.connect(str(path))
    con.execute(LEDGER_DDL)
    links = [("account", str(i), "customer", f"c-{i}") for i in (1, 2, 3, 4)]
    links += [("invoice", str(i), "invoice", f"q-{i}") for i in (101, 102, 103, 104)]
    for st, sid, tt, tid in links:
        con.execute(
            "insert into id_map values ('coperniq', ?, ?, 'quickbooks', ?, ?, null, 'fp', 'coperniq', 'active', now())",
            [st, sid, tt, tid],
        )
    con.execute(
        "insert into id_map values ('quickbooks', 'invoice', 'q-106', 'coperniq', 'invoice', '106', null, 'fp', "
        "'quickbooks', 'active', now())"
    )
    for i, *_ in TAX_AND_VOID_INVOICES:
        con.execute(
            "insert into id_map values ('coperniq', 'invoice', ?, 'quickbooks', 'invoice', ?, null, 'fp', 'coperniq', "
            "?, now())",
            [str(i), f"q-{i}", LINK_STATUS.get(i, "active")],
        )
    for i, *_ in TRACKING_INVOICES:
        con.execute(
            "insert into id_map values ('coperniq', 'invoice', ?, 'quickbooks', 'invoice', ?, null, 'fp', 'coperniq', "
            "'active', now())",
            [str(i), f"q-{i}"],
        )
    for n in (1, 2, 3, 4):
        con.execute(
            "insert into runs values (?, 'forward', timestamp '2025-01-01' + to_hours(?), "
            "timestamp '2025-01-01' + to_hours(?) + to_minutes(1), false, '{}', 'success')",
            [f"f{n}", n, n],
        )
        at = f"2025-01-01 0{n}:00:30"
        con.execute(
            f"insert into sync_log values ('f{n}', '{at}', 'forward', 'projects', '77', 'failed', "
            f"'HTTP 400 on customer {n}00: Duplicate Name Exists Error (id {n})', null, 'req{n}')"
        )
        con.execute(
            f"insert into sync_log values ('f{n}', '{at}', 'forward', 'accounts', '{n}', 'created', '', 'c-{n}', null)"
        )
    # invoice 118 (pushed before these runs) was archived in Coperniq and left in QuickBooks in f4 (void_policy: leave)
    con.execute(
        "insert into sync_log values ('f4', '2025-01-01 04:00:50', 'forward', 'invoices', '118', 'skipped', ?, "
        "'q-118', null)",
        [LEFT_BY_POLICY],
    )
    # row 78 failed twice, then succeeded: not failing any more
    con.execute(
        "insert into sync_log values ('f1', '2025-01-01 01:00:40', 'forward', 'projects', '78', 'failed', "
        "'timeout', null, null)"
    )
    con.execute(
        "insert into sync_log values ('f2', '2025-01-01 02:00:40', 'forward', 'projects', '78', 'updated', "
        "'', null, null)"
    )
    con.execute("insert into runs values ('r1', 'reverse', '2025-01-02', '2025-01-02 00:01', false, '{}', 'success')")
    con.execute(
        "insert into sync_log values ('r1', '2025-01-02 00:00:10', 'reverse', 'invoices', 'q-106', 'created', "
        "'', '106', null)"
    )
    con.execute("insert into staging values ('coperniq', 'projects', '77', '{}', now(), 'failed', 4, 'Duplicate Name')")
    con.close()
