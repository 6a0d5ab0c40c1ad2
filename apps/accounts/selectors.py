from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Abs, TruncMonth
from django.shortcuts import get_object_or_404

from apps.accounts.models import Account, AccountNote
from apps.approvals.models import Proposal
from apps.billing.models import CreditNote, CreditNoteLine
from apps.pricing import decimal_str, quantize
from apps.reconciliation.models import Classification, Discrepancy, DiscrepancyEvent
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


# --- the account page (CSM): history, usage against the plan, notes ---------------------------

ZERO = Decimal(0)
HISTORY_PERIODS = 24
LIST_LIMIT = 100


@dataclass
class PeriodFigures:
    """One period of an account's history, in one currency."""

    period: str
    under: Decimal = ZERO
    over: Decimal = ZERO
    credits: Decimal = ZERO
    catch_up: Decimal = ZERO
    findings: int = 0

    def add(self, other: PeriodFigures) -> None:
        self.under += other.under
        self.over += other.over
        self.credits += other.credits
        self.catch_up += other.catch_up
        self.findings += other.findings


@dataclass
class CurrencyHistory:
    currency: str
    periods: list[PeriodFigures]  # oldest first
    totals: PeriodFigures

    @property
    def chart_id(self) -> str:
        return f"history-chart-{self.currency.lower()}"

    def chart(self) -> dict[str, Any]:
        """The Chart.js spec (static/js/charts.js); amounts go out as decimal strings, never floats."""

        def series(label: str, tone: str, values: list[Decimal]) -> dict[str, Any]:
            return {"label": label, "tone": tone, "data": [decimal_str(v) for v in values]}

        return {
            "type": "bar",
            "labels": [p.period for p in self.periods],
            "datasets": [
                series("Under-billed", "under", [p.under for p in self.periods]),
                series("Over-billed", "over", [p.over for p in self.periods]),
                series("Credits issued", "credit", [p.credits for p in self.periods]),
                series("Catch-up charges", "recovered", [p.catch_up for p in self.periods]),
            ],
            "stacked": False,
            "currency": self.currency,
            "horizontal": False,
        }


def account_history(tenant: Tenant, account: Account) -> list[CurrencyHistory]:
    """Per currency and period (YYYY-MM): money under- and over-billed, credits issued, catch-up charges.

    Three GROUP BY queries, whatever the number of findings. Under- and over-billed are the
    account's findings, less those that cleared by themselves (timing, billed the next period)
    and intentional credits (classification ``credit``, which count as credits). Credits are
    the credit notes at the provider, by the period of the invoice they credit, plus credit
    notes Trueup issued that the provider sync has not brought back yet; catch-up charges are
    executed proposals, by the period of their finding.
    """
    zone = ZoneInfo(account.timezone)
    cells: dict[tuple[str, str], PeriodFigures] = {}

    def cell(currency: str, period: str) -> PeriodFigures:
        return cells.setdefault((currency, period), PeriodFigures(period))

    findings = (
        Discrepancy.objects.filter(tenant=tenant, account=account, direction__in=("under", "over"))
        .exclude(status=Discrepancy.Status.AUTO_CLEARED)
        .exclude(classification=Classification.CREDIT)
        .values("currency", "period", "direction")
        .annotate(total=Sum(Abs("amount")), n=Count("id"))
        .order_by()
    )
    for row in findings:
        figures = cell(row["currency"], row["period"])
        figures.findings += row["n"]
        if row["direction"] == "under":
            figures.under += row["total"]
        else:
            figures.over += row["total"]

    credited = (
        CreditNoteLine.objects.filter(tenant=tenant, credit_note__invoice__account=account)
        .annotate(month=TruncMonth("credit_note__invoice__period_start", tzinfo=zone))
        .values("credit_note__invoice__currency", "month")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    for row in credited:
        month = row["month"].astimezone(zone)
        cell(row["credit_note__invoice__currency"], f"{month:%Y-%m}").credits += row["total"]

    synced = CreditNote.objects.filter(tenant=tenant, invoice__account=account).values("external_id")
    executed = (
        Proposal.objects.filter(
            tenant=tenant,
            discrepancy__account=account,
            status=Proposal.Status.EXECUTED,
            kind__in=(Proposal.Kind.CREDIT_NOTE, Proposal.Kind.CATCH_UP_CHARGE),
        )
        .exclude(kind=Proposal.Kind.CREDIT_NOTE, provider_reference__in=synced)
        .values("currency", "discrepancy__period", "kind")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    for row in executed:
        figures = cell(row["currency"], row["discrepancy__period"])
        if row["kind"] == Proposal.Kind.CREDIT_NOTE:
            figures.credits += row["total"]
        else:
            figures.catch_up += row["total"]

    histories = []
    for currency in sorted({c for c, _ in cells}):
        periods = sorted((f for (c, _), f in cells.items() if c == currency), key=lambda f: f.period)
        periods = periods[-HISTORY_PERIODS:]
        totals = PeriodFigures("total")
        for figures in periods:
            figures.under, figures.over = quantize(figures.under, currency), quantize(figures.over, currency)
            figures.credits = quantize(figures.credits, currency)
            figures.catch_up = quantize(figures.catch_up, currency)
            totals.add(figures)
        histories.append(CurrencyHistory(currency, periods, totals))
    return histories


def account_discrepancies(tenant: Tenant, account: Account, *, limit: int = LIST_LIMIT) -> list[Discrepancy]:
    """The account's findings, newest period first (the queue has them all)."""
    return list(
        Discrepancy.objects.filter(tenant=tenant, account=account)
        .select_related("meter", "owner", "line", "account")
        .order_by("-period", "meter__key", "-id")[:limit]
    )


def account_proposals(tenant: Tenant, account: Account, *, limit: int = 20) -> list[Proposal]:
    return list(
        Proposal.objects.filter(tenant=tenant, discrepancy__account=account)
        .select_related("proposed_by", "discrepancy__meter")
        .prefetch_related("approvals__approver")
        .order_by("-created_at", "-id")[:limit]
    )


def account_discrepancy_comments(
    tenant: Tenant, account: Account, *, limit: int = 20
) -> list[DiscrepancyEvent]:
    """What people wrote on the account's findings (the latest first)."""
    return list(
        DiscrepancyEvent.objects.filter(tenant=tenant, discrepancy__account=account, kind="comment")
        .select_related("actor", "discrepancy__meter")
        .order_by("-created_at", "-id")[:limit]
    )


def account_notes(tenant: Tenant, account: Account, *, limit: int = LIST_LIMIT) -> list[AccountNote]:
    return list(
        AccountNote.objects.filter(tenant=tenant, account=account).order_by("-created_at", "-id")[:limit]
    )


def account_month(account: Account, at: dt.datetime) -> str:
    """The period (YYYY-MM) holding ``at`` in the account's time zone."""
    return f"{at.astimezone(ZoneInfo(account.timezone)):%Y-%m}"


def account_period_choices(account: Account, histories: list[CurrencyHistory], now: dt.datetime) -> list[str]:
    """The last twelve months and every period of the account's history, newest first."""
    local = now.astimezone(ZoneInfo(account.timezone))
    months = set()
    for back in range(12):
        index = local.year * 12 + local.month - 1 - back  # months since year 0
        months.add(f"{index // 12:04d}-{index % 12 + 1:02d}")
    months |= {p.period for h in histories for p in h.periods}
    return sorted(months, reverse=True)
