"""Periods split into subscription phases: usage per phase, base fee prorated, lines rounded once."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from apps.pricing import (
    Charge,
    PhaseSpec,
    PricingInputError,
    PricingValidationError,
    Tier,
    UnitRule,
    price_period,
)

from .strategies import SEED_GRADUATED

D = Decimal
NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
PER_1000_UP = UnitRule(D(1000), "up")
SCALE_API = Charge(
    "graduated",
    tiers=(Tier(D(10), D(0), D(0)), Tier(D(100), D("6.00"), D("25.00")), Tier(None, D("4.00"))),
)


def local(year: int, month: int, day: int, hour: int = 0, zone: ZoneInfo = NEW_YORK) -> datetime:
    return datetime(year, month, day, hour, tzinfo=zone)


OCTOBER: dict[str, Any] = {
    "period_start": local(2026, 10, 1),
    "period_end": local(2026, 11, 1),
    "time_zone": "America/New_York",
}


def test_a_plan_change_on_the_15th_splits_usage_and_prorates_the_fee_by_days() -> None:
    change = local(2026, 10, 15)
    result = price_period(
        **OCTOBER,
        currency="USD",
        phases=[
            PhaseSpec(
                local(2026, 10, 1), change, SEED_GRADUATED, PER_1000_UP, D("99.00"), D(12500), "growth"
            ),
            PhaseSpec(change, None, SCALE_API, PER_1000_UP, D("499.00"), D(12500), "scale"),
        ],
    )
    growth, scale = result.phases
    assert (growth.fraction, scale.fraction) == (Fraction(14, 31), Fraction(17, 31))
    assert (growth.phase_length, scale.phase_length, growth.period_length) == (D(14), D(17), D(31))
    # Each phase normalizes its own usage: 12,500 calls round up to 13 units twice,
    # where the whole month's 25,000 calls would have been 25 units.
    assert (growth.units, scale.units) == (D(13), D(13))
    # Tiers restart per phase: growth 10 + 9x8 + 3x5, scale 3x6 + 25.
    assert (growth.usage_exact, scale.usage_exact) == (D(97), D(43))
    assert result.usage_total == D("140.00")
    # 99 x 14/31 + 499 x 17/31 = 9869/31 = 318.3548...
    assert result.base_fee_exact_fraction == Fraction(9869, 31)
    assert result.base_fee_total == D("318.35")
    assert result.total == D("458.35")


def test_the_same_month_without_a_change_prices_the_tiers_once() -> None:
    result = price_period(
        **OCTOBER,
        currency="USD",
        phases=[PhaseSpec(local(2026, 10, 1), None, SEED_GRADUATED, PER_1000_UP, D("99.00"), D(25000))],
    )
    assert result.usage_total == D("157.00")
    assert result.base_fee_total == D("99.00")
    assert result.phases[0].fraction == 1


def test_days_are_counted_in_the_accounts_time_zone() -> None:
    # Midnight on the 15th in New York is 04:00 UTC; counted in UTC days it would not
    # be a whole number of days, counted in New York days it is 14 of 31.
    change = datetime(2026, 10, 15, 4, tzinfo=UTC)
    result = price_period(
        **OCTOBER,
        currency="USD",
        phases=[
            PhaseSpec(local(2026, 10, 1), change, base_fee=D(31)),
            PhaseSpec(change, None, base_fee=D(62)),
        ],
    )
    assert [phase.phase_length for phase in result.phases] == [D(14), D(17)]
    assert result.base_fee_total == D("48.00")  # 14 + 34


def test_a_change_at_local_noon_counts_half_a_day() -> None:
    noon = local(2026, 10, 15, 12)
    result = price_period(
        **OCTOBER,
        currency="USD",
        phases=[PhaseSpec(local(2026, 10, 1), noon, base_fee=D(31)), PhaseSpec(noon, None)],
    )
    assert result.phases[0].phase_length == D("14.5")
    assert result.base_fee_total == D("14.50")


def test_days_and_seconds_differ_across_a_dst_change() -> None:
    # November 2026 in New York has 30 days but 721 hours (clocks go back on the 1st).
    change = local(2026, 11, 15)
    kwargs: dict[str, Any] = {
        "period_start": local(2026, 11, 1),
        "period_end": local(2026, 12, 1),
        "time_zone": "America/New_York",
        "currency": "USD",
        "phases": [PhaseSpec(local(2026, 11, 1), change, base_fee=D(721)), PhaseSpec(change, None)],
    }
    by_days = price_period(**kwargs)
    by_seconds = price_period(**kwargs, proration="seconds")
    assert by_days.phases[0].fraction == Fraction(14, 30)
    assert by_seconds.phases[0].fraction == Fraction(337, 721)
    assert by_seconds.phases[0].period_length == D(721 * 3600)
    assert by_days.base_fee_total == D("336.47")
    assert by_seconds.base_fee_total == D("337.00")


def test_a_yen_period_prorates_to_whole_yen() -> None:
    change = local(2026, 10, 15, zone=TOKYO)
    result = price_period(
        period_start=local(2026, 10, 1, zone=TOKYO),
        period_end=local(2026, 11, 1, zone=TOKYO),
        time_zone="Asia/Tokyo",
        currency="JPY",
        phases=[
            PhaseSpec(local(2026, 9, 1, zone=TOKYO), change),
            PhaseSpec(
                change, None, Charge("per_unit", unit_amount=D("13.7")), PER_1000_UP, D(15000), D(5000)
            ),
        ],
    )
    assert result.phases[1].fraction == Fraction(17, 31)
    assert result.base_fee_total == D(8226)  # 15000 x 17/31 = 8225.8
    assert result.usage_total == D(69)  # 5 x 13.7 = 68.5, half up
    assert str(result.total) == "8295"


def test_each_line_is_rounded_once_over_all_its_phases() -> None:
    # Half a cent of usage in each phase: rounding phase by phase would bill 0.02.
    half_cent = Charge("per_unit", unit_amount=D("0.005"))
    change = local(2026, 10, 15)
    result = price_period(
        **OCTOBER,
        currency="USD",
        phases=[
            PhaseSpec(local(2026, 10, 1), change, half_cent, raw_quantity=D(1)),
            PhaseSpec(change, None, half_cent, raw_quantity=D(1)),
        ],
    )
    assert result.usage_exact_total == D("0.010")
    assert result.usage_total == D("0.01")


def test_units_that_do_not_divide_evenly_are_priced_exactly() -> None:
    # 1,200 seconds on a per-hour meter at $0.015/hour is exactly half a cent.
    result = price_period(
        **OCTOBER,
        currency="USD",
        phases=[
            PhaseSpec(
                local(2026, 10, 1),
                None,
                Charge("per_unit", unit_amount=D("0.015")),
                UnitRule(D(3600), "none"),
                raw_quantity=D(1200),
            )
        ],
    )
    assert result.usage_exact_fraction == Fraction(1, 200)
    assert result.usage_total == D("0.01")


def test_a_phase_covering_only_part_of_the_period_pays_only_its_days() -> None:
    result = price_period(
        **OCTOBER,
        currency="USD",
        phases=[PhaseSpec(local(2026, 10, 22), None, base_fee=D(31))],
    )
    assert result.phases[0].phase_length == D(10)
    assert result.base_fee_total == D("10.00")


def test_the_working_renders_as_plain_data() -> None:
    change = local(2026, 10, 15)
    result = price_period(
        **OCTOBER,
        currency="usd",
        phases=[
            PhaseSpec(local(2026, 10, 1), change, SEED_GRADUATED, PER_1000_UP, D(99), D(12500)),
            PhaseSpec(change, None, SCALE_API, PER_1000_UP, D(499), D(12500)),
        ],
    )
    data = result.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["currency"] == "USD"
    assert data["phases"][1]["fraction"] == "17/31"
    assert data["phases"][0]["charge"]["lines"][2]["units"] == "3"
    assert data["base_fee_total"] == "318.35"
    assert data["phases"][0]["ends_at"] == "2026-10-15T00:00:00-04:00"


@pytest.mark.parametrize(
    ("phases", "message"),
    [
        (
            [PhaseSpec(local(2026, 10, 1), local(2026, 10, 20)), PhaseSpec(local(2026, 10, 15), None)],
            "overlap",
        ),
        ([PhaseSpec(local(2026, 10, 1), None), PhaseSpec(local(2026, 10, 15), None)], "overlap"),
        ([PhaseSpec(local(2026, 10, 15), local(2026, 10, 1))], "before it starts"),
        ([PhaseSpec(datetime(2026, 10, 1), None)], "aware"),  # noqa: DTZ001 - the naive input under test
        ([PhaseSpec(local(2026, 10, 1), None, raw_quantity=D(5))], "no charge"),
        ([PhaseSpec(local(2026, 10, 1), None, SEED_GRADUATED, raw_quantity=D(-5))], "negative"),
    ],
)
def test_phases_that_cannot_be_priced_are_refused(phases: list[PhaseSpec], message: str) -> None:
    with pytest.raises(PricingInputError, match=message):
        price_period(**OCTOBER, currency="USD", phases=phases)


def test_bad_charges_in_phases_are_reported_with_their_path() -> None:
    broken = Charge("volume", tiers=(Tier(D(5), D(-1)),))
    with pytest.raises(PricingValidationError) as caught:
        price_period(
            **OCTOBER,
            currency="USD",
            phases=[PhaseSpec(local(2026, 10, 1), None, broken, UnitRule(D(0), "up"), D(-1))],
        )
    assert {issue.field for issue in caught.value.errors} == {
        "phases[0].unit_rule.unit_size",
        "phases[0].base_fee",
        "phases[0].charge.tiers[0].unit_amount",
        "phases[0].charge.tiers[0].up_to",
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"time_zone": "Mars/Olympus_Mons"}, "time zone"),
        ({"period_end": local(2026, 10, 1)}, "before it starts"),
        ({"period_start": datetime(2026, 10, 1)}, "aware"),  # noqa: DTZ001 - the naive input under test
        ({"currency": "ZZZ"}, "unknown currency"),
        ({"rounding": "nearest"}, "rounding mode"),
        ({"proration": "hours"}, "proration"),
    ],
)
def test_unusable_period_arguments_are_refused(overrides: dict[str, object], message: str) -> None:
    kwargs: dict[str, Any] = {**OCTOBER, "currency": "USD", "phases": []}
    kwargs.update(overrides)
    with pytest.raises(PricingInputError, match=message):
        price_period(**kwargs)


def test_an_empty_period_costs_nothing() -> None:
    result = price_period(**OCTOBER, currency="KWD", phases=[])
    assert (result.usage_total, result.base_fee_total, str(result.total)) == (D(0), D(0), "0.000")


def test_a_missing_hour_does_not_shorten_the_local_day() -> None:
    # 8 March 2026 lasts 23 hours in New York; it still counts as one whole day.
    march: dict[str, Any] = {
        "period_start": local(2026, 3, 1),
        "period_end": local(2026, 4, 1),
        "time_zone": "America/New_York",
    }
    day_after = local(2026, 3, 9)
    result = price_period(
        **march,
        currency="USD",
        phases=[PhaseSpec(local(2026, 3, 8), day_after, base_fee=D(31)), PhaseSpec(day_after, None)],
    )
    assert result.phases[0].phase_length == D(1)
    assert result.phases[0].fraction == Fraction(1, 31)


def test_the_day_clocks_go_back_is_25_hours_long_and_still_one_day() -> None:
    # 1 November 2026 in New York runs 25 hours; 22:00 that evening is 23 of them.
    evening = local(2026, 11, 1, 22)
    result = price_period(
        period_start=local(2026, 11, 1),
        period_end=local(2026, 12, 1),
        time_zone="America/New_York",
        currency="USD",
        phases=[PhaseSpec(local(2026, 11, 1), evening, base_fee=D(30)), PhaseSpec(evening, None)],
    )
    assert result.phases[0].fraction == Fraction(23, 25) / 30
    assert result.base_fee_total == D("0.92")
