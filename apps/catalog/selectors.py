"""Reading the catalogue, and turning it into the pricing engine's plain objects."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db.models import Prefetch, Q, QuerySet

from apps import pricing
from apps.accounts.models import Account
from apps.catalog.models import Charge, Meter, Plan, PlanVersion, PriceOverride, SubscriptionPhase, Tier
from apps.tenancy.models import Tenant

ZERO = Decimal(0)


def meter_list(tenant: Tenant) -> QuerySet[Meter]:
    return Meter.objects.filter(tenant=tenant)


def plan_list(tenant: Tenant) -> QuerySet[Plan]:
    return Plan.objects.filter(tenant=tenant).prefetch_related("versions")


def plan_version_detail(tenant: Tenant, version_id: int) -> PlanVersion:
    from django.shortcuts import get_object_or_404

    charges = Charge.objects.select_related("meter").prefetch_related(
        Prefetch("tiers", queryset=Tier.objects.order_by("position"))
    )
    queryset = PlanVersion.objects.filter(tenant=tenant).select_related("plan")
    return get_object_or_404(queryset.prefetch_related(Prefetch("charges", queryset=charges)), pk=version_id)


def version_in_effect(plan: Plan, at: dt.datetime) -> PlanVersion | None:
    """The plan's version whose ``effective_from`` is the latest at or before ``at``."""
    return PlanVersion.objects.filter(plan=plan, effective_from__lte=at).order_by("-effective_from").first()


def _num(value: Decimal | None) -> Decimal | None:
    return None if value is None else pricing.trimmed(value)


def engine_unit_rule(meter: Meter) -> pricing.UnitRule:
    return pricing.UnitRule(unit_size=pricing.trimmed(meter.unit_size), rounding=meter.rounding)  # type: ignore[arg-type]


def engine_charge(charge: Charge) -> pricing.Charge:
    """The engine's view of a stored charge (tiers in position order)."""
    tiers = tuple(
        pricing.Tier(
            up_to=_num(t.up_to),
            unit_amount=pricing.trimmed(t.unit_amount),
            flat_amount=_num(t.flat_amount) or ZERO,
        )
        for t in sorted(charge.tiers.all(), key=lambda t: t.position)
    )
    return pricing.Charge(
        model=charge.model,  # type: ignore[arg-type]
        unit_amount=_num(charge.unit_amount),
        tiers=tiers,
        package_size=_num(charge.package_size),
        package_amount=_num(charge.package_amount),
    )


def override_for(account: Account, meter: Meter, plan: Plan, at: dt.datetime) -> PriceOverride | None:
    """The override in force for the account and meter at ``at``: the account's own beats its segment's."""
    in_force = (
        PriceOverride.objects.filter(meter=meter, effective_from__lte=at)
        .filter(Q(effective_to__isnull=True) | Q(effective_to__gt=at))
        .filter(Q(plan__isnull=True) | Q(plan=plan))
        .select_related("charge")
        .prefetch_related("charge__tiers")
    )
    own = in_force.filter(account=account).order_by("-effective_from").first()
    if own is not None or not account.segment:
        return own
    return in_force.filter(segment=account.segment).order_by("-effective_from").first()


def phases_overlapping(account: Account, start: dt.datetime, end: dt.datetime) -> QuerySet[SubscriptionPhase]:
    """The account's phases that overlap [start, end)."""
    return (
        SubscriptionPhase.objects.filter(account=account, starts_at__lt=end)
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=start))
        .select_related("plan")
        .order_by("starts_at")
    )
