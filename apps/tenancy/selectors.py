from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from apps.tenancy.models import Membership, Tenant


def memberships_for_user(user: AbstractBaseUser) -> QuerySet[Membership]:
    """The user's memberships in every tenant (inside user_context or one of their tenant contexts).

    Crosses tenants on purpose, but only along the user's own rows; on PostgreSQL the
    ``own_rows`` policy limits it the same way.
    """
    return (
        Membership.unscoped_objects.filter(user_id=user.pk).select_related("tenant").order_by("tenant__name")
    )


def tenant_members(tenant: Tenant, *, role: str | None = None) -> QuerySet[Membership]:
    queryset = Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__email")
    return queryset.filter(role=role) if role else queryset
