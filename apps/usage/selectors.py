"""Reads of the usage app: events, batches, imports, and late arrivals.

Late arrivals are the events of a period received after its cut-off. Until invoices
exist, the cut-off is the period's end plus the tenant's grace days; reconciliation passes
the invoice's ``finalized_at`` to the same :func:`late_events` / :func:`late_summary`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db.models import Count, Max, Q, QuerySet, Sum
from django.shortcuts import get_object_or_404

from apps.accounts.models import Account
from apps.catalog.models import Meter
from apps.tenancy.models import Tenant
from apps.usage.models import ImportJob, ImportRowError, IngestBatch, UsageEvent

# --- periods ----------------------------------------------------------------------------


def month_bounds(month: dt.date, time_zone: str) -> tuple[dt.datetime, dt.datetime]:
    """The calendar month holding ``month`` in ``time_zone``, half-open [start, end), as aware datetimes."""
    zone = ZoneInfo(time_zone)
    start = dt.datetime(month.year, month.month, 1, tzinfo=zone)
    following = dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)
    end = dt.datetime(following.year, following.month, 1, tzinfo=zone)
    return start, end


def default_cutoff(period_end: dt.datetime, grace_days: int) -> dt.datetime:
    """The cut-off used until the invoice's own is known: the period's end plus the grace days.

    Calendar days in the period's time zone (``period_end`` carries it): midnight stays
    midnight across a daylight-saving change.
    """
    return period_end + dt.timedelta(days=grace_days)


# --- events -----------------------------------------------------------------------------


def event_list(
    tenant: Tenant,
    *,
    event_ids: Iterable[str] = (),
    account_key: str = "",
    meter_key: str = "",
    occurred_from: dt.datetime | None = None,
    occurred_to: dt.datetime | None = None,
) -> QuerySet[UsageEvent]:
    """The tenant's events, filtered. Bound the time range: on PostgreSQL it is what the BRIN index serves."""
    queryset = UsageEvent.objects.filter(tenant=tenant).select_related("account", "meter")
    ids = list(event_ids)
    if ids:
        queryset = queryset.filter(event_id__in=ids)
    if account_key:
        queryset = queryset.filter(account__key=account_key)
    if meter_key:
        queryset = queryset.filter(meter__key=meter_key)
    if occurred_from is not None:
        queryset = queryset.filter(occurred_at__gte=occurred_from)
    if occurred_to is not None:
        queryset = queryset.filter(occurred_at__lt=occurred_to)
    return queryset


def late_events(
    tenant: Tenant,
    *,
    account: Account,
    period_start: dt.datetime,
    period_end: dt.datetime,
    cutoff: dt.datetime,
) -> QuerySet[UsageEvent]:
    """The account's events that occurred in [period_start, period_end) and were received after ``cutoff``."""
    return (
        UsageEvent.objects.filter(
            tenant=tenant,
            account=account,
            occurred_at__gte=period_start,
            occurred_at__lt=period_end,
            received_at__gt=cutoff,
        )
        .select_related("meter")
        .order_by("received_at", "occurred_at", "event_id")
    )


@dataclass(frozen=True, slots=True)
class LateLine:
    """One account and meter of a period: its events, and those that arrived after the cut-off."""

    account: Account
    meter: Meter
    period_start: dt.datetime
    period_end: dt.datetime
    cutoff: dt.datetime
    events: int
    quantity: Decimal
    late_events: int
    late_quantity: Decimal
    last_received_at: dt.datetime | None

    @property
    def on_time_quantity(self) -> Decimal:
        return self.quantity - self.late_quantity


@dataclass(frozen=True, slots=True)
class _Window:
    start: dt.datetime
    end: dt.datetime
    cutoff: dt.datetime


def late_summary(
    tenant: Tenant,
    *,
    period_start: dt.datetime,
    period_end: dt.datetime,
    cutoff: dt.datetime,
    accounts: Iterable[Account] | None = None,
    only_late: bool = True,
) -> list[LateLine]:
    """Per account and meter, the period's events and the late ones (one window and cut-off for all).

    The form reconciliation uses: an invoice states its own period and ``finalized_at``.
    """
    window = _Window(period_start, period_end, cutoff)
    condition = Q(occurred_at__gte=period_start, occurred_at__lt=period_end)
    if accounts is not None:
        condition &= Q(account__in=list(accounts))
    return _summarise(
        tenant,
        condition,
        late=Q(received_at__gt=cutoff),
        window_of=lambda account: window,
        bounds=(period_start, period_end),
        only_late=only_late,
    )


