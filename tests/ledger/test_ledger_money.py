"""sync_ledger.money, the one rounding rule, and the JSON that carries a Decimal: to the wire (sync_ledger.http),
into fingerprints and into staged payloads, without a float's artefacts and without changing a byte that was
written when money was a float."""

from __future__ import annotations

import json
import math
import random
import struct
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests

from sync_ledger import fingerprint, json_text, minor_unit, money_text, to_decimal, to_jsonable, to_money
from sync_ledger.http import json_body
from sync_ledger.money import decimal_json


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2.675, "2.68"),  # round(2.675, 2) is 2.67: the float is 2.67499999...
        (1.005, "1.01"),  # round(1.005, 2) is 1.0
        (0.125, "0.13"),  # round(0.125, 2) is 0.12 (half to even)
        ("0.285", "0.29"),
        (-2.675, "-2.68"),  # half up = away from zero, as QuickBooks rounds
        (0.1 + 0.2, "0.30"),  # 0.30000000000000004
        (Decimal("10.1"), "10.10"),
        (10, "10.00"),
        ("  7.5 ", "7.50"),
        (Decimal("0.005"), "0.01"),
        (Decimal("-0.005"), "-0.01"),
    ],
)
def test_to_money_rounds_half_up_to_the_cent(value: Any, expected: str) -> None:
    amount = to_money(value)
    assert isinstance(amount, Decimal) and str(amount) == expected


@pytest.mark.parametrize(
    ("currency", "value", "expected"),
    [
        ("JPY", "1234.5", "1235"),
        ("jpy", 99.4, "99"),
        ("KWD", "1.2345", "1.235"),
        ("BHD", 0.0005, "0.001"),
        ("OMR", 2, "2.000"),
        ("EUR", "0.125", "0.13"),
        ("XYZ", "0.125", "0.13"),  # an unknown code has cents
        (None, "0.125", "0.13"),  # no currency: USD, Coperniq's
    ],
)
def test_to_money_uses_the_currency_minor_unit(currency: str | None, value: Any, expected: str) -> None:
    assert str(to_money(value, currency)) == expected


def test_minor_units() -> None:
    assert (minor_unit("USD"), minor_unit("JPY"), minor_unit("KWD"), minor_unit(" kwd "), minor_unit(None)) == (
        2,
        0,
        3,
        3,
        2,
    )


@pytest.mark.parametrize("junk", [None, "", "abc", True, False, float("nan"), float("inf"), "NaN", "-Infinity", [1]])
def test_not_an_amount_is_refused_never_zero(junk: Any) -> None:
    assert to_decimal(junk) is None
    with pytest.raises(ValueError, match="not an amount"):
        to_money(junk)


def test_to_decimal_is_exact_and_not_rounded() -> None:
    assert to_decimal(0.1) == Decimal("0.1")  # the float's shortest repr, not 0.1000000000000000055511...
    assert to_decimal(33.333) == Decimal("33.333")
    assert to_decimal("1500.00") == Decimal("1500.00")
    assert to_decimal(3) == 3 and isinstance(to_decimal(3), Decimal)
    assert to_decimal(Decimal("1E+2")) == 100


def test_money_text_is_merges_decimal_string() -> None:
    assert money_text(1500) == "1500.00"
    assert money_text(0.1) == "0.10"
    assert money_text(Decimal("1E+3")) == "1000.00"  # never exponent form
    assert money_text("5", "JPY") == "5"


def _random_floats(n: int) -> list[float]:
    rng = random.Random(11)
    out: list[float] = []
    while len(out) < n:
        x = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] if len(out) % 2 else 0.0
        if not len(out) % 2:
            x = round(rng.uniform(-1e9, 1e9), rng.randint(0, 6))
        if math.isfinite(x):
            out.append(x)
    return out


def test_decimal_json_is_the_json_a_float_of_that_value_had() -> None:
    """The property fingerprints and the wire format rest on: Decimal(repr(x)) is written as repr(x)."""
    specials = [0.0, -0.0, 100.0, 0.3, 59.97, 1e-4, 1e-5, 1e16, 9999999999999998.0, 1.5e300, -2.5e-300]
    for x in specials + _random_floats(20000):
        assert decimal_json(Decimal(repr(x))) == json.dumps(x), x
    assert decimal_json(Decimal("100.00")) == "100.0"
    assert decimal_json(Decimal("0.30")) == "0.3"
    assert decimal_json(Decimal("1" + "0" * 40)) == "1e+40"
    assert decimal_json(Decimal("0." + "1" * 35)) == "0." + "1" * 35  # no float (nor 28-digit context) rounding
    with pytest.raises(ValueError, match="not a JSON number"):
        decimal_json(Decimal("NaN"))


