"""What the engine returns: totals together with the working behind them, as plain data.

Each breakdown keeps its exact values twice: as `Decimal` for people and APIs (exact
whenever the decimal expansion ends, which it does for every price of decimal units),
and as `Fraction` (`*_fraction` fields) for the arithmetic that follows, so that a line
is still rounded once, from its exact value, even after a division by 3,600 or 31.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from .models import ChargeModel, Proration, UnitRule
from .money import decimal_str, quantize


def _opt_str(value: Decimal | None) -> str | None:
    return None if value is None else decimal_str(value)


@dataclass(frozen=True, slots=True)
class TierLine:
    """One step of a charge's working: the units a tier (or the unit or package price) prices.

    `index` is the tier's position in `Charge.tiers` (0 for per_unit and package);
    the tier spans (`from_units`, `up_to`], `up_to=None` meaning no upper bound.
    `flat_amount` is the flat fee actually charged on this line (0 when not applied);
    `subtotal` = `units` x `unit_amount` + `flat_amount`, or for a package charge
    `packages` x `unit_amount` (the package price).
    """

    index: int
    from_units: Decimal
    up_to: Decimal | None
    units: Decimal
    unit_amount: Decimal
    flat_amount: Decimal
    subtotal: Decimal
    package_size: Decimal | None = None
    packages: Decimal | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the line as plain data, decimals as strings."""
        data: dict[str, Any] = {
            "index": self.index,
            "from_units": decimal_str(self.from_units),
            "up_to": _opt_str(self.up_to),
            "units": decimal_str(self.units),
            "unit_amount": decimal_str(self.unit_amount),
            "flat_amount": decimal_str(self.flat_amount),
            "subtotal": decimal_str(self.subtotal),
        }
        if self.package_size is not None:
            data["package_size"] = decimal_str(self.package_size)
            data["packages"] = _opt_str(self.packages)
        return data


@dataclass(frozen=True, slots=True)
class ChargeBreakdown:
    """A charge applied to a number of billing units: every line and the exact, unrounded total."""

    model: ChargeModel
    units: Decimal
    lines: tuple[TierLine, ...]
    exact_total: Decimal
    matched_tier: int | None
    units_fraction: Fraction
    exact_total_fraction: Fraction

    def total(self, currency: str, rounding: str = decimal.ROUND_HALF_UP) -> Decimal:
        """Return the total rounded once, from its exact value, to the currency's minor unit."""
        return quantize(self.exact_total_fraction, currency, rounding)

    def as_dict(self, currency: str | None = None, rounding: str = decimal.ROUND_HALF_UP) -> dict[str, Any]:
        """Return the working as plain data; with a currency, the rounded total as well."""
        data: dict[str, Any] = {
            "model": self.model,
            "units": decimal_str(self.units),
            "lines": [line.as_dict() for line in self.lines],
            "matched_tier": self.matched_tier,
            "exact_total": decimal_str(self.exact_total),
        }
        if currency is not None:
            data["currency"] = currency
            data["rounding"] = rounding
            data["total"] = decimal_str(self.total(currency, rounding))
        return data


@dataclass(frozen=True, slots=True)
class PhaseBreakdown:
    """One subscription phase of a period: its usage priced on its own, and its share of the fee.

    `phase_length` and `period_length` are in days or seconds (see the period's
    `proration`); `fraction` = phase_length / period_length, the share of the base fee.
    """

    index: int
    label: str
    starts_at: datetime
    ends_at: datetime | None
    raw_quantity: Decimal
    unit_rule: UnitRule
    units: Decimal
    charge: ChargeBreakdown | None
    usage_exact: Decimal
    base_fee: Decimal
    phase_length: Decimal
    period_length: Decimal
    fraction: Fraction
    prorated_fee_exact: Decimal
    usage_fraction: Fraction
    prorated_fee_fraction: Fraction

    def as_dict(self) -> dict[str, Any]:
        """Return the phase's working as plain data, decimals as strings."""
        return {
            "index": self.index,
            "label": self.label,
            "starts_at": self.starts_at.isoformat(),
            "ends_at": None if self.ends_at is None else self.ends_at.isoformat(),
            "raw_quantity": decimal_str(self.raw_quantity),
            "unit_size": decimal_str(self.unit_rule.unit_size),
            "unit_rounding": self.unit_rule.rounding,
            "units": decimal_str(self.units),
            "charge": None if self.charge is None else self.charge.as_dict(),
            "usage_exact": decimal_str(self.usage_exact),
            "base_fee": decimal_str(self.base_fee),
            "phase_length": decimal_str(self.phase_length),
            "period_length": decimal_str(self.period_length),
            "fraction": f"{self.fraction.numerator}/{self.fraction.denominator}",
            "prorated_fee_exact": decimal_str(self.prorated_fee_exact),
        }


@dataclass(frozen=True, slots=True)
class PeriodBreakdown:
    """A period priced phase by phase: a usage line and a base-fee line, each rounded once.

    `total` is the sum of the two rounded lines (what an invoice shows); `exact_total`
    is the unrounded sum, for reference only.
    """

    period_start: datetime
    period_end: datetime
    time_zone: str
    currency: str
    rounding: str
    proration: Proration
    phases: tuple[PhaseBreakdown, ...]
    usage_exact_total: Decimal
    usage_total: Decimal
    base_fee_exact_total: Decimal
    base_fee_total: Decimal
    exact_total: Decimal
    total: Decimal
    usage_exact_fraction: Fraction
    base_fee_exact_fraction: Fraction

    def as_dict(self) -> dict[str, Any]:
        """Return the period's working as plain data, decimals as strings."""
        return {
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "time_zone": self.time_zone,
            "currency": self.currency,
            "rounding": self.rounding,
            "proration": self.proration,
            "phases": [phase.as_dict() for phase in self.phases],
            "usage_exact_total": decimal_str(self.usage_exact_total),
            "usage_total": decimal_str(self.usage_total),
            "base_fee_exact_total": decimal_str(self.base_fee_exact_total),
            "base_fee_total": decimal_str(self.base_fee_total),
            "exact_total": decimal_str(self.exact_total),
            "total": decimal_str(self.total),
        }
