"""ISO 4217 exponents and exact minor-unit <-> decimal text (clearline/currency.py)."""

from __future__ import annotations

import re
from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearline.currency import EXPONENT, decimal_to_minor, is_currency, minor_to_decimal

SETTINGS = settings(max_examples=100, deadline=None)
currencies = st.sampled_from(sorted(EXPONENT))
minors = st.one_of(st.integers(), st.integers(-(10**40), 10**40), st.sampled_from([0, 1, -1, 10**30, -(10**30)]))


@pytest.mark.parametrize(
    "code, exponent",
    [
        ("JPY", 0),
        ("KRW", 0),
        ("CLP", 0),
        ("USD", 2),
        ("EUR", 2),
        ("GBP", 2),
        ("IDR", 2),
        ("KWD", 3),
        ("BHD", 3),
        ("TND", 3),
        ("CLF", 4),
    ],
)
def test_known_exponents(code, exponent):
    assert EXPONENT[code] == exponent


def test_table_shape():
    assert all(re.fullmatch(r"[A-Z]{3}", code) for code in EXPONENT)
    assert set(EXPONENT.values()) <= {0, 2, 3, 4}
    assert len(EXPONENT) > 150  # the active ISO 4217 list has ~180 codes


@pytest.mark.parametrize("code", ["usd", "EURO", "XXX", "XAU", "XDR", "", "US", 840, None])
def test_not_currencies(code):
    # XXX ("no currency"), XAU (gold) and XDR (SDR) have no minor unit in ISO 4217 ("N.A."),
    # so they cannot denominate an integer count of minor units.
    assert not is_currency(code)


@pytest.mark.parametrize(
    "minor, code, text",
    [
        (-1999, "USD", "-19.99"),
        (1999, "USD", "19.99"),
        (1999, "JPY", "1999"),
        (5, "KWD", "0.005"),
        (-5, "USD", "-0.05"),
        (0, "USD", "0.00"),
        (0, "JPY", "0"),
        (10**20, "EUR", "1000000000000000000.00"),
        (12345, "CLF", "1.2345"),
    ],
)
def test_minor_to_decimal_examples(minor, code, text):
    assert minor_to_decimal(minor, code) == text
    assert decimal_to_minor(text, code) == minor


@SETTINGS
@given(minor=minors, code=currencies)
def test_round_trip(minor, code):
    exp = EXPONENT[code]
    text = minor_to_decimal(minor, code)
    assert decimal_to_minor(text, code) == minor
    # the text is exactly the amount, written with exactly the currency's decimals
    with localcontext(prec=200):  # exact arithmetic for these sizes
        assert Decimal(text) == Decimal(minor).scaleb(-exp)
    assert re.fullmatch(r"-?\d+" + (rf"\.\d{{{exp}}}" if exp else ""), text)
    assert not text.startswith("-") or minor < 0


@SETTINGS
@given(value=st.decimals(allow_nan=False, allow_infinity=False, places=4), code=currencies)
def test_decimal_to_minor_is_exact_or_refuses(value, code):
    exp = EXPONENT[code]
    text = format(value, "f")
    with localcontext(prec=200):  # exact arithmetic for these sizes
        scaled = value.scaleb(exp)
    if scaled == scaled.to_integral_value():
        assert decimal_to_minor(text, code) == int(scaled)
    else:
        with pytest.raises(ValueError):
            decimal_to_minor(text, code)


@pytest.mark.parametrize(
    "text, code, minor",
    [
        ("19.99", "USD", 1999),
        ("19.9", "USD", 1990),
        ("19", "USD", 1900),
        ("+19.99", "USD", 1999),
        ("-0.01", "USD", -1),
        (" 19.99 ", "USD", 1999),
        (".5", "USD", 50),
        ("19.", "USD", 1900),
        ("19.990", "USD", 1999),
        ("1.0", "JPY", 1),
        ("1.234", "KWD", 1234),
        ("007", "JPY", 7),
    ],
)
def test_decimal_to_minor_examples(text, code, minor):
    # trailing zeros beyond the exponent do not change the value, so they are exact too
    assert decimal_to_minor(text, code) == minor


@pytest.mark.parametrize(
    "text, code",
    [("19.999", "USD"), ("0.001", "USD"), ("1.5", "JPY"), ("1.0001", "KWD"), ("0.00001", "CLF"), ("-0.005", "EUR")],
)
def test_too_many_decimals(text, code):
    with pytest.raises(ValueError, match="more decimals"):
        decimal_to_minor(text, code)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "abc",
        "1.2.3",
        "1e3",
        "1,000",
        "1 000",
        "-",
        "+",
        ".",
        "$5",
        "5 USD",
        "NaN",
        "Infinity",
        "0x10",
        "1_000",
        "19.9a",
        "--",
        "1-2",
    ],
)
def test_garbage_is_refused(text):
    with pytest.raises(ValueError):
        decimal_to_minor(text, "USD")


@pytest.mark.parametrize("text", ["--5", "+-5", "-+5", "++5"])
def test_repeated_signs_are_refused(text):
    with pytest.raises(ValueError):
        decimal_to_minor(text, "USD")
