"""Comparing the provider's prices with the tenant's catalogue: drift, and which plan a subscription is on.

Provider prices are per raw unit (Stripe) or per usage unit (Chargebee); the catalogue prices
billing units of ``unit_size`` raw units. A price is converted to billing units with the
meter's unit size and compared with the catalogue's charges exactly (Decimal, trailing
zeros ignored). A metered price that matches no charge of any plan in force is *drift*.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from apps import pricing
from apps.catalog.models import Meter, Plan, PlanVersion
from apps.catalog.selectors import engine_charge, version_in_effect
from apps.providers import base


def provider_charge(price: base.Price, unit_size: Decimal) -> pricing.Charge | None:
    """The price as a catalogue charge over billing units (None for a flat, non-metered price)."""
    if price.model == "flat":
        return None

    def per_billing_unit(amount: Decimal | None) -> Decimal | None:
        return None if amount is None else pricing.trimmed(amount * unit_size)

    if price.model == "per_unit":
        return pricing.Charge(model="per_unit", unit_amount=per_billing_unit(price.unit_amount))
    if price.model == "package":
        size = pricing.trimmed((price.package_size or Decimal(1)) / unit_size)
        return pricing.Charge(
            model="package",
            package_size=size,
            package_amount=pricing.trimmed(price.unit_amount or Decimal(0)),
        )
    tiers = tuple(
        pricing.Tier(
            up_to=None if t.up_to is None else pricing.trimmed(t.up_to / unit_size),
            unit_amount=per_billing_unit(t.unit_amount) or Decimal(0),
            flat_amount=pricing.trimmed(t.flat_amount),
        )
        for t in price.tiers
    )
    return pricing.Charge(model=price.model, tiers=tiers)


def _canonical(charge: pricing.Charge) -> tuple[Any, ...]:
    def n(value: Decimal | None) -> Decimal | None:
        return None if value is None else pricing.trimmed(value)

    return (
        charge.model,
        n(charge.unit_amount),
        n(charge.package_size),
        n(charge.package_amount),
        tuple((n(t.up_to), n(t.unit_amount), n(t.flat_amount) or Decimal(0)) for t in charge.tiers),
    )


def versions_in_force(at: dt.datetime) -> list[PlanVersion]:
    versions = []
    for plan in Plan.objects.all():
        version = version_in_effect(plan, at)
        if version is not None:
            versions.append(version)
    return versions


def _matches(price: base.Price, version: PlanVersion, meters: dict[str, Meter]) -> bool:
    if price.currency.upper() != version.plan.currency:
        return False
    if price.meter is None:
        return price.model == "flat" and pricing.trimmed(price.unit_amount or Decimal(0)) == pricing.trimmed(
            version.base_fee
        )
    meter = meters.get(price.meter)
    wanted = provider_charge(price, meter.unit_size) if meter else None
    if wanted is None:
        return False
    charges = [c for c in version.charges.all() if c.meter_id == meter.pk]  # type: ignore[union-attr]
    return any(_canonical(engine_charge(c)) == _canonical(wanted) for c in charges)


def price_drift(prices: list[base.Price], at: dt.datetime) -> list[dict[str, Any]]:
    """Prices (metered, and base fees) that no plan version in force at ``at`` charges the same way."""
    meters = {m.key: m for m in Meter.objects.all()}
    versions = versions_in_force(at)
    drift: list[dict[str, Any]] = []
    for price in prices:
        if price.meter is not None and price.meter not in meters:
            drift.append(
                {"price": price.id, "meter": price.meter, "reason": "the catalogue has no such meter"}
            )
        elif not any(_matches(price, version, meters) for version in versions):
            charge = provider_charge(price, meters[price.meter].unit_size) if price.meter else None
            drift.append(
                {
                    "price": price.id,
                    "meter": price.meter,
                    "currency": price.currency.upper(),
                    "reason": "no plan in the catalogue charges this price"
                    if price.meter
                    else "no plan has this base fee",
                    "provider_per_billing_unit": None if charge is None else _describe(charge),
                }
            )
    return drift


def _describe(charge: pricing.Charge) -> str:
    if charge.model == "per_unit":
        return f"{charge.unit_amount} per billing unit"
    if charge.model == "package":
        return f"{charge.package_amount} per {charge.package_size} billing units"
    tiers = ", ".join(
        f"≤{t.up_to if t.up_to is not None else '∞'} @ {t.unit_amount}"
        + (f" + {t.flat_amount}" if t.flat_amount else "")
        for t in charge.tiers
    )
    return f"{charge.model}: {tiers}"


def plan_for(price_ids: tuple[str, ...], prices: dict[str, base.Price], at: dt.datetime) -> Plan | None:
    """The one plan whose version in force charges every price of a subscription the same way, if any."""
    meters = {m.key: m for m in Meter.objects.all()}
    subscribed = [prices[p] for p in price_ids if p in prices]
    if not subscribed:
        return None
    fits = [v.plan for v in versions_in_force(at) if all(_matches(p, v, meters) for p in subscribed)]
    return fits[0] if len(fits) == 1 else None