def _corpus() -> list[Any]:
    rng = random.Random(5)
    out: list[Any] = [
        {"b": 1, "a": [1.5, None, True, "é", {"z": 0.1, "y": [2, 3]}], "c": datetime(2025, 1, 2, tzinfo=UTC)},
        {1: "int key", 2: "other"},
        [0.30000000000000004, -0.0, 1e-7, '\u2603\n\t"q"'],
        "plain",
        42,
    ]
    out.extend(
        {
            f"k{rng.randint(0, 9)}": rng.choice([rng.random() * 1000, rng.randint(-5, 5), "s", None, False]),
            "lines": [{"qty": rng.randint(1, 9), "price": round(rng.uniform(0, 500), 2)} for _ in range(3)],
        }
        for _ in range(500)
    )
    return out


@pytest.mark.parametrize("sort_keys", [True, False])
def test_json_text_writes_what_json_dumps_writes_and_decimals_as_numbers(sort_keys: bool) -> None:
    for value in _corpus():
        expected = json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), default=str)
        assert json_text(value, sort_keys=sort_keys, default=str) == expected
        with_decimals = json.loads(expected, parse_float=Decimal)  # every float of it now a Decimal
        assert json_text(with_decimals, sort_keys=sort_keys, default=str) == expected


def test_json_text_refuses_what_json_dumps_refuses() -> None:
    with pytest.raises(TypeError):
        json_text({"a": Decimal("1.5"), "b": object()})
    with pytest.raises(ValueError, match="not a JSON number"):
        json_text({"a": Decimal("Infinity")}, allow_nan=False)


def test_a_fingerprint_does_not_change_when_a_float_amount_becomes_a_decimal() -> None:
    """10.1 and Decimal('10.10') are one amount: the links in the ledger were fingerprinted with floats."""
    assert fingerprint({"total_amount": Decimal("10.10")}) == fingerprint({"total_amount": 10.1})
    assert fingerprint({"total_amount": Decimal("100.00")}) == fingerprint({"total_amount": 100.0})
    assert fingerprint([Decimal("0.30"), {"q": 3}]) == fingerprint([0.3, {"q": 3}])
    assert fingerprint({"total_amount": Decimal("10.11")}) != fingerprint({"total_amount": 10.1})
    for value in _corpus():
        text = json.dumps(value, default=str)
        assert fingerprint(json.loads(text, parse_float=Decimal)) == fingerprint(json.loads(text))


def test_request_bodies_carry_decimals_as_the_json_numbers_a_float_was_sent_as() -> None:
    """sync_ledger.http writes the body itself (requests' encoder refuses a Decimal): same bytes as requests
    wrote for the float of each amount, and the exact amount where the float had an artefact."""
    floats = {"model": {"total_amount": 100.0, "line_items": [{"unit_price": 19.99, "quantity": 3}], "memo": "é"}}
    decimals = {
        "model": {
            "total_amount": Decimal("100.00"),
            "line_items": [{"unit_price": Decimal("19.99"), "quantity": 3}],
            "memo": "é",
        }
    }
    sent = requests.Request("POST", "http://127.0.0.1/", json=floats).prepare()
    data, headers = json_body(decimals, {"Accept": "application/json"})
    assert data == sent.body and headers == {"Accept": "application/json", "Content-Type": "application/json"}
    assert json_body({"a": Decimal("0.30")}, None)[0] == b'{"a": 0.3}'  # 0.1 + 0.2 as a float: 0.30000000000000004
    assert json_body(None, {"X": "1"}) == (None, {"X": "1"})
    assert json_body({}, {"content-type": "application/vnd+json"})[1] == {"content-type": "application/vnd+json"}


def test_staged_payloads_hold_json_numbers_that_read_back_exactly() -> None:
    """The ledger stores payloads as JSON (sync_ledger.ledger_staging); the targets read money back with
    to_money / to_decimal, which take the float json.loads makes through its repr: the staged decimal text."""
    record = {"amount": Decimal("59.97"), "paid": Decimal("100.00"), "unit": Decimal("0.1"), "qty": Decimal(3)}
    staged = json.loads(json.dumps(to_jsonable(record)))
    assert staged == {"amount": 59.97, "paid": 100, "unit": 0.1, "qty": 3}
    assert [to_money(staged[k]) for k in ("amount", "paid", "unit")] == [
        Decimal("59.97"),
        Decimal("100.00"),
        Decimal("0.10"),
    ]
    assert to_money(staged["unit"]) * staged["qty"] == Decimal("0.30")
    too_precise = Decimal("12345678901234567.89")  # no float holds it: kept exact (staged as its text)
    assert to_jsonable({"a": too_precise}) == {"a": too_precise}
    assert to_money(json.loads(json.dumps(to_jsonable({"a": too_precise}), default=str))["a"]) == too_precise
