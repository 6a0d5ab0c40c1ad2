"""Reading a pricing catalogue (`pricing.json`): everything is checked before anything is built."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Final, TypeVar

from .errors import PricingValidationError, ValidationIssue
from .models import CHARGE_MODELS, UNIT_ROUNDINGS, Catalog, Charge, Meter, Plan, PlanCharge, Tier, UnitRule
from .money import is_known_currency
from .validation import check_amount, check_positive, join_path, validate_charge

_Choice = TypeVar("_Choice", bound=str)

_DECIMAL_TEXT: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_MAX_DIGITS: Final = 40
_MAX_EXPONENT: Final = 40

_ROOT_KEYS: Final = frozenset({"meters", "plans"})
_METER_KEYS: Final = frozenset({"key", "name", "unit_size", "rounding"})
_PLAN_KEYS: Final = frozenset({"key", "name", "currency", "base_fee", "charges"})
_CHARGE_KEYS: Final = frozenset({"meter", "model", "unit_amount", "tiers", "package_size", "package_amount"})
_TIER_KEYS: Final = frozenset({"up_to", "unit_amount", "flat_amount"})


class _Reader:
    """Walks the raw catalogue, collecting every issue, and builds it only when there are none."""

    def __init__(self) -> None:
        self.issues: list[ValidationIssue] = []
        self.unreadable: set[str] = set()

    def error(self, field: str, reason: str) -> None:
        self.issues.append(ValidationIssue(field, reason))

    def obj(self, value: object, field: str) -> Mapping[str, object] | None:
        if not isinstance(value, Mapping):
            self.error(field, f"must be an object, not {_json_type(value)}")
            return None
        return value

    def keys(self, data: Mapping[str, object], allowed: frozenset[str], path: str) -> None:
        for key in data:
            if key not in allowed:
                expected = ", ".join(sorted(allowed))
                self.error(join_path(path, str(key)), f"unknown field; expected one of {expected}")

    def array(self, data: Mapping[str, object], key: str, path: str) -> list[object] | None:
        field = join_path(path, key)
        if key not in data:
            self.error(field, "is required")
            return None
        value = data[key]
        if not isinstance(value, list):
            self.error(field, f"must be a list, not {_json_type(value)}")
            return None
        return value

    def text(self, data: Mapping[str, object], key: str, path: str) -> str | None:
        field = join_path(path, key)
        value = data.get(key)
        if key not in data:
            self.error(field, "is required")
        elif not isinstance(value, str) or not value.strip():
            self.error(field, "must be a non-empty string")
        else:
            return value
        self.unreadable.add(field)
        return None

    def number(
        self, data: Mapping[str, object], key: str, path: str, *, required: bool = True
    ) -> Decimal | None:
        """Read a decimal written as a string (or an integer); floats are refused, not guessed at."""
        field = join_path(path, key)
        value = data.get(key)
        if value is None and not required:
            return None  # absent and null both mean "not set" for an optional field
        if key not in data:
            self.error(field, "is required")
            self.unreadable.add(field)
            return None
        reason: str | None = None
        parsed: Decimal | None = None
        if isinstance(value, bool) or value is None:
            reason = f'must be a decimal string such as "10.00", not {_json_type(value)}'
        elif isinstance(value, float):
            reason = f'must be a decimal string such as "10.00", not a JSON number ({value!r} is inexact)'
        elif isinstance(value, int | Decimal):
            parsed = Decimal(value)
        elif isinstance(value, str):
            parsed = _parse_decimal(value.strip())
            if parsed is None:
                reason = f'must be a decimal string such as "10.00" (got {value!r})'
        else:
            reason = f"must be a decimal string, not {_json_type(value)}"
        if parsed is not None and not parsed.is_finite():
            reason = f"must be a finite decimal (got {value!r})"
        if reason is not None or parsed is None:
            self.error(field, reason or "must be a decimal string")
            self.unreadable.add(field)
            return None
        return parsed


def _parse_decimal(text: str) -> Decimal | None:
    if not _DECIMAL_TEXT.fullmatch(text):
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid literals
        return None
    _sign, digits, exponent = value.as_tuple()
    if len(digits) > _MAX_DIGITS or (isinstance(exponent, int) and abs(exponent) > _MAX_EXPONENT):
        return None
    return value


def _choice(value: object, choices: tuple[_Choice, ...]) -> _Choice | None:
    """Return `value` as one of `choices` (narrowed to its literal type), or None."""
    for choice in choices:
        if value == choice:
            return choice
    return None


def _json_type(value: object) -> str:
    names = {
        bool: "a boolean",
        type(None): "null",
        float: "a number",
        int: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }
    return names.get(type(value), type(value).__name__)


def _read_meter(reader: _Reader, raw: object, path: str) -> tuple[str | None, Meter | None]:
    """Return the meter's key (when readable, so that charges can refer to it) and the meter."""
    data = reader.obj(raw, path)
    if data is None:
        return None, None
    reader.keys(data, _METER_KEYS, path)
    key = reader.text(data, "key", path)
    name = reader.text(data, "name", path)
    unit_size = reader.number(data, "unit_size", path)
    if unit_size is not None:
        reader.issues.extend(check_positive(unit_size, join_path(path, "unit_size")))
    rounding = _choice(data.get("rounding"), UNIT_ROUNDINGS)
    rounding_field = join_path(path, "rounding")
    choices = ", ".join(UNIT_ROUNDINGS)
    if "rounding" not in data:
        reader.error(rounding_field, f"is required; use one of {choices}")
    elif rounding is None:
        reader.error(rounding_field, f"must be one of {choices} (got {data['rounding']!r})")
    if key is None or name is None or unit_size is None or rounding is None:
        return key, None
    return key, Meter(key=key, name=name, unit_rule=UnitRule(unit_size=unit_size, rounding=rounding))


