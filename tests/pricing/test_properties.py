"""Properties every tier table and every period must satisfy (hypothesis)."""

from __future__ import annotations

import decimal
import itertools
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from apps.pricing import (
    Charge,
    PhaseSpec,
    Proration,
    Tier,
    UnitRule,
    minor_units,
    price_period,
    price_units,
    quantize,
)
from apps.pricing.periods import period_length

from .strategies import discount_tables, prices, tier_tables, units

D = Decimal
CURRENCIES = st.sampled_from(["USD", "JPY", "KWD", "CLF"])
MODES = st.sampled_from(
    [decimal.ROUND_HALF_UP, decimal.ROUND_HALF_EVEN, decimal.ROUND_DOWN, decimal.ROUND_UP]
)


@given(tiers=tier_tables(), low=units, extra=units)
def test_graduated_totals_never_decrease_as_units_grow(
    tiers: tuple[Tier, ...], low: Decimal, extra: Decimal
) -> None:
    charge = Charge("graduated", tiers=tiers)
    assert price_units(charge, low).exact_total <= price_units(charge, low + extra).exact_total


@given(tiers=tier_tables(), quantity=units)
def test_graduated_total_is_the_sum_of_its_tier_subtotals(tiers: tuple[Tier, ...], quantity: Decimal) -> None:
    breakdown = price_units(Charge("graduated", tiers=tiers), quantity)
    assert sum((Fraction(line.subtotal) for line in breakdown.lines), Fraction(0)) == Fraction(
        breakdown.exact_total
    )
    assert sum((Fraction(line.units) for line in breakdown.lines), Fraction(0)) == Fraction(quantity)
    for line, tier in zip(breakdown.lines, tiers, strict=False):
        if tier.up_to is not None:
            assert line.units <= tier.up_to - line.from_units


@given(tiers=tier_tables(), quantity=units)
def test_volume_is_units_times_the_chosen_tier_price_plus_its_flat(
    tiers: tuple[Tier, ...], quantity: Decimal
) -> None:
    chosen = next(i for i, tier in enumerate(tiers) if tier.up_to is None or quantity <= tier.up_to)
    flat = tiers[chosen].flat_amount if quantity > 0 else D(0)
    breakdown = price_units(Charge("volume", tiers=tiers), quantity)
    assert breakdown.matched_tier == chosen
    assert Fraction(breakdown.exact_total) == Fraction(quantity) * Fraction(
        tiers[chosen].unit_amount
    ) + Fraction(flat)


@given(tiers=tier_tables(), quantity=units, currency=CURRENCIES, mode=MODES)
def test_a_line_is_rounded_once_from_its_exact_total(
    tiers: tuple[Tier, ...], quantity: Decimal, currency: str, mode: str
) -> None:
    breakdown = price_units(Charge("graduated", tiers=tiers), quantity)
    step = D(1).scaleb(-minor_units(currency))
    exact_sum = sum((line.subtotal for line in breakdown.lines), D(0))
    independent = exact_sum.quantize(step, rounding=mode, context=decimal.Context(prec=80))
    assert breakdown.total(currency, mode) == independent
    assert breakdown.total(currency, mode) == quantize(breakdown.exact_total, currency, mode)


@given(size=st.decimals(min_value=1, max_value=100, places=0), amount=prices, quantity=units)
def test_package_buys_whole_packages(size: Decimal, amount: Decimal, quantity: Decimal) -> None:
    breakdown = price_units(Charge("package", package_size=size, package_amount=amount), quantity)
    packages = breakdown.lines[0].packages
    assert packages is not None
    assert (packages - 1) * size < quantity <= packages * size or quantity == packages == 0
    assert breakdown.exact_total == packages * amount


NEW_YORK = ZoneInfo("America/New_York")
ZONES = st.sampled_from(["America/New_York", "Asia/Tokyo", "UTC", "Europe/London", "Australia/Lord_Howe"])
MONTHS = st.sampled_from([1, 3, 10, 11])  # including the months clocks change in


