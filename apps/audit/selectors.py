"""Reading the audit log: filters, keyset pages (fast at any depth), and a streamed export."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from django.apps import apps
from django.db import connection
from django.db.models import Model, Q, QuerySet
from django.db.models.functions import Collate

from apps.audit.models import AuditEvent
from apps.audit.services import actor_label
from apps.tenancy.models import ApiKey, Tenant, TenantModel
from apps.tenancy.selectors import tenant_members

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class AuditFilters:
    actor: str = ""  # "user:<id>", "key:<prefix>" or "system"
    action: str = ""  # a prefix: "proposal." or "threshold.create"
    object_type: str = ""  # an app label and model, "reconciliation.threshold"
    since: dt.date | None = None  # days in the tenant's time zone, both included
    until: dt.date | None = None
    text: str = ""  # in the object's name or the reason


def actor_choices(tenant: Tenant) -> list[tuple[str, str]]:
    """Who can appear as an actor: the tenant's members, its API keys, and the system."""
    members = [(f"user:{m.user_id}", m.user.get_username()) for m in tenant_members(tenant)]
    keys = [
        (f"key:{k.prefix}", f"API key {k.name} ({k.prefix})")
        for k in ApiKey.objects.filter(tenant=tenant).order_by("name")
    ]
    return [*members, *keys, ("system", "System (schedules, webhooks, workers)")]


def object_type_choices() -> list[tuple[str, str]]:
    """Every kind of object an audit row can name: the tenant models, and the tenant itself."""
    models: list[type[Model]] = [Tenant]
    models += [m for m in apps.get_models() if issubclass(m, TenantModel) and m is not AuditEvent]
    return sorted(
        ((m._meta.label_lower, str(m._meta.verbose_name).capitalize()) for m in models), key=lambda c: c[1]
    )


def audit_events(tenant: Tenant, filters: AuditFilters) -> QuerySet[AuditEvent]:
    """The tenant's audit rows matching ``filters``, newest first (the (tenant, time, id) index order)."""
    events = AuditEvent.objects.filter(tenant=tenant)
    if filters.actor == "system":
        events = events.filter(actor_label="system")
    elif filters.actor.startswith("user:") and filters.actor[5:].isdigit():
        events = events.filter(actor_id=int(filters.actor[5:]))
    elif filters.actor.startswith("key:"):
        key = ApiKey.objects.filter(tenant=tenant, prefix=filters.actor[4:]).first()
        events = events.filter(actor_label=actor_label(key)) if key else events.none()
    if filters.action.strip():
        events = _action_prefix(events, filters.action.strip())
    if filters.object_type:
        events = events.filter(object_type=filters.object_type)
    zone = ZoneInfo(tenant.default_timezone)
    if filters.since:
        events = events.filter(created_at__gte=dt.datetime.combine(filters.since, dt.time(), tzinfo=zone))
    if filters.until:
        end = filters.until + dt.timedelta(days=1)
        events = events.filter(created_at__lt=dt.datetime.combine(end, dt.time(), tzinfo=zone))
    if filters.text.strip():
        text = filters.text.strip()
        events = events.filter(Q(object_repr__icontains=text) | Q(reason__icontains=text))
    return events.order_by("-created_at", "-id")


def _action_prefix(events: QuerySet[AuditEvent], prefix: str) -> QuerySet[AuditEvent]:
    events = events.filter(action__startswith=prefix)
    if connection.vendor != "postgresql" or ord(prefix[-1]) >= 0x10FFFF:
        return events
    # The same rows as a byte-wise range, which (unlike LIKE) may use an index under row-level
    # security: audit_tenant_action_c_idx (migration 0004). UTF-8 keeps code-point order.
    ceiling = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return events.alias(action_c=Collate("action", "C")).filter(action_c__gte=prefix, action_c__lt=ceiling)


# --- keyset pages -----------------------------------------------------------------------------------


def cursor_of(event: AuditEvent) -> str:
    """A row's place in the log: microseconds since the epoch and the id (exact, URL-safe)."""
    delta = event.created_at - EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return f"{micros}.{event.pk}"


def parse_cursor(text: str) -> tuple[dt.datetime, int] | None:
    micros, _, pk = text.partition(".")
    try:
        return EPOCH + dt.timedelta(microseconds=int(micros)), int(pk)
    except (ValueError, OverflowError):
        return None


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]
    older: str | None  # cursor for the next (older) page
    newer: str | None  # cursor for the previous (newer) page


def audit_page(
    events: QuerySet[AuditEvent], *, before: str = "", after: str = "", size: int = 50
) -> AuditPage:
    """One page of ``events``: the newest, or those just older than ``before`` / newer than ``after``.

    Keyset pagination: each page is an index range scan of ``size`` rows wherever it is in the
    log, and no COUNT(*) runs. (The redundant ``created_at`` bound lets the index do the seek.)
    """
    if after and (cursor := parse_cursor(after)):
        moment, pk = cursor
        rows = list(
            events.filter(created_at__gte=moment)
            .exclude(created_at=moment, id__lte=pk)
            .order_by("created_at", "id")[: size + 1]
        )
        has_newer = len(rows) > size
        rows = rows[:size][::-1]
        return AuditPage(
            events=rows,
            older=cursor_of(rows[-1]) if rows else None,
            newer=cursor_of(rows[0]) if rows and has_newer else None,
        )
    came_from_newer = False
    if before and (cursor := parse_cursor(before)):
        moment, pk = cursor
        events = events.filter(created_at__lte=moment).exclude(created_at=moment, id__gte=pk)
        came_from_newer = True
    rows = list(events[: size + 1])
    has_older = len(rows) > size
    rows = rows[:size]
    return AuditPage(
        events=rows,
        older=cursor_of(rows[-1]) if rows and has_older else None,
        newer=cursor_of(rows[0]) if rows and came_from_newer else None,
    )


# --- one row's change, and the export ----------------------------------------------------------------


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def audit_changes(event: AuditEvent) -> list[tuple[str, str, str, bool]]:
    """(field, before, after, changed) for every field either side names."""
    before = event.before if isinstance(event.before, dict) else {}
    after = event.after if isinstance(event.after, dict) else {}
    names = list(before) + [name for name in after if name not in before]
    return [
        (name, _shown(before.get(name)), _shown(after.get(name)), before.get(name) != after.get(name))
        for name in names
    ]


EXPORT_COLUMNS = [
    "created_at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "reason",
    "before",
    "after",
    "request_id",
]


def _cell(value: str) -> str:
    # A spreadsheet would run a cell starting with = + - @ as a formula: keep it text.
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def audit_export_rows(events: QuerySet[AuditEvent]) -> Iterator[list[str]]:
    """The rows of a CSV export, read in chunks from a server-side cursor (never all in memory)."""
    yield EXPORT_COLUMNS
    fields = ("created_at", "actor_label", "action", "object_type", "object_id", "object_repr", "reason")
    rows = events.values_list(*fields, "before", "after", "request_id")
    for (
        created_at,
        actor,
        action,
        object_type,
        object_id,
        object_repr,
        reason,
        before,
        after,
        request,
    ) in rows.iterator(chunk_size=2000):
        yield [
            created_at.isoformat(),
            _cell(actor),
            _cell(action),
            object_type,
            _cell(object_id),
            _cell(object_repr),
            _cell(reason),
            "" if before is None else json.dumps(before, ensure_ascii=False, sort_keys=True),
            "" if after is None else json.dumps(after, ensure_ascii=False, sort_keys=True),
            request,
        ]
