from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.tenancy.models import TenantManager, TenantModel, TenantQuerySet


class AuditLogIsAppendOnly(RuntimeError):
    """Audit rows are written once and never changed or removed."""


class AuditQuerySet(TenantQuerySet):
    def update(self, **kwargs: Any) -> int:
        raise AuditLogIsAppendOnly("Audit rows cannot be updated.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AuditLogIsAppendOnly("Audit rows cannot be deleted.")


class AuditManager(TenantManager.from_queryset(AuditQuerySet)):  # type: ignore[misc]
    pass


class AuditEvent(TenantModel):
    """One write, as it happened: who, what, on which object, before and after.

    Append-only twice over: this model refuses updates and deletes, and a database
    trigger rejects UPDATE and DELETE on the table (PostgreSQL and SQLite).
    """

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    actor_label = models.CharField(max_length=200, help_text="User email, API key or 'system' at the time.")
    action = models.CharField(max_length=100)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects: ClassVar[AuditManager] = AuditManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The log's order, id breaking ties: the audit screen pages through it by keyset.
            models.Index(fields=["tenant", "-created_at", "-id"], name="audit_tenant_time_id_idx"),
            models.Index(fields=["tenant", "object_type", "object_id"], name="audit_tenant_object_idx"),
            # The actor filter ("system", an API key). The action-prefix filter has its own index,
            # on PostgreSQL only (migration 0004): LIKE cannot use an index under row-level security.
            models.Index(fields=["tenant", "actor_label"], name="audit_tenant_actor_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.object_repr}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AuditLogIsAppendOnly("Audit rows cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AuditLogIsAppendOnly("Audit rows cannot be deleted.")
