"""Billing units and the four charge models, on worked examples."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

import pytest

from apps.pricing import (
    Charge,
    PricingInputError,
    PricingValidationError,
    Tier,
    price_units,
    to_billing_units,
)
from apps.pricing.engine import billing_units_exact

from .strategies import SEED_GRADUATED, SEED_VOLUME

D = Decimal


@pytest.mark.parametrize(
    ("raw", "size", "rounding", "expected"),
    [
        (D(25000), D(1000), "up", D(25)),
        (D(25001), D(1000), "up", D(26)),
        (D(25999), D(1000), "down", D(25)),
        (D(25500), D(1000), "none", D("25.5")),
        (D(1000), D(1000), "up", D(1)),
        (D(0), D(1000), "up", D(0)),
        (D("568.68"), D(1), "none", D("568.68")),
        (D("0.001"), D(1), "up", D(1)),
    ],
)
def test_raw_quantity_becomes_billing_units(
    raw: Decimal, size: Decimal, rounding: str, expected: Decimal
) -> None:
    assert to_billing_units(raw, size, rounding) == expected  # type: ignore[arg-type]


def test_units_that_do_not_divide_evenly_stay_exact_inside_the_engine() -> None:
    assert billing_units_exact(D(1200), D(3600), "none") == Fraction(1, 3)
    assert str(to_billing_units(D(1200), D(3600), "none")).startswith("0.33333")


@pytest.mark.parametrize(
    ("raw", "size", "rounding", "message"),
    [
        (D(-1), D(1), "up", "negative"),
        (D(1), D(0), "up", "greater than 0"),
        (D(1), D(1), "nearest", "rounding"),
        (1.5, D(1), "up", "float"),
    ],
)
def test_unusable_unit_inputs_are_refused(raw: object, size: Decimal, rounding: str, message: str) -> None:
    with pytest.raises(PricingInputError, match=message):
        to_billing_units(raw, size, rounding)  # type: ignore[arg-type]


def test_seed_table_graduated_25000_calls_is_157() -> None:
    breakdown = price_units(SEED_GRADUATED, to_billing_units(D(25000), D(1000), "up"))
    assert breakdown.total("USD") == D("157.00")
    assert [(line.units, line.subtotal) for line in breakdown.lines] == [
        (D(1), D(10)),
        (D(9), D(72)),
        (D(15), D(75)),
    ]


def test_seed_table_volume_25000_calls_is_125() -> None:
    breakdown = price_units(SEED_VOLUME, D(25))
    assert breakdown.total("USD") == D("125.00")
    assert breakdown.matched_tier == 2


def test_exactly_1000_calls_stays_in_tier_one() -> None:
    units = to_billing_units(D(1000), D(1000), "up")
    graduated = price_units(SEED_GRADUATED, units)
    volume = price_units(SEED_VOLUME, units)
    assert graduated.total("USD") == volume.total("USD") == D("10.00")
    assert [line.units for line in graduated.lines] == [D(1), D(0), D(0)]
    assert volume.matched_tier == 0


def test_1001_calls_round_up_into_tier_two() -> None:
    assert price_units(SEED_GRADUATED, to_billing_units(D(1001), D(1000), "up")).total("USD") == D("18.00")


def test_volume_65000_units_in_the_tier_with_a_flat_fee_is_49() -> None:
    charge = Charge(
        "volume",
        tiers=(
            Tier(D(10000), D("0.0010"), D(10)),
            Tier(D(50000), D("0.0008"), D(10)),
            Tier(D(100000), D("0.0006"), D(10)),
            Tier(None, D("0.0004"), D(10)),
        ),
    )
    breakdown = price_units(charge, D(65000))
    assert breakdown.matched_tier == 2
    assert breakdown.exact_total == D(49)
    assert breakdown.total("USD") == D("49.00")


def test_eleven_seats_in_packages_of_five_at_40_is_120() -> None:
    charge = Charge("package", package_size=D(5), package_amount=D("40.00"))
    breakdown = price_units(charge, D(11))
    assert breakdown.total("USD") == D("120.00")
    assert breakdown.lines[0].packages == D(3)


def test_per_unit_is_units_times_price() -> None:
    assert price_units(Charge("per_unit", unit_amount=D("0.18")), D("568.68")).exact_total == D("102.3624")


def test_fractional_units_split_continuously_across_tiers() -> None:
    charge = Charge("graduated", tiers=(Tier(D(1), D(10)), Tier(None, D(4))))
    breakdown = price_units(charge, D("1.5"))
    assert [line.units for line in breakdown.lines] == [D(1), D("0.5")]
    assert breakdown.exact_total == D(12)


def test_a_graduated_flat_fee_is_added_only_when_its_tier_holds_units() -> None:
    charge = Charge(
        "graduated",
        tiers=(Tier(D(10), D(0), D(0)), Tier(D(100), D(6), D(25)), Tier(None, D(4), D(100))),
    )
    assert price_units(charge, D(10)).exact_total == D(0)
    assert price_units(charge, D("10.5")).exact_total == D(28)  # 0.5 x 6 + 25
    assert price_units(charge, D(0)).exact_total == D(0)


def test_volume_with_no_usage_charges_nothing_not_even_the_first_flat_fee() -> None:
    charge = Charge("volume", tiers=(Tier(D(10), D(1), D(50)), Tier(None, D("0.5"), D(20))))
    breakdown = price_units(charge, D(0))
    assert breakdown.matched_tier == 0
    assert breakdown.exact_total == D(0)
    assert price_units(charge, D("0.1")).exact_total == D("50.1")


def test_package_with_no_usage_is_zero_and_a_sliver_buys_a_whole_package() -> None:
    charge = Charge("package", package_size=D(5), package_amount=D(40))
    assert price_units(charge, D(0)).exact_total == D(0)
    assert price_units(charge, D("0.01")).exact_total == D(40)


def test_a_yen_plan_rounds_to_whole_yen_half_up() -> None:
    breakdown = price_units(Charge("per_unit", unit_amount=D("13.7")), D(5))
    assert breakdown.exact_total == D("68.5")
    assert breakdown.total("JPY") == D(69)
    assert breakdown.total("JPY", "ROUND_HALF_EVEN") == D(68)


def test_a_kuwaiti_dinar_plan_rounds_to_three_decimals() -> None:
    breakdown = price_units(Charge("per_unit", unit_amount=D("0.0125")), D(3))
    assert breakdown.total("KWD") == D("0.038")
    assert str(breakdown.total("KWD")) == "0.038"


def test_a_line_is_rounded_once_not_tier_by_tier() -> None:
    # Each tier costs half a cent: rounding tier by tier would bill 0.02.
    charge = Charge("graduated", tiers=(Tier(D(1), D("0.005")), Tier(None, D("0.005"))))
    breakdown = price_units(charge, D(2))
    assert [line.subtotal for line in breakdown.lines] == [D("0.005"), D("0.005")]
    assert breakdown.total("USD") == D("0.01")


def test_the_working_renders_as_plain_data() -> None:
    data = price_units(SEED_GRADUATED, D(25)).as_dict("USD")
    assert json.loads(json.dumps(data)) == data
    assert data["total"] == "157.00"
    assert data["exact_total"] == "157"
    assert data["lines"][1] == {
        "index": 1,
        "from_units": "1",
        "up_to": "10",
        "units": "9",
        "unit_amount": "8.00",
        "flat_amount": "0",
        "subtotal": "72",
    }
    assert data["lines"][2]["up_to"] is None


def test_an_invalid_charge_is_not_priced() -> None:
    with pytest.raises(PricingValidationError) as caught:
        price_units(Charge("graduated", tiers=(Tier(D(5), D(1)),)), D(1))
    assert [issue.field for issue in caught.value.errors] == ["tiers[0].up_to"]


def test_negative_units_are_refused() -> None:
    with pytest.raises(PricingInputError, match="negative"):
        price_units(SEED_GRADUATED, D(-1))
