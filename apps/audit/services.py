"""Writing the audit trail. Every service that changes something calls :func:`audit_record`."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.db import models

from apps.audit.models import AuditEvent
from apps.common.request_id import get_request_id
from apps.tenancy.models import ApiKey
from apps.users.models import User

Actor = User | AnonymousUser | ApiKey | None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (decimal.Decimal, uuid.UUID, dt.date, dt.datetime, dt.time)):
        return str(value) if not isinstance(value, (dt.date, dt.datetime)) else value.isoformat()
    if isinstance(value, models.Model):
        return value.pk
    return value


def actor_label(actor: Actor) -> str:
    if actor is None or isinstance(actor, AnonymousUser):
        return "system"
    if isinstance(actor, ApiKey):
        return f"api-key:{actor.name} ({actor.prefix})"
    return actor.get_username()


def snapshot(instance: models.Model, fields: list[str] | None = None) -> dict[str, Any]:
    """The concrete field values of ``instance`` (foreign keys as ids), JSON-ready."""
    names = fields or [f.name for f in instance._meta.concrete_fields if f.name not in ("id", "tenant")]
    data = {}
    for name in names:
        field = instance._meta.get_field(name)
        data[name] = _jsonable(getattr(instance, field.attname))  # type: ignore[union-attr]
    return data


def audit_record(
    *,
    actor: Actor,
    action: str,
    target: models.Model | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str = "",
) -> AuditEvent:
    """Append one audit row in the current tenant context (the caller's transaction)."""
    user = actor if isinstance(actor, User) else None
    event = AuditEvent(
        actor=user,
        actor_label=actor_label(actor),
        action=action,
        object_type=target._meta.label_lower if target is not None else "",
        object_id=str(target.pk) if target is not None and target.pk is not None else "",
        object_repr=str(target)[:200] if target is not None else "",
        before=_jsonable(before) if before is not None else None,
        after=_jsonable(after) if after is not None else None,
        reason=reason,
        request_id=get_request_id(),
    )
    event.save()
    return event
