"""How Merge (and QuickBooks behind it) reports a refused write: the errors the target reads, their text for the
integration log, and QuickBooks' error codes (a Fault passed on in Merge's `raw_error`, or a passthrough's own).

Apart from merge_client.py so that module stays paths and envelopes.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from sync_ledger import ApiError

__all__ = [
    "QboFault",
    "WriteError",
    "is_duplicate_name",
    "problems_text",
    "provider_codes",
    "qbo_fault_codes",
    "warning_texts",
    "write_error",
]


class WriteError(Exception):
    """A write Merge (or QuickBooks behind it) refused; `detail` is the provider's message for the log."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        duplicate_name: bool = False,
        ambiguous: bool = False,
        codes: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.request_id = request_id
        self.duplicate_name = duplicate_name
        self.ambiguous = ambiguous  # an earlier attempt may have written (see ApiError.ambiguous)
        self.codes = codes  # QuickBooks' error codes, when Merge passed its Fault on (provider_codes)

    @property
    def disconnected(self) -> bool:
        """Merge refused the link itself (401/403, or QuickBooks refused its token: RELINK_NEEDED), so every
        further write would fail the same way."""
        return self.status in (401, 403) or "CREDENTIAL_REFRESH_FAILED" in self.detail


class QboFault(WriteError):
    """QuickBooks itself answered a passthrough call with a Fault; `codes` are its error codes (5010 stale object,
    610 object not found, 6000 business validation, ...)."""

    def __init__(self, detail: str, *, codes: frozenset[str], **kwargs: Any) -> None:
        super().__init__(detail, codes=codes, **kwargs)


def qbo_fault_codes(body: Any) -> frozenset[str]:
    """The error codes of a QuickBooks Fault body ({"Fault": {"Error": [{"code": ...}]}}); empty for anything else."""
    fault = body.get("Fault") if isinstance(body, dict) else None
    errors = fault.get("Error") if isinstance(fault, dict) else None
    return frozenset(str(e["code"]) for e in errors or [] if isinstance(e, dict) and e.get("code"))


def provider_codes(body: Any) -> frozenset[str]:
    """QuickBooks' error codes in a refused Merge write: each problem's `error_code` and the Fault in its
    `raw_error` (Merge's PROVIDER_ERROR passes QuickBooks' answer on)."""
    problems = body.get("errors") if isinstance(body, dict) else None
    codes: set[str] = set()
    for p in problems if isinstance(problems, list) else []:
        if not isinstance(p, dict):
            continue
        if p.get("error_code"):
            codes.add(str(p["error_code"]))
        raw = p.get("raw_error")
        if isinstance(raw, str) and raw.lstrip().startswith("{"):
            with contextlib.suppress(ValueError):  # not JSON after all: no codes from it
                codes |= qbo_fault_codes(json.loads(raw))
    return frozenset(codes)


def problems_text(body: Any) -> str:
    """Human text from Merge's {"errors": [{title, detail, problem_type, raw_error}]} or QBO's Fault envelope."""
    if isinstance(body, dict):
        problems = body.get("errors") or []
        if problems and isinstance(problems, list):
            parts = []
            for p in problems:
                if isinstance(p, dict):
                    bits = [p.get("problem_type"), p.get("title"), p.get("detail"), p.get("raw_error")]
                    parts.append(": ".join(str(b) for b in bits if b))
                else:
                    parts.append(str(p))
            return "; ".join(parts)
        fault = body.get("Fault")
        if isinstance(fault, dict):
            errs = fault.get("Error") or []
            return (
                "; ".join(
                    f"{e.get('code', '')} {e.get('Message', '')}: {e.get('Detail', '')}".strip()
                    for e in errs
                    if isinstance(e, dict)
                )
                or json.dumps(fault)[:500]
            )
        if body.get("detail"):
            return str(body["detail"])
    return (json.dumps(body, default=str) if not isinstance(body, str) else body)[:1000]


def warning_texts(warnings: Any) -> list[str]:
    """Merge's write `warnings` ([{title, detail, source: {pointer}}]) as short texts."""
    out = []
    for w in warnings if isinstance(warnings, list) else []:
        if isinstance(w, dict):
            pointer = (w.get("source") or {}).get("pointer") if isinstance(w.get("source"), dict) else None
            bits = [str(b) for b in (pointer, w.get("title"), w.get("detail")) if b]
            out.append(": ".join(bits) or json.dumps(w, default=str)[:200])
        elif w:
            out.append(str(w)[:200])
    return out


def is_duplicate_name(text: str) -> bool:
    low = text.lower()
    return (
        "6240" in low
        or "duplicate name" in low
        or "name supplied already exists" in low
        or ("already" in low and "displayname" in low.replace(" ", ""))
    )


def write_error(exc: ApiError) -> WriteError:
    """A refused write as the WriteError the reconcile pass reads (QuickBooks' own message when Merge passes one)."""
    text = problems_text(exc.body) if exc.body not in (None, "") else exc.message
    return WriteError(
        text or exc.message,
        status=exc.status,
        request_id=exc.request_id,
        duplicate_name=is_duplicate_name(text or ""),
        ambiguous=exc.ambiguous,
        codes=provider_codes(exc.body),
    )
