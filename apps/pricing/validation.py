"""The rules a charge and a unit rule must follow before anything is priced with them."""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal
from typing import Final

from .errors import ValidationIssue
from .models import CHARGE_MODELS, UNIT_ROUNDINGS, Charge, UnitRule
from .money import is_known_currency

MAX_AMOUNT_PLACES: Final = 12
"""Unit prices (and flat and package amounts) keep at most this many decimal places."""


def join_path(path: str, name: str) -> str:
    """Append a field name or an `[index]` to a dotted field path."""
    if not path or name.startswith("["):
        return f"{path}{name}"
    return f"{path}.{name}"


def decimal_places(value: Decimal) -> int:
    """Count the significant decimal places of `value` (trailing zeros do not count)."""
    _sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or exponent >= 0:
        return 0
    trailing_zeros = 0
    for digit in reversed(digits):
        if digit != 0:
            break
        trailing_zeros += 1
    return max(0, -exponent - trailing_zeros)


def _as_number(value: object) -> Decimal | str:
    """Return `value` as a Decimal, or the reason it is not a usable number."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        return f"must be a decimal number, not {type(value).__name__}"
    if isinstance(value, Decimal) and not value.is_finite():
        return "must be a finite number"
    return Decimal(value)


def check_amount(value: object, field: str, *, max_places: int = MAX_AMOUNT_PLACES) -> list[ValidationIssue]:
    """Check a money amount: a finite, non-negative decimal with at most `max_places` places."""
    amount = _as_number(value)
    if isinstance(amount, str):
        return [ValidationIssue(field, amount)]
    if amount < 0:
        return [ValidationIssue(field, f"must not be negative (got {amount})")]
    places = decimal_places(amount)
    if places > max_places:
        return [ValidationIssue(field, f"has {places} decimal places; at most {max_places} are kept")]
    return []


def check_positive(value: object, field: str) -> list[ValidationIssue]:
    """Check a size or bound: a finite decimal strictly greater than zero."""
    number = _as_number(value)
    if isinstance(number, str):
        return [ValidationIssue(field, number)]
    if number <= 0:
        return [ValidationIssue(field, f"must be greater than 0 (got {number})")]
    return []


def validate_unit_rule(rule: UnitRule, *, path: str = "") -> list[ValidationIssue]:
    """Return every problem with a unit rule: unit_size > 0 and rounding up/down/none."""
    issues = check_positive(rule.unit_size, join_path(path, "unit_size"))
    if rule.rounding not in UNIT_ROUNDINGS:
        issues.append(
            ValidationIssue(
                join_path(path, "rounding"),
                f"unknown rounding {rule.rounding!r}; use one of {', '.join(UNIT_ROUNDINGS)}",
            )
        )
    return issues


def validate_charge(
    charge: Charge,
    currency: str | None = None,
    *,
    path: str = "",
    currency_field: str = "currency",
    unknown: Collection[str] = (),
) -> list[ValidationIssue]:
    """Return every problem with a charge (and its currency, when given); empty when valid.

    `unknown` names field paths already reported as unreadable by a parser: they are not
    checked again, and no rule compares against them.
    """
    issues: list[ValidationIssue] = []
    if currency is not None and not is_known_currency(currency):
        issues.append(ValidationIssue(currency_field, f"unknown currency {currency!r}: not an ISO 4217 code"))
    model_field = join_path(path, "model")
    if charge.model not in CHARGE_MODELS:
        if model_field not in unknown:
            issues.append(
                ValidationIssue(
                    model_field, f"unknown model {charge.model!r}; use one of {', '.join(CHARGE_MODELS)}"
                )
            )
        return issues

    uses_unit_amount = charge.model == "per_unit"
    uses_tiers = charge.model in ("graduated", "volume")
    uses_package = charge.model == "package"
    unused = f"is not used by the {charge.model} model"
    required = f"is required for the {charge.model} model"

    def field_issues(name: str, value: object, used: bool, check: str) -> None:
        field = join_path(path, name)
        if field in unknown:
            return
        if not used:
            if value is not None:
                issues.append(ValidationIssue(field, unused))
            return
        if value is None:
            issues.append(ValidationIssue(field, required))
        elif check == "amount":
            issues.extend(check_amount(value, field))
        else:
            issues.extend(check_positive(value, field))

    field_issues("unit_amount", charge.unit_amount, uses_unit_amount, "amount")
    field_issues("package_size", charge.package_size, uses_package, "positive")
    field_issues("package_amount", charge.package_amount, uses_package, "amount")

    tiers_field = join_path(path, "tiers")
    if tiers_field in unknown:
        return issues
    if not uses_tiers:
        if charge.tiers:
            issues.append(ValidationIssue(tiers_field, unused))
        return issues
    if not charge.tiers:
        issues.append(ValidationIssue(tiers_field, f"at least one tier {required}"))
        return issues
    issues.extend(_tier_issues(charge, tiers_field, unknown))
    return issues


def _tier_issues(charge: Charge, tiers_field: str, unknown: Collection[str]) -> list[ValidationIssue]:
    issues: list[ValidationIssue] = []
    last = len(charge.tiers) - 1
    previous: Decimal | None = None
    for index, tier in enumerate(charge.tiers):
        tier_path = f"{tiers_field}[{index}]"
        for name, value in (("unit_amount", tier.unit_amount), ("flat_amount", tier.flat_amount)):
            field = join_path(tier_path, name)
            if field not in unknown:
                issues.extend(check_amount(value, field))
        up_to_field = join_path(tier_path, "up_to")
        if up_to_field in unknown:
            continue
        if tier.up_to is None:
            if index != last:
                issues.append(
                    ValidationIssue(
                        up_to_field,
                        "only the last tier may be open (up_to null); later tiers could never apply",
                    )
                )
            continue
        if index == last:
            issues.append(
                ValidationIssue(
                    up_to_field, "the last tier must be open (up_to null) so that every quantity has a price"
                )
            )
        bound_issues = check_positive(tier.up_to, up_to_field)
        issues.extend(bound_issues)
        if bound_issues:
            continue
        if previous is not None and tier.up_to <= previous:
            issues.append(
                ValidationIssue(
                    up_to_field,
                    f"must be greater than the previous tier's up_to ({previous}): up_to strictly increases",
                )
            )
        else:
            previous = tier.up_to
    return issues
