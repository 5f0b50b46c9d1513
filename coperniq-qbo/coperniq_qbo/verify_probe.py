"""The opt-in write probe of `coperniq-qbo verify --write-probe`: does Merge honour Idempotency-Key?

The only part of verify that writes. It creates one clearly named test customer, sends the same create again
with the same Idempotency-Key, and archives whatever it made (through Merge, else through QuickBooks itself).
Its own module because it is the one place with side effects on the customer's QuickBooks company, so the
cleanup rules stay next to the create they undo, and the read-only checks (verify_merge, verify_coperniq) stay
free of writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from coperniq_qbo.errors import api_message, is_api_error
from coperniq_qbo.verify_merge import qbo_passthrough
from coperniq_qbo.verify_report import DIFFERS, NOT_CHECKED, OK, Finding
from sync_ledger import ApiClient
from sync_ledger.passthrough import QBO_MINOR, passthrough_answer, passthrough_body

ASSUMPTION = "Merge honours Idempotency-Key on POST /contacts"


def read_only_finding() -> Finding:
    """The idempotency row when verify runs without `--write-probe` (the default: nothing is written)."""
    return Finding(
        "idempotency",
        ASSUMPTION,
        "not checked (read-only; run with --write-probe)",
        "looks records up by natural key after a lost answer either way (no duplicates)",
        NOT_CHECKED,
    )


class WriteProbe:
    """One probe customer created twice under one Idempotency-Key, then archived; `can_write` comes from the
    linked-account check (MergeChecks), so an account that cannot write is not written to."""

    def __init__(self, merge: ApiClient, *, can_write: bool) -> None:
        self.merge = merge
        self.can_write = can_write

    def run(self) -> Finding:
        if not self.can_write:
            return Finding("idempotency", ASSUMPTION, "not checked: the linked account cannot write", "-", NOT_CHECKED)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")  # QuickBooks names may hold no colon
        name = f"coperniq-qbo verify probe {stamp}"
        key = f"coperniq-qbo-verify-{uuid.uuid4()}"
        body = {"model": {"name": name, "is_customer": True, "is_supplier": False}}

        def send() -> Any:
            return self.merge.request(
                "POST", "/contacts", json=body, headers={"Idempotency-Key": key}, retry_ambiguous=False
            )

        created: list[dict[str, Any]] = []
        try:
            first = send()
        except Exception as exc:
            if not is_api_error(exc):
                raise
            if getattr(exc, "ambiguous", False):
                created += self._contacts_named(name)
            cleanup = self._archive(created, name)
            return Finding(
                "idempotency",
                ASSUMPTION,
                f"not checked: the probe create failed: {api_message(exc)}{cleanup}",
                "looks records up by natural key after a lost answer (no duplicates either way)",
                NOT_CHECKED,
            )
        model = (first.json() or {}).get("model") or {}
        created.append(model)
        try:
            second = send()
        except Exception as exc:
            if not is_api_error(exc):
                raise
            text = api_message(exc).lower()
            if "idempotency key reuse" in text:
                saw, outcome = "the re-send was refused as a key reuse (the key is recognised)", OK
            elif "6240" in text or "duplicate name" in text:
                saw, outcome = "the re-send was treated as a second create (QuickBooks: duplicate name)", DIFFERS
            else:
                saw, outcome = f"inconclusive: the re-send failed: {api_message(exc)}", NOT_CHECKED
        else:
            again = (second.json() or {}).get("model") or {}
            replayed = str(second.headers.get("Idempotent-Replayed") or "").lower() == "true"
            if replayed or (again.get("id") and again.get("id") == model.get("id")):
                saw = "the re-send returned the same customer" + (" (Idempotent-Replayed: true)" if replayed else "")
                outcome = OK
            else:
                created.append(again)
                saw, outcome = "the re-send created a second customer", DIFFERS
        saw += self._archive(created, name)
        product = (
            "Idempotency-Key honoured: a create whose answer was lost is replayed, not repeated"
            if outcome == OK
            else "not honoured: the product looks records up by natural key after a lost answer (no duplicates "
            "either way)"
        )
        return Finding("idempotency", ASSUMPTION, saw, product, outcome)

    def _contacts_named(self, name: str) -> list[dict[str, Any]]:
        try:
            return list((self.merge.get("/contacts", params={"name": name}) or {}).get("results") or [])
        except Exception as exc:
            if not is_api_error(exc):
                raise
            return []

    def _archive(self, created: list[dict[str, Any]], name: str) -> str:
        """Deactivate what the probe made (Merge PATCH status ARCHIVED, else passthrough Active=false); the text
        names anything left behind so it can be removed by hand."""
        seen: set[str] = set()
        done = failed = 0
        for model in created:
            merge_id = str(model.get("id") or "")
            if not merge_id or merge_id in seen:
                continue
            seen.add(merge_id)
            if self._archive_one(merge_id, str(model.get("remote_id") or "")):
                done += 1
            else:
                failed += 1
        if failed:
            return f"; could not archive {failed} probe customer(s) named {name!r}: make them inactive in QuickBooks"
        return f"; archived the probe customer{'s' if done > 1 else ''} {name!r}" if done else ""

    def _archive_one(self, merge_id: str, remote_id: str) -> bool:
        try:
            self.merge.patch(f"/contacts/{merge_id}", json={"model": {"status": "ARCHIVED"}})
            return True
        except Exception as exc:
            if not is_api_error(exc):
                raise
        if not remote_id:
            return False
        try:  # QuickBooks itself: a sparse update needs the current SyncToken
            status, inner = qbo_passthrough(self.merge, "GET", f"/customer/{remote_id}?{QBO_MINOR}")
            customer = (inner or {}).get("Customer") if status < 400 and isinstance(inner, Mapping) else None
            if not isinstance(customer, Mapping):
                return False
            update = {"Id": customer["Id"], "SyncToken": customer.get("SyncToken"), "sparse": True, "Active": False}
            out = self.merge.post("/passthrough", json=passthrough_body("POST", f"/customer?{QBO_MINOR}", update))
            return passthrough_answer(out)[0] < 400
        except Exception as exc:
            if not is_api_error(exc):
                raise
            return False
