"""Writing RevOps settings: materiality thresholds, routing rules, tenant pricing and approval
settings, and the reconciliation schedule. Every change is audited with its before and after.

(Kept apart from ``services.py``, which runs reconciliations and is long enough already.)
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import validate_timezone
from apps.audit.services import Actor, audit_record, snapshot
from apps.catalog.models import Meter
from apps.common.services import model_create, model_update
from apps.reconciliation import schedule
from apps.reconciliation.models import ReconciliationRun, ReconciliationSchedule, RoutingRule, Threshold
from apps.reconciliation.services import run_create
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Membership, Tenant
from apps.users.models import User

log = logging.getLogger(__name__)

TENANT_SETTINGS = ("default_timezone", "rounding_mode", "proration", "single_approval_limit")
SCHEDULE_SETTINGS = ("enabled", "day_of_month", "hour", "pre_invoice_days_before_month_end")


# --- materiality thresholds ------------------------------------------------------------------------


def _refuse_duplicate_threshold(*, segment: str, meter: Meter | None, exclude: int | None = None) -> None:
    others = Threshold.objects.filter(segment=segment, meter=meter)
    if exclude is not None:
        others = others.exclude(pk=exclude)
    if others.exists():
        raise ValidationError(
            {"segment": "A threshold for this segment and meter exists already: edit that one instead."}
        )


@transaction.atomic
def threshold_create(
    *, actor: Actor, segment: str, meter: Meter | None, absolute: Decimal, relative: Decimal
) -> Threshold:
    segment = segment.strip()
    _refuse_duplicate_threshold(segment=segment, meter=meter)
    return model_create(
        instance=Threshold(segment=segment, meter=meter, absolute=absolute, relative=relative),
        actor=actor,
        action="threshold.create",
    )


@transaction.atomic
def threshold_update(*, threshold: Threshold, actor: Actor, data: dict[str, Any]) -> Threshold:
    data = {**data, "segment": (data.get("segment", threshold.segment) or "").strip()}
    _refuse_duplicate_threshold(
        segment=data["segment"], meter=data.get("meter", threshold.meter), exclude=threshold.pk
    )
    return model_update(instance=threshold, data=data, actor=actor, action="threshold.update")


@transaction.atomic
def threshold_delete(*, threshold: Threshold, actor: Actor) -> None:
    before = snapshot(threshold)
    audit_record(actor=actor, action="threshold.delete", target=threshold, before=before)
    threshold.delete()


# --- routing rules --------------------------------------------------------------------------------


def _check_routing(rule: RoutingRule, *, exclude: int | None = None) -> None:
    errors: dict[str, str] = {}
    if rule.owner_id is not None and not Membership.objects.filter(user_id=rule.owner_id).exists():
        errors["owner"] = "Route only to a member of this tenant."
    if not (rule.owner_role or rule.owner_id or rule.to_account_csm):
        errors["owner_role"] = "Choose who owns these discrepancies: a role, a person or the account's CSM."
    duplicates = RoutingRule.objects.filter(
        classification=rule.classification, segment=rule.segment, meter_id=rule.meter_id
    )
    if exclude is not None:
        duplicates = duplicates.exclude(pk=exclude)
    if duplicates.exists():
        errors["classification"] = (
            "A rule for this class, segment and meter exists already: edit that one instead."
        )
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def routing_rule_create(
    *,
    actor: Actor,
    classification: str,
    segment: str = "",
    meter: Meter | None = None,
    owner_role: str = "",
    owner: User | None = None,
    to_account_csm: bool = False,
) -> RoutingRule:
    rule = RoutingRule(
        classification=classification,
        segment=segment.strip(),
        meter=meter,
        owner_role=owner_role,
        owner=owner,
        to_account_csm=to_account_csm,
    )
    _check_routing(rule)
    return model_create(instance=rule, actor=actor, action="routing_rule.create")


@transaction.atomic
def routing_rule_update(*, rule: RoutingRule, actor: Actor, data: dict[str, Any]) -> RoutingRule:
    data = {**data, "segment": (data.get("segment", rule.segment) or "").strip()}
    candidate = RoutingRule(pk=rule.pk, **{**_fields(rule), **data})
    _check_routing(candidate, exclude=rule.pk)
    return model_update(instance=rule, data=data, actor=actor, action="routing_rule.update")


def _fields(rule: RoutingRule) -> dict[str, Any]:
    return {
        "classification": rule.classification,
        "segment": rule.segment,
        "meter": rule.meter,
        "owner_role": rule.owner_role,
        "owner": rule.owner,
        "to_account_csm": rule.to_account_csm,
    }


@transaction.atomic
def routing_rule_delete(*, rule: RoutingRule, actor: Actor) -> None:
    audit_record(actor=actor, action="routing_rule.delete", target=rule, before=snapshot(rule))
    rule.delete()


# --- tenant pricing and approval settings ---------------------------------------------------------


@transaction.atomic
def tenant_settings_update(*, tenant: Tenant, actor: Actor, data: dict[str, Any], reason: str = "") -> Tenant:
    """Time zone, rounding, proration and the single-approval limit; audited field by field."""
    unknown = set(data) - set(TENANT_SETTINGS)
    if unknown:
        raise ValueError(f"not tenant settings: {sorted(unknown)}")
    limit = data.get("single_approval_limit")
    if limit is not None and limit < 0:
        raise ValidationError({"single_approval_limit": "The limit must be 0 or more."})
    if "default_timezone" in data:
        try:
            validate_timezone(data["default_timezone"])
        except ValidationError as exc:
            raise ValidationError({"default_timezone": exc.messages}) from exc
    fresh = Tenant.objects.select_for_update().get(pk=tenant.pk)
    updated = model_update(instance=fresh, data=data, actor=actor, action="tenant.settings", reason=reason)
    for name in TENANT_SETTINGS:
        setattr(tenant, name, getattr(updated, name))
    return tenant


# --- the reconciliation schedule ------------------------------------------------------------------


def schedule_rule(tenant: Tenant, row: ReconciliationSchedule | None) -> schedule.Rule:
    """The due-logic's view of a tenant's schedule (the defaults when it has no row)."""
    if row is None:
        return schedule.Rule(time_zone=tenant.default_timezone)
    return schedule.Rule(
        time_zone=tenant.default_timezone,
        enabled=row.enabled,
        day_of_month=row.day_of_month,
        hour=row.hour,
        pre_invoice_days=row.pre_invoice_days_before_month_end,
    )


@transaction.atomic
def schedule_update(*, actor: Actor, data: dict[str, Any]) -> ReconciliationSchedule:
    """Change the tenant's schedule (creating its row, from the defaults, on the first change)."""
    unknown = set(data) - set(SCHEDULE_SETTINGS)
    if unknown:
        raise ValueError(f"not schedule settings: {sorted(unknown)}")
    row = ReconciliationSchedule.objects.select_for_update().first()
    if row is None:
        if all(getattr(ReconciliationSchedule(), name) == value for name, value in data.items()):
            return ReconciliationSchedule()  # the defaults, unchanged: nothing to store
        row, _ = ReconciliationSchedule.objects.get_or_create()  # a concurrent first save may win
        row = ReconciliationSchedule.objects.select_for_update().get(pk=row.pk)
    before = snapshot(row, list(SCHEDULE_SETTINGS))
    changed = [name for name, value in data.items() if getattr(row, name) != value]
    if not changed:
        return row
    for name in changed:
        setattr(row, name, data[name])
    row.updated_at = timezone.now()
    row.full_clean()
    row.save()
    audit_record(
        actor=actor,
        action="schedule.update",
        target=row,
        before={name: before[name] for name in changed},
        after=snapshot(row, changed),
    )
    return row


