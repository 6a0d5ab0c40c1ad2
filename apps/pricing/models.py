"""Immutable descriptions of what is priced: unit rules, tiers, charges, plans and phases."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Final, Literal

UnitRounding = Literal["up", "down", "none"]
ChargeModel = Literal["per_unit", "graduated", "volume", "package"]
Proration = Literal["days", "seconds"]

UNIT_ROUNDINGS: Final[tuple[UnitRounding, ...]] = ("up", "down", "none")
CHARGE_MODELS: Final[tuple[ChargeModel, ...]] = ("per_unit", "graduated", "volume", "package")
PRORATIONS: Final[tuple[Proration, ...]] = ("days", "seconds")

ZERO: Final = Decimal(0)


@dataclass(frozen=True, slots=True)
class UnitRule:
    """How a meter turns raw quantity into billing units: divide by `unit_size`, then round."""

    unit_size: Decimal = Decimal(1)
    rounding: UnitRounding = "none"


@dataclass(frozen=True, slots=True)
class Tier:
    """One row of a tier table; `up_to` is inclusive and `None` means no upper bound."""

    up_to: Decimal | None
    unit_amount: Decimal
    flat_amount: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class Charge:
    """How a plan prices one meter's billing units.

    `per_unit` uses `unit_amount`; `graduated` and `volume` use `tiers`; `package` uses
    `package_size` and `package_amount`. `validation.validate_charge` says what is missing.
    """

    model: ChargeModel
    unit_amount: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    package_size: Decimal | None = None
    package_amount: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Meter:
    """A billable dimension of the catalogue and the unit rule its usage is billed in."""

    key: str
    name: str
    unit_rule: UnitRule


@dataclass(frozen=True, slots=True)
class PlanCharge:
    """A plan's charge for one meter."""

    meter: str
    charge: Charge


@dataclass(frozen=True, slots=True)
class Plan:
    """A priced plan: its currency, recurring base fee and one charge per meter."""

    key: str
    name: str
    currency: str
    base_fee: Decimal
    charges: tuple[PlanCharge, ...] = ()

    def charge_for(self, meter: str) -> Charge | None:
        """Return the plan's charge for `meter`, or None when the plan does not price it."""
        for plan_charge in self.charges:
            if plan_charge.meter == meter:
                return plan_charge.charge
        return None


@dataclass(frozen=True, slots=True)
class Catalog:
    """A parsed, validated pricing catalogue (the `pricing.json` of an export bundle)."""

    meters: tuple[Meter, ...]
    plans: tuple[Plan, ...]

    def meter(self, key: str) -> Meter:
        """Return the meter called `key`; raise KeyError if there is none."""
        for meter in self.meters:
            if meter.key == key:
                return meter
        raise KeyError(f"no meter {key!r} in the catalogue")

    def plan(self, key: str) -> Plan:
        """Return the plan called `key`; raise KeyError if there is none."""
        for plan in self.plans:
            if plan.key == key:
                return plan
        raise KeyError(f"no plan {key!r} in the catalogue")


@dataclass(frozen=True, slots=True)
class PhaseSpec:
    """One subscription phase [starts_at, ends_at) inside a period, with what it prices.

    `raw_quantity` is the usage (in raw meter units) that occurred during this phase and
    the period; `charge` may be None for a phase whose plan does not price the meter
    (then its usage must be zero). `ends_at=None` means the phase is still open.
    """

    starts_at: datetime
    ends_at: datetime | None
    charge: Charge | None = None
    unit_rule: UnitRule = field(default_factory=UnitRule)
    base_fee: Decimal = ZERO
    raw_quantity: Decimal = ZERO
    label: str = ""