def late_summary_for_month(
    tenant: Tenant, *, month: dt.date, grace_days: int, cutoff: dt.datetime | None = None
) -> list[LateLine]:
    """Late arrivals of one month, against the invoice's cut-off where the month is invoiced.

    An account whose invoice for the month is finalized uses that invoice: its stated period
    and its ``finalized_at`` (as reconciliation does). Any other account's period is the
    calendar month in its time zone, cut off at the period's end plus ``grace_days``.
    ``cutoff``, when given, replaces every cut-off. One query: one condition per invoice
    cut-off and per time zone in use.
    """
    invoiced = invoice_windows(tenant, month)
    zones = sorted(set(Account.objects.filter(tenant=tenant).values_list("timezone", flat=True)))
    windows: dict[str, _Window] = {}
    period = Q(pk__in=[])
    late = Q(pk__in=[])
    by_window: dict[_Window, list[int]] = {}
    for account_id, window in invoiced.items():
        if cutoff is not None:
            window = _Window(window.start, window.end, cutoff)
            invoiced[account_id] = window
        by_window.setdefault(window, []).append(account_id)
    for window, account_ids in by_window.items():
        in_window = Q(account_id__in=account_ids, occurred_at__gte=window.start, occurred_at__lt=window.end)
        period |= in_window
        late |= in_window & Q(received_at__gt=window.cutoff)
    for zone in zones:
        start, end = month_bounds(month, zone)
        window = _Window(start, end, cutoff or default_cutoff(end, grace_days))
        windows[zone] = window
        in_zone = Q(account__timezone=zone, occurred_at__gte=start, occurred_at__lt=end) & ~Q(
            account_id__in=list(invoiced)
        )
        period |= in_zone
        late |= in_zone & Q(received_at__gt=window.cutoff)
    if not windows:
        return []
    every = [*windows.values(), *invoiced.values()]
    bounds = (min(w.start for w in every), max(w.end for w in every))
    return _summarise(
        tenant,
        period,
        late=late,
        window_of=lambda account: invoiced.get(account.pk) or windows[account.timezone],
        bounds=bounds,
        only_late=True,
    )


def invoice_windows(tenant: Tenant, month: dt.date) -> dict[int, _Window]:
    """Per account: the period and cut-off (``finalized_at``) of its finalized invoice for ``month``.

    An invoice belongs to the month its stated period starts in, in the account's time zone.
    """
    from apps.billing.models import Invoice

    widest = (month_bounds(month, "Pacific/Kiritimati")[0], month_bounds(month, "Etc/GMT+12")[1])
    windows: dict[int, _Window] = {}
    invoices = (
        Invoice.objects.filter(
            tenant=tenant, period_start__gte=widest[0], period_start__lt=widest[1], finalized_at__isnull=False
        )
        .exclude(status__in=("draft", "void"))
        .select_related("account")
        .order_by("period_start")
    )
    for invoice in invoices:
        start, end = month_bounds(month, invoice.account.timezone)
        if start <= invoice.period_start < end and invoice.finalized_at is not None:
            windows.setdefault(
                invoice.account_id, _Window(invoice.period_start, invoice.period_end, invoice.finalized_at)
            )
    return windows


def _summarise(
    tenant: Tenant,
    condition: Q,
    *,
    late: Q,
    window_of: Callable[[Account], _Window],
    bounds: tuple[dt.datetime, dt.datetime],
    only_late: bool,
) -> list[LateLine]:
    # The outer time bounds let PostgreSQL's BRIN index pick the month's blocks.
    queryset = (
        UsageEvent.objects.filter(tenant=tenant, occurred_at__gte=bounds[0], occurred_at__lt=bounds[1])
        .filter(condition)
        .values("account_id", "meter_id")
        .annotate(
            events=Count("*"),
            total=Sum("quantity"),
            late_events=Count("id", filter=late),
            late_total=Sum("quantity", filter=late),
            last_received_at=Max("received_at", filter=late),
        )
        .order_by()
    )
    if only_late:
        queryset = queryset.filter(late_events__gt=0)
    rows = list(queryset)
    accounts = Account.objects.filter(tenant=tenant).in_bulk({row["account_id"] for row in rows})
    meters = Meter.objects.filter(tenant=tenant).in_bulk({row["meter_id"] for row in rows})
    lines = []
    for row in rows:
        account = accounts[row["account_id"]]
        window = window_of(account)
        lines.append(
            LateLine(
                account=account,
                meter=meters[row["meter_id"]],
                period_start=window.start,
                period_end=window.end,
                cutoff=window.cutoff,
                events=row["events"],
                quantity=row["total"] or Decimal(0),
                late_events=row["late_events"],
                late_quantity=row["late_total"] or Decimal(0),
                last_received_at=row["last_received_at"],
            )
        )
    lines.sort(key=lambda line: (line.account.name, line.account.pk, line.meter.key))
    return lines


# --- batches and imports ----------------------------------------------------------------


def batch_list(tenant: Tenant) -> QuerySet[IngestBatch]:
    return IngestBatch.objects.filter(tenant=tenant).select_related("api_key").order_by("-received_at", "-id")


def import_job_list(tenant: Tenant) -> QuerySet[ImportJob]:
    return (
        ImportJob.objects.filter(tenant=tenant)
        .select_related("created_by", "api_key")
        .order_by("-created_at", "-id")
    )


def import_job_get(tenant: Tenant, job_id: int) -> ImportJob:
    """The import, or 404 — the same for another tenant's id as for a missing one."""
    return get_object_or_404(import_job_list(tenant), pk=job_id)


def import_errors(tenant: Tenant, job: ImportJob) -> QuerySet[ImportRowError]:
    return ImportRowError.objects.filter(tenant=tenant, job=job).order_by("line", "id")
