"""Trueup's pricing engine: pure, exact, standard-library-only pricing of usage.

No Django, no database, no I/O: the same code prices reconciliation runs, what-if
re-pricing and credit-note proposals, and every result carries its working
(`as_dict()`) so that each number in the UI can be explained tier by tier.
"""

from .breakdowns import ChargeBreakdown, PeriodBreakdown, PhaseBreakdown, TierLine
from .catalog import parse_catalog, validate_catalog
from .engine import billing_units_exact, price_units, to_billing_units, units_for
from .errors import (
    PricingError,
    PricingInputError,
    PricingValidationError,
    UnknownCurrencyError,
    ValidationIssue,
)
from .models import (
    CHARGE_MODELS,
    PRORATIONS,
    UNIT_ROUNDINGS,
    Catalog,
    Charge,
    ChargeModel,
    Meter,
    PhaseSpec,
    Plan,
    PlanCharge,
    Proration,
    Tier,
    UnitRounding,
    UnitRule,
)
from .money import MINOR_UNITS, decimal_str, minor_units, normalize_currency, quantize, to_decimal, trimmed
from .periods import day_position, period_length, price_period
from .validation import validate_charge, validate_unit_rule

__all__ = [
    "CHARGE_MODELS",
    "MINOR_UNITS",
    "PRORATIONS",
    "UNIT_ROUNDINGS",
    "Catalog",
    "Charge",
    "ChargeBreakdown",
    "ChargeModel",
    "Meter",
    "PeriodBreakdown",
    "PhaseBreakdown",
    "PhaseSpec",
    "Plan",
    "PlanCharge",
    "PricingError",
    "PricingInputError",
    "PricingValidationError",
    "Proration",
    "Tier",
    "TierLine",
    "UnitRounding",
    "UnitRule",
    "UnknownCurrencyError",
    "ValidationIssue",
    "billing_units_exact",
    "day_position",
    "decimal_str",
    "minor_units",
    "normalize_currency",
    "parse_catalog",
    "period_length",
    "price_period",
    "price_units",
    "quantize",
    "to_billing_units",
    "to_decimal",
    "trimmed",
    "units_for",
    "validate_catalog",
    "validate_charge",
    "validate_unit_rule",
]
