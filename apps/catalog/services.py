"""Writing the catalogue. Every charge is checked by the pricing engine's rules before anything is saved."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps import pricing
from apps.audit.services import Actor, audit_record, snapshot
from apps.catalog.models import Charge, Meter, Plan, PlanVersion, PriceOverride, SubscriptionPhase, Tier
from apps.catalog.selectors import engine_charge
from apps.common.services import model_create, model_update
from apps.users.models import User


@dataclass(frozen=True)
class ChargeSpec:
    """A charge as typed in a form or an import: what `charge_save` validates and stores."""

    model: str
    unit_amount: Decimal | None = None
    package_size: Decimal | None = None
    package_amount: Decimal | None = None
    tiers: tuple[pricing.Tier, ...] = ()

    @classmethod
    def from_engine(cls, charge: pricing.Charge) -> ChargeSpec:
        return cls(
            model=charge.model,
            unit_amount=charge.unit_amount,
            package_size=charge.package_size,
            package_amount=charge.package_amount,
            tiers=charge.tiers,
        )

    def as_engine(self) -> pricing.Charge:
        return pricing.Charge(
            model=self.model,  # type: ignore[arg-type]
            unit_amount=self.unit_amount,
            tiers=self.tiers,
            package_size=self.package_size,
            package_amount=self.package_amount,
        )


def issues_as_validation_error(issues: list[pricing.ValidationIssue]) -> ValidationError:
    """Engine issues as a Django error keyed by field path (``tiers[2].up_to``), for forms and the API."""
    errors: dict[str, list[str]] = {}
    for issue in issues:
        errors.setdefault(issue.field or "__all__", []).append(issue.reason)
    return ValidationError(errors)


def _refuse_if_locked(version: PlanVersion | None) -> None:
    if version is not None and version.is_locked:
        raise ValidationError(
            f"{version} was used by a reconciled period and can no longer change: create a new version."
        )


def meter_create(*, actor: Actor, **fields: Any) -> Meter:
    return model_create(instance=Meter(**fields), actor=actor, action="meter.create")


def meter_update(*, meter: Meter, actor: Actor, data: dict[str, Any]) -> Meter:
    return model_update(instance=meter, data=data, actor=actor, action="meter.update")


def plan_create(*, actor: Actor, key: str, name: str, currency: str) -> Plan:
    return model_create(
        instance=Plan(key=key, name=name, currency=currency), actor=actor, action="plan.create"
    )


@transaction.atomic
def plan_version_create(
    *,
    actor: Actor,
    plan: Plan,
    effective_from: dt.datetime,
    base_fee: Decimal,
    note: str = "",
    copy_from: PlanVersion | None = None,
) -> PlanVersion:
    """A new version of ``plan``; with ``copy_from`` its charges and tiers start as a copy of that one's."""
    if base_fee is None or base_fee < 0:
        raise ValidationError({"base_fee": "The base fee must be 0 or more."})
    issues = pricing.validate_charge(pricing.Charge(model="per_unit", unit_amount=base_fee), path="")
    if issues:
        raise ValidationError({"base_fee": [i.reason for i in issues]})
    number = (
        PlanVersion.objects.filter(plan=plan).order_by("-number").values_list("number", flat=True).first()
        or 0
    ) + 1
    version = model_create(
        instance=PlanVersion(
            plan=plan, number=number, effective_from=effective_from, base_fee=base_fee, note=note
        ),
        actor=actor,
        action="plan_version.create",
    )
    if copy_from is not None:
        for charge in copy_from.charges.select_related("meter").prefetch_related("tiers"):
            engine = engine_charge(charge)
            _store_charge(
                version=version,
                meter=charge.meter,
                spec=ChargeSpec.from_engine(engine),
            )
    return version


def _store_charge(
    *,
    meter: Meter,
    spec: ChargeSpec,
    version: PlanVersion | None = None,
    override: PriceOverride | None = None,
) -> Charge:
    charge = (
        Charge.objects.filter(plan_version=version, override=override, meter=meter).first()
        if (version or override)
        else None
    )
    if charge is None:
        charge = Charge(plan_version=version, override=override, meter=meter)
    charge.model = spec.model
    charge.unit_amount = spec.unit_amount
    charge.package_size = spec.package_size
    charge.package_amount = spec.package_amount
    charge.full_clean(validate_unique=False)
    charge.save()
    charge.tiers.all().delete()
    Tier.objects.bulk_create(
        Tier(
            charge=charge,
            position=index,
            up_to=tier.up_to,
            unit_amount=tier.unit_amount,
            flat_amount=tier.flat_amount or None,
        )
        for index, tier in enumerate(spec.tiers)
    )
    return charge


