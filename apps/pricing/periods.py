"""Pricing a billing period split into subscription phases, with the base fee prorated."""

from __future__ import annotations

import decimal
import itertools
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .breakdowns import PeriodBreakdown, PhaseBreakdown
from .engine import billing_units_exact, price_units
from .errors import PricingInputError, PricingValidationError, ValidationIssue
from .models import PRORATIONS, PhaseSpec, Proration
from .money import check_rounding_mode, normalize_currency, quantize, to_decimal, to_fraction
from .validation import check_amount, validate_charge, validate_unit_rule

_ZERO = Fraction(0)
_MICROSECOND = timedelta(microseconds=1)


def _micros_between(start: datetime, end: datetime) -> int:
    # Subtracting two datetimes that share a tzinfo compares wall clocks and ignores
    # DST; on UTC instants the difference is the real elapsed time.
    return (end.astimezone(UTC) - start.astimezone(UTC)) // _MICROSECOND


def _start_of_day(day: date, zone: ZoneInfo) -> datetime:
    # fold=0 puts a midnight that falls in a DST gap at the transition itself, which
    # is when that local day really begins.
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def day_position(moment: datetime, zone: ZoneInfo) -> Fraction:
    """Return the moment as a count of local calendar days: the day's ordinal plus the elapsed share of it.

    Local days last 23, 24 or 25 hours; measuring each by its own length keeps a whole
    local day worth exactly 1, so a phase from one local midnight to another spans a
    whole number of days, and positions of consecutive boundaries add up.
    """
    day = moment.astimezone(zone).date()
    start = _start_of_day(day, zone)
    end = _start_of_day(day + timedelta(days=1), zone)
    return day.toordinal() + Fraction(_micros_between(start, moment), _micros_between(start, end))


def period_length(start: datetime, end: datetime, zone: ZoneInfo, proration: Proration) -> Fraction:
    """Return the length of [start, end) in local calendar days, or in seconds."""
    if end <= start:
        return _ZERO
    if proration == "seconds":
        return Fraction(_micros_between(start, end), 1_000_000)
    return day_position(end, zone) - day_position(start, zone)


def _zone(time_zone: str) -> ZoneInfo:
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PricingInputError(f"unknown time zone {time_zone!r}") from exc


