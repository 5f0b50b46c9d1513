"""The emulated QuickBooks company's tax setup: home currency, country, tax codes and rates, and how an invoice's
tax is computed (`company_tax`: us_manual, us_ast, non_us).

Why a company property and not a profile switch: how a company taxes is set up by its bookkeeper (QuickBooks
Online US with or without Automated Sales Tax, or a Canadian/UK company whose every line needs a tax code), it is
not something Merge's docs leave open. The sandbox plays each kind of company; README "Company tax" cites what
each one follows.

QBO's sales-tax model (Intuit, "Manage sales tax for US locales" / "... for non-US locales"): a transaction line
names a `TaxCode` (`SalesItemLineDetail.TaxCodeRef`); a TaxCode groups one or more `TaxRate`s
(`SalesTaxRateList.TaxRateDetail[].TaxRateRef`); the invoice's `TxnTaxDetail` carries one `TaxLine` per tax rate
(`TaxPercent`, `NetAmountTaxable`, `Amount`) and `TotalTax`. US companies also have the pseudo codes `TAX` and
`NON` (taxable / not taxable; `TaxGroup: false`). Merge's `TaxRate` is the TaxCode, its `tax_components` the
TaxRates (ASSUMPTION: Merge's QBO supported fields list `TaxComponent.tax_rate`, so components belong to a rate).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sandbox.merge_qbo_faults import business_error, invalid_reference

#: The kinds of company the sandbox can be (`MergeApp(company_tax=...)`, `--company-tax`).
COMPANY_TAX = ("us_manual", "us_ast", "non_us")
#: Home currencies a non-US company may have: the country and the wording of QuickBooks' "no tax code" error.
NON_US_CURRENCIES = {"CAD": "CA", "GBP": "GB"}
CENT = Decimal("0.01")
_META = {"CreateTime": "2020-01-01T00:00:00-08:00", "LastUpdatedTime": "2020-01-01T00:00:00-08:00"}


def _rate(id_: str, name: str, value: str, agency: tuple[str, str], description: str = "") -> dict[str, Any]:
    """A QBO TaxRate object."""
    return {
        "Id": id_,
        "SyncToken": "0",
        "Name": name,
        "Description": description or name,
        "Active": True,
        "RateValue": float(value),
        "AgencyRef": {"value": agency[0], "name": agency[1]},
        "SpecialTaxType": "ZERO_RATE" if Decimal(value) == 0 else "NONE",
        "DisplayType": "ReadOnly",
        "EffectiveTaxRate": [{"RateValue": float(value), "EffectiveDate": "2020-01-01T00:00:00-08:00"}],
        "domain": "QBO",
        "sparse": False,
        "MetaData": dict(_META),
    }


def _code(id_: str, name: str, rates: list[dict[str, Any]], description: str = "", **extra: Any) -> dict[str, Any]:
    """A QBO TaxCode object grouping `rates` (sales)."""
    return {
        "Id": id_,
        "SyncToken": "0",
        "Name": name,
        "Description": description or name,
        "Active": True,
        "Hidden": False,
        "Taxable": True,
        "TaxGroup": True,
        "SalesTaxRateList": {
            "TaxRateDetail": [
                {
                    "TaxRateRef": {"value": r["Id"], "name": r["Name"]},
                    "TaxTypeApplicable": "TaxOnAmount",
                    "TaxOrder": 0,
                }
                for r in rates
            ]
        },
        "PurchaseTaxRateList": {"TaxRateDetail": []},
        "domain": "QBO",
        "sparse": False,
        "MetaData": dict(_META),
        **extra,
    }


def _pseudo(id_: str, taxable: bool) -> dict[str, Any]:
    """QBO US pseudo tax codes TAX and NON (Intuit TaxCode reference: `TaxGroup: false`)."""
    return {"Id": id_, "Name": id_, "Description": id_, "Taxable": taxable, "TaxGroup": False, "MetaData": dict(_META)}


def _us_catalog(company_tax: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Austin, TX: 6.25% state + 1% city + 1% transit authority = 8.25% (the seed customers are in Austin)."""
    comptroller = ("1", "Texas Comptroller of Public Accounts")
    rates = [
        _rate("1", "Texas State", "6.25", comptroller),
        _rate("2", "Austin City", "1", comptroller),
        _rate("3", "Austin MTA", "1", comptroller, "Capital Metropolitan Transportation Authority"),
    ]
    kind = "SYSTEM_GENERATED" if company_tax == "us_ast" else "USER_DEFINED"  # AST makes its own codes
    codes = [
        _pseudo("TAX", True),
        _pseudo("NON", False),
        _code("2", "Austin", rates, "Austin, TX", TaxCodeConfigType=kind),
    ]
    return codes, rates


def _ca_catalog() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """An Ontario company (HST 13%) that also sells into Alberta (GST 5%) and British Columbia (GST + PST 7%)."""
    cra = ("1", "Canada Revenue Agency")
    gst, hst_on = _rate("1", "GST", "5", cra), _rate("2", "HST ON", "13", cra)
    exempt = _rate("3", "Exempt", "0", cra, "GST/HST exempt")
    pst_bc = _rate("4", "PST BC", "7", ("2", "Ministry of Finance (BC)"))
    codes = [
        _code("2", "GST", [gst]),
        _code("3", "HST ON", [hst_on]),
        _code("4", "Exempt", [exempt]),
        _code("5", "GST/PST BC", [gst, pst_bc]),
    ]
    return codes, [gst, hst_on, exempt, pst_bc]


