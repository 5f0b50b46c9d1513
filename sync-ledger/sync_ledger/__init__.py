"""sync_ledger: the shared piece of coperniq-quickbooks (ledger, HTTP client, money, helpers). See docs/CONTRACTS.md.

The ledger names are imported on first use: the taps use only the HTTP client, and importing DuckDB costs every
tap start ~0.1 s.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .http import ApiClient, ApiError, RateLimiter
from .money import DEFAULT_CURRENCY, minor_unit, money_text, to_decimal, to_money
from .util import DEFAULT_LEDGER_PATH, ISO_8601_PATTERN, fingerprint, json_text, redact, to_jsonable

if TYPE_CHECKING:
    from .ledger import Ledger, LedgerError, LedgerLockedError, LedgerNotFoundError, Link

_LAZY = frozenset({"Ledger", "LedgerError", "LedgerLockedError", "LedgerNotFoundError", "Link"})

__all__ = [
    "DEFAULT_CURRENCY",
    "DEFAULT_LEDGER_PATH",
    "ISO_8601_PATTERN",
    "ApiClient",
    "ApiError",
    "Ledger",
    "LedgerError",
    "LedgerLockedError",
    "LedgerNotFoundError",
    "Link",
    "RateLimiter",
    "fingerprint",
    "json_text",
    "minor_unit",
    "money_text",
    "redact",
    "to_decimal",
    "to_jsonable",
    "to_money",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(".ledger", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