def _require_aware(moment: object, name: str) -> datetime:
    if not isinstance(moment, datetime):
        raise PricingInputError(f"{name} must be a datetime, not {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise PricingInputError(f"{name} must be an aware datetime (got naive {moment.isoformat()})")
    return moment


def _phase_issues(phases: Sequence[PhaseSpec]) -> list[ValidationIssue]:
    issues: list[ValidationIssue] = []
    for index, phase in enumerate(phases):
        path = f"phases[{index}]"
        issues.extend(validate_unit_rule(phase.unit_rule, path=f"{path}.unit_rule"))
        issues.extend(check_amount(phase.base_fee, f"{path}.base_fee"))
        if phase.charge is not None:
            issues.extend(validate_charge(phase.charge, path=f"{path}.charge"))
    return issues


def _check_phases(phases: Sequence[PhaseSpec]) -> None:
    for index, phase in enumerate(phases):
        _require_aware(phase.starts_at, f"phases[{index}].starts_at")
        if phase.ends_at is not None:
            _require_aware(phase.ends_at, f"phases[{index}].ends_at")
            if phase.ends_at <= phase.starts_at:
                raise PricingInputError(
                    f"phases[{index}] ends ({phase.ends_at}) before it starts ({phase.starts_at})"
                )
        raw = to_fraction(phase.raw_quantity, what=f"phases[{index}].raw_quantity")
        if raw < 0:
            raise PricingInputError(
                f"phases[{index}].raw_quantity must not be negative (got {phase.raw_quantity})"
            )
        if phase.charge is None and raw != 0:
            raise PricingInputError(
                f"phases[{index}] has usage ({phase.raw_quantity}) but no charge to price it with"
            )
    ordered = sorted(range(len(phases)), key=lambda i: phases[i].starts_at)
    for before, after in itertools.pairwise(ordered):
        earlier_end = phases[before].ends_at
        if earlier_end is None or earlier_end > phases[after].starts_at:
            raise PricingInputError(
                f"phases[{before}] and phases[{after}] overlap: a moment can only belong to one phase"
            )


def price_period(
    *,
    period_start: datetime,
    period_end: datetime,
    time_zone: str,
    phases: Sequence[PhaseSpec],
    currency: str,
    proration: Proration = "days",
    rounding: str = decimal.ROUND_HALF_UP,
) -> PeriodBreakdown:
    """Price a period [period_start, period_end) phase by phase, each line rounded once.

    Each phase normalizes its own raw quantity to billing units and prices them with its
    own charge, tiers starting afresh. Each phase's base fee is prorated by the share of
    the period it covers, measured in local calendar days of `time_zone` (or in seconds).
    The usage line and the base-fee line are each summed exactly over the phases and
    rounded once to the currency's minor unit with `rounding`.
    """
    _require_aware(period_start, "period_start")
    _require_aware(period_end, "period_end")
    if period_end <= period_start:
        raise PricingInputError(f"the period ends ({period_end}) before it starts ({period_start})")
    zone = _zone(time_zone)
    code = normalize_currency(currency)
    check_rounding_mode(rounding)
    if proration not in PRORATIONS:
        raise PricingInputError(f"unknown proration {proration!r}; use one of {', '.join(PRORATIONS)}")
    issues = _phase_issues(phases)
    if issues:
        raise PricingValidationError(issues)
    _check_phases(phases)

    whole = period_length(period_start, period_end, zone, proration)
    breakdowns: list[PhaseBreakdown] = []
    usage_total = fee_total = _ZERO
    for index, phase in enumerate(phases):
        covered_from = max(phase.starts_at, period_start)
        covered_to = period_end if phase.ends_at is None else min(phase.ends_at, period_end)
        covered = period_length(covered_from, covered_to, zone, proration)
        fraction = covered / whole
        units = billing_units_exact(phase.raw_quantity, phase.unit_rule.unit_size, phase.unit_rule.rounding)
        charge = None if phase.charge is None else price_units(phase.charge, units)
        usage = _ZERO if charge is None else charge.exact_total_fraction
        fee = Fraction(phase.base_fee) * fraction
        usage_total += usage
        fee_total += fee
        breakdowns.append(
            PhaseBreakdown(
                index=index,
                label=phase.label,
                starts_at=phase.starts_at,
                ends_at=phase.ends_at,
                raw_quantity=phase.raw_quantity,
                unit_rule=phase.unit_rule,
                units=to_decimal(units),
                charge=charge,
                usage_exact=to_decimal(usage),
                base_fee=phase.base_fee,
                phase_length=to_decimal(covered),
                period_length=to_decimal(whole),
                fraction=fraction,
                prorated_fee_exact=to_decimal(fee),
                usage_fraction=usage,
                prorated_fee_fraction=fee,
            )
        )
    usage_rounded = quantize(usage_total, code, rounding)
    fee_rounded = quantize(fee_total, code, rounding)
    return PeriodBreakdown(
        period_start=period_start,
        period_end=period_end,
        time_zone=time_zone,
        currency=code,
        rounding=rounding,
        proration=proration,
        phases=tuple(breakdowns),
        usage_exact_total=to_decimal(usage_total),
        usage_total=usage_rounded,
        base_fee_exact_total=to_decimal(fee_total),
        base_fee_total=fee_rounded,
        exact_total=to_decimal(usage_total + fee_total),
        # Both lines already sit on the minor-unit grid, so this adds without rounding.
        total=quantize(Fraction(usage_rounded) + Fraction(fee_rounded), code, rounding),
        usage_exact_fraction=usage_total,
        base_fee_exact_fraction=fee_total,
    )
