"""Helpers that every app's services build on."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import models, transaction

from apps.audit.services import Actor, audit_record, snapshot

M = TypeVar("M", bound=models.Model)


@transaction.atomic
def model_update(*, instance: M, data: dict[str, Any], actor: Actor, action: str, reason: str = "") -> M:
    """Set the fields in ``data`` that changed, validate, save only those, and audit the change.

    Returns the instance; does nothing (and records nothing) when no value changed.
    """
    changed = [name for name, value in data.items() if getattr(instance, name) != value]
    if not changed:
        return instance
    before = snapshot(instance, changed)
    for name in changed:
        setattr(instance, name, data[name])
    instance.full_clean()
    instance.save(update_fields=changed)
    audit_record(
        actor=actor,
        action=action,
        target=instance,
        before=before,
        after=snapshot(instance, changed),
        reason=reason,
    )
    return instance


@transaction.atomic
def model_create(*, instance: M, actor: Actor, action: str) -> M:
    """Validate, save and audit a new object."""
    instance.full_clean()
    instance.save()
    audit_record(actor=actor, action=action, target=instance, after=snapshot(instance))
    return instance
