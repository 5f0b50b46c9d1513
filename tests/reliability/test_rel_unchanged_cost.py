"""The targets' cost per unchanged record is a ledger lookup, not an API call: a full re-read (the taps run without
state, so every record arrives again, all unchanged) makes no write and no per-record read on either leg."""

from __future__ import annotations

from pathlib import Path

from rel_helpers import run_pipe, tap_config, target_config

from tests.conftest import start_coperniq, start_merge


def test_full_reread_of_unchanged_records_costs_no_api_calls(tmp_path: Path) -> None:
    cop = start_coperniq(rate_limit_per_day=None)
    merge = start_merge(rate_limit_per_minute=1_000_000)
    try:
        cop.app.seed(projects=30, seed=8)
        ledger = tmp_path / "ledger.duckdb"
        fwd = (tap_config(cop), target_config(merge, ledger))
        first = run_pipe("tap-coperniq", fwd[0], "target-quickbooks-merge", fwd[1], tmp_path, tag="f1")
        assert first.target_rc == 0 and merge.stats.by_route["POST /api/accounting/v1/invoices"] > 0
        # QuickBooks-side activity for the reverse leg: a payment on a synced invoice
        inv = next(r for r in merge.state.table("invoices").order if float(r.get("balance") or 0) > 10)
        merge.app.create_payment(inv["contact"], 10.0, applied_to=[(inv["id"], 10.0)])
        rev_tap = {
            "merge_api_key": merge.api_key,
            "account_token": merge.account_token,
            "base_url": merge.url,
            "start_date": "2020-01-01T00:00:00Z",
            "max_requests_per_minute": 1_000_000,
        }
        rev_tgt = {
            "api_key": cop.api_key,
            "api_url": cop.url,
            "ledger_path": str(ledger),
            "max_requests_per_second": 1000,
        }
        r1 = run_pipe("tap-quickbooks-merge", rev_tap, "target-coperniq", rev_tgt, tmp_path, tag="r1")
        assert r1.target_rc == 0, r1.target_stderr[-2000:]
        assert cop.stats.count("POST", "/payments") == 1  # the QBO payment reached Coperniq

        merge_before = dict(merge.stats.by_route)
        again = run_pipe("tap-coperniq", fwd[0], "target-quickbooks-merge", fwd[1], tmp_path, tag="f2")  # no state
        assert again.target_rc == 0
        # the QBO payment the reverse leg wrote into Coperniq is not echoed back to QuickBooks as a second payment
        applied = [
            p
            for p in merge.state.table("payments").order
            if any(a.get("related_object_id") == inv["id"] for a in p.get("applied_to_lines") or [])
        ]
        assert len([p for p in applied if abs(float(p["total_amount"]) - 10.0) < 0.01]) == 1, applied
        merge_delta = {
            k: v - merge_before.get(k, 0) for k, v in merge.stats.by_route.items() if v != merge_before.get(k, 0)
        }
        # no write, and no per-record read: the pre-flight check of the linked account and the company's home
        # currency, plus the once-per-run item list because one invoice did change (the reverse leg's payment
        # raised its amountPaid); an untaxed invoice of a US company reads nothing about taxes
        once = {"GET /api/accounting/v1/account-details", "GET /api/accounting/v1/company-info"}
        assert set(merge_delta) <= once | {"GET /api/accounting/v1/items"}, merge_delta
        assert all(merge_delta[route] == 1 for route in once), merge_delta
        assert merge_delta.get("GET /api/accounting/v1/items", 0) <= 1

        cop_mid = dict(cop.stats.by_route)
        r2 = run_pipe("tap-quickbooks-merge", rev_tap, "target-coperniq", rev_tgt, tmp_path, tag="r2")
        assert r2.target_rc == 0
        cop_delta = {k: v - cop_mid.get(k, 0) for k, v in cop.stats.by_route.items() if v != cop_mid.get(k, 0)}
        assert cop_delta == {}, cop_delta  # target-coperniq: nothing read or written in Coperniq
        assert cop.stats.count("POST", "/payments") == 1
    finally:
        cop.server.stop()
        merge.server.stop()
