from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Count, QuerySet, Sum
from django.shortcuts import get_object_or_404

from apps.reconciliation.models import Classification, ReconciliationLine, ReconciliationRun
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
