"""The Coperniq half of `coperniq-qbo verify`: where its key comes from, and what its API says about itself.

Coperniq is the side with a daily call budget (5,000 a key), so everything here counts calls: the client retries
at most once, the phase check stops at `--max-coperniq-calls` and leaves the calls to the sync when the day is
nearly spent. Its own module because none of this touches Merge: the key is read only by verify (the Merge side
comes from `resolve_settings` like every other command), and the two checks (rate-limit headers, phase starts vs
updatedAt) decide how fast Coperniq changes reach QuickBooks, not whether they can.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from coperniq_qbo.env import read_env_file
from coperniq_qbo.errors import api_message, api_status, is_api_error
from coperniq_qbo.settings import Settings
from coperniq_qbo.verify_report import BLOCKS, DIFFERS, NOT_CHECKED, OK, Finding, as_datetime, short_time
from sync_ledger import ApiClient

DEFAULT_COPERNIQ_URL = "https://api.coperniq.io/v1"
# The forward leg's tap reads TAP_COPERNIQ_*, the reverse leg's target TARGET_COPERNIQ_*; the same key serves both.
COPERNIQ_KEY_VARS = ("COPERNIQ_QBO_COPERNIQ_API_KEY", "TAP_COPERNIQ_API_KEY", "TARGET_COPERNIQ_API_KEY")
COPERNIQ_URL_VARS = ("COPERNIQ_QBO_COPERNIQ_API_URL", "TAP_COPERNIQ_API_URL", "TARGET_COPERNIQ_API_URL")
DEFAULT_MAX_COPERNIQ_CALLS = 25
COPERNIQ_DAILY_RESERVE = 100  # below this many calls left today, the phase check leaves them to the sync

# A phase start this much later than the project's updatedAt cannot be write-ordering noise of one change.
UPDATED_AT_SLACK = timedelta(seconds=60)

HEADERS_ASSUMPTION = "Coperniq responses carry X-RateLimit-Remaining"
PHASE_ASSUMPTION = "A phase change bumps the Coperniq project's updatedAt"


def coperniq_settings(
    args: argparse.Namespace, settings: Settings, environ: Mapping[str, str] | None = None
) -> tuple[str | None, str]:
    """(api key, api url) for Coperniq: flag > env > the project's .env (the file `resolve_settings` found).

    The Merge side comes from `resolve_settings` like every other command; Coperniq is only needed here, so its
    names are the tap's/target's own vars, which Meltano loads from `.env` for every plugin anyway.
    """
    env = os.environ if environ is None else environ
    dotenv = read_env_file(settings.env_file)

    def pick(flag: str | None, names: tuple[str, ...]) -> str | None:
        if flag:
            return flag
        for source in (env, dotenv):
            for name in names:
                if source.get(name):
                    return source[name]
        return None

    key = pick(getattr(args, "coperniq_api_key", None), COPERNIQ_KEY_VARS)
    url = pick(getattr(args, "coperniq_api_url", None), COPERNIQ_URL_VARS) or DEFAULT_COPERNIQ_URL
    return key, url.rstrip("/")


def coperniq_client(api_key: str, api_url: str) -> ApiClient:
    """One retry at most: every retry is a call off the daily budget, and a human is waiting."""
    return ApiClient(
        api_url,
        headers={"x-api-key": api_key, "Accept": "application/json"},
        max_requests_per_second=10,
        max_retries=1,
        backoff_base=0.5,
        backoff_max=5.0,
        timeout=30.0,
        secrets=[api_key],
    )


class CoperniqChecks:
    """Both Coperniq checks on one client, within a ceiling of calls (`--max-coperniq-calls`)."""

    def __init__(self, coperniq: ApiClient, *, max_calls: int) -> None:
        self.coperniq = coperniq
        self.max_calls = max_calls

    def calls(self) -> int:
        return sum(self.coperniq.calls.values())

    def run(self) -> list[Finding]:
        """Rate-limit headers from the project list call, then phase starts vs updatedAt from a few projects."""
        coperniq = self.coperniq
        try:
            resp = coperniq.request("GET", "/projects", params={"page_size": 100, "order_by": "desc"})
            projects = resp.json() or []
        except Exception as exc:
            if not is_api_error(exc):
                raise
            status = api_status(exc)
            if status in (401, 403):
                saw, blocker = (
                    f"Coperniq rejected the API key (HTTP {status})",
                    f"Coperniq rejects the API key (HTTP {status}): check TAP_COPERNIQ_API_KEY",
                )
            else:
                saw, blocker = (
                    f"no answer from Coperniq: {api_message(exc)}",
                    "cannot reach Coperniq at " + coperniq.base_url,
                )
            return [
                Finding(
                    "rate_limit_headers", HEADERS_ASSUMPTION, saw, "cannot sync until Coperniq answers", BLOCKS, blocker
                ),
                Finding("phase_updated_at", PHASE_ASSUMPTION, "not checked: Coperniq did not answer", "-", NOT_CHECKED),
            ]
        remaining = resp.headers.get("X-RateLimit-Remaining")
        limit = resp.headers.get("X-RateLimit-Limit")
        if remaining is not None:
            rate = Finding(
                "rate_limit_headers",
                HEADERS_ASSUMPTION,
                f"X-RateLimit-Remaining: {remaining}" + (f" (X-RateLimit-Limit: {limit})" if limit else ""),
                "logs the calls left from the header and warns when under 10% of the day is left",
                OK,
            )
        else:
            rate = Finding(
                "rate_limit_headers",
                HEADERS_ASSUMPTION,
                "no X-RateLimit-Remaining on GET /projects",
                "counts its own calls",
                DIFFERS,
            )
        listed = projects if isinstance(projects, list) else []
        return [rate, self._phase_check(listed, remaining)]

    def _phase_check(self, projects: list[Any], remaining: str | None) -> Finding:
        """Newest projects, most recent phase start first: a phase start later than updatedAt proves no bump."""
        bumps = "finds phase changes in the incremental updated_after window (and the sweeps)"
        sweeps = (
            "finds phase changes by the project-list sweep every phase_sweep_interval (default 4 h); "
            "lower it for faster triggers"
        )
        left = int(remaining) if remaining is not None and str(remaining).isdigit() else None
        if left is not None and left < COPERNIQ_DAILY_RESERVE:
            return Finding(
                "phase_updated_at",
                PHASE_ASSUMPTION,
                f"not checked: only {left} Coperniq calls left today (kept for the sync)",
                "-",
                NOT_CHECKED,
            )
        candidates = [p for p in projects if isinstance(p, Mapping) and isinstance(p.get("phase"), Mapping)]
        if not candidates:
            return Finding(
                "phase_updated_at",
                PHASE_ASSUMPTION,
                "not checked: no project on Workflows 2.0 phases among the newest 100",
                "-",
                NOT_CHECKED,
            )

        def age(p: Mapping[str, Any]) -> float:
            days = p["phase"].get("timeInStageDays")
            return float(days) if isinstance(days, (int, float)) else float("inf")

        candidates.sort(key=age)
        checked = starts = 0
        for project in candidates:
            if self.calls() >= self.max_calls:
                break
            try:
                detail = self.coperniq.get(f"/projects/{project['id']}") or {}
            except Exception as exc:
                if not is_api_error(exc):
                    raise
                if api_status(exc) == 404:  # deleted or archived since the list call
                    continue
                break
            checked += 1
            updated = as_datetime(detail.get("updatedAt") or project.get("updatedAt"))
            for inst in detail.get("phaseInstances") or []:
                started = as_datetime(inst.get("startedAt")) if isinstance(inst, Mapping) else None
                if started is None or updated is None:
                    continue
                starts += 1
                if started > updated + UPDATED_AT_SLACK:
                    return Finding(
                        "phase_updated_at",
                        PHASE_ASSUMPTION,
                        f"project {project['id']}: phase {inst.get('name')!r} started {short_time(started)}, "
                        f"after its updatedAt {short_time(updated)}",
                        sweeps,
                        DIFFERS,
                    )
        if not starts:
            return Finding(
                "phase_updated_at",
                PHASE_ASSUMPTION,
                f"not checked: no phase start among {checked} project(s)",
                "-",
                NOT_CHECKED,
            )
        return Finding(
            "phase_updated_at",
            PHASE_ASSUMPTION,
            f"{starts} phase start(s) in {checked} project(s), none after "
            "the project's updatedAt: consistent with bumping (not proven)",
            bumps,
            OK,
        )


def missing_key_findings(env_file: Path) -> list[Finding]:
    """The two Coperniq rows when no key is configured: no answer to read, and a sync that cannot start."""
    missing = "not checked: no Coperniq API key configured"
    return [
        Finding(
            "rate_limit_headers",
            HEADERS_ASSUMPTION,
            missing,
            "-",
            BLOCKS,
            f"no Coperniq API key: set TAP_COPERNIQ_API_KEY (or COPERNIQ_QBO_COPERNIQ_API_KEY) in {env_file}",
        ),
        Finding("phase_updated_at", PHASE_ASSUMPTION, missing, "-", NOT_CHECKED),
    ]
