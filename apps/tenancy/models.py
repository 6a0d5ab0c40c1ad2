from __future__ import annotations

import hashlib
import secrets
from typing import Any, ClassVar

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from apps.tenancy.context import CrossTenantWrite, TenantContextMissing, current_scope
from apps.tenancy.roles import Role


class Tenant(models.Model):
    """A company using Trueup. Everything else belongs to exactly one tenant."""

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    default_timezone = models.CharField(max_length=64, default="UTC")
    rounding_mode = models.CharField(
        max_length=20,
        default="ROUND_HALF_UP",
        choices=[
            ("ROUND_HALF_UP", "Half up"),
            ("ROUND_HALF_EVEN", "Half even (banker's)"),
            ("ROUND_HALF_DOWN", "Half down"),
            ("ROUND_UP", "Up"),
            ("ROUND_DOWN", "Down"),
        ],
        help_text="How each line's amount is rounded, once, to the currency's minor unit.",
    )
    single_approval_limit = models.DecimalField(
        max_digits=30,
        decimal_places=2,
        default=1000,
        help_text="Proposals above this amount need two distinct finance approvers.",
    )
    proration = models.CharField(
        max_length=10,
        default="days",
        choices=[("days", "By days"), ("seconds", "By seconds")],
        help_text="How a base fee is prorated when a plan changes mid-period.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TenantQuerySet(models.QuerySet):
    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> Any:
        objs = list(objs)
        for obj in objs:
            obj.assign_tenant_from_context()
        return super().bulk_create(objs, *args, **kwargs)


class TenantManager(models.Manager.from_queryset(TenantQuerySet)):  # type: ignore[misc]
    """Fail-closed manager: every query is filtered to the tenant in context, or raises."""

    def get_queryset(self) -> models.QuerySet:
        scope = current_scope()
        if scope is None or (scope.tenant_id is None and not scope.unscoped):
            raise TenantContextMissing(
                f"{self.model._meta.label} queried outside a tenant context; "
                "enter tenant_context(tenant) (or use unscoped_objects inside unscoped_context)."
            )
        queryset = super().get_queryset()
        if scope.unscoped:
            return queryset
        return queryset.filter(tenant_id=scope.tenant_id)


class TenantModel(models.Model):
    """Base of every tenant-owned model: a non-null, indexed tenant and a fail-closed manager.

    ``unscoped_objects`` crosses tenants; the name is meant to stand out in review, and
    on PostgreSQL row-level security still limits it to what the database session may see.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")

    # A user column that RLS policies also open to that user, read-only (see tenancy.operations).
    rls_user_column: ClassVar[str | None] = None

    objects = TenantManager()
    unscoped_objects = models.Manager()  # noqa: DJ012 - a manager; `objects` must stay first (the default)

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.assign_tenant_from_context()
        super().save(*args, **kwargs)

    def full_clean(self, *args: Any, **kwargs: Any) -> None:
        self.assign_tenant_from_context()
        super().full_clean(*args, **kwargs)

    def assign_tenant_from_context(self) -> None:
        scope = current_scope()
        if scope is None:
            raise TenantContextMissing(f"{self._meta.label} saved outside a tenant context.")
        if scope.unscoped:
            if self.tenant_id is None:
                raise TenantContextMissing(f"{self._meta.label} saved unscoped without a tenant.")
            return
        if self.tenant_id is None:
            self.tenant_id = scope.tenant_id
        elif self.tenant_id != scope.tenant_id:
            raise CrossTenantWrite(
                f"{self._meta.label} of tenant {self.tenant_id} written in tenant {scope.tenant_id}'s context"
            )


class Membership(TenantModel):
    """A user's role in one tenant. A user may belong to several tenants."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=32, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    rls_user_column = "user_id"

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="membership_one_role_per_tenant")
        ]
        indexes = [models.Index(fields=["user"], name="membership_user_idx")]

    def __str__(self) -> str:
        return f"{self.user} as {self.get_role_display()}"


KEY_PREFIX = "tu"


def hash_api_key(raw_key: str) -> str:
    # Keys are 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKey(TenantModel):
    """A tenant API key. Only its hash is stored; the key is shown once, at creation."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(
        max_length=16, validators=[RegexValidator(r"^[a-z0-9]+$")], help_text="Public part, shown in lists."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    role = models.CharField(
        max_length=32,
        choices=Role.choices,
        default=Role.VIEWER,
        help_text="What the key may do (the role matrix).",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at"], name="apikey_tenant_created_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({KEY_PREFIX}_{self.prefix}_…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @staticmethod
    def generate() -> tuple[str, str]:
        """A new (prefix, raw key) pair."""
        prefix = secrets.token_hex(4)
        return prefix, f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
