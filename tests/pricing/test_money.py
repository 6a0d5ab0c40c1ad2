"""Currencies and the single rounding step."""

from __future__ import annotations

import decimal
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.pricing import (
    MINOR_UNITS,
    PricingInputError,
    UnknownCurrencyError,
    minor_units,
    quantize,
    to_decimal,
)
from apps.pricing.money import ROUNDING_MODES, round_to_exponent

D = Decimal


@pytest.mark.parametrize(
    ("currency", "digits"),
    [
        ("USD", 2), ("EUR", 2), ("GBP", 2), ("JPY", 0), ("KRW", 0), ("CLP", 0), ("VND", 0),
        ("KWD", 3), ("BHD", 3), ("JOD", 3), ("OMR", 3), ("TND", 3), ("IQD", 3), ("LYD", 3),
        ("CLF", 4), ("UYW", 4),
    ],
)  # fmt: skip
def test_minor_units_follow_iso_4217(currency: str, digits: int) -> None:
    assert minor_units(currency) == digits


def test_the_table_covers_the_active_currencies() -> None:
    assert len(MINOR_UNITS) >= 150
    assert all(len(code) == 3 and code.isupper() for code in MINOR_UNITS)
    assert set(MINOR_UNITS.values()) == {0, 2, 3, 4}


def test_currency_codes_are_case_insensitive_as_providers_send_them() -> None:
    assert quantize(D("1.005"), "usd") == D("1.01")


@pytest.mark.parametrize("currency", ["XXX", "XAU", "US", "DOLLAR", "", None, 840])
def test_an_unknown_currency_is_refused_with_its_code(currency: object) -> None:
    with pytest.raises(UnknownCurrencyError, match="unknown currency"):
        quantize(D(1), currency)  # type: ignore[arg-type]


def test_yen_rounds_half_up_to_whole_yen() -> None:
    assert quantize(D("68.5"), "JPY") == D("69")
    assert quantize(D("68.49"), "JPY") == D("68")
    assert str(quantize(D("68.5"), "JPY")) == "69"


def test_kuwaiti_dinar_rounds_to_three_decimals() -> None:
    assert quantize(D("0.0375"), "KWD") == D("0.038")
    assert str(quantize(D("12"), "KWD")) == "12.000"


def test_the_rounding_mode_is_configurable() -> None:
    assert quantize(D("2.345"), "USD") == D("2.35")
    assert quantize(D("2.345"), "USD", decimal.ROUND_HALF_EVEN) == D("2.34")
    assert quantize(D("-2.345"), "USD") == D("-2.35")


def test_an_unknown_rounding_mode_is_refused() -> None:
    with pytest.raises(PricingInputError, match="rounding mode"):
        quantize(D(1), "USD", "HALF_UP")


def test_floats_are_refused() -> None:
    with pytest.raises(PricingInputError, match="float"):
        quantize(0.1, "USD")  # type: ignore[arg-type]


def test_exact_fractions_round_from_their_exact_value() -> None:
    # 1,200 seconds of a $0.015-per-hour meter is exactly half a cent; a decimal
    # approximation of 1/3 hour would land just below and round to 0.00.
    assert quantize(Fraction(1, 3) * Fraction("0.015"), "USD") == D("0.01")
    assert quantize(Fraction(1, 3), "USD", decimal.ROUND_UP) == D("0.34")
    assert quantize(Fraction(-1, 3), "USD", decimal.ROUND_FLOOR) == D("-0.34")


def test_to_decimal_is_exact_when_the_expansion_ends() -> None:
    assert to_decimal(Fraction(157, 1)) == D(157)
    assert to_decimal(Fraction(1, 8)) == D("0.125")
    third = to_decimal(Fraction(1, 3))
    assert str(third).startswith("0.3333333333")
    assert len(third.as_tuple().digits) == 40


@given(
    value=st.decimals(min_value=-(10**9), max_value=10**9, places=6),
    currency=st.sampled_from(["USD", "JPY", "KWD", "CLF"]),
    mode=st.sampled_from(sorted(ROUNDING_MODES)),
)
def test_quantize_agrees_with_decimal_quantize_for_every_mode(
    value: Decimal, currency: str, mode: str
) -> None:
    step = Decimal(1).scaleb(-minor_units(currency))
    expected = value.quantize(step, rounding=mode, context=decimal.Context(prec=60))
    result = quantize(value, currency, mode)
    assert result == expected
    assert result.as_tuple().exponent == -minor_units(currency)


@given(
    numerator=st.integers(min_value=-(10**12), max_value=10**12),
    denominator=st.integers(min_value=1, max_value=10**6),
    places=st.integers(min_value=0, max_value=4),
)
def test_half_up_on_fractions_is_the_nearest_grid_point(
    numerator: int, denominator: int, places: int
) -> None:
    value = Fraction(numerator, denominator)
    rounded = Fraction(round_to_exponent(value, places))
    step = Fraction(1, 10**places)
    assert abs(rounded - value) <= step / 2
    if abs(rounded - value) == step / 2:
        assert abs(rounded) > abs(value)  # ties go away from zero
