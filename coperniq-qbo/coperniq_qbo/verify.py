"""`coperniq-qbo verify`: a live pre-flight against the real Merge and Coperniq accounts, run before the first sync.

The sandboxes run every behaviour the public docs leave open in two readings (sandbox/profiles.py: optimistic and
pessimistic). The product is built to be correct under both, but which one is true decides how fast things
arrive, and a few answers (a linked account that needs re-linking, no passthrough on the Merge plan) mean the
sync cannot run at all. verify asks the real services the questions that can be asked safely and prints, per
assumption, what it saw and what the product will do about it.

Read-only unless `--write-probe` (one clearly named test customer, archived again). Coperniq calls are capped
(`--max-coperniq-calls`, default 25 of the key's 5,000 a day) and the number used is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import textwrap
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from coperniq_qbo.console import Console, utc_text
from coperniq_qbo.env import read_env_file
from coperniq_qbo.errors import EXIT_NOT_CONNECTED, EXIT_OK, api_message, api_status, is_api_error
from coperniq_qbo.merge_api import fetch_sync_status, merge_client, summarize_sync_status
from coperniq_qbo.settings import Settings
from sync_ledger import ApiClient
from sync_ledger.passthrough import QBO_MINOR, QBO_REALM, passthrough_answer, passthrough_body
from target_quickbooks_merge.settings import parse_dt

DEFAULT_COPERNIQ_URL = "https://api.coperniq.io/v1"
# The forward leg's tap reads TAP_COPERNIQ_*, the reverse leg's target TARGET_COPERNIQ_*; the same key serves both.
COPERNIQ_KEY_VARS = ("COPERNIQ_QBO_COPERNIQ_API_KEY", "TAP_COPERNIQ_API_KEY", "TARGET_COPERNIQ_API_KEY")
COPERNIQ_URL_VARS = ("COPERNIQ_QBO_COPERNIQ_API_URL", "TAP_COPERNIQ_API_URL", "TARGET_COPERNIQ_API_URL")
DEFAULT_MAX_COPERNIQ_CALLS = 25
COPERNIQ_DAILY_RESERVE = 100  # below this many calls left today, the phase check leaves them to the sync


# A phase start this much later than the project's updatedAt cannot be write-ordering noise of one change.
UPDATED_AT_SLACK = timedelta(seconds=60)

OK, DIFFERS, BLOCKS, NOT_CHECKED = "as assumed", "differs", "blocks", "not checked"


@dataclass
class Finding:
    """One row of the report; `blocker` is set when this answer means the sync cannot run (one line, why)."""

    key: str
    assumption: str
    saw: str
    product: str
    outcome: str
    blocker: str | None = None


# ----------------------------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------
def _when(value: Any) -> datetime | None:
    """ISO-8601 (Z, offsets, QBO's -07:00) to an aware datetime; None when absent or unreadable."""
    if not value:
        return None
    try:
        return parse_dt(str(value))
    except ValueError:
        return None


def _short(dt: datetime | None) -> str:
    """A time for a table cell, "-" when unknown."""
    return utc_text(dt) if dt else "-"


def _fault_text(inner: Any) -> str:
    """First QBO Fault message of a passthrough answer, for one table cell."""
    if isinstance(inner, Mapping):
        fault = inner.get("Fault") or {}
        errors = fault.get("Error") if isinstance(fault, Mapping) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
            err = errors[0]
            return " ".join(str(err.get(k)) for k in ("code", "Message") if err.get(k)) or "fault"
    return str(inner)[:120] if inner not in (None, "") else "no body"


def _is_plan_error(status: int | None, message: str) -> bool:
    """Merge refuses passthrough itself (not QuickBooks) when the plan does not include it."""
    text = message.lower()
    return status in (403, 404) or (
        "passthrough" in text and any(w in text for w in ("plan", "not available", "not enabled"))
    )


# ----------------------------------------------------------------------------------------------------------
# the checks
# ----------------------------------------------------------------------------------------------------------
class Verifier:
    """Runs the checks in order; later checks skip themselves when an earlier answer makes them meaningless."""

    def __init__(
        self, settings: Settings, merge: ApiClient, coperniq: ApiClient | None, *, max_coperniq_calls: int
    ) -> None:
        self.settings = settings
        self.merge = merge
        self.coperniq = coperniq
        self.max_coperniq_calls = max_coperniq_calls
        self.merge_ok = True  # Merge answered with this key and token
        self.can_write = True  # the linked account accepts writes (not RELINK_NEEDED / INCOMPLETE)
        self.passthrough_ok = False

    # -- Merge ------------------------------------------------------------------------------------------
    def linked_account(self) -> Finding:
        assumption = "Merge linked account status is COMPLETE"
        try:
            details = self.merge.get("/account-details") or {}
        except Exception as exc:
            if not is_api_error(exc):
                raise
            self.merge_ok = self.can_write = False
            status = api_status(exc)
            if status in (401, 403, 404):
                return Finding(
                    "linked_account",
                    assumption,
                    f"Merge rejected the API key or account token (HTTP {status})",
                    "cannot sync: link QuickBooks again with `coperniq-qbo connect`",
                    BLOCKS,
                    f"Merge rejects the API key or account token (HTTP {status}): run `coperniq-qbo connect`",
                )
            return Finding(
                "linked_account",
                assumption,
                f"no answer from Merge: {api_message(exc)}",
                "cannot sync until Merge answers",
                BLOCKS,
                f"cannot reach Merge at {self.settings.base_url}",
            )
        account_status = str(details.get("status") or "?").upper()
        company = details.get("end_user_organization_name") or "?"
        saw = f"{account_status} ({company}, {details.get('integration') or '?'})"
        if account_status == "COMPLETE":
            return Finding("linked_account", assumption, saw, "syncs", OK)
        if account_status in ("RELINK_NEEDED", "INCOMPLETE"):
            self.can_write = False
            return Finding(
                "linked_account",
                assumption,
                saw,
                "cannot sync: QuickBooks refuses Merge until the account is re-linked (`coperniq-qbo connect`)",
                BLOCKS,
                f"the Merge linked account is {account_status}: re-link it with `coperniq-qbo connect`",
            )
        if account_status == "IDLE":
            return Finding(
                "linked_account",
                assumption,
                saw,
                "syncs (reported only: `status` counts IDLE as "
                "connected); Merge may refresh its copy of QuickBooks less often",
                DIFFERS,
            )
        return Finding("linked_account", assumption, saw, "tries to sync (status not known to the product)", DIFFERS)

    def _passthrough(self, method: str, qbo_path: str) -> tuple[int, Any]:
        """(QuickBooks status, QuickBooks body) of one passthrough call, built as the target builds them."""
        return passthrough_answer(self.merge.post("/passthrough", json=passthrough_body(method, qbo_path)))

    def passthrough(self) -> Finding:
        assumption = "Merge passthrough reaches QuickBooks (realmId path: GET companyinfo)"
        if not self.merge_ok:
            return Finding("passthrough", assumption, "not checked: Merge did not answer", "-", NOT_CHECKED)
        try:
            status, inner = self._passthrough("GET", f"/companyinfo/{QBO_REALM}?{QBO_MINOR}")
        except Exception as exc:
            if not is_api_error(exc):
                raise
            code, message = api_status(exc), api_message(exc)
            if _is_plan_error(code, message):
                return Finding(
                    "passthrough",
                    assumption,
                    f"Merge refused passthrough (HTTP {code})",
                    "passthrough not on this Merge plan: jobs (sub-customers) cannot be created",
                    BLOCKS,
                    "passthrough is not on this Merge plan: jobs (sub-customers) cannot be created",
                )
            return Finding(
                "passthrough",
                assumption,
                f"passthrough failed: {message}",
                "jobs (sub-customers) cannot be created until passthrough works",
                BLOCKS,
                f"Merge passthrough failed (HTTP {code})",
            )
        if status < 400 and isinstance(inner, Mapping) and isinstance(inner.get("CompanyInfo"), Mapping):
            self.passthrough_ok = True
            info = inner["CompanyInfo"]
            return Finding(
                "passthrough",
                assumption,
                f"HTTP {status}: CompanyInfo of {info.get('CompanyName') or info.get('LegalName') or '?'}",
                "creates jobs (sub-customers) through passthrough",
                OK,
            )
        saw = f"QuickBooks answered HTTP {status}: {_fault_text(inner)}"
        if status == 401:  # the account-status row already says so when the account needs re-linking
            return Finding(
                "passthrough",
                assumption,
                saw,
                "cannot create jobs: QuickBooks refuses Merge's credentials (re-link with `coperniq-qbo connect`)",
                BLOCKS,
                None
                if not self.can_write
                else "QuickBooks refuses Merge's credentials: re-link with `coperniq-qbo connect`",
            )
        if status in (403, 404):
            return Finding(
                "passthrough",
                assumption,
                saw,
                "cannot create jobs: the realmId path the product uses does not answer",
                BLOCKS,
                f"the passthrough realmId path answers HTTP {status}: jobs (sub-customers) cannot be created",
            )
        self.passthrough_ok = status < 400  # e.g. a company whose CompanyInfo is odd: passthrough itself works
        return Finding(
            "passthrough",
            assumption,
            saw,
            "creates jobs through passthrough; check the answer above if job creation fails",
            DIFFERS,
        )

    def job_visibility(self) -> Finding:
        assumption = "A job written through passthrough is in Merge's /contacts at once"
        if not self.passthrough_ok:
            return Finding("job_visibility", assumption, "not checked: passthrough unavailable", "-", NOT_CHECKED)
        query = "select * from Customer where Job = true ORDERBY MetaData.CreateTime DESC MAXRESULTS 1"
        try:
            status, inner = self._passthrough("GET", f"/query?query={quote(query)}&{QBO_MINOR}")
        except Exception as exc:
            if not is_api_error(exc):
                raise
            return Finding(
                "job_visibility", assumption, f"not checked: the job query failed: {api_message(exc)}", "-", NOT_CHECKED
            )
        jobs = ((inner or {}).get("QueryResponse") or {}).get("Customer") if isinstance(inner, Mapping) else None
        if status >= 400 or not jobs:
            saw = (
                "not checked: no job (sub-customer) in QuickBooks yet"
                if status < 400
                else f"not checked: the job query answered HTTP {status}: {_fault_text(inner)}"
            )
            return Finding(
                "job_visibility",
                assumption,
                saw,
                "invoices of a new job go once Merge lists it (at "
                "once, or after Merge's next sync); run verify again after the first job exists",
                NOT_CHECKED,
            )
        job = jobs[0]
        qbo_id = str(job.get("Id"))
        created = _when((job.get("MetaData") or {}).get("CreateTime"))
        try:
            page = self.merge.get("/contacts", params={"remote_id": qbo_id, "is_customer": "true"}) or {}
            try:
                last_sync = _when(
                    summarize_sync_status(fetch_sync_status(self.merge, max_pages=2)).get("last_sync_finished")
                )
            except Exception as exc:  # sync-status only qualifies the answer
                if not is_api_error(exc):
                    raise
                last_sync = None
        except Exception as exc:
            if not is_api_error(exc):
                raise
            return Finding(
                "job_visibility", assumption, f"not checked: GET /contacts failed: {api_message(exc)}", "-", NOT_CHECKED
            )
        listed = [c for c in page.get("results") or [] if str(c.get("remote_id")) == qbo_id]
        after_sync = created is not None and last_sync is not None and created > last_sync
        when = f"created {_short(created)}, Merge's last sync {_short(last_sync)}"
        if listed:
            if after_sync:
                return Finding(
                    "job_visibility",
                    assumption,
                    f"job {qbo_id} ({when}) is listed in /contacts before Merge's next sync",
                    "links a new job in the same run: its invoices go at once",
                    OK,
                )
            return Finding(
                "job_visibility",
                assumption,
                f"job {qbo_id} ({when}) is listed in /contacts; it is "
                "older than Merge's last sync, so this does not prove new jobs appear at once",
                "links a new job as soon as Merge lists it (if only after Merge's next sync, invoices "
                "of new jobs wait a run)",
                OK,
            )
        if after_sync or last_sync is None:
            return Finding(
                "job_visibility",
                assumption,
                f"job {qbo_id} ({when}) is not in /contacts yet",
                "Merge lists passthrough-created jobs only after its next sync: invoices of new jobs wait a run",
                DIFFERS,
            )
        return Finding(
            "job_visibility",
            assumption,
            f"job {qbo_id} ({when}) is not in /contacts even after Merge synced",
            "invoices of jobs Merge does not list wait (logged as skipped); ask Merge whether "
            "it syncs QuickBooks sub-customers",
            DIFFERS,
        )

    def write_probe(self) -> Finding:
        assumption = "Merge honours Idempotency-Key on POST /contacts"
        if not self.can_write:
            return Finding("idempotency", assumption, "not checked: the linked account cannot write", "-", NOT_CHECKED)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")  # QuickBooks names may hold no colon
        name = f"coperniq-qbo verify probe {stamp}"
        key = f"coperniq-qbo-verify-{uuid.uuid4()}"
        body = {"model": {"name": name, "is_customer": True, "is_supplier": False}}

        def send() -> Any:
            return self.merge.request(
                "POST", "/contacts", json=body, headers={"Idempotency-Key": key}, retry_ambiguous=False
            )

        created: list[dict[str, Any]] = []
        try:
            first = send()
        except Exception as exc:
            if not is_api_error(exc):
                raise
            if getattr(exc, "ambiguous", False):
                created += self._contacts_named(name)
            cleanup = self._archive(created, name)
            return Finding(
                "idempotency",
                assumption,
                f"not checked: the probe create failed: {api_message(exc)}{cleanup}",
                "looks records up by natural key after a lost answer (no duplicates either way)",
                NOT_CHECKED,
            )
        model = (first.json() or {}).get("model") or {}
        created.append(model)
        try:
            second = send()
        except Exception as exc:
            if not is_api_error(exc):
                raise
            text = api_message(exc).lower()
            if "idempotency key reuse" in text:
                saw, outcome = "the re-send was refused as a key reuse (the key is recognised)", OK
            elif "6240" in text or "duplicate name" in text:
                saw, outcome = "the re-send was treated as a second create (QuickBooks: duplicate name)", DIFFERS
            else:
                saw, outcome = f"inconclusive: the re-send failed: {api_message(exc)}", NOT_CHECKED
        else:
            again = (second.json() or {}).get("model") or {}
            replayed = str(second.headers.get("Idempotent-Replayed") or "").lower() == "true"
            if replayed or (again.get("id") and again.get("id") == model.get("id")):
                saw = "the re-send returned the same customer" + (" (Idempotent-Replayed: true)" if replayed else "")
                outcome = OK
            else:
                created.append(again)
                saw, outcome = "the re-send created a second customer", DIFFERS
        saw += self._archive(created, name)
        product = (
            "Idempotency-Key honoured: a create whose answer was lost is replayed, not repeated"
            if outcome == OK
            else "not honoured: the product looks records up by natural key after a lost answer (no duplicates "
            "either way)"
        )
        return Finding("idempotency", assumption, saw, product, outcome)

    def _contacts_named(self, name: str) -> list[dict[str, Any]]:
        try:
            return list((self.merge.get("/contacts", params={"name": name}) or {}).get("results") or [])
        except Exception as exc:
            if not is_api_error(exc):
                raise
            return []

    def _archive(self, created: list[dict[str, Any]], name: str) -> str:
        """Deactivate what the probe made (Merge PATCH status ARCHIVED, else passthrough Active=false); the text
        names anything left behind so it can be removed by hand."""
        seen: set[str] = set()
        done = failed = 0
        for model in created:
            merge_id = str(model.get("id") or "")
            if not merge_id or merge_id in seen:
                continue
            seen.add(merge_id)
            if self._archive_one(merge_id, str(model.get("remote_id") or "")):
                done += 1
            else:
                failed += 1
        if failed:
            return f"; could not archive {failed} probe customer(s) named {name!r}: make them inactive in QuickBooks"
        return f"; archived the probe customer{'s' if done > 1 else ''} {name!r}" if done else ""

    def _archive_one(self, merge_id: str, remote_id: str) -> bool:
        try:
            self.merge.patch(f"/contacts/{merge_id}", json={"model": {"status": "ARCHIVED"}})
            return True
        except Exception as exc:
            if not is_api_error(exc):
                raise
        if not remote_id:
            return False
        try:  # QuickBooks itself: a sparse update needs the current SyncToken
            status, inner = self._passthrough("GET", f"/customer/{remote_id}?{QBO_MINOR}")
            customer = (inner or {}).get("Customer") if status < 400 and isinstance(inner, Mapping) else None
            if not isinstance(customer, Mapping):
                return False
            update = {"Id": customer["Id"], "SyncToken": customer.get("SyncToken"), "sparse": True, "Active": False}
            out = self.merge.post("/passthrough", json=passthrough_body("POST", f"/customer?{QBO_MINOR}", update))
            return passthrough_answer(out)[0] < 400
        except Exception as exc:
            if not is_api_error(exc):
                raise
            return False

    # -- Coperniq ---------------------------------------------------------------------------------------
    def coperniq_calls(self) -> int:
        return sum(self.coperniq.calls.values()) if self.coperniq is not None else 0

    def coperniq_checks(self) -> list[Finding]:
        """Rate-limit headers from the project list call, then phase starts vs updatedAt from a few projects."""
        headers_assumption = "Coperniq responses carry X-RateLimit-Remaining"
        phase_assumption = "A phase change bumps the Coperniq project's updatedAt"
        coperniq = self.coperniq
        if coperniq is None:  # run_verify adds this check only when a Coperniq key is configured
            return []
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
                    "rate_limit_headers", headers_assumption, saw, "cannot sync until Coperniq answers", BLOCKS, blocker
                ),
                Finding("phase_updated_at", phase_assumption, "not checked: Coperniq did not answer", "-", NOT_CHECKED),
            ]
        remaining = resp.headers.get("X-RateLimit-Remaining")
        limit = resp.headers.get("X-RateLimit-Limit")
        if remaining is not None:
            rate = Finding(
                "rate_limit_headers",
                headers_assumption,
                f"X-RateLimit-Remaining: {remaining}" + (f" (X-RateLimit-Limit: {limit})" if limit else ""),
                "logs the calls left from the header and warns when under 10% of the day is left",
                OK,
            )
        else:
            rate = Finding(
                "rate_limit_headers",
                headers_assumption,
                "no X-RateLimit-Remaining on GET /projects",
                "counts its own calls",
                DIFFERS,
            )
        listed = projects if isinstance(projects, list) else []
        return [rate, self._phase_check(coperniq, phase_assumption, listed, remaining)]

    def _phase_check(self, coperniq: ApiClient, assumption: str, projects: list[Any], remaining: str | None) -> Finding:
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
                assumption,
                f"not checked: only {left} Coperniq calls left today (kept for the sync)",
                "-",
                NOT_CHECKED,
            )
        candidates = [p for p in projects if isinstance(p, Mapping) and isinstance(p.get("phase"), Mapping)]
        if not candidates:
            return Finding(
                "phase_updated_at",
                assumption,
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
            if self.coperniq_calls() >= self.max_coperniq_calls:
                break
            try:
                detail = coperniq.get(f"/projects/{project['id']}") or {}
            except Exception as exc:
                if not is_api_error(exc):
                    raise
                if api_status(exc) == 404:  # deleted or archived since the list call
                    continue
                break
            checked += 1
            updated = _when(detail.get("updatedAt") or project.get("updatedAt"))
            for inst in detail.get("phaseInstances") or []:
                started = _when(inst.get("startedAt")) if isinstance(inst, Mapping) else None
                if started is None or updated is None:
                    continue
                starts += 1
                if started > updated + UPDATED_AT_SLACK:
                    return Finding(
                        "phase_updated_at",
                        assumption,
                        f"project {project['id']}: phase {inst.get('name')!r} started {_short(started)}, "
                        f"after its updatedAt {_short(updated)}",
                        sweeps,
                        DIFFERS,
                    )
        if not starts:
            return Finding(
                "phase_updated_at",
                assumption,
                f"not checked: no phase start among {checked} project(s)",
                "-",
                NOT_CHECKED,
            )
        return Finding(
            "phase_updated_at",
            assumption,
            f"{starts} phase start(s) in {checked} project(s), none after "
            "the project's updatedAt: consistent with bumping (not proven)",
            bumps,
            OK,
        )


# ----------------------------------------------------------------------------------------------------------
# command
# ----------------------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    """verify's own flags (the connection flags come from the parser every command shares)."""
    p.add_argument(
        "--write-probe",
        action="store_true",
        help="also create one test customer in QuickBooks (archived again) to see whether Merge "
        "honours Idempotency-Key",
    )
    p.add_argument(
        "--coperniq-api-url",
        dest="coperniq_api_url",
        help=f"Coperniq API base URL (default: COPERNIQ_QBO_COPERNIQ_API_URL, TAP_COPERNIQ_API_URL, "
        f"else {DEFAULT_COPERNIQ_URL})",
    )
    p.add_argument(
        "--coperniq-api-key",
        dest="coperniq_api_key",
        help="Coperniq API key (prefer TAP_COPERNIQ_API_KEY in .env: flags show up in `ps`)",
    )
    p.add_argument(
        "--max-coperniq-calls",
        dest="max_coperniq_calls",
        type=int,
        default=DEFAULT_MAX_COPERNIQ_CALLS,
        help=f"ceiling on Coperniq calls (default {DEFAULT_MAX_COPERNIQ_CALLS}; the key allows 5,000 a day)",
    )
    p.add_argument("--format", choices=["text", "json"], default="text")


def run_verify(args: argparse.Namespace, settings: Settings, con: Console) -> int:
    """All checks, the table, then exit 0 (the sync can run) or 1 with one line saying why it cannot."""
    merge = merge_client(settings, account=True)
    key, url = coperniq_settings(args, settings, getattr(args, "environ", None))
    con.add_secret(key)
    coperniq = coperniq_client(key, url) if key else None
    v = Verifier(settings, merge, coperniq, max_coperniq_calls=max(2, int(args.max_coperniq_calls)))
    checks: list[Callable[[], Finding | list[Finding]]] = [v.linked_account, v.passthrough, v.job_visibility]
    if coperniq is not None:
        checks.append(v.coperniq_checks)
    findings: list[Finding] = []
    for check in checks:
        got = check()
        findings += got if isinstance(got, list) else [got]
    if coperniq is None:
        missing = "not checked: no Coperniq API key configured"
        findings += [
            Finding(
                "rate_limit_headers",
                "Coperniq responses carry X-RateLimit-Remaining",
                missing,
                "-",
                BLOCKS,
                f"no Coperniq API key: set TAP_COPERNIQ_API_KEY (or "
                f"COPERNIQ_QBO_COPERNIQ_API_KEY) in {settings.env_file}",
            ),
            Finding(
                "phase_updated_at", "A phase change bumps the Coperniq project's updatedAt", missing, "-", NOT_CHECKED
            ),
        ]
    if args.write_probe:
        findings.append(v.write_probe())
    else:
        findings.append(
            Finding(
                "idempotency",
                "Merge honours Idempotency-Key on POST /contacts",
                "not checked (read-only; run with --write-probe)",
                "looks records up by natural key after a lost answer either way (no duplicates)",
                NOT_CHECKED,
            )
        )
    calls = {
        "coperniq": v.coperniq_calls(),
        "coperniq_budget": v.max_coperniq_calls,
        "merge": sum(merge.calls.values()),
    }
    blockers = [f.blocker for f in findings if f.blocker]
    if args.format == "json":
        con.say(
            json.dumps(
                {
                    "can_run": not blockers,
                    "blockers": blockers,
                    "calls": calls,
                    "coperniq_api_url": url,
                    "merge_base_url": settings.base_url,
                    "findings": [asdict(f) for f in findings],
                },
                indent=2,
            )
        )
    else:
        con.say(render_table(findings))
        con.say(
            f"Calls used: Coperniq {calls['coperniq']} (ceiling {calls['coperniq_budget']}; the key allows "
            f"5,000 a day), Merge {calls['merge']}."
        )
    if blockers:
        con.warn("coperniq-qbo verify: the sync cannot run: " + "; ".join(blockers))
        return EXIT_NOT_CONNECTED
    if args.format != "json":
        con.say("verify: the sync can run.")
    return EXIT_OK


COLUMNS = (("ASSUMPTION", 30), ("WHAT IT SAW", 48), ("WHAT THE PRODUCT WILL DO", 48))


def render_table(findings: list[Finding]) -> str:
    """Wrapped cells, so long answers stay readable in an 80-130 column terminal and paste into a ticket."""
    lines = [" | ".join(h.ljust(w) for h, w in COLUMNS).rstrip(), "-+-".join("-" * w for _, w in COLUMNS)]
    for f in findings:
        saw = f.saw if f.outcome in (OK, NOT_CHECKED) else f"[{f.outcome}] {f.saw}"
        cells = [
            textwrap.wrap(text, width) or ["-"]
            for text, (_, width) in zip((f.assumption, saw, f.product), COLUMNS, strict=True)
        ]
        lines.extend(
            " | ".join((c[i] if i < len(c) else "").ljust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True)).rstrip()
            for i in range(max(len(c) for c in cells))
        )
        lines.append("-+-".join("-" * w for _, w in COLUMNS))
    return "\n".join(lines)