@st.composite
def split_months(draw: st.DrawFn) -> tuple[str, datetime, datetime, list[datetime]]:
    """A local calendar month and sorted instants inside it where the phases change."""
    zone_name = draw(ZONES)
    zone = ZoneInfo(zone_name)
    month = draw(MONTHS)
    start = datetime(2026, month, 1, tzinfo=zone)
    end = datetime(2026 + month // 12, month % 12 + 1, 1, tzinfo=zone)
    seconds = int((end - start).total_seconds())
    offsets = draw(st.sets(st.integers(min_value=1, max_value=seconds - 1), max_size=4))
    cuts = [start + timedelta(seconds=offset) for offset in sorted(offsets)]
    return zone_name, start, end, cuts


def _phases(
    start: datetime,
    cuts: list[datetime],
    charge: Charge,
    rule: UnitRule,
    fee: Decimal,
    quantities: list[Decimal],
) -> list[PhaseSpec]:
    bounds: list[datetime | None] = [start, *cuts, None]
    return [
        PhaseSpec(begin, finish, charge, rule, fee, quantity)
        for begin, finish, quantity in zip(bounds, bounds[1:], quantities, strict=False)
        if begin is not None
    ]


@given(
    month=split_months(),
    amount=prices,
    fee=st.decimals(min_value=0, max_value=10_000, places=2),
    quantities=st.lists(units, min_size=5, max_size=5),
    proration=st.sampled_from(["days", "seconds"]),
)
def test_splitting_a_per_unit_plan_into_phases_changes_nothing(
    month: tuple[str, datetime, datetime, list[datetime]],
    amount: Decimal,
    fee: Decimal,
    quantities: list[Decimal],
    proration: Proration,
) -> None:
    """Same plan, rounding none, per_unit: phases only re-partition usage and the fee's fractions."""
    zone_name, start, end, cuts = month
    charge, rule = Charge("per_unit", unit_amount=amount), UnitRule(D(1), "none")
    phased = _phases(start, cuts, charge, rule, fee, quantities)
    whole = [PhaseSpec(start, None, charge, rule, fee, sum((p.raw_quantity for p in phased), D(0)))]
    common: dict[str, Any] = {
        "period_start": start,
        "period_end": end,
        "time_zone": zone_name,
        "currency": "USD",
    }
    split = price_period(**common, phases=phased, proration=proration)
    single = price_period(**common, phases=whole, proration=proration)
    assert sum((phase.fraction for phase in split.phases), Fraction(0)) == 1
    assert split.base_fee_exact_fraction == single.base_fee_exact_fraction == Fraction(fee)
    assert split.usage_exact_fraction == single.usage_exact_fraction
    assert split.total == single.total


@given(
    month=split_months(),
    tiers=discount_tables(),
    quantities=st.lists(units, min_size=5, max_size=5),
)
def test_tiers_restart_per_phase_so_splitting_never_costs_less(
    month: tuple[str, datetime, datetime, list[datetime]],
    tiers: tuple[Tier, ...],
    quantities: list[Decimal],
) -> None:
    """With prices that fall tier by tier, each phase starting again in tier 1 can only cost more."""
    zone_name, start, end, cuts = month
    charge, rule = Charge("graduated", tiers=tiers), UnitRule(D(1), "none")
    phased = _phases(start, cuts, charge, rule, D(0), quantities)
    total_quantity = sum((p.raw_quantity for p in phased), D(0))
    common: dict[str, Any] = {
        "period_start": start,
        "period_end": end,
        "time_zone": zone_name,
        "currency": "USD",
    }
    split = price_period(**common, phases=phased)
    single = price_period(**common, phases=[PhaseSpec(start, None, charge, rule, D(0), total_quantity)])
    assert split.usage_exact_fraction >= single.usage_exact_fraction
    expected = sum((price_units(charge, p.raw_quantity).exact_total_fraction for p in phased), Fraction(0))
    assert split.usage_exact_fraction == expected


@given(month=split_months())
def test_a_whole_local_month_is_a_whole_number_of_days(
    month: tuple[str, datetime, datetime, list[datetime]],
) -> None:
    zone_name, start, end, cuts = month
    zone = ZoneInfo(zone_name)
    days = period_length(start, end, zone, "days")
    assert days == (end.date() - start.date()).days
    pieces = [start, *cuts, end]
    pieces_days = [period_length(a, b, zone, "days") for a, b in itertools.pairwise(pieces)]
    assert sum(pieces_days, Fraction(0)) == days
