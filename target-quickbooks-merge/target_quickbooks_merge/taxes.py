"""The QuickBooks company's tax setup and home currency, and the tax code each invoice line carries.

QuickBooks taxes invoices three ways, and an invoice that ignores the company's way is refused or re-taxed:
- US with Automated Sales Tax (`Preferences.TaxPrefs.PartnerTaxEnabled`): QuickBooks computes the tax from the
  customer's address itself; a tax code sent on a line is ignored, so none is sent.
- US without it (manual sales tax): a line carries the tax code it is taxed at; an untaxed line carries none.
- Outside the US (GST/HST, VAT): every line must carry a tax code, or QuickBooks refuses the invoice (error 6000).
A Coperniq invoice's tax (`taxId`) maps to a QuickBooks tax code through `tax_code_mapping`; `default_tax_code`
covers invoices without one. An invoice that cannot be taxed that way is a failed row, never pushed untaxed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sync_ledger.passthrough import QBO_MINOR
from sync_ledger.rows import RowFailure

from .errors import ConfigRefused, Disconnected
from .merge_client import MergeClient, WriteError
from .merge_index import find_ref, ref_index
from .settings import Settings


@dataclass(frozen=True)
class TaxSetup:
    """The company's active tax codes by Merge id, QuickBooks Id and name."""

    codes: Mapping[str, str]
    names: Mapping[str, str]  # Merge id -> name, for reasons a bookkeeper reads
    lines_take_code: bool  # Merge's request schema for this company has a line `tax_rate`
    remote: Mapping[str, str]  # Merge id -> QuickBooks TaxCode Id, for passthrough bodies

    def code(self, ref: str) -> str | None:
        """The Merge tax-rate id a setting's value names (a Merge id, a QuickBooks TaxCode Id or its name)."""
        return find_ref(self.codes, ref)


def us_mode(preferences: Mapping[str, Any]) -> str:
    """A US company's tax setup, from its QuickBooks Preferences."""
    tax_prefs = preferences.get("TaxPrefs") or {}
    return "us_ast" if tax_prefs.get("PartnerTaxEnabled") else "us_manual"


def lines_take_code(meta: Mapping[str, Any]) -> bool:
    """Does Merge's invoice request schema for this linked account (`GET /invoices/meta/post`) take a line
    `tax_rate`? Where it does not, Merge drops the code with a warning and QuickBooks would hold the invoice untaxed."""
    model = ((meta.get("request_schema") or {}).get("properties") or {}).get("model") or {}
    lines = (model.get("properties") or {}).get("line_items") or {}
    return "tax_rate" in ((lines.get("items") or {}).get("properties") or {})