def _read_tier(reader: _Reader, raw: object, path: str) -> Tier | None:
    data = reader.obj(raw, path)
    if data is None:
        return None
    reader.keys(data, _TIER_KEYS, path)
    up_to: Decimal | None = None
    up_to_field = join_path(path, "up_to")
    if "up_to" not in data:
        reader.error(up_to_field, "is required (null for the open last tier)")
        reader.unreadable.add(up_to_field)
    elif data["up_to"] is not None:
        up_to = reader.number(data, "up_to", path)
    unit_amount = reader.number(data, "unit_amount", path)
    flat_amount = reader.number(data, "flat_amount", path, required=False)
    # A placeholder keeps the tier's position; its unreadable fields are not checked again.
    return Tier(
        up_to=up_to,
        unit_amount=Decimal(0) if unit_amount is None else unit_amount,
        flat_amount=Decimal(0) if flat_amount is None else flat_amount,
    )


def _read_charge(reader: _Reader, raw: object, path: str, meter_keys: set[str]) -> PlanCharge | None:
    data = reader.obj(raw, path)
    if data is None:
        return None
    reader.keys(data, _CHARGE_KEYS, path)
    meter = reader.text(data, "meter", path)
    if meter is not None and meter not in meter_keys:
        defined = ", ".join(sorted(meter_keys)) or "no meters"
        reader.error(join_path(path, "meter"), f"unknown meter {meter!r}; the catalogue defines {defined}")
    model = _choice(data.get("model"), CHARGE_MODELS)
    model_field = join_path(path, "model")
    if model is None:
        reason = "is required" if "model" not in data else f"unknown model {data['model']!r}"
        reader.error(model_field, f"{reason}; use one of {', '.join(CHARGE_MODELS)}")
        return None
    tiers: list[Tier] = []
    tiers_field = join_path(path, "tiers")
    if "tiers" in data:
        raw_tiers = reader.array(data, "tiers", path)
        if raw_tiers is None:
            reader.unreadable.add(tiers_field)
        for index, raw_tier in enumerate(raw_tiers or []):
            tier = _read_tier(reader, raw_tier, f"{tiers_field}[{index}]")
            if tier is None:
                reader.unreadable.add(tiers_field)
            else:
                tiers.append(tier)
    charge = Charge(
        model=model,
        unit_amount=reader.number(data, "unit_amount", path, required=False),
        tiers=tuple(tiers),
        package_size=reader.number(data, "package_size", path, required=False),
        package_amount=reader.number(data, "package_amount", path, required=False),
    )
    reader.issues.extend(validate_charge(charge, path=path, unknown=reader.unreadable))
    if meter is None:
        return None
    return PlanCharge(meter=meter, charge=charge)


