"""coperniq_qbo: the `coperniq-qbo` operator CLI of coperniq-quickbooks (see docs/OPERATIONS.md).

A package of its own so the shared ground floor (`sync-ledger`) imports nothing of the plugins: the CLI depends on
the ledger and on target-quickbooks-merge's settings and trigger code, and nothing depends on the CLI.
"""

from __future__ import annotations
