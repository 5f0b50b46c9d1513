"""Shared helpers for the reverse-leg tests: Merge-shaped records, Singer lines, ledger links, a target run."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

from singer_sdk.testing import target_sync_test

from sync_ledger import Ledger, Link
from tap_quickbooks_merge.streams import STREAM_TYPES
from target_coperniq.target import TargetCoperniq

SCHEMAS = {stream_type.name: stream_type.schema for stream_type in STREAM_TYPES}
TS = "2026-01-10T12:00:00.000000Z"


def new_id() -> str:
    return str(uuid.uuid4())


def merge_item(name: str, *, price: float = 100.0, type_: str = "SERVICE") -> dict[str, Any]:
    return {
        "id": new_id(),
        "remote_id": str(uuid.uuid4().int % 10_000),
        "modified_at": TS,
        "name": name,
        "status": "ACTIVE",
        "type": type_,
        "unit_price": price,
        "purchase_price": 40.0,
    }


def merge_contact(name: str = "Smith Residence") -> dict[str, Any]:
    return {
        "id": new_id(),
        "remote_id": str(uuid.uuid4().int % 10_000),
        "modified_at": TS,
        "name": name,
        "is_customer": True,
        "status": "ACTIVE",
    }


def merge_invoice(
    contact_id: str,
    lines: list[dict[str, Any]],
    *,
    number: str = "1043",
    status: str = "OPEN",
    total: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    line_items = []
    for line in lines:
        qty, unit = line.get("quantity", 1), line.get("unit_price", 100.0)
        line_items.append(
            {
                "id": new_id(),
                "description": line.get("description", "Work"),
                "quantity": qty,
                "unit_price": unit,
                "total_amount": round(qty * unit, 2),
                "item": line.get("item"),
            }
        )
    amount = total if total is not None else round(sum(li["total_amount"] for li in line_items), 2)
    invoice = {
        "id": new_id(),
        "remote_id": str(uuid.uuid4().int % 100_000),
        "modified_at": TS,
        "type": "ACCOUNTS_RECEIVABLE",
        "contact": contact_id,
        "number": number,
        "issue_date": "2026-01-05T00:00:00Z",
        "due_date": "2026-02-04T00:00:00Z",
        "status": status,
        "total_amount": amount,
        "balance": amount,
        "line_items": line_items,
        "payments": [],
        "applied_payments": [],
        "remote_was_deleted": False,
    }
    invoice.update(extra)
    return invoice


def merge_payment(contact_id: str, applications: list[tuple[str, float]], **extra: Any) -> dict[str, Any]:
    payment = {
        "id": new_id(),
        "remote_id": str(uuid.uuid4().int % 100_000),
        "modified_at": TS,
        "transaction_date": "2026-01-12T00:00:00Z",
        "contact": contact_id,
        "type": "ACCOUNTS_RECEIVABLE",
        "total_amount": round(sum(a for _, a in applications), 2),
        "applied_to_lines": [
            {
                "id": new_id(),
                "applied_amount": amount,
                "related_object_id": invoice_id,
                "related_object_type": "INVOICE",
            }
            for invoice_id, amount in applications
        ],
        "remote_was_deleted": False,
    }
    payment.update(extra)
    return payment


def singer_lines(streams: list[tuple[str, list[dict[str, Any]]]], state: dict | None = None) -> str:
    """SCHEMA + RECORDs per stream, in the order given (the target must not depend on it), then STATE."""
    out = []
    for stream, records in streams:
        out.append({"type": "SCHEMA", "stream": stream, "schema": SCHEMAS[stream], "key_properties": ["id"]})
        out += [{"type": "RECORD", "stream": stream, "record": r} for r in records]
    out.append({"type": "STATE", "value": state or {"bookmarks": {"invoices": {"replication_key_value": TS}}}})
    return "\n".join(json.dumps(m) for m in out) + "\n"


def run_target(config: dict[str, Any], streams: list[tuple[str, list[dict[str, Any]]]]) -> list[dict]:
    """Run target-coperniq in-process; returns the STATE messages it emitted."""
    target = TargetCoperniq(config=config, validate_config=True)
    stdout, _ = target_sync_test(target, input=io.StringIO(singer_lines(streams)), finalize=True)
    return [json.loads(line) for line in stdout.read().splitlines() if line.strip()]


def link_forward(
    ledger_path: Path | str,
    source_type: str,
    source_id: Any,
    target_type: str,
    merge_id: str | None,
    remote_id: str | None = None,
) -> None:
    """What target-quickbooks-merge writes after pushing a Coperniq record to QuickBooks."""
    with Ledger(ledger_path) as ledger:
        ledger.upsert_link(
            Link(
                "coperniq",
                source_type,
                str(source_id),
                "quickbooks",
                target_type,
                merge_id,
                target_remote_id=remote_id,
                origin="coperniq",
            )
        )


def log_rows(ledger_path: Path | str, **filters: Any) -> list[dict[str, Any]]:
    with Ledger(ledger_path) as ledger:
        return ledger.log_rows(limit=1000, **filters)


def reverse_links(ledger_path: Path | str) -> list[Link]:
    with Ledger(ledger_path) as ledger:
        return ledger.links(source_system="quickbooks")


def run_tap(config: dict[str, Any], state: dict | None = None) -> dict[str, Any]:
    """Run tap-quickbooks-merge in-process; returns records by stream, the last STATE and all messages."""
    import contextlib

    from tap_quickbooks_merge.tap import TapQuickbooksMerge

    tap = TapQuickbooksMerge(config=config, state=state or {}, parse_env_config=False)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        tap.sync_all()
    messages = [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]
    records: dict[str, list[dict[str, Any]]] = {}
    for m in messages:
        if m["type"] == "RECORD":
            records.setdefault(m["stream"], []).append(m["record"])
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    return {"records": records, "state": states[-1] if states else None, "messages": messages}


def tap_config(merge_sb: Any, **extra: Any) -> dict[str, Any]:
    return {
        "base_url": merge_sb.url,
        "merge_api_key": merge_sb.api_key,
        "account_token": merge_sb.account_token,
        "start_date": "2020-01-01T00:00:00Z",
        "max_requests_per_minute": 6000,
        **extra,
    }


def reverse_run(merge_sb: Any, coperniq_sb: Any, ledger_path: Path | str, tap_state: dict | None) -> dict | None:
    """tap-quickbooks-merge | target-coperniq in-process; returns the tap's final state. `ledger_path`: a DuckDB
    file or a postgresql:// URL (ledger_url)."""
    out = run_tap(tap_config(merge_sb), state=tap_state)
    lines = "\n".join(json.dumps(m) for m in out["messages"]) + "\n"
    place = "ledger_url" if str(ledger_path).startswith("postgresql://") else "ledger_path"
    target = TargetCoperniq(
        config={
            "api_url": coperniq_sb.url,
            "api_key": coperniq_sb.api_key,
            place: str(ledger_path),
            "max_requests_per_second": 0,
        }
    )
    target_sync_test(target, io.StringIO(lines), finalize=True)
    return out["state"]
