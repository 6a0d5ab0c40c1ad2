"""Reads for the account page: the billing units an account used in a period against its plan's allotment."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Prefetch, Q, Sum
from django.db.models.functions import TruncDate

from apps import pricing
from apps.accounts.allotment import Allotment, allotment_for, share_of
from apps.accounts.models import Account
from apps.catalog.models import Charge, Meter, PlanVersion, PriceOverride, SubscriptionPhase, Tier
from apps.catalog.selectors import engine_charge, engine_unit_rule, phases_overlapping, version_in_effect
from apps.pricing import decimal_str
from apps.reconciliation.core import Month
from apps.tenancy.models import Tenant
from apps.usage.models import UsageEvent

ZERO = Decimal(0)


@dataclass
class MeterUsage:
    """One meter of the period: billing units used so far against the plan's allotment, day by day."""

    meter: Meter
    raw: Decimal
    units: Decimal
    allotment: Allotment | None  # None: the meter has usage but no charge on the plan
    share: Decimal | None
    days: list[tuple[dt.date, Decimal]]  # cumulative billing units at the end of each day
    overridden: bool = False

    @property
    def chart_id(self) -> str:
        return f"usage-chart-{self.meter.pk}"

    @property
    def over(self) -> bool:
        return self.share is not None and self.share > 100

    # Plain decimal strings for HTML attributes (<meter value max high>): never localized.
    @property
    def units_text(self) -> str:
        return decimal_str(self.units)

    @property
    def allotment_text(self) -> str:
        units = self.allotment.units if self.allotment is not None else None
        return decimal_str(units) if units is not None else ""

    @property
    def high_text(self) -> str:
        """80% of the allotment, where the threshold alerts start warning."""
        units = self.allotment.units if self.allotment is not None else None
        return decimal_str(units * Decimal("0.8")) if units is not None else ""

    def chart(self) -> dict[str, Any]:
        datasets: list[dict[str, Any]] = [
            {
                "label": f"{self.meter.name}, billing units used",
                "tone": "usage",
                "data": [decimal_str(units) for _, units in self.days],
            }
        ]
        if self.allotment is not None and self.allotment.units is not None:
            datasets.append(
                {
                    "label": "Allotment",
                    "tone": "allotment",
                    "dashed": True,
                    "data": [decimal_str(self.allotment.units)] * len(self.days),
                }
            )
        return {
            "type": "line",
            "labels": [f"{day:%b} {day.day}" for day, _ in self.days],
            "datasets": datasets,
            "stacked": False,
            "currency": None,
            "horizontal": False,
        }


@dataclass
class UsageAgainstPlan:
    period: str
    start: dt.datetime  # the part of the period the plan in effect covers, [start, end)
    end: dt.datetime
    as_of: dt.datetime
    phase: SubscriptionPhase | None
    version: PlanVersion | None
    phases_in_period: int
    meters: list[MeterUsage] = field(default_factory=list)

    @property
    def plan_changed(self) -> bool:
        return self.phases_in_period > 1