def _read_plan(reader: _Reader, raw: object, path: str, meter_keys: set[str]) -> Plan | None:
    data = reader.obj(raw, path)
    if data is None:
        return None
    reader.keys(data, _PLAN_KEYS, path)
    key = reader.text(data, "key", path)
    name = reader.text(data, "name", path)
    currency = reader.text(data, "currency", path)
    if currency is not None and not is_known_currency(currency):
        reader.error(join_path(path, "currency"), f"unknown currency {currency!r}: not an ISO 4217 code")
    base_fee = reader.number(data, "base_fee", path)
    if base_fee is not None:
        reader.issues.extend(check_amount(base_fee, join_path(path, "base_fee")))
    charges: list[PlanCharge] = []
    seen: dict[str, int] = {}
    for index, raw_charge in enumerate(reader.array(data, "charges", path) or []):
        charge_path = f"{path}.charges[{index}]"
        plan_charge = _read_charge(reader, raw_charge, charge_path, meter_keys)
        if plan_charge is None:
            continue
        if plan_charge.meter in seen:
            reader.error(
                join_path(charge_path, "meter"),
                f"the plan already prices meter {plan_charge.meter!r} (charges[{seen[plan_charge.meter]}])",
            )
        seen.setdefault(plan_charge.meter, index)
        charges.append(plan_charge)
    if key is None or name is None or currency is None or base_fee is None:
        return None
    code = currency.strip().upper()
    return Plan(key=key, name=name, currency=code, base_fee=base_fee, charges=tuple(charges))


def _read(data: object) -> tuple[Catalog | None, list[ValidationIssue]]:
    reader = _Reader()
    root = reader.obj(data, "")
    if root is None:
        return None, reader.issues
    reader.keys(root, _ROOT_KEYS, "")
    meters: list[Meter] = []
    first_meter: dict[str, int] = {}
    for index, raw in enumerate(reader.array(root, "meters", "") or []):
        key, meter = _read_meter(reader, raw, f"meters[{index}]")
        if key is None:
            continue
        if key in first_meter:
            first = f"meters[{first_meter[key]}]"
            reader.error(f"meters[{index}].key", f"duplicate meter key {key!r} (first at {first})")
            continue
        first_meter[key] = index
        if meter is not None:
            meters.append(meter)
    meter_keys = set(first_meter)
    plans: list[Plan] = []
    first_plan: dict[str, int] = {}
    for index, raw in enumerate(reader.array(root, "plans", "") or []):
        plan = _read_plan(reader, raw, f"plans[{index}]", meter_keys)
        if plan is None:
            continue
        if plan.key in first_plan:
            first = f"plans[{first_plan[plan.key]}]"
            reader.error(f"plans[{index}].key", f"duplicate plan key {plan.key!r} (first at {first})")
            continue
        first_plan[plan.key] = index
        plans.append(plan)
    if reader.issues:
        return None, reader.issues
    return Catalog(meters=tuple(meters), plans=tuple(plans)), []


def validate_catalog(data: object) -> list[ValidationIssue]:
    """Return every problem in a raw catalogue (the decoded `pricing.json`); empty when valid."""
    return _read(data)[1]


def parse_catalog(data: object) -> Catalog:
    """Parse a raw catalogue, or raise `PricingValidationError` listing every problem (never half-parsed)."""
    catalog, issues = _read(data)
    if catalog is None:
        raise PricingValidationError(issues)
    return catalog
