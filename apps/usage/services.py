"""Writes of the usage app: taking in event batches, the tenant's usage settings.

CSV imports live in :mod:`apps.usage.imports`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db import transaction

from apps.audit.services import Actor
from apps.billing.push import events_stored as usage_push_events_stored
from apps.common import clock
from apps.common.request_id import get_request_id
from apps.common.services import model_create, model_update
from apps.tenancy.models import ApiKey, Tenant
from apps.usage.ingest import EventError, EventIn, Row, validate_events
from apps.usage.models import EventSource, IngestBatch, UsageSettings
from apps.usage.store import store_rows


@dataclass(slots=True)
class BatchResult:
    """What became of every event of a batch: the summary is on ``batch``, the failures in ``errors``."""

    batch: IngestBatch
    errors: list[EventError] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, int]:
        return {
            "accepted": self.batch.accepted,
            "duplicates": self.batch.duplicates,
            "conflicts": self.batch.conflicts,
            "rejected": self.batch.rejected,
        }


def usage_settings_get(tenant: Tenant) -> UsageSettings:
    """The tenant's usage settings; the defaults (unsaved) until someone changes them."""
    return UsageSettings.objects.filter(tenant=tenant).first() or UsageSettings(tenant=tenant)


@transaction.atomic
def usage_settings_update(
    *, tenant: Tenant, actor: Actor, auto_create_accounts: bool, late_grace_days: int
) -> UsageSettings:
    current = usage_settings_get(tenant)
    data = {"auto_create_accounts": auto_create_accounts, "late_grace_days": late_grace_days}
    if current.pk is None:
        for name, value in data.items():
            setattr(current, name, value)
        return model_create(instance=current, actor=actor, action="usage.settings.create")
    return model_update(instance=current, data=data, actor=actor, action="usage.settings.update")


@transaction.atomic
def events_ingest(
    *,
    tenant: Tenant,
    events: list[EventIn | None],
    errors: list[EventError],
    actor: Actor,
    source: str = EventSource.API,
) -> BatchResult:
    """Store a batch of decoded events in the tenant in context, each at most once.

    ``errors`` holds the events that could not even be decoded; every other event ends up
    accepted, a duplicate (already stored with the same content), a conflict (already stored
    with different content: the stored one stays) or rejected (invalid, unknown account or
    meter), each failure with its own error. ``received_at`` is the server's clock.
    """
    now = clock.now()
    rows = validate_events(events, errors, now=now)
    return rows_ingest(
        tenant=tenant, rows=rows, errors=errors, count=len(events), actor=actor, source=source, now=now
    )


def rows_ingest(
    *,
    tenant: Tenant,
    rows: list[Row],
    errors: list[EventError],
    count: int,
    actor: Actor,
    source: str,
    now: dt.datetime | None = None,
    import_job_id: int | None = None,
) -> BatchResult:
    """Store validated rows as one batch (the API's request, or a chunk of a CSV import)."""
    settings = usage_settings_get(tenant)
    batch = IngestBatch.objects.create(
        source=source,
        api_key=actor if isinstance(actor, ApiKey) else None,
        import_job_id=import_job_id,
        request_id=get_request_id(),
        received_at=now or clock.now(),
        events=count,
    )
    stored = store_rows(
        rows=rows,
        batch=batch,
        auto_create_accounts=settings.auto_create_accounts,
        default_timezone=tenant.default_timezone,
        actor=actor,
    )
    usage_push_events_stored(batch_id=batch.pk, event_ids=[row[1] for row in rows], accepted=stored.accepted)
    errors.extend(stored.errors)
    errors.sort(key=lambda error: error.index)
    batch.accepted = stored.accepted
    batch.duplicates = stored.duplicates
    batch.conflicts = sum(1 for error in errors if error.code == "conflict")
    batch.rejected = len(errors) - batch.conflicts
    batch.save(update_fields=["accepted", "duplicates", "conflicts", "rejected"])
    return BatchResult(batch=batch, errors=errors)
