"""Merge access for the CLI: the client a human waits on, and the sync-status summary status and verify print."""

from __future__ import annotations

from typing import Any

from coperniq_qbo.errors import EXIT_NOT_CONNECTED, CliError
from coperniq_qbo.settings import Settings
from sync_ledger import ApiClient


def merge_client(settings: Settings, *, account: bool) -> ApiClient:
    """ApiClient for org-level (`account=False`) or linked-account calls; few retries: a human is waiting."""
    if not settings.merge_api_key:
        raise CliError(
            "no Merge API key: set merge_api_key (meltano config set coperniq-qbo merge_api_key ...) "
            "or COPERNIQ_QBO_MERGE_API_KEY"
        )
    headers = {"Authorization": f"Bearer {settings.merge_api_key}", "Accept": "application/json"}
    if account:
        if not settings.account_token:
            raise CliError("no account token: run `coperniq-qbo connect` first", EXIT_NOT_CONNECTED)
        headers["X-Account-Token"] = settings.account_token
    return ApiClient(
        settings.base_url,
        headers=headers,
        max_retries=2,
        backoff_base=0.2,
        backoff_max=5.0,
        timeout=30.0,
        secrets=settings.secrets,
    )


def fetch_sync_status(client: Any, max_pages: int = 20) -> list[dict[str, Any]]:
    """All pages of GET /sync-status (a handful of models; pages are small)."""
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(max_pages):
        params: dict[str, Any] = {"page_size": 100}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/sync-status", params=params) or {}
        rows.extend(page.get("results") or [])
        nxt = page.get("next")
        if not nxt:
            break
        cursor = nxt.split("cursor=")[-1].split("&")[0] if "cursor=" in str(nxt) else str(nxt)
    return rows


def summarize_sync_status(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Last finished Merge sync (DONE only: last_sync_start/finished may describe different syncs)."""
    done: list[Any] = [
        r.get("last_sync_finished")
        for r in rows
        if r.get("last_sync_finished") and str(r.get("last_sync_result") or r.get("status")).upper() == "DONE"
    ]
    failed = sorted(
        r.get("model_name") or r.get("model_id") or "?"
        for r in rows
        if str(r.get("last_sync_result") or "").upper() == "FAILED" or str(r.get("status") or "").upper() == "FAILED"
    )
    syncing = sum(1 for r in rows if str(r.get("status") or "").upper() == "SYNCING")
    nexts: list[Any] = [r.get("next_sync_start") for r in rows if r.get("next_sync_start")]
    return {
        "last_sync_finished": max(done) if done else None,
        "models": len(rows),
        "failed_models": failed,
        "syncing_models": syncing,
        "next_sync_start": min(nexts) if nexts else None,
    }
