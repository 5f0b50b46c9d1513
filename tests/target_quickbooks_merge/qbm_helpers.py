"""Helpers for target-quickbooks-merge tests: in-process tap -> target pipe and QuickBooks assertions."""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from singer_sdk.testing import target_sync_test

from sync_ledger import Ledger
from tap_coperniq.tap import TapCoperniq
from target_quickbooks_merge.target import TargetQuickbooksMerge

BOTH_TRIGGERS = [
    {"workflow": "Residential Solar", "phase": "Install"},
    {"workflow": "HVAC Replacement", "phase": "Installation"},
]


def coperniq_patch(coperniq: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """A change made in Coperniq, through the sandbox's public API (as a user's edit would arrive)."""
    resp = requests.patch(f"{coperniq.url}{path}", json=body, headers={"x-api-key": coperniq.api_key}, timeout=10)
    resp.raise_for_status()
    return dict(resp.json())


def tap_lines(coperniq: Any, state: dict[str, Any] | None = None, **extra: Any) -> tuple[str, dict[str, Any]]:
    """Run tap-coperniq in-process (its defaults, plus `extra` settings); returns (its output, its final state)."""
    tap = TapCoperniq(
        config={
            "api_url": coperniq.url,
            "api_key": coperniq.api_key,
            "start_date": "2020-01-01T00:00:00Z",
            "max_requests_per_second": 1000,
            **extra,
        },
        state=state,
    )
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        tap.sync_all()
    text = buf.getvalue()
    final: dict[str, Any] = {}
    for line in text.splitlines():
        msg = json.loads(line)
        if msg["type"] == "STATE":
            final = msg["value"]
    return text, final


@dataclass
class Run:
    target: TargetQuickbooksMerge
    stdout: str
    tap_state: dict[str, Any]

    @property
    def counts(self) -> dict[str, Counter[str]]:
        assert self.target.result is not None
        return self.target.result.counts

    @property
    def writes(self) -> int:
        calls = self.target.client.api.calls
        return calls["POST"] + calls["PATCH"] + calls["PUT"]

    @property
    def states(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


@dataclass
class Pipeline:
    """Runs tap -> target in-process against the two sandboxes, keeping the tap state between runs."""

    coperniq: Any
    merge: Any
    ledger_path: Path | str  # a DuckDB file, or a postgresql:// URL (ledger_url)
    config: dict[str, Any] = field(default_factory=dict)
    tap_state: dict[str, Any] | None = None
    tap_config: dict[str, Any] = field(default_factory=dict)  # tap-coperniq settings on top of its defaults

    def target_config(self, **overrides: Any) -> dict[str, Any]:
        return {
            "merge_api_key": self.merge.api_key,
            "account_token": self.merge.account_token,
            "base_url": self.merge.url,
            **(
                {"ledger_url": self.ledger_path}
                if str(self.ledger_path).startswith("postgresql://")
                else {"ledger_path": str(self.ledger_path)}
            ),
            "progress_interval": 0.5,
            "max_requests_per_minute": 60000,
            **self.config,
            **overrides,
        }

    def run(self, *, lines: str | None = None, keep_state: bool = True, **overrides: Any) -> Run:
        if lines is None:
            lines, state = tap_lines(self.coperniq, self.tap_state, **self.tap_config)
        else:
            state = {}
        target = TargetQuickbooksMerge(config=self.target_config(**overrides))
        out, _ = target_sync_test(target, io.StringIO(lines), finalize=True)
        if keep_state and state:
            self.tap_state = state
        return Run(target, out.read(), state)

    def ledger(self) -> Ledger:
        return Ledger(self.ledger_path, company=self.config.get("company"))


# ---------------------------------------------------------------------------------------------------- assertions
def qbo_customers(merge: Any) -> dict[str, dict[str, Any]]:
    """QBO Customer objects (customers and jobs) the Merge sandbox holds, by QBO Id."""
    return dict(merge.state.qbo.entities["Customer"])


def qbo_jobs(merge: Any) -> list[dict[str, Any]]:
    return [c for c in qbo_customers(merge).values() if c.get("Job")]


def qbo_top_customers(merge: Any) -> list[dict[str, Any]]:
    return [c for c in qbo_customers(merge).values() if not c.get("Job")]


def merge_rows(merge: Any, table: str) -> list[dict[str, Any]]:
    return [r for r in merge.state.table(table).order if not r.get("remote_was_deleted")]


def assert_no_duplicate_names(merge: Any) -> None:
    names = Counter(c["DisplayName"].casefold() for c in qbo_customers(merge).values())
    dupes = [n for n, k in names.items() if k > 1]
    assert not dupes, f"duplicate QBO DisplayNames: {dupes}"


def staged_records(pipe: Pipeline, stream: str) -> dict[str, dict[str, Any]]:
    with pipe.ledger() as ledger:
        return {rid: payload for rid, payload, _, _ in ledger.iter_staged("coperniq", stream)}


def log_rows(pipe: Pipeline, **filters: Any) -> list[dict[str, Any]]:
    with pipe.ledger() as ledger:
        return ledger.log_rows(limit=100000, **filters)


FactoryT = Callable[..., Pipeline]


def first_triggered_account(pipe: Pipeline) -> dict[str, Any]:
    """Run once in dry mode to learn which client gets synced, without writing anything."""
    pipe.run(dry_run=True)
    with pipe.ledger() as ledger:
        rows = ledger.log_rows(stream="accounts", action="planned", limit=1000)
    assert rows, "dry run should plan at least one customer"
    return staged_records(pipe, "accounts")[rows[-1]["source_id"]]
