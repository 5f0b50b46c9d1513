"""A corpus of 30 kinds of bad records (rel_corpus.py) mixed into real tap-coperniq output, fed to
target-quickbooks-merge as a process.

Outcome per kind (what an operator sees in `coperniq-qbo log --failed` / the sync_log):
* REJECTED (22 kinds): logged `failed` with a reason naming the problem; nothing written to QuickBooks for them;
  retried next run (and failing again, without duplicating anything).
* WAITING (3 kinds, unknown references): logged `skipped` with the missing id; records arrive in any order, so the
  referenced client/project/invoice may come in a later run (CONTRACTS.md) -- not a failure yet.
* REPAIRED (5 kinds): names QuickBooks cannot take as they are (colons, control characters, > 100 chars) are made
  legal; unicode and a malformed email are kept as they are; they sync.
Every good record syncs exactly once.

Exit code (documented behaviour): 0 when rows failed but the run itself worked (default), so Meltano saves the
state and the failed rows are retried next run; with `fail_on_error: true` the target exits 1 -- after it emitted
STATE and committed the ledger.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path

from rel_corpus import BAD_BASE, build_corpus
from rel_helpers import (
    BIN,
    assert_forward_complete,
    expected_forward,
    merge_rows,
    qbo_customers,
    tap_config,
    target_config,
    write_json,
    writes,
)

from sync_ledger import Ledger
from tap_coperniq.tap import TapCoperniq
from tests.conftest import start_coperniq, start_merge

# kind -> words the failure reason must contain (case-insensitive)
REJECTED = {
    "project_id_wrong_type": ["forty-two", "integer"],
    "project_missing_id": ["no id"],
    "project_no_client": ["accountid"],
    "project_number_wrong_type": ["integer"],
    "phase_bad_date": ["2025-13-45", "date-time"],
    "project_bad_updated_at": ["yesterday", "date-time"],
    "invoice_missing_id": ["no id"],
    "invoice_amount_wrong_type": ["12.50 usd", "number"],
    "invoice_amount_negative": ["-500.00", "lines add up to"],
    "invoice_amount_nan": ["amount", "nan", "finite"],
    "invoice_quantity_infinite": ["inf"],
    "invoice_quantity_negative": ["quantity", "-3"],
    "invoice_no_lines": ["no line items"],
    "invoice_bad_issue_date": ["someday", "date-time"],
    "invoice_duplicate_number": ["duplicate document number"],
    "payment_amount_negative": ["quickbooks"],
    "payment_amount_zero": ["no amount"],
    "payment_amount_nan": ["amount", "nan", "finite"],
    "payment_amount_wrong_type": ["lots", "number"],
    "payment_missing_date": ["paymentdate"],
    "payment_bad_date": ["not-a-date", "date-time"],
    "payment_over_balance": ["quickbooks"],
}
WAITING = {
    "project_unknown_client": "987654321",
    "invoice_unknown_project": "987654321",
    "payment_unknown_invoice": "987654321",
}
REPAIRED = {
    "client_name_colon": "Acme - Solar - HQ",
    "client_name_unicode": "Zoë Ñúñez 🌞 שלום 李雷 Ǆ\u0301",
    "client_email_invalid": "Corpus Client client_email_invalid",
    "project_name_control_chars": "Roof - and - Panels",
    "client_name_oversized": "Oversized Oversized",
}


def test_bad_record_corpus_fails_each_row_with_a_reason_and_syncs_all_good_rows(tmp_path: Path) -> None:
    cop = start_coperniq(rate_limit_per_day=None)
    merge = start_merge(rate_limit_per_minute=1_000_000)
    try:
        cop.app.seed(projects=16, seed=5)
        tap = TapCoperniq(config=tap_config(cop, phase_history=True), parse_env_config=False)  # bad history rows too
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            tap.sync_all()
        st = cop.state
        exp = expected_forward(cop)
        pid, iid = next(
            (p, i)
            for p in exp["projects"]
            for i in st.invoices_by_project.get(p, [])
            if st.invoices[i]["amount"] - st.invoices[i]["amountPaid"] > 100
        )
        corpus = build_corpus(buf.getvalue(), pid, iid)
        kinds = {k: v for k, v in corpus.kinds.items() if not k.startswith("_")}
        assert set(kinds) == set(REJECTED) | set(WAITING) | set(REPAIRED) and len(REJECTED) >= 20
        feed = tmp_path / "input.jsonl"
        feed.write_text(corpus.text())
        ledger = tmp_path / "ledger.duckdb"

        def run(**extra: object) -> subprocess.CompletedProcess[str]:
            cfg = write_json(tmp_path / "target.json", target_config(merge, ledger, **extra))
            with feed.open() as stdin:
                return subprocess.run(
                    [str(BIN / "target-quickbooks-merge"), "--config", str(cfg)],
                    stdin=stdin,
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )

        first = run()
        assert first.returncode == 0, first.stderr[-3000:]  # default: failed rows do not fail the run
        assert first.stdout.strip(), "STATE emitted although rows failed"
        assert "row(s) failed" in first.stderr

        with Ledger(ledger) as led:
            rows = led.log_rows(limit=100_000)
            corpus_links = [
                lk for lk in led.links("coperniq") if lk.source_id.isdigit() and int(lk.source_id) > BAD_BASE
            ]
        by_record: dict[tuple[str, str | None], list[dict]] = {}
        for r in rows:
            by_record.setdefault((r["stream"], r["source_id"]), []).append(r)
        for kind, words in REJECTED.items():
            stream, rid = kinds[kind]
            got = by_record.get((stream, rid), [])
            if rid is None:  # no id at all: the row is found by its reason
                got = [r for r in got if "no id" in r["reason"]]
            assert [r["action"] for r in got] == ["failed"], (kind, got)
            reason = got[0]["reason"].casefold()
            assert all(w in reason for w in words), (kind, reason)
        for kind, missing in WAITING.items():
            got = by_record.get(kinds[kind], [])
            assert [r["action"] for r in got] == ["skipped"] and missing in got[0]["reason"], (kind, got)
        names = {c["DisplayName"] for c in qbo_customers(merge)}
        for kind, name in REPAIRED.items():
            assert any(n.startswith(name) for n in names), (kind, name)
        assert all(":" not in n and "\t" not in n and "\n" not in n and len(n) <= 100 for n in names)
        # nothing of a rejected record reached QuickBooks: only the 5 repaired kinds (client + job each) did, and
        # the project whose phase-history row has a bad date (only that row is rejected: the trigger comes from
        # the project list, which shows it at its trigger phase)
        assert len(corpus_links) == 2 * (len(REPAIRED) + 1), [(lk.source_type, lk.source_id) for lk in corpus_links]
        corpus_numbers = {f"CQ-{n}" for n in range(9000, 9100)}  # the default invoice_number_prefix
        assert not corpus_numbers & {i["number"] for i in merge_rows(merge, "invoices")}
        ignore = {str(lk.target_remote_id) for lk in corpus_links}
        assert_forward_complete(cop, merge, ignore_remote_ids=ignore, ignore_numbers=corpus_numbers)

        # fail_on_error: same input again -> failed rows are retried (and fail again), nothing is duplicated,
        # STATE is still emitted, and the exit code is 1
        before = writes(merge)
        second = run(fail_on_error=True)
        assert second.returncode == 1, second.stderr[-2000:]
        assert second.stdout.strip(), "STATE emitted before the non-zero exit"
        assert "fail_on_error" in second.stderr
        assert writes(merge) - before <= 3  # only the 3 rejected-by-QuickBooks rows are tried again
        assert_forward_complete(cop, merge, ignore_remote_ids=ignore, ignore_numbers=corpus_numbers)
    finally:
        cop.server.stop()
        merge.server.stop()
