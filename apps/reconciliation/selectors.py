from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Count, QuerySet, Sum
from django.shortcuts import get_object_or_404
from django.utils.functional import cached_property

from apps.reconciliation.models import (
    QUEUE_ACTIVE,
    Classification,
    Discrepancy,
    ReconciliationLine,
    ReconciliationRun,
)
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
    if status == "active":  # the same tuple as the partial indexes' condition, so they apply
        queryset = queryset.filter(status__in=QUEUE_ACTIVE)
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
    owner = str(filters.get("owner") or "")
    if owner == "nobody":
        queryset = queryset.filter(owner__isnull=True, owner_role="")
    elif owner.startswith("role:"):
        queryset = queryset.filter(owner__isnull=True, owner_role=owner.removeprefix("role:"))
    elif owner.startswith("user:") and owner.removeprefix("user:").isdigit():
        queryset = queryset.filter(owner_id=int(owner.removeprefix("user:")))
    if filters.get("min_amount") is not None:
        queryset = queryset.annotate(abs_amount=Abs("amount")).filter(abs_amount__gte=filters["min_amount"])
    if sort == "amount" and "abs_amount" not in queryset.query.annotations:
        queryset = queryset.annotate(abs_amount=Abs("amount"))
    return queryset.order_by(*QUEUE_SORTS.get(sort, QUEUE_SORTS["recent"]))


class CappedPaginator(Paginator):
    """Counts rows only as far as ``ahead`` past the requested page's first row.

    Over a queue of 100,000 findings, counting every matching row would be each page's costliest
    query; past the cap the page says "200+ pages", "10,000+ findings" instead.
    """

    def __init__(self, object_list: QuerySet[Any], per_page: int, *, number: Any, ahead: int) -> None:
        super().__init__(object_list, per_page)
        self.queryset = object_list
        try:
            first = (max(int(number), 1) - 1) * per_page
        except (TypeError, ValueError):
            first = 0
        self.limit = first + ahead
        self.capped = False

    @cached_property
    def count(self) -> int:
        # Unordered: the database stops at the first limit + 1 rows it finds, in any order.
        found = self.queryset.order_by()[: self.limit + 1].count()
        self.capped = found > self.limit
        return min(found, self.limit)


QUEUE_COUNT_AHEAD = 10_000


def discrepancy_queue_page(
    tenant: Tenant, findings: QuerySet[Discrepancy], number: Any, per_page: int
) -> Page:
    """One page of the queue in two narrow steps: the page's ids (filtered, sorted and offset along
    an index, without reading or joining the rows skipped), then just those rows with their joins."""
    paginator = CappedPaginator(
        findings.values_list("pk", flat=True), per_page, number=number, ahead=QUEUE_COUNT_AHEAD
    )
    page = paginator.get_page(number)
    ids = list(page.object_list)
    rows = (
        Discrepancy.objects.filter(tenant=tenant, pk__in=ids)
        .select_related("account", "meter", "owner")
        .in_bulk(ids)
    )
    page.object_list = [rows[pk] for pk in ids if pk in rows]
    return page


def discrepancy_get(tenant: Tenant, discrepancy_id: int) -> Discrepancy:
    queryset = Discrepancy.objects.filter(tenant=tenant).select_related(
        "account", "meter", "owner", "line", "first_seen_run", "last_seen_run"
    )
    return get_object_or_404(queryset, pk=discrepancy_id)