def index_codes(rates: list[Mapping[str, Any]]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Active Merge tax rates by Merge id, QuickBooks Id, name and code (`ref_index`), their names by Merge id and
    their QuickBooks Ids by Merge id."""
    active = [
        rate
        for rate in rates
        if not rate.get("remote_was_deleted") and str(rate.get("status") or "ACTIVE").upper() == "ACTIVE"
    ]
    names = {str(r["id"]): str(r.get("name") or r.get("code") or r["id"]) for r in active}
    remote = {str(r["id"]): str(r["remote_id"]) for r in active if r.get("remote_id")}
    return ref_index(active, ("name", "code")), names, remote


class TaxBook:
    """The tax code of an invoice's lines. Reads only what an invoice needs, once per run: the company's tax codes
    when a code is to be sent, its Preferences when a US company could be on automated sales tax. A run (or a
    US company) that never sends a tax code pays no call for it."""

    def __init__(self, client: MergeClient, settings: Settings, home_currency: str | None) -> None:
        self.client = client
        self.s = settings
        self._mode = settings.tax_mode if settings.tax_mode != "auto" else None
        if self._mode is None and home_currency and home_currency != "USD":
            self._mode = "non_us"  # ASSUMPTION: a QuickBooks US company's home currency is USD
        self._codes: TaxSetup | None = None

    def mode(self) -> str:
        if self._mode is None:
            self._mode = us_mode(self._preferences())
        return self._mode

    def codes(self) -> TaxSetup:
        if self._codes is None:
            codes, names, remote = index_codes(list(self.client.iter_list("/tax-rates")))
            setup = TaxSetup(codes, names, lines_take_code(self.client.api.get("/invoices/meta/post")), remote)
            self._check_settings(setup)
            self._codes = setup
        return self._codes

    def line_code(self, invoice: Mapping[str, Any]) -> str | None:
        """The Merge tax-rate id every line of this invoice carries; None: send none (QuickBooks computes the
        tax itself, or a US company's invoice without tax). Raises RowFailure when it cannot be taxed right."""
        tax_id = invoice.get("taxId")
        ref = self.s.tax_code_mapping.get(str(tax_id)) if tax_id is not None else self.s.default_tax_code
        if tax_id is None and ref is None:
            if self._mode == "non_us":
                raise RowFailure(
                    "QuickBooks (a non-US company) needs a tax code on every invoice line and this invoice has no "
                    "Coperniq tax: set default_tax_code, or give the invoice a tax in Coperniq"
                )
            return None  # a US company's untaxed invoice
        if self.mode() == "us_ast":
            return None  # QuickBooks computes the tax from the customer's address
        if ref is None:
            rate = invoice.get("taxRate")
            at = f" ({rate}%)" if rate is not None else ""
            raise RowFailure(
                f"the invoice's Coperniq tax {tax_id}{at} has no entry in tax_code_mapping: add "
                f'"{tax_id}": "<QuickBooks tax code>" (it is not pushed untaxed)'
            )
        setup = self.codes()
        if not setup.lines_take_code:
            raise RowFailure(
                "Merge does not pass a tax code on invoice lines to this QuickBooks company (GET "
                "/invoices/meta/post lists no line_items tax_rate), so the invoice would be pushed untaxed: "
                "it is not; enter it in QuickBooks, or use a company on automated sales tax"
            )
        return setup.code(ref)  # every mapped code was checked when the codes were read

    def refund_code(self) -> str | None:
        """The QuickBooks TaxCode Id a refund receipt's line carries: none but on a non-US company, where every
        sales line needs one (`refund_tax_code`: the money paid back is no new sale, so a code that adds no tax).
        Raises ConfigRefused naming the setting when it is needed and missing or unknown."""
        if self._mode != "non_us":  # a US company (its mode is read, when it is, from its preferences)
            return None
        if not self.s.refund_tax_code:
            raise ConfigRefused(
                "refund_tax_code: required with refund_policy: refund_receipt on a non-US QuickBooks company (every "
                "line of a refund receipt needs a tax code there): name one that adds no tax, e.g. Exempt"
            )
        setup = self.codes()  # an unknown refund_tax_code stops the run there, with the other codes
        merge_id = setup.code(self.s.refund_tax_code) or ""
        if merge_id not in setup.remote:  # known to Merge, not yet synced from QuickBooks (no remote_id)
            raise ConfigRefused(f"refund_tax_code = {self.s.refund_tax_code!r}: Merge has no QuickBooks Id for it yet")
        return setup.remote[merge_id]

    def _check_settings(self, setup: TaxSetup) -> None:
        """A tax code named in the settings that QuickBooks does not have is a configuration error, found before
        any invoice is pushed with it, naming the setting."""
        wanted = [(f"tax_code_mapping[{k!r}]", v) for k, v in self.s.tax_code_mapping.items()]
        if self.s.default_tax_code:
            wanted.append(("default_tax_code", self.s.default_tax_code))
        if self.s.refund_tax_code and self.s.refund_policy == "refund_receipt":
            wanted.append(("refund_tax_code", self.s.refund_tax_code))
        unknown = [f"{where} = {value!r}" for where, value in wanted if setup.code(value) is None]
        if unknown:
            known = ", ".join(sorted(set(setup.names.values()))) or "none"
            raise ConfigRefused(f"{'; '.join(unknown)}: no such active tax code in QuickBooks (it has: {known})")

    def _preferences(self) -> Mapping[str, Any]:
        try:
            status, body, _, _ = self.client.passthrough("GET", f"/preferences?{QBO_MINOR}")
        except WriteError as exc:
            if exc.disconnected:
                raise Disconnected(exc.detail) from None
            status, body = exc.status or 0, None
        if status >= 400 or not isinstance(body, Mapping):
            raise ConfigRefused(
                f"could not read the QuickBooks company's tax preferences through Merge passthrough (HTTP {status}); "
                "set tax_mode (us_ast, us_manual or non_us) to say how the company taxes"
            )
        prefs = body.get("Preferences")
        return prefs if isinstance(prefs, Mapping) else {}


def check_currency(client: MergeClient, settings: Settings) -> str | None:
    """The QuickBooks company's home currency, which must be Coperniq's (`currency`): amounts are sent as they
    are, never converted. Raises ConfigRefused naming both when they differ; None when Merge does not say."""
    for info in client.iter_list("/company-info"):
        home = str(info.get("currency") or "").upper()
        if home and home != settings.currency:
            raise ConfigRefused(
                f"the QuickBooks company's home currency is {home} but Coperniq's amounts are "
                f"{settings.currency} (setting `currency`): amounts are never converted, so nothing is synced"
            )
        return home or None
    return None


def with_tax(line: dict[str, Any], code: str | None) -> dict[str, Any]:
    """A Merge invoice line with its tax code; without one the line is unchanged (and so is its fingerprint)."""
    return {**line, "tax_rate": code} if code else line