def schedule_start_due(*, tenant_id: int, now: dt.datetime) -> list[ReconciliationRun]:
    """Start the runs the tenant's schedule makes due at ``now``; at most one per period and kind.

    The schedule row is locked while it is read and its last-started periods are written, in
    the same transaction that creates the runs, so two beats ticking at once start nothing twice.
    """
    with tenant_context(tenant_id):
        tenant = Tenant.objects.get(pk=tenant_id)
        row = ReconciliationSchedule.objects.select_for_update().first()
        if row is None:  # the defaults; a row is only stored once it has a run to remember
            if not schedule.due_firings(schedule_rule(tenant, None), now):
                return []
            row, _ = ReconciliationSchedule.objects.get_or_create()
            row = ReconciliationSchedule.objects.select_for_update().get(pk=row.pk)
        due = schedule.due_firings(
            schedule_rule(tenant, row),
            now,
            last_monthly=row.last_monthly_period,
            last_pre_invoice=row.last_pre_invoice_period,
        )
        runs = []
        for firing in due:
            runs.append(
                run_create(
                    actor=None,
                    period=str(firing.period),
                    trigger=ReconciliationRun.Trigger.SCHEDULE,
                    pre_invoice=firing.pre_invoice,
                )
            )
            if firing.kind == schedule.MONTHLY:
                row.last_monthly_period = str(firing.period)
            else:
                row.last_pre_invoice_period = str(firing.period)
        if due:
            row.save(update_fields=["last_monthly_period", "last_pre_invoice_period"])
        return runs


def schedules_run_due(*, now: dt.datetime) -> int:
    """Every tenant's due runs (the hourly beat). One tenant's failure does not stop the others."""
    started = 0
    # The tenant table is not tenant data: listing it needs no tenant context.
    for tenant_id in Tenant.objects.order_by("pk").values_list("pk", flat=True):
        try:
            started += len(schedule_start_due(tenant_id=tenant_id, now=now))
        except Exception:
            log.exception("scheduled reconciliation of tenant %s failed to start", tenant_id)
    return started
