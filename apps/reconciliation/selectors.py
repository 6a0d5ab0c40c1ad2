from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Count, QuerySet, Sum
from django.shortcuts import get_object_or_404

from apps.reconciliation.models import Classification, Discrepancy, ReconciliationLine, ReconciliationRun
from apps.tenancy.models import Tenant


def run_list(tenant: Tenant) -> QuerySet[ReconciliationRun]:
    return ReconciliationRun.objects.filter(tenant=tenant).select_related("started_by")


def run_get(tenant: Tenant, run_id: int) -> ReconciliationRun:
    return get_object_or_404(ReconciliationRun.objects.filter(tenant=tenant), pk=run_id)


def run_lines(
    tenant: Tenant, run: ReconciliationRun, *, classification: str = ""
) -> QuerySet[ReconciliationLine]:
    lines = ReconciliationLine.objects.filter(tenant=tenant, run=run).select_related("account", "meter")
    return lines.filter(classification=classification) if classification else lines


def run_totals(tenant: Tenant, run: ReconciliationRun) -> list[dict[str, Any]]:
    """Per currency and class: lines, and the money under- and over-billed (one GROUP BY)."""
    rows = (
        ReconciliationLine.objects.filter(tenant=tenant, run=run)
        .values("currency", "classification")
        .annotate(lines=Count("id"), difference=Sum("difference"))
        .order_by("currency", "classification")
    )
    return [
        {
            **row,
            "label": Classification(row["classification"]).label,
            "difference": row["difference"] or Decimal(0),
        }
        for row in rows
    ]


QUEUE_SORTS = {
    "recent": ("-updated_at", "-id"),
    "amount": ("-abs_amount", "-id"),
    "account": ("account__name", "id"),
    "period": ("-period", "-id"),
}


def discrepancy_queue(
    tenant: Tenant, *, filters: dict[str, Any], user_id: int | None, role: str | None, sort: str = "recent"
) -> QuerySet[Discrepancy]:
    """The queue, filtered in the database (every filter is an indexed column or a join), then sorted."""
    from django.db.models import Q
    from django.db.models.functions import Abs

    queryset = Discrepancy.objects.filter(tenant=tenant).select_related("account", "meter", "owner")
    status = filters.get("status", "active")
    if status == "active":
        queryset = queryset.filter(status__in=("open", "assigned", "escalated"))
    elif status:
        queryset = queryset.filter(status=status)
    if filters.get("mine"):
        queryset = queryset.filter(Q(owner_id=user_id) | Q(owner__isnull=True, owner_role=role or "-"))
    for field, column in (
        ("class", "classification"),
        ("period", "period"),
        ("segment", "account__segment"),
        ("meter", "meter__key"),
        ("owner_role", "owner_role"),
    ):
        if filters.get(field):
            queryset = queryset.filter(**{column: filters[field]})
    if filters.get("account"):
        queryset = queryset.filter(
            Q(account__name__icontains=filters["account"]) | Q(account__key=filters["account"])
        )
    if filters.get("min_amount") is not None:
        queryset = queryset.annotate(abs_amount=Abs("amount")).filter(abs_amount__gte=filters["min_amount"])
    if sort == "amount" and "abs_amount" not in queryset.query.annotations:
        queryset = queryset.annotate(abs_amount=Abs("amount"))
    return queryset.order_by(*QUEUE_SORTS.get(sort, QUEUE_SORTS["recent"]))


def discrepancy_get(tenant: Tenant, discrepancy_id: int) -> Discrepancy:
    queryset = Discrepancy.objects.filter(tenant=tenant).select_related(
        "account", "meter", "owner", "line", "first_seen_run", "last_seen_run"
    )
    return get_object_or_404(queryset, pk=discrepancy_id)
