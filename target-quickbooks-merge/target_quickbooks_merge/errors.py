"""Errors that stop a forward run (a row's own failure is sync_ledger.rows.RowFailure: the run goes on)."""

from __future__ import annotations


class Disconnected(Exception):
    """Merge says the linked account is gone (401/404): stop the run, the operator must reconnect."""


class ConfigRefused(Exception):
    """The configuration cannot sync anything (no trigger matches a workflow or phase): stop before writing."""


class Unreachable(Exception):
    """Merge kept failing to answer (connection errors, 5xx after retries) for `unreachable_timeout` seconds."""