def _gb_catalog() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A UK VAT-registered company: standard 20%, reduced 5%, zero-rated, exempt."""
    hmrc = ("1", "HM Revenue & Customs")
    rates = [
        _rate("1", "20.0% S", "20", hmrc, "Standard rate"),
        _rate("2", "5.0% R", "5", hmrc, "Reduced rate"),
        _rate("3", "0.0% Z", "0", hmrc, "Zero-rated"),
        _rate("4", "Exempt", "0", hmrc, "Exempt"),
    ]
    codes = [_code(str(n + 2), r["Name"], [r], r["Description"]) for n, r in enumerate(rates)]
    return codes, rates


@dataclass(frozen=True)
class TaxSetup:
    """One company's tax and currency set-up: what GET /tax-rates, /company-info and `Preferences` show, and how
    invoices are taxed. Build it with `tax_setup()`."""

    company_tax: str
    currency: str
    country: str
    codes: tuple[dict[str, Any], ...]
    rates: tuple[dict[str, Any], ...]
    #: the TaxCode QuickBooks' AST engine assigns to taxable lines (us_ast), else None
    ast_code: str | None = None
    #: the TaxCode the admin `amount=` shortcut and the seeder put on lines when every line needs one
    default_code: str | None = None

    @property
    def computes_tax(self) -> bool:
        """us_manual keeps the sandbox's original behaviour: no tax at all."""
        return self.company_tax != "us_manual"

    @property
    def lines_need_code(self) -> bool:
        """non_us: QuickBooks refuses a line without a tax code (6000)."""
        return self.company_tax == "non_us"

    @property
    def missing_code_detail(self) -> str:
        """QuickBooks' 6000 wording for a line without a tax code (GST/HST in Canada, VAT in the UK)."""
        kind = "VAT" if self.country == "GB" else "GST/HST"
        return f"Make sure all your transactions have a {kind} rate before you save."

    def code(self, code_id: str | None) -> dict[str, Any] | None:
        return next((c for c in self.codes if c["Id"] == code_id), None) if code_id is not None else None

    def rate(self, rate_id: str) -> dict[str, Any] | None:
        return next((r for r in self.rates if r["Id"] == rate_id), None)

    def components(self, code_id: str | None) -> list[dict[str, Any]]:
        """The QBO TaxRates a TaxCode applies to sales (none for the pseudo codes)."""
        code = self.code(code_id)
        details = ((code or {}).get("SalesTaxRateList") or {}).get("TaxRateDetail") or []
        return [r for r in (self.rate(d["TaxRateRef"]["value"]) for d in details) if r is not None]

    def preferences(self) -> dict[str, Any]:
        """QBO `Preferences` (the parts a tax-aware client reads): TaxPrefs and CurrencyPrefs."""
        tax_prefs: dict[str, Any] = {"UsingSalesTax": True, "PartnerTaxEnabled": self.company_tax == "us_ast"}
        if self.country == "US":
            tax_prefs["TaxGroupCodeRef"] = {"value": "2"}
        return {
            "Id": "1",
            "SyncToken": "0",
            "TaxPrefs": tax_prefs,
            "CurrencyPrefs": {"MultiCurrencyEnabled": False, "HomeCurrency": {"value": self.currency}},
            "SalesFormsPrefs": {"AllowShipping": False, "CustomTxnNumbers": True},
            "domain": "QBO",
            "sparse": False,
            "MetaData": dict(_META),
        }

    def qbo_objects(self, entity: str) -> Iterable[dict[str, Any]] | None:
        """The QBO objects of a tax entity (`TaxCode`, `TaxRate`) or `Preferences`, for passthrough reads."""
        if entity == "TaxCode":
            return [copy.deepcopy(c) for c in self.codes]
        if entity == "TaxRate":
            return [copy.deepcopy(r) for r in self.rates]
        if entity == "Preferences":
            return [self.preferences()]
        return None


def tax_setup(company_tax: str = "us_manual", currency: str | None = None) -> TaxSetup:
    """The setup of a `company_tax` company; `currency` defaults to USD (US) or CAD (non_us; GBP makes it a UK
    company). Raises ValueError for unknown kinds or a currency the kind of company cannot have."""
    if company_tax not in COMPANY_TAX:
        raise ValueError(f"company_tax must be one of {', '.join(COMPANY_TAX)}, not {company_tax!r}")
    if company_tax == "non_us":
        home = (currency or "CAD").upper()
        if home not in NON_US_CURRENCIES:
            raise ValueError(f"a non_us company's currency is one of {', '.join(NON_US_CURRENCIES)}, not {home!r}")
        country = NON_US_CURRENCIES[home]
        codes, rates = _gb_catalog() if country == "GB" else _ca_catalog()
        default = codes[0]["Id"] if country == "GB" else "3"  # 20.0% S / HST ON: the company's home rate
        return TaxSetup(company_tax, home, country, tuple(codes), tuple(rates), default_code=default)
    home = (currency or "USD").upper()
    if home != "USD":
        raise ValueError(f"a US company's home currency is USD, not {home!r} (use company_tax='non_us')")
    codes, rates = _us_catalog(company_tax)
    ast = "2" if company_tax == "us_ast" else None
    return TaxSetup(company_tax, home, "US", tuple(codes), tuple(rates), ast_code=ast)