def account_usage(tenant: Tenant, account: Account, period: str, *, now: dt.datetime) -> UsageAgainstPlan:
    """Per meter, the billing units used so far in ``period`` against the allotment of the plan in effect.

    The plan in effect is the subscription phase running at ``now`` (or, for a past period, its
    last phase); as in reconciliation, usage counts from that phase's start inside the period
    (tiers restart per phase), raw quantities are summed and normalized with the meter's unit
    size and rounding, and the version priced is the one in effect when the phase's part of the
    period begins. A negotiated override of the charge replaces the plan's.
    Queries: phases, version, charges and tiers, overrides, one GROUP BY over the events, meters.
    """
    zone = ZoneInfo(account.timezone)
    start, end = Month.parse(period).bounds(zone)
    as_of = min(max(now, start), end)
    phases = list(phases_overlapping(account, start, end))
    if not phases:
        return UsageAgainstPlan(period, start, end, as_of, None, None, 0)
    running = [p for p in phases if p.starts_at < as_of] or phases[:1]
    phase = running[-1]
    part_start = max(start, phase.starts_at)
    part_end = min(end, phase.ends_at) if phase.ends_at else end
    usage = UsageAgainstPlan(period, part_start, part_end, min(as_of, part_end), phase, None, len(phases))
    version = version_in_effect(phase.plan, part_start)
    usage.version = version
    charges = {}
    if version is not None:
        charges = {
            c.meter_id: c
            for c in Charge.objects.filter(tenant=tenant, plan_version=version)
            .select_related("meter")
            .prefetch_related(Prefetch("tiers", queryset=Tier.objects.order_by("position")))
        }
    overrides = _overrides_in_force(tenant, account, phase, part_start)

    rows = (
        UsageEvent.objects.filter(
            tenant=tenant, account=account, occurred_at__gte=part_start, occurred_at__lt=usage.as_of
        )
        .annotate(day=TruncDate("occurred_at", tzinfo=zone))
        .values("meter_id", "day")
        .annotate(total=Sum("quantity"))
        .order_by()
    )
    by_meter: dict[int, dict[dt.date, Decimal]] = {}
    for row in rows:
        by_meter.setdefault(row["meter_id"], {})[row["day"]] = row["total"] or ZERO
    meters = {c.meter_id: c.meter for c in charges.values()}
    missing = set(by_meter) - set(meters)
    if missing:
        meters |= Meter.objects.filter(tenant=tenant).in_bulk(missing)

    first_day = part_start.astimezone(zone).date()
    last_day = (usage.as_of - dt.timedelta(microseconds=1)).astimezone(zone).date()
    calendar = [first_day + dt.timedelta(days=n) for n in range((last_day - first_day).days + 1)]
    for meter_id, meter in sorted(meters.items(), key=lambda item: item[1].key):
        rule = engine_unit_rule(meter)
        per_day = by_meter.get(meter_id, {})
        running_total, days = ZERO, []
        for day in calendar:
            running_total += per_day.get(day, ZERO)
            days.append((day, _billing_units(running_total, rule)))
        raw = sum(per_day.values(), ZERO)
        units = _billing_units(raw, rule)
        override = overrides.get(meter_id)
        charge = override.charge if override is not None else charges.get(meter_id)
        allotment = allotment_for(engine_charge(charge), units) if charge is not None else None
        usage.meters.append(
            MeterUsage(
                meter=meter,
                raw=pricing.trimmed(raw),
                units=units,
                allotment=allotment,
                share=share_of(units, allotment) if allotment is not None else None,
                days=days,
                overridden=override is not None,
            )
        )
    return usage


def _billing_units(raw: Decimal, rule: pricing.UnitRule) -> Decimal:
    return pricing.trimmed(pricing.to_decimal(pricing.units_for(raw, rule)))


def _overrides_in_force(
    tenant: Tenant, account: Account, phase: SubscriptionPhase, at: dt.datetime
) -> dict[int, PriceOverride]:
    """Per meter, the override in force at ``at`` (one query; the same precedence as ``override_for``:
    the account's own beats its segment's, the latest start wins)."""
    scope = Q(account=account)
    if account.segment:
        scope |= Q(segment=account.segment)
    in_force = (
        PriceOverride.objects.filter(tenant=tenant, effective_from__lte=at)
        .filter(scope)
        .filter(Q(effective_to__isnull=True) | Q(effective_to__gt=at))
        .filter(Q(plan__isnull=True) | Q(plan=phase.plan))
        .select_related("charge")
        .prefetch_related("charge__tiers")
        .order_by("effective_from")
    )
    chosen: dict[int, PriceOverride] = {}
    for override in in_force:  # ascending: a later one replaces an earlier one of the same rank
        if not hasattr(override, "charge"):
            continue  # no price written yet: the plan's charge still applies
        current = chosen.get(override.meter_id)
        if current is None or not (current.account_id and not override.account_id):
            chosen[override.meter_id] = override
    return chosen
