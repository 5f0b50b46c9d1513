"""The settings that decide how a refunded payment is taken back in QuickBooks (their schema and validation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from singer_sdk import typing as th

#: How a pushed payment Coperniq shows REFUNDED is taken back when void_policy takes it back (refunds.py).
REFUND_POLICIES = ("void", "refund_receipt")

REFUND_PROPERTIES = (
    th.Property(
        "refund_policy",
        th.StringType,
        default="void",
        allowed_values=list(REFUND_POLICIES),
        description="A pushed payment Coperniq shows REFUNDED: void voids it in QuickBooks like any payment taken "
        "back; refund_receipt keeps it (the money was received) and creates a QuickBooks Refund Receipt from "
        "refund_account. void_policy: leave still leaves it.",
    ),
    th.Property(
        "refund_account",
        th.StringType,
        description="QuickBooks account (name or id, Bank or Other Current Asset) a refund is paid from; required "
        "with refund_policy: refund_receipt. Set, a Coperniq payment on a credit (money paid back) is recorded "
        "in QuickBooks as a check from it to Accounts Receivable, linked to the credit memo.",
    ),
    th.Property(
        "receivable_account",
        th.StringType,
        description="QuickBooks Accounts Receivable account (name or id) a refunded credit's check goes to; "
        "default: the company's only one.",
    ),
    th.Property(
        "refund_tax_code",
        th.StringType,
        description="QuickBooks tax code (name or id) of a refund receipt's line on a non-US company, where every "
        "sales line needs one: a code that adds no tax (e.g. Exempt, Zero-rated or Out of scope); required there "
        "with refund_policy: refund_receipt. A US company's receipts carry none.",
    ),
    th.Property(
        "refund_item",
        th.StringType,
        description="QuickBooks item (name or id) of a refund receipt's line; default: default_item.",
    ),
)


def parse_refund_settings(config: Mapping[str, Any], errors: list[str]) -> dict[str, Any]:
    """The Settings fields of the refund settings; what is wrong goes to `errors`, naming the setting."""
    policy = config.get("refund_policy") or "void"
    if policy not in REFUND_POLICIES:
        errors.append(f"refund_policy: {policy!r} is not one of {', '.join(REFUND_POLICIES)}")
    if policy == "refund_receipt" and not config.get("refund_account"):
        errors.append("refund_account: required with refund_policy: refund_receipt (the account refunds are paid from)")
    if policy == "refund_receipt" and not (config.get("refund_item") or config.get("default_item")):
        errors.append("refund_item: required with refund_policy: refund_receipt when default_item is not set")
    return {
        "refund_policy": str(policy),
        "refund_account": config.get("refund_account") or None,
        "refund_item": config.get("refund_item") or config.get("default_item") or None,
        "receivable_account": config.get("receivable_account") or None,
        "refund_tax_code": str(config.get("refund_tax_code")).strip() if config.get("refund_tax_code") else None,
    }
