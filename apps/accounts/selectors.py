from __future__ import annotations

from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404

from apps.accounts.models import Account
from apps.tenancy.models import Tenant


def account_list(tenant: Tenant, *, search: str = "", segment: str = "") -> QuerySet[Account]:
    """The tenant's accounts, filtered by name/key/external id and segment."""
    queryset = Account.objects.filter(tenant=tenant).select_related("csm_owner")
    if search:
        queryset = queryset.filter(
            Q(name__icontains=search) | Q(key__icontains=search) | Q(external_ids__external_id=search)
        ).distinct()
    if segment:
        queryset = queryset.filter(segment=segment)
    return queryset


def account_segments(tenant: Tenant) -> list[str]:
    return list(
        Account.objects.filter(tenant=tenant)
        .exclude(segment="")
        .values_list("segment", flat=True)
        .distinct()
        .order_by("segment")
    )


def account_get(tenant: Tenant, account_id: int) -> Account:
    """The account, or 404 — the same for another tenant's id as for a missing one."""
    queryset = (
        Account.objects.filter(tenant=tenant).select_related("csm_owner").prefetch_related("external_ids")
    )
    return get_object_or_404(queryset, pk=account_id)
