"""Money: Decimal end to end, rounded to the currency's minor unit here and nowhere else.

Why one module: a float cannot hold 0.1, so `0.1 + 0.2` is 0.30000000000000004 and Python's `round(2.675, 2)` is
2.67 (the float is 2.67499...). Both taps read JSON numbers as Decimal (the SDK's parser), so the money arrives
exact; every place that compares, sums, sends or fingerprints an amount converts it with `to_money` (or
`to_decimal` when it must not be rounded yet), so an amount is rounded once, half up, to the currency's minor unit.
A float that still reaches us (a staged payload, a Merge response parsed by `requests`) is read through its
shortest repr, which is exactly the decimal text of the JSON it came from.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

#: Coperniq holds dollars only (no currency field on its invoices); the default for both legs.
DEFAULT_CURRENCY = "USD"
#: ISO 4217 minor units that are not 2 (every other currency has cents).
MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF"), 0),
    **dict.fromkeys(("UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}

__all__ = [
    "DEFAULT_CURRENCY",
    "MINOR_UNITS",
    "decimal_json",
    "minor_unit",
    "money_text",
    "to_decimal",
    "to_money",
]


def minor_unit(currency: str | None = DEFAULT_CURRENCY) -> int:
    """Decimal places of the currency's minor unit (JPY 0, USD 2, KWD 3); an unknown or missing code has 2."""
    return MINOR_UNITS.get((currency or DEFAULT_CURRENCY).strip().upper(), 2)


def to_decimal(value: Any) -> Decimal | None:
    """The exact Decimal of a JSON number, a decimal string or a Decimal, not rounded (quantities, unit prices
    before they are multiplied); None for null, "", booleans, junk and NaN/Infinity."""
    if value is None or isinstance(value, bool) or value == "":
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    else:  # a float's repr is the shortest text that reads back as it: the decimal of the JSON it came from
        try:
            number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
        except (InvalidOperation, ValueError):
            return None
    return number if number.is_finite() else None


def to_money(value: Any, currency: str | None = DEFAULT_CURRENCY) -> Decimal:
    """`value` rounded half up to the currency's minor unit: the one rounding rule of both legs. Raises
    ValueError when it is not a number (pass `value or 0` where a missing amount means zero)."""
    number = to_decimal(value)
    if number is None:
        raise ValueError(f"not an amount: {value!r}")
    return number.quantize(Decimal(1).scaleb(-minor_unit(currency)), rounding=ROUND_HALF_UP)


def money_text(value: Any, currency: str | None = DEFAULT_CURRENCY) -> str:
    """An amount as a fixed-point decimal string ("1500.00"), the way Merge writes `applied_amount`."""
    return f"{to_money(value, currency):f}"


def decimal_json(value: Decimal) -> str:
    """A finite Decimal as the JSON number Python writes for the float of the same value ("100.0", "0.3",
    "59.97"; exponent form below 1e-4 and from 1e16, like `repr(float)`), without going through a float.

    Why that form: the fingerprints in the ledger were taken when money was a float, so an amount must keep its
    bytes when it becomes a Decimal (10.1 and Decimal("10.10") are one value and one fingerprint), and the wire
    format stays what Merge and Coperniq were sent before."""
    if not value.is_finite():
        raise ValueError(f"{value} is not a JSON number")
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    text = "".join(map(str, digits)).lstrip("0")
    minus = "-" if sign else ""
    if not text:
        return f"{minus}0.0"
    stripped = text.rstrip("0")  # trailing zeros are the exponent's (not normalize(): it rounds past 28 digits)
    exponent += len(text) - len(stripped)
    text = stripped
    point = len(text) + exponent  # digits before the decimal point
    if -4 < point <= 16:
        if point <= 0:
            return f"{minus}0.{'0' * -point}{text}"
        if point >= len(text):
            return f"{minus}{text}{'0' * (point - len(text))}.0"
        return f"{minus}{text[:point]}.{text[point:]}"
    mantissa = text[0] + (f".{text[1:]}" if len(text) > 1 else "")
    power = point - 1
    return f"{minus}{mantissa}e{'+' if power >= 0 else '-'}{abs(power):02d}"
