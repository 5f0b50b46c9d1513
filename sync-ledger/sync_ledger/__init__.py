"""sync_ledger: the shared piece of coperniq-quickbooks (ledger, HTTP client, helpers). See docs/CONTRACTS.md."""

from __future__ import annotations

from .http import ApiClient, ApiError, RateLimiter
from .ledger import Ledger, LedgerError, LedgerLockedError, LedgerNotFoundError, Link
from .util import DEFAULT_LEDGER_PATH, ISO_8601_PATTERN, fingerprint, redact, to_jsonable

__all__ = [
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
    "redact",
    "to_jsonable",
]
