"""Sandbox profiles: one switch per API behaviour the public docs leave open, and two named sets of them.

`optimistic` (the default) is each sandbox's original reading of the docs; `pessimistic` turns on the worst
plausible case of every switch. The product must be correct under both. Each switch is documented next to its
ASSUMPTION in sandbox/README.md, with the source that leaves it open.

    CoperniqApp(profile="pessimistic")                       # or a CoperniqAssumptions(...)
    MergeApp(profile="pessimistic", idempotency_keys=True)   # a profile, then single switches on top
    python -m sandbox.merge --profile pessimistic
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

PROFILES = ("optimistic", "pessimistic")


@dataclass(frozen=True)
class MergeAssumptions:
    """What the Merge sandbox assumes of Merge and of the QuickBooks company behind it."""

    #: Merge honours `Idempotency-Key` on common-model POSTs (a beta Merge enables per organisation).
    #: Passthrough never honours it, in either profile.
    idempotency_keys: bool = True
    #: A customer/job written through passthrough shows up in `GET /contacts` only after Merge's next sync.
    passthrough_visible_after_sync: bool = False
    #: QuickBooks numbers customers, vendors and employees separately: a vendor and a customer can share Id 58
    #: (False: one counter for every entity, as the sandbox always did).
    separate_id_spaces: bool = False
    #: The company has employees; their names are DisplayNames too (6240 on a customer create), and Merge's
    #: accounting `/contacts` never lists them.
    employees_hold_names: bool = False
    #: The linked account's status (`GET /account-details`, `/linked-accounts`): COMPLETE, INCOMPLETE,
    #: RELINK_NEEDED or IDLE.
    linked_account_status: str = "COMPLETE"
    #: QuickBooks serves at most this many requests per company at once (Intuit documents 10 per realm and app;
    #: Merge's own sync of the company may hold some); one more gets a 429 at once. 0/None = unlimited. The
    #: starting value of the fault `max_concurrent` (`POST /__admin/faults` changes it at run time).
    max_concurrent: int | None = None
    #: A void done through passthrough (`invoice?operation=void`, `payment?...include=void`) reaches Merge's
    #: common models only at Merge's next sync (False: at once). QuickBooks itself has voided the record at once.
    passthrough_void_visible_after_sync: bool = False
    #: QuickBooks refuses (6000) to void an invoice that has a payment applied (False: it voids it and the
    #: payment stays as unapplied credit, as the QuickBooks UI does).
    void_refused_with_payments: bool = False
    #: A PATCH /payments that changes `total_amount` is answered 200 with a warning, and QuickBooks keeps the old
    #: amount and applications (False: QuickBooks takes the new amount). Merge lists total_amount as supported on
    #: a payment PATCH; no source says QuickBooks applies it to a payment's lines.
    payment_amount_patch_ignored: bool = False


@dataclass(frozen=True)
class CoperniqAssumptions:
    """What the Coperniq sandbox assumes of Coperniq's API."""

    #: A phase change bumps the project's `updatedAt` (no source confirms it).
    phase_change_bumps_updated_at: bool = True
    #: A 429 carries `Retry-After` (and responses carry `X-RateLimit-*`).
    rate_limit_headers: bool = True
    #: `GET /projects/{id}` returns archived projects without `include_archived=true`.
    archived_visible_by_id: bool = True
    #: Fraction of seeded projects on Workflows 1.0 (`stage` instead of `phase`).
    workflows_v1_share: float = 0.0
    #: `PATCH /invoices/{id}` with line items that carry no `id` replaces the lines (False: appends them).
    invoice_patch_replaces_lines: bool = True
    #: Seconds the `Date` header of every response runs ahead of the clock that stamps `updatedAt` (0: one clock;
    #: negative: behind). The tap anchors its lookback window at a read's start taken from `Date`.
    date_header_skew_s: float = 0.0
    #: Invoices carry the quote-style `taxId`/`taxRate` (null without a tax) and `POST`/`PATCH /invoices` take
    #: `taxId` (False: the API has no invoice tax: both fields are absent from every response and a `taxId` sent
    #: on a write is ignored, as for any field the spec's InvoiceCreate does not list).
    invoice_tax_fields: bool = True
    #: A payment deleted in Coperniq's UI (its API deletes none) bumps its invoice's `updatedAt`, besides taking
    #: its amount out of `amountPaid` (False: `amountPaid` and `status` change, `updatedAt` does not).
    payment_delete_bumps_invoice: bool = True
    #: A payment Coperniq takes back in its UI (status REFUNDED, VOIDED, FAILED: its API has no payment update) still
    #: counts in its invoice's `amountPaid` (False: its amount leaves `amountPaid` as a delete's does). Its invoice's
    #: `updatedAt` moves either way, and the payment stays listed under it with its new status.
    taken_back_payment_stays_in_amount_paid: bool = True


_PESSIMISTIC: dict[type, dict[str, Any]] = {
    MergeAssumptions: {
        "idempotency_keys": False,
        "passthrough_visible_after_sync": True,
        "separate_id_spaces": True,
        "employees_hold_names": True,
        "max_concurrent": 3,
        "passthrough_void_visible_after_sync": True,
        "void_refused_with_payments": True,
        "payment_amount_patch_ignored": True,
    },
    CoperniqAssumptions: {
        "phase_change_bumps_updated_at": False,
        "rate_limit_headers": False,
        "archived_visible_by_id": False,
        "workflows_v1_share": 0.2,
        "invoice_patch_replaces_lines": False,
        "date_header_skew_s": 60.0,
        "invoice_tax_fields": False,
        "payment_delete_bumps_invoice": False,
        "taken_back_payment_stays_in_amount_paid": False,
    },
}

A = TypeVar("A", MergeAssumptions, CoperniqAssumptions)


def resolve(kind: type[A], profile: str | A | None = None, **overrides: Any) -> A:
    """The switches of a named profile (or the given set), with single switches overridden."""
    if isinstance(profile, kind):
        base = profile
    elif profile in (None, "optimistic"):
        base = kind()
    elif profile == "pessimistic":
        base = kind(**_PESSIMISTIC[kind])
    else:
        raise ValueError(f"unknown sandbox profile {profile!r}: choose one of {', '.join(PROFILES)}")
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown {kind.__name__} switch(es): {', '.join(unknown)}")
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
