"""What every rule of the reverse leg shares: the run's settings, its ledger side and its write-ahead intents.

The rules live one module per kind (invoices, payments) on top of lookups.py and catalog.py; reconcile.py
conducts them and keeps each row's bookkeeping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sync_ledger import Ledger, Link
from sync_ledger.rows import Journal
from target_coperniq.coperniq import CoperniqApi

SOURCE = "quickbooks"
TARGET = "coperniq"
DIRECTION = "reverse"
INTENT_PREFIX = "target-coperniq:"
FORWARD_ECHO = "written by the forward leg"
NOT_SYNCED = "customer not synced from Coperniq"
FORWARD_IN_FLIGHT = "the forward leg is writing records of this kind to QuickBooks (a pending intent): tried again"
DEFAULT_LINE_ITEM_NAME = "QuickBooks line item"
DEFAULT_PARALLEL_WRITES = 4
#: Coperniq allows 100 requests/s per key; more threads than this only wait on the token bucket
MAX_PARALLEL_WRITES = 32


@dataclass(frozen=True)
class Settings:
    """The config values the rules decide by, parsed once when the run starts."""

    dry_run: bool
    void_policy: str
    payment_method: str
    max_attempts: int
    #: as configured; made an int only when a line needs it (a bad value fails those rows, not the run)
    default_catalog_item: Any
    default_catalog_item_name: str
    #: Coperniq writes in flight at once (the client's token bucket is the only brake on the rate)
    max_parallel_writes: int = DEFAULT_PARALLEL_WRITES

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        return cls(
            dry_run=bool(config.get("dry_run")),
            void_policy=str(config.get("void_policy") or "mark").lower(),
            payment_method=str(config.get("payment_method") or "CHECK").upper(),
            max_attempts=int(config.get("max_attempts") or 5),
            default_catalog_item=config.get("default_catalog_item"),
            default_catalog_item_name=str(config.get("default_catalog_item_name") or DEFAULT_LINE_ITEM_NAME),
            max_parallel_writes=int(config.get("max_parallel_writes") or DEFAULT_PARALLEL_WRITES),
        )


class Intents:
    """Coperniq has no idempotency keys, so each create is announced first; a create a crash interrupted is
    looked up in Coperniq (by its marker or reference) before it is made again."""

    def __init__(self, journal: Journal, open_keys: set[str]) -> None:
        self.journal = journal
        self._open = open_keys

    def __contains__(self, key: str) -> bool:
        """Was the create behind this key announced and never committed (by a crashed run)?"""
        return key in self._open

    def __len__(self) -> int:
        return len(self._open)

    def announce(self, key: str) -> None:
        """A create is planned under this key; the batched writer makes its intent durable before the call (rule 1
        of the journal). Until it is committed, a retry in this run looks the record up first, as after a crash."""
        self._open.add(key)

    def commit(self, key: str, link: Link) -> None:
        """The link and the clear of its intent, durable at once (the journal's batch is 1)."""
        self.journal.link(link, key)
        self._open.discard(key)

    def end(self, key: str) -> None:
        """Coperniq refused the create (a clean 4xx): nothing to look up on a retry; the intent goes with the next
        journal flush."""
        self._open.discard(key)
        self.journal.end(key)


@dataclass(frozen=True)
class Context:
    """The run's side of every rule: what it reads (ledger), writes (journal, api) and announces (intents)."""

    settings: Settings
    ledger: Ledger
    journal: Journal
    api: CoperniqApi
    intents: Intents
