"""The Merge/QuickBooks half of `coperniq-qbo verify`: the linked account, passthrough, and job visibility.

These are the answers that decide whether the forward leg can write to QuickBooks at all (a linked account that
needs re-linking, no passthrough on the Merge plan) and how soon a job created through passthrough can carry
invoices. They are kept apart from the Coperniq checks (verify_coperniq) and from the write probe (verify_probe)
because they share state of their own: `MergeChecks` records what Merge answered so that later checks skip
themselves, and the write probe reads `can_write` from it before it writes anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from coperniq_qbo.errors import api_message, api_status, is_api_error
from coperniq_qbo.merge_api import fetch_sync_status, summarize_sync_status
from coperniq_qbo.settings import Settings
from coperniq_qbo.verify_report import BLOCKS, DIFFERS, NOT_CHECKED, OK, Finding, as_datetime, short_time
from sync_ledger import ApiClient
from sync_ledger.passthrough import QBO_MINOR, QBO_REALM, passthrough_answer, passthrough_body


def qbo_passthrough(merge: ApiClient, method: str, qbo_path: str) -> tuple[int, Any]:
    """(QuickBooks status, QuickBooks body) of one passthrough call, built as the target builds them."""
    return passthrough_answer(merge.post("/passthrough", json=passthrough_body(method, qbo_path)))


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


class MergeChecks:
    """The Merge checks, run in order; later ones skip themselves when an earlier answer makes them meaningless."""

    def __init__(self, settings: Settings, merge: ApiClient) -> None:
        self.settings = settings
        self.merge = merge
        self.merge_ok = True  # Merge answered with this key and token
        self.can_write = True  # the linked account accepts writes (not RELINK_NEEDED / INCOMPLETE)
        self.passthrough_ok = False

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

    def passthrough(self) -> Finding:
        assumption = "Merge passthrough reaches QuickBooks (realmId path: GET companyinfo)"
        if not self.merge_ok:
            return Finding("passthrough", assumption, "not checked: Merge did not answer", "-", NOT_CHECKED)
        try:
            status, inner = qbo_passthrough(self.merge, "GET", f"/companyinfo/{QBO_REALM}?{QBO_MINOR}")
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
            status, inner = qbo_passthrough(self.merge, "GET", f"/query?query={quote(query)}&{QBO_MINOR}")
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
        created = as_datetime((job.get("MetaData") or {}).get("CreateTime"))
        try:
            page = self.merge.get("/contacts", params={"remote_id": qbo_id, "is_customer": "true"}) or {}
            try:
                last_sync = as_datetime(
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
        when = f"created {short_time(created)}, Merge's last sync {short_time(last_sync)}"
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
