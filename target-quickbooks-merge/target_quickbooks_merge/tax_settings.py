"""The settings that decide how invoices are taxed and in which currency (their schema and their validation)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from singer_sdk import typing as th

#: `tax_mode` values: `auto` reads the company's setup from QuickBooks; the others say it.
TAX_MODES = ("auto", "us_ast", "us_manual", "non_us")
#: ASSUMPTION (coperniq_api.md): Coperniq has no currency field; its amounts are the company's one currency.
DEFAULT_CURRENCY = "USD"

TAX_PROPERTIES = (
    th.Property(
        "tax_mode",
        th.StringType,
        default="auto",
        allowed_values=list(TAX_MODES),
        description="How the QuickBooks company taxes invoices: auto (read from its preferences and country), "
        "us_ast (Automated Sales Tax: QuickBooks computes it, no tax code is sent), us_manual (a line carries "
        "its tax code when taxed) or non_us (every line must carry a tax code, e.g. GST/HST or VAT).",
    ),
    th.Property(
        "tax_code_mapping",
        th.ObjectType(additional_properties=th.StringType),
        default={},
        description="Coperniq tax id (an invoice's taxId, from GET /taxes) -> QuickBooks tax code (name or "
        "Id). An invoice whose tax is not mapped fails with the reason; it is never pushed untaxed.",
    ),
    th.Property(
        "default_tax_code",
        th.StringType,
        description="QuickBooks tax code (name or Id) for the lines of an invoice without a Coperniq tax. "
        "Required for a non-US company unless every invoice has a mapped tax.",
    ),
    th.Property(
        "currency",
        th.StringType,
        default=DEFAULT_CURRENCY,
        description="ISO 4217 currency of Coperniq's amounts; the QuickBooks company's home currency must be "
        "the same (checked at the start of every run: amounts are never converted).",
    ),
)


def parse_tax_settings(config: Mapping[str, Any], errors: list[str]) -> dict[str, Any]:
    """The Settings fields of the tax settings; what is wrong goes to `errors`, naming the setting."""
    mode = str(config.get("tax_mode") or "auto")
    if mode not in TAX_MODES:
        errors.append(f"tax_mode: {mode!r} is not one of {', '.join(TAX_MODES)}")
        mode = "auto"
    mapping = config.get("tax_code_mapping") or {}
    if not isinstance(mapping, Mapping) or not all(isinstance(v, str | int) for v in mapping.values()):
        errors.append("tax_code_mapping: must be an object {coperniq tax id: quickbooks tax code}")
        mapping = {}
    currency = str(config.get("currency") or DEFAULT_CURRENCY).strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        errors.append(f"currency: an ISO 4217 code such as USD or CAD, got {config.get('currency')!r}")
        currency = DEFAULT_CURRENCY
    default = config.get("default_tax_code")
    return {
        "tax_mode": mode,
        "tax_code_mapping": {str(k).strip(): str(v).strip() for k, v in mapping.items()},
        "default_tax_code": str(default).strip() if default not in (None, "") else None,
        "currency": currency,
    }
