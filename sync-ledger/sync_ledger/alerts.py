"""Slack-compatible webhook alerts for scheduled runs, shared by both targets.

Each alert kind has one state per company and leg in the ledger's meta table (`alert:<kind>:<leg>`, e.g.
`alert:run_failed:forward`): a run decides for each kind whether its condition holds (firing), is over (clear) or
cannot be told from this run (unknown, e.g. the failed-row count of a run that stopped early), and one message is
sent per change of state: when the condition starts and when it clears, never once per run. The state changes only
once the webhook took the message (2xx), so a message the webhook did not take is sent again by the next run; a
webhook that fails never fails the run. Every text goes through `redact` with the run's secrets, and a failed POST
is logged without the URL (the URL is itself a secret: Slack's carries the token).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from .util import redact, utcnow

__all__ = [
    "ALERT_KINDS",
    "ALERT_PROPERTIES",
    "AlertSettings",
    "RunOutcome",
    "evaluate",
    "quota_stopped_streams",
]

ALERT_KINDS = ("run_failed", "failed_rows", "account_disconnected", "coperniq_quota")
META_PREFIX = "alert:"
TIMEOUT = 10.0  # seconds for the webhook's answer; a slower one counts as failed (sent again next run)
#: run statuses (ledger runs.status) of a run that ended as it should, with or without failed rows
COMPLETED = ("success", "partial")
STOPPED = ("failed", "refused")

log = logging.getLogger(__name__)

#: The alert settings of both targets, as JSON-schema properties (merged into each target's config_jsonschema).
ALERT_PROPERTIES: dict[str, dict[str, Any]] = {
    "alert_webhook_url": {
        "type": ["string", "null"],
        "secret": True,
        "writeOnly": True,
        "description": "Slack-compatible incoming webhook (https://hooks.slack.com/services/...): one message when a "
        "condition of `alert_on` starts and one when it clears, never one per run. A secret: never printed. "
        "Unset: no alerts.",
    },
    "alert_on": {
        "type": ["array", "null"],
        "items": {"type": "string"},
        "default": list(ALERT_KINDS),
        "description": "Conditions that alert, of " + ", ".join(ALERT_KINDS) + " (default: all).",
    },
    "alert_failed_rows_threshold": {
        "type": ["integer", "null"],
        "default": 1,
        "description": "failed_rows alerts when a run ends with at least this many failed rows (default 1).",
    },
}


@dataclass(frozen=True)
class AlertSettings:
    """The validated alert settings of a target."""

    webhook_url: str | None = None
    alert_on: tuple[str, ...] = ALERT_KINDS
    failed_rows_threshold: int = 1

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.webhook_url,) if self.webhook_url else ()

    @classmethod
    def from_config(cls, config: Mapping[str, Any], errors: list[str]) -> AlertSettings:
        """Parse the alert settings; a bad value is appended to `errors`, naming the setting (never the URL)."""
        url = config.get("alert_webhook_url")
        if url is not None and not isinstance(url, str):
            errors.append("alert_webhook_url: must be an http(s) URL")
            url = None
        url = (url or "").strip() or None
        if url is not None and not url.lower().startswith(("https://", "http://")):
            errors.append("alert_webhook_url: must be an http(s) URL (value hidden)")
            url = None
        kinds = config.get("alert_on")
        if kinds is None:
            kinds = ALERT_KINDS
        elif isinstance(kinds, str):
            kinds = [k for k in (part.strip() for part in kinds.split(",")) if k]
        if not isinstance(kinds, list | tuple) or not all(isinstance(k, str) for k in kinds):
            errors.append(f"alert_on: must be a list of {', '.join(ALERT_KINDS)}, got {kinds!r}")
            kinds = ALERT_KINDS
        unknown = [k for k in kinds if k not in ALERT_KINDS]
        if unknown:
            errors.append(
                f"alert_on: unknown condition(s) {', '.join(map(str, unknown))}; valid: {', '.join(ALERT_KINDS)}"
            )
        threshold = config.get("alert_failed_rows_threshold")
        if threshold is None:
            threshold = 1
        if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1:
            errors.append(f"alert_failed_rows_threshold: must be a positive integer, got {threshold!r}")
            threshold = 1
        return cls(url, tuple(k for k in ALERT_KINDS if k in kinds), threshold)


@dataclass(frozen=True)
class RunOutcome:
    """What a finished (or refused) run tells the alerts. None: this run cannot tell (the state is kept)."""

    leg: str  # forward | reverse
    run_id: str | None
    status: str  # the ledger's run status: success, partial, failed, refused, no-input
    failed_rows: int | None = None
    reason: str | None = None  # why the run failed or was refused
    #: the account is disconnected (the reason), "" when this run shows it is connected, None: cannot tell
    disconnected: str | None = None
    #: streams the Coperniq daily quota stopped mid-read (forward: from the tap's last STATE); None: no STATE seen
    quota_stopped: tuple[str, ...] | None = None


def quota_stopped_streams(state: Any) -> tuple[str, ...]:
    """Streams whose state in a tap-coperniq STATE value has `resume`: the daily quota stopped their read mid-list
    (tap-coperniq `on_quota_stop`), in the stream's own state or in one of its partitions'."""
    bookmarks = state.get("bookmarks") if isinstance(state, Mapping) else None
    if not isinstance(bookmarks, Mapping):
        return ()
    stopped = []
    for stream, stream_state in bookmarks.items():
        if not isinstance(stream_state, Mapping):
            continue
        partitions = stream_state.get("partitions")
        parts = [p for p in partitions if isinstance(p, Mapping)] if isinstance(partitions, list) else []
        if stream_state.get("resume") is not None or any(p.get("resume") is not None for p in parts):
            stopped.append(str(stream))
    return tuple(stopped)


def evaluate(
    ledger: Any,
    settings: AlertSettings,
    outcome: RunOutcome,
    *,
    company: str | None = None,
    secrets: Iterable[str] = (),
    dry_run: bool = False,
    logger: logging.Logger | None = None,
) -> list[str]:
    """Send a message for each alert kind whose state this run changes, and store the new state once sent.
    Returns the texts sent. Never raises: an alert must not fail the run."""
    logger = logger or log
    if dry_run or not settings.webhook_url:
        return []
    hidden = (*secrets, *settings.secrets)
    sent: list[str] = []
    for kind in settings.alert_on:
        try:
            text = _transition(ledger, settings, outcome, kind, company, hidden, logger)
        except Exception as exc:  # noqa: BLE001 - never fail the run because of an alert
            logger.warning("WARNING: alert %s not evaluated: %s", kind, redact(str(exc), hidden))
            continue
        if text is not None:
            sent.append(text)
    return sent


def _transition(
    ledger: Any,
    settings: AlertSettings,
    outcome: RunOutcome,
    kind: str,
    company: str | None,
    secrets: tuple[str, ...],
    logger: logging.Logger,
) -> str | None:
    firing = _condition(kind, outcome, settings)
    if firing is None:
        return None
    key = f"{META_PREFIX}{kind}:{outcome.leg}"
    stored = _stored(ledger.get_meta(key))
    if firing == (stored is not None):
        return None
    text = redact(_message(kind, firing, outcome, settings, company, stored), secrets)
    if not _post(settings.webhook_url or "", text, kind, logger, secrets):
        return None
    if firing:
        since = utcnow().isoformat(timespec="seconds") + "Z"
        ledger.set_meta(key, json.dumps({"state": "firing", "since": since, "run_id": outcome.run_id}))
    else:
        ledger.set_meta(key, None)
    logger.info("alert %s %s sent (%s run %s)", kind, "firing" if firing else "resolved", outcome.leg, outcome.run_id)
    return text


def _condition(kind: str, outcome: RunOutcome, settings: AlertSettings) -> bool | None:
    """Does the condition hold after this run (True), is it over (False), or can this run not tell (None)?"""
    completed = outcome.status in COMPLETED
    if kind == "run_failed":
        return True if outcome.status in STOPPED else (False if completed else None)
    if kind == "failed_rows":
        if outcome.failed_rows is None or outcome.status in STOPPED:
            return None
        return outcome.failed_rows >= settings.failed_rows_threshold
    if kind == "account_disconnected":
        if outcome.disconnected:
            return True
        return False if completed or outcome.disconnected == "" else None
    if kind == "coperniq_quota":
        return None if outcome.quota_stopped is None else bool(outcome.quota_stopped)
    return None


def _stored(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return {"state": "firing"}
    return data if isinstance(data, dict) else {"state": "firing"}


def _message(
    kind: str,
    firing: bool,
    outcome: RunOutcome,
    settings: AlertSettings,
    company: str | None,
    stored: Mapping[str, Any] | None,
) -> str:
    where = f"company {company}, " if company else ""
    run = f"{outcome.leg} run {outcome.run_id or '?'}"
    cli = f" --company {company}" if company else ""
    if not firing:
        since = (stored or {}).get("run_id")
        what = {
            "run_failed": f"the {outcome.leg} sync runs again ({outcome.status})",
            "failed_rows": f"{outcome.failed_rows or 0} failed row(s), under the threshold of "
            f"{settings.failed_rows_threshold}",
            "account_disconnected": "the QuickBooks account is connected again",
            "coperniq_quota": "the Coperniq daily quota no longer stops the tap: every stream was read to the end",
        }[kind]
        first = f" (firing since run {since})" if since else ""
        return f"[coperniq-qbo] RESOLVED {kind}: {where}{run}: {what}{first}. Check: `coperniq-qbo status{cli}`"
    if kind == "run_failed":
        what = f"the run ended {outcome.status}" + (f": {outcome.reason}" if outcome.reason else "")
        look = f"`coperniq-qbo log --run {outcome.run_id} --failed{cli}`"
    elif kind == "failed_rows":
        what = (
            f"{outcome.failed_rows} row(s) failed (threshold {settings.failed_rows_threshold}); they are retried "
            "next run"
        )
        look = f"`coperniq-qbo log --run {outcome.run_id} --failed{cli}`"
    elif kind == "account_disconnected":
        what = f"the QuickBooks account is disconnected: {outcome.disconnected}"
        look = f"`coperniq-qbo status{cli}`, then `coperniq-qbo connect{cli}`"
    else:
        streams = ", ".join(outcome.quota_stopped or ())
        what = (
            f"the Coperniq daily quota stopped tap-coperniq mid-read ({streams}); the next run resumes where it stopped"
        )
        look = f"`coperniq-qbo status{cli}` and `coperniq-qbo runs{cli}`"
    return f"[coperniq-qbo] ALERT {kind}: {where}{run}: {what}. Look deeper: {look}"


def _post(url: str, text: str, kind: str, logger: logging.Logger, secrets: tuple[str, ...]) -> bool:
    """POST {"text": ...}; True when the webhook answered 2xx. A failure is logged without the URL."""
    try:
        response = requests.post(url, json={"text": text}, timeout=TIMEOUT)
    except requests.RequestException as exc:
        why = type(exc).__name__
    else:
        if 200 <= response.status_code < 300:
            return True
        why = f"HTTP {response.status_code}"
    logger.warning(
        "WARNING: the alert webhook did not take the %s alert (%s); it is sent again next run",
        kind,
        redact(why, secrets),
    )
    return False
