"""Billing units and the four charge models, computed exactly."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

from .breakdowns import ChargeBreakdown, TierLine
from .errors import PricingInputError, PricingValidationError
from .models import UNIT_ROUNDINGS, Charge, UnitRounding, UnitRule
from .money import Number, to_decimal, to_fraction
from .validation import validate_charge, validate_unit_rule

_ZERO = Fraction(0)
_NO_UNITS = Decimal(0)


def billing_units_exact(raw_quantity: Number, unit_size: Number, rounding: UnitRounding) -> Fraction:
    """Return raw_quantity / unit_size rounded up, down or not at all, as an exact Fraction."""
    raw = to_fraction(raw_quantity, what="raw quantity")
    if raw < 0:
        raise PricingInputError(f"raw quantity must not be negative (got {raw_quantity})")
    size = to_fraction(unit_size, what="unit size")
    if size <= 0:
        raise PricingInputError(f"unit size must be greater than 0 (got {unit_size})")
    if rounding not in UNIT_ROUNDINGS:
        raise PricingInputError(f"unknown unit rounding {rounding!r}; use one of {', '.join(UNIT_ROUNDINGS)}")
    units = raw / size
    if rounding == "up":
        return Fraction(math.ceil(units))
    if rounding == "down":
        return Fraction(math.floor(units))
    return units


def to_billing_units(raw_quantity: Number, unit_size: Number, rounding: UnitRounding) -> Decimal:
    """Return raw_quantity / unit_size rounded up (ceiling), down (floor) or none (exact)."""
    return to_decimal(billing_units_exact(raw_quantity, unit_size, rounding))


def units_for(raw_quantity: Number, rule: UnitRule) -> Fraction:
    """Return the exact billing units of a raw quantity under a meter's unit rule."""
    issues = validate_unit_rule(rule)
    if issues:
        raise PricingValidationError(issues)
    return billing_units_exact(raw_quantity, rule.unit_size, rule.rounding)


def price_units(charge: Charge, units: Number) -> ChargeBreakdown:
    """Price `units` billing units with `charge`, returning every line and the exact total.

    per_unit: units x unit_amount. graduated: each tier prices the units inside it
    ((previous up_to, up_to], split continuously for fractional units) and adds its
    flat_amount when it holds any units. volume: every unit at the price of the first
    tier whose up_to >= units, plus that tier's flat_amount when there are any units.
    package: ceil(units / package_size) x package_amount.
    """
    issues = validate_charge(charge)
    if issues:
        raise PricingValidationError(issues)
    exact_units = to_fraction(units, what="units")
    if exact_units < 0:
        raise PricingInputError(f"units must not be negative (got {units})")
    if charge.model == "per_unit":
        lines, matched = _per_unit(charge, exact_units), None
    elif charge.model == "graduated":
        lines, matched = _graduated(charge, exact_units), None
    elif charge.model == "volume":
        lines, matched = _volume(charge, exact_units)
    else:
        lines, matched = _package(charge, exact_units), None
    total = sum((subtotal for _line, subtotal in lines), _ZERO)
    return ChargeBreakdown(
        model=charge.model,
        units=to_decimal(exact_units),
        lines=tuple(line for line, _subtotal in lines),
        exact_total=to_decimal(total),
        matched_tier=matched,
        units_fraction=exact_units,
        exact_total_fraction=total,
    )


_Lines = list[tuple[TierLine, Fraction]]


def _line(
    index: int,
    lower: Decimal,
    upper: Decimal | None,
    units: Fraction,
    unit_amount: Decimal,
    flat: Decimal,
    *,
    package_size: Decimal | None = None,
    packages: int | None = None,
) -> tuple[TierLine, Fraction]:
    # Prices and bounds are shown as the catalogue wrote them ("10.00"); computed
    # values (units, subtotals) come from their exact fractions.
    quantity = units if packages is None else Fraction(packages)
    subtotal = quantity * Fraction(unit_amount) + Fraction(flat)
    line = TierLine(
        index=index,
        from_units=Decimal(lower),
        up_to=None if upper is None else Decimal(upper),
        units=to_decimal(units),
        unit_amount=Decimal(unit_amount),
        flat_amount=Decimal(flat),
        subtotal=to_decimal(subtotal),
        package_size=None if package_size is None else Decimal(package_size),
        packages=None if packages is None else Decimal(packages),
    )
    return line, subtotal


def _per_unit(charge: Charge, units: Fraction) -> _Lines:
    amount = _required(charge.unit_amount)
    return [_line(0, _NO_UNITS, None, units, amount, _NO_UNITS)]


def _graduated(charge: Charge, units: Fraction) -> _Lines:
    lines: _Lines = []
    lower = _NO_UNITS
    for index, tier in enumerate(charge.tiers):
        in_tier = max(units - Fraction(lower), _ZERO)
        if tier.up_to is not None:
            in_tier = min(in_tier, Fraction(tier.up_to) - Fraction(lower))
        flat = tier.flat_amount if in_tier > 0 else _NO_UNITS
        lines.append(_line(index, lower, tier.up_to, in_tier, tier.unit_amount, flat))
        if tier.up_to is None:
            break
        lower = tier.up_to
    return lines


def _volume(charge: Charge, units: Fraction) -> tuple[_Lines, int]:
    matched = next(
        index
        for index, tier in enumerate(charge.tiers)
        if tier.up_to is None or units <= Fraction(tier.up_to)
    )
    lines: _Lines = []
    lower = _NO_UNITS
    for index, tier in enumerate(charge.tiers):
        in_tier = units if index == matched else _ZERO
        # No usage, no flat fee: the same rule as a graduated tier that holds no units.
        flat = tier.flat_amount if index == matched and units > 0 else _NO_UNITS
        lines.append(_line(index, lower, tier.up_to, in_tier, tier.unit_amount, flat))
        if tier.up_to is not None:
            lower = tier.up_to
    return lines, matched


def _package(charge: Charge, units: Fraction) -> _Lines:
    size = _required(charge.package_size)
    amount = _required(charge.package_amount)
    packages = math.ceil(units / Fraction(size))
    return [_line(0, _NO_UNITS, None, units, amount, _NO_UNITS, package_size=size, packages=packages)]


def _required(value: Decimal | None) -> Decimal:
    if value is None:  # pragma: no cover - validate_charge rejects this first
        raise PricingInputError("a required charge amount is missing")
    return value