def merge_tax_rate_fields(setup: TaxSetup, code: dict[str, Any]) -> dict[str, Any]:
    """The Merge TaxRate common-model fields of a QBO TaxCode (created_at/modified_at come from its row)."""
    components = setup.components(code["Id"])
    if code["Id"] == "TAX":  # taxable, but the rate comes from the transaction's TxnTaxCodeRef
        total: float | None = None
    else:
        total = float(sum((Decimal(str(r["RateValue"])) for r in components), Decimal(0)))
    return {
        "code": code["Name"],
        "name": code["Name"],
        "description": code.get("Description"),
        "status": "ACTIVE" if code.get("Active", True) else "ARCHIVED",
        "country": None,  # not among Merge's QBO supported fields for TaxRate
        "total_tax_rate": total,
        "effective_tax_rate": total,  # no compound rates in the seeds
        "tax_components": [
            {
                "id": str(uuid.uuid4()),
                "remote_id": r["Id"],
                "created_at": None,
                "modified_at": None,
                "name": r["Name"],
                "rate": f"{Decimal(str(r['RateValue'])):.4f}",
                "is_compound": False,
                "component_type": "SALES",
                "remote_was_deleted": False,
            }
            for r in components
        ],
        "company": None,
    }


def line_tax_code(setup: TaxSetup, raw_tax_rate: Any, rate_row: dict[str, Any] | None, taxable: bool) -> str | None:
    """The QBO TaxCode Id a line gets, or None (us_manual: lines carry no tax code, as the sandbox always did).

    us_ast: QuickBooks' AST engine overrides whatever the request named: TAX for a taxable item, NON otherwise.
    non_us: the line must name an active TaxRate (`rate_row` = the Merge row `raw_tax_rate` names, if any);
    raises `QboError` 6000 when it names none, 2500 when the id is unknown."""
    if setup.company_tax == "us_ast":
        return "TAX" if taxable else "NON"
    if not setup.lines_need_code:
        return None
    if raw_tax_rate in (None, ""):
        raise business_error(setup.missing_code_detail, "TaxCodeRef")
    if rate_row is None or rate_row["remote_was_deleted"] or rate_row["status"] != "ACTIVE":
        raise invalid_reference("TaxCodeRef", raw_tax_rate)
    return str(rate_row["remote_id"])


def compute_tax(setup: TaxSetup, lines: list[tuple[str | None, float]]) -> tuple[Decimal, list[dict[str, Any]]]:
    """Tax of an invoice's lines, given as (QBO TaxCode Id, net amount): (total tax, QBO `TxnTaxDetail.TaxLine`s).

    Rounding: QuickBooks reports tax per tax rate (one TaxLine per TaxRate, with the rate's NetAmountTaxable), so
    the tax of each rate is computed on the sum of the net amounts it applies to and rounded half-up to cents once;
    the invoice's tax is the sum of those. (A per-line rounding would disagree with NetAmountTaxable x TaxPercent.)
    An AST company's taxable lines (`TAX`) are taxed with the AST engine's code for the company's address."""
    net_by_rate: dict[str, Decimal] = {}
    for code_id, net_amount in lines:
        effective = setup.ast_code if code_id == "TAX" and setup.ast_code else code_id
        for component in setup.components(effective):
            net_by_rate[component["Id"]] = net_by_rate.get(component["Id"], Decimal(0)) + Decimal(str(net_amount))
    total = Decimal(0)
    tax_lines: list[dict[str, Any]] = []
    for rate_id, net in net_by_rate.items():
        rate = setup.rate(rate_id)
        assert rate is not None  # components() only returns known rates
        percent = Decimal(str(rate["RateValue"]))
        tax = (net * percent / 100).quantize(CENT, rounding=ROUND_HALF_UP)
        total += tax
        tax_lines.append(
            {
                "Amount": float(tax),
                "DetailType": "TaxLineDetail",
                "TaxLineDetail": {
                    "TaxRateRef": {"value": rate_id, "name": rate["Name"]},
                    "PercentBased": True,
                    "TaxPercent": float(percent),
                    "NetAmountTaxable": float(net.quantize(CENT, rounding=ROUND_HALF_UP)),
                },
            }
        )
    return total, tax_lines


def money_sum(*values: float | Decimal) -> float:
    """Exact cents: the sum of amounts (floats rounded to cents, or Decimals) as a float rounded to cents."""
    total = sum((v if isinstance(v, Decimal) else Decimal(str(v)) for v in values), Decimal(0))
    return float(total.quantize(CENT, rounding=ROUND_HALF_UP))