def charge_snapshot(charge: Charge | None) -> dict[str, Any] | None:
    if charge is None:
        return None
    return {
        **snapshot(charge, ["model", "unit_amount", "package_size", "package_amount"]),
        "tiers": [
            snapshot(t, ["up_to", "unit_amount", "flat_amount"]) for t in charge.tiers.order_by("position")
        ],
    }


@transaction.atomic
def charge_save(*, actor: Actor, version: PlanVersion, meter: Meter, spec: ChargeSpec) -> Charge:
    """Create or replace the version's charge for ``meter``, tiers included; all or nothing."""
    _refuse_if_locked(version)
    issues = pricing.validate_charge(spec.as_engine(), version.plan.currency)
    if issues:
        raise issues_as_validation_error(issues)
    before = charge_snapshot(Charge.objects.filter(plan_version=version, meter=meter).first())
    charge = _store_charge(version=version, meter=meter, spec=spec)
    audit_record(
        actor=actor, action="charge.save", target=charge, before=before, after=charge_snapshot(charge)
    )
    return charge


@transaction.atomic
def charge_delete(*, actor: Actor, charge: Charge) -> None:
    _refuse_if_locked(charge.plan_version)
    before = charge_snapshot(charge)
    audit_record(actor=actor, action="charge.delete", target=charge, before=before)
    charge.delete()


@transaction.atomic
def override_create(
    *,
    actor: Actor,
    meter: Meter,
    spec: ChargeSpec,
    effective_from: dt.datetime,
    effective_to: dt.datetime | None = None,
    account: Any = None,
    segment: str = "",
    plan: Plan | None = None,
    reason: str = "",
    currency: str | None = None,
) -> PriceOverride:
    """A negotiated price for one account (or a segment) on one meter, effective-dated."""
    issues = pricing.validate_charge(spec.as_engine(), currency or (plan.currency if plan else None))
    if issues:
        raise issues_as_validation_error(issues)
    override = PriceOverride(
        account=account,
        segment=segment,
        plan=plan,
        meter=meter,
        effective_from=effective_from,
        effective_to=effective_to,
        reason=reason,
        created_by=actor if isinstance(actor, User) else None,
    )
    override.full_clean()
    override.save()
    charge = _store_charge(override=override, meter=meter, spec=spec)
    audit_record(
        actor=actor,
        action="override.create",
        target=override,
        after={**snapshot(override), "charge": charge_snapshot(charge)},
        reason=reason,
    )
    return override


def override_end(*, actor: Actor, override: PriceOverride, at: dt.datetime | None = None) -> PriceOverride:
    return model_update(
        instance=override, data={"effective_to": at or timezone.now()}, actor=actor, action="override.end"
    )


def phase_create(
    *,
    actor: Actor,
    account: Any,
    plan: Plan,
    starts_at: dt.datetime,
    ends_at: dt.datetime | None = None,
    external_id: str = "",
) -> SubscriptionPhase:
    phase = SubscriptionPhase(
        account=account, plan=plan, starts_at=starts_at, ends_at=ends_at, external_id=external_id
    )
    return model_create(instance=phase, actor=actor, action="phase.create")


@transaction.atomic
def catalog_import(*, actor: Actor, data: object, effective_from: dt.datetime) -> pricing.Catalog:
    """Load a pricing.json catalogue: every rule is checked first, and a bad catalogue saves nothing.

    Meters are created or updated by key; each plan gets a new version effective from
    ``effective_from`` (the plan is created when it is new).
    """
    try:
        catalog = pricing.parse_catalog(data)
    except pricing.PricingValidationError as exc:
        raise issues_as_validation_error(list(exc.errors)) from exc
    meters = {m.key: m for m in Meter.objects.filter(key__in=[m.key for m in catalog.meters])}
    for meter in catalog.meters:
        fields = {
            "name": meter.name,
            "unit_size": meter.unit_rule.unit_size,
            "rounding": meter.unit_rule.rounding,
        }
        if meter.key in meters:
            meters[meter.key] = meter_update(meter=meters[meter.key], actor=actor, data=fields)
        else:
            meters[meter.key] = meter_create(actor=actor, key=meter.key, **fields)
    for plan_spec in catalog.plans:
        plan = Plan.objects.filter(key=plan_spec.key).first() or plan_create(
            actor=actor, key=plan_spec.key, name=plan_spec.name, currency=plan_spec.currency
        )
        if plan.currency != plan_spec.currency:
            raise ValidationError(
                {"currency": f"plan {plan.key} is in {plan.currency}, not {plan_spec.currency}"}
            )
        version = plan_version_create(
            actor=actor,
            plan=plan,
            effective_from=effective_from,
            base_fee=plan_spec.base_fee,
            note="imported",
        )
        for plan_charge in plan_spec.charges:
            charge_save(
                actor=actor,
                version=version,
                meter=meters[plan_charge.meter],
                spec=ChargeSpec.from_engine(plan_charge.charge),
            )
    return catalog
