"""Exit codes, the expected-failure exception and the API-error tests every `coperniq-qbo` command shares.

A module of its own (not in `cli`) so the commands never import `cli`: under `python -m coperniq_qbo.cli` that module
is `__main__`, and a `CliError` defined there would be a different class from the one the commands raise.
"""

from __future__ import annotations

import requests

from sync_ledger import ApiError

EXIT_OK, EXIT_NOT_CONNECTED, EXIT_USAGE, EXIT_API = 0, 1, 2, 3


class CliError(Exception):
    """An expected failure: printed as one line (redacted), no traceback."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def api_status(exc: BaseException) -> int | None:
    """The HTTP status an API error carries (None for connection errors and the like)."""
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def api_message(exc: BaseException) -> str:
    """The error's readable message (ApiError's own, already redacted by the client), else str(exc)."""
    return str(getattr(exc, "message", None) or exc)


def is_api_error(exc: BaseException) -> bool:
    """True for failures of the remote service or the network, which commands report rather than crash on."""
    return isinstance(exc, (ApiError, requests.RequestException))
