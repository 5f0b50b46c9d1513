"""Merge passthrough requests to QuickBooks, as both target-quickbooks-merge and `coperniq-qbo verify` send them.

Merge fills `{{LINKED_ACCOUNT_ATTR.realmId}}` with the linked company; the answer wraps QuickBooks' own status and
body (the body sometimes as a JSON string).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

from .util import json_text

QBO_REALM = "{{LINKED_ACCOUNT_ATTR.realmId}}"
QBO_COMPANY = "/v3/company/" + QBO_REALM
QBO_MINOR = "minorversion=75"


def passthrough_body(method: str, qbo_path: str, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `POST /passthrough` body for one QuickBooks call; `qbo_path` is relative to the company."""
    body: dict[str, Any] = {
        "method": method,
        "path": f"{QBO_COMPANY}{qbo_path}",
        "request_format": "JSON",
        "headers": {"Content-Type": "application/json", "Accept": "application/json"},
    }
    if data is not None:
        body["data"] = json_text(data, separators=(", ", ": "))  # a Decimal amount is a JSON number
    return body


def passthrough_answer(out: Mapping[str, Any] | None, http_status: int = 200) -> tuple[int, Any]:
    """(QuickBooks status, QuickBooks body) from Merge's RemoteResponse."""
    out = out or {}
    inner = out.get("response")
    if isinstance(inner, str):
        with contextlib.suppress(ValueError):
            inner = json.loads(inner)
    return int(out.get("status") or http_status), inner
