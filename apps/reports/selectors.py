"""The reads behind the dashboard and the monthly billing accuracy report.

Every figure is one GROUP BY over the tenant's findings, lines or proposals, in one currency
(amounts of different currencies are never added up). A finding's amount is expected minus
billed: positive is money the invoice missed (leakage), negative money it charged too much.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import BooleanField, Count, ExpressionWrapper, F, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Abs

from apps.accounts.models import Account
from apps.approvals.models import Proposal
from apps.reconciliation.core import Month
from apps.reconciliation.models import (
    NEEDS_ACTION,
    Classification,
    Discrepancy,
    FindingSource,
    ReconciliationLine,
    ReconciliationRun,
)
from apps.reconciliation.selectors import discrepancy_queue
from apps.tenancy.models import Tenant
from apps.tenancy.roles import Action, Role, role_can

ZERO = Decimal(0)
# Invoices that were wrong: under- or over-billed, a plan change priced wrongly included. Timing
# findings are late usage the next invoice should carry (the watch-list), and credit findings
# are credits given on purpose: both are shown, neither counts as a billing error.
BILLING_ERRORS = (Classification.UNDER_BILL, Classification.OVER_BILL, Classification.PRORATION)
# Left out of the money found: a person dismissed the finding, or a later run no longer found it.
NOT_COUNTED = (Discrepancy.Status.DISMISSED, Discrepancy.Status.AUTO_CLEARED)
# The order classes are listed in: billing errors first, then what only needs watching.
CLASS_ORDER = (
    Classification.UNDER_BILL,
    Classification.OVER_BILL,
    Classification.PRORATION,
    Classification.TIMING,
    Classification.CREDIT,
    Classification.WITHIN_TOLERANCE,
    Classification.MATCHED,
)
ACTIVE = (Discrepancy.Status.OPEN, Discrepancy.Status.ASSIGNED, Discrepancy.Status.ESCALATED)
RUN_ACTIVE = (ReconciliationRun.Status.QUEUED, ReconciliationRun.Status.RUNNING)


def _sum(value: Decimal | None) -> Decimal:
    return value if value is not None else ZERO


# What an executed fix did with the money: billed what was missing, gave back what was charged
# too much, or let it go. A fix of a draft invoice is signed: a negative line takes an over-bill off.
RECOVERED, CREDITED, WRITTEN_OFF = "recovered", "credited", "written_off"


def fix_effect(kind: str, amount: Decimal) -> str | None:
    if kind == "catch_up_charge" or (kind == "invoice_fix" and amount > 0):
        return RECOVERED
    if kind == "credit_note" or (kind == "invoice_fix" and amount < 0):
        return CREDITED
    if kind == "write_off":
        return WRITTEN_OFF
    return None  # holding or releasing a draft invoice moves no money


def _fixes(proposals: QuerySet[Proposal], *fields: str) -> QuerySet[Any]:
    """Proposals grouped by ``fields``, kind and sign (so a draft fix's two directions stay apart)."""
    return (
        proposals.annotate(negative=ExpressionWrapper(Q(amount__lt=0), output_field=BooleanField()))
        .values(*fields, "kind", "negative")
        .annotate(n=Count("id"), amount=Sum("amount"))
        .order_by(*fields, "kind", "negative")
    )


# --- which periods and currency a screen shows -----------------------------------------------


def reconciled_periods(tenant: Tenant) -> list[str]:
    """Every period with a finished run, newest first."""
    return list(
        ReconciliationRun.objects.filter(tenant=tenant, status=ReconciliationRun.Status.SUCCEEDED)
        .values_list("period", flat=True)
        .distinct()
        .order_by("-period")
    )


def months_ending(last: str, count: int) -> list[str]:
    """``count`` calendar months ending with ``last``, oldest first (empty months included)."""
    month = Month.parse(last)
    months = []
    for _ in range(count):
        months.append(str(month))
        month = month.previous()
    return months[::-1]


def finding_groups(tenant: Tenant, periods: list[str]) -> list[dict[str, Any]]:
    """The findings of ``periods`` in groups (currency, period, class, direction, source, status):
    one pass over the findings that every dashboard figure is then read from."""
    return list(
        Discrepancy.objects.filter(tenant=tenant, period__in=periods)
        .values("currency", "period", "classification", "direction", "source", "status")
        .annotate(n=Count("id"), amount=Sum("amount"))
        .order_by()
    )


def currencies_in(groups: list[dict[str, Any]]) -> list[str]:
    """The currencies of the findings, the one with the most findings first."""
    counts: dict[str, int] = defaultdict(int)
    for group in groups:
        counts[group["currency"]] += group["n"]
    return sorted(counts, key=lambda c: (-counts[c], c))


# --- the dashboard ----------------------------------------------------------------------------


@dataclass
class PeriodFigures:
    period: str
    leaked: Decimal = ZERO
    over_billed: Decimal = ZERO
    recovered: Decimal = ZERO
    credited_back: Decimal = ZERO
    findings: int = 0
    open: int = 0


@dataclass
class Breakdown:
    """Under- and over-billed money for one class, source, meter, segment or account."""

    key: str
    label: str
    under: Decimal = ZERO
    over: Decimal = ZERO
    findings: int = 0
    open: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> Decimal:
        return self.under + self.over


@dataclass
class Overview:
    periods: list[str]
    currency: str
    leaked: Decimal = ZERO
    leaked_findings: int = 0
    leaked_open: int = 0
    over_billed: Decimal = ZERO
    over_findings: int = 0
    over_open: int = 0
    late: Decimal = ZERO  # timing: usage that reached Trueup after the invoice, on the watch-list
    late_findings: int = 0
    credits_found: Decimal = ZERO  # credit: given on purpose, shown so nobody mistakes them for errors
    credit_findings: int = 0
    recovered: Decimal = ZERO
    recovered_count: int = 0
    credited_back: Decimal = ZERO
    credited_back_count: int = 0
    written_off: Decimal = ZERO
    by_period: list[PeriodFigures] = field(default_factory=list)
    by_class: list[Breakdown] = field(default_factory=list)
    by_source: list[Breakdown] = field(default_factory=list)


def overview(tenant: Tenant, *, periods: list[str], currency: str, groups: list[dict[str, Any]]) -> Overview:
    """Leakage and over-billing by period, class and source (from ``finding_groups``), and what
    fixing it brought back."""
    result = Overview(periods=periods, currency=currency)
    per_period = {p: PeriodFigures(period=p) for p in periods}
    classes = {c.value: Breakdown(key=c.value, label=str(c.label)) for c in CLASS_ORDER if c in NEEDS_ACTION}
    sources = {s.value: Breakdown(key=s.value, label=str(s.label)) for s in FindingSource}
    for row in groups:
        if row["currency"] != currency:
            continue
        amount, n, status = _sum(row["amount"]), row["n"], row["status"]
        if status in NOT_COUNTED:
            continue
        is_open = status in ACTIVE
        klass = classes.get(row["classification"])
        if klass is not None:
            klass.findings += n
            klass.open += n if is_open else 0
            if amount > 0:
                klass.under += amount
            else:
                klass.over -= amount
        figures = per_period[row["period"]]
        figures.findings += n
        figures.open += n if is_open else 0
        if row["classification"] == Classification.TIMING:
            result.late += amount
            result.late_findings += n
        elif row["classification"] == Classification.CREDIT:
            result.credits_found += amount
            result.credit_findings += n
        elif row["direction"] == "under":
            result.leaked += amount
            result.leaked_findings += n
            result.leaked_open += n if is_open else 0
            figures.leaked += amount
        elif row["direction"] == "over":
            result.over_billed -= amount
            result.over_findings += n
            result.over_open += n if is_open else 0
            figures.over_billed -= amount
        if row["source"] in sources:
            source = sources[row["source"]]
            source.findings += n
            source.open += n if is_open else 0
            if amount > 0:
                source.under += amount
            else:
                source.over -= amount
    fixes = _fixes(
        Proposal.objects.filter(
            tenant=tenant,
            currency=currency,
            status=Proposal.Status.EXECUTED,
            discrepancy__period__in=periods,
        ),
        "discrepancy__period",
    )
    for row in fixes:
        amount, figures = _sum(row["amount"]), per_period[row["discrepancy__period"]]
        effect = fix_effect(row["kind"], amount)
        if effect == RECOVERED:
            result.recovered += amount
            result.recovered_count += row["n"]
            figures.recovered += amount
        elif effect == CREDITED:
            result.credited_back += abs(amount)
            result.credited_back_count += row["n"]
            figures.credited_back += abs(amount)
        elif effect == WRITTEN_OFF:
            result.written_off += amount
    result.by_period = [per_period[p] for p in periods]
    result.by_class = [c for c in classes.values() if c.findings]
    result.by_source = list(sources.values())
    return result


def _money_by(queryset: QuerySet[Discrepancy], *fields: str) -> QuerySet[Any]:
    return queryset.values(*fields).annotate(
        under=Sum("amount", filter=Q(direction="under")),
        over=Sum(Abs("amount"), filter=Q(direction="over")),
        total=Sum(Abs("amount")),
        n=Count("id"),
    )


def where(tenant: Tenant, *, periods: list[str], currency: str, limit: int = 6) -> dict[str, list[Breakdown]]:
    """Where the billing errors are: by meter, by segment, and the accounts with the most.

    Two passes: meters and segments from one small GROUP BY (meter x segment), then the
    accounts with the most money wrong, named afterwards (only those few rows are joined).
    """
    errors = Discrepancy.objects.filter(
        tenant=tenant, currency=currency, period__in=periods, classification__in=BILLING_ERRORS
    ).exclude(status__in=NOT_COUNTED)
    meters: dict[str, Breakdown] = {}
    segments: dict[str, Breakdown] = {}
    for row in _money_by(errors, "meter__key", "meter__name", "account__segment").order_by():
        meter_key, segment = row["meter__key"] or "", row["account__segment"]
        for table, key, label in (
            (meters, meter_key, row["meter__name"] or "Base fee"),
            (segments, segment, segment or "No segment"),
        ):
            place = table.setdefault(key, Breakdown(key=key, label=label))
            place.under += _sum(row["under"])
            place.over += _sum(row["over"])
            place.findings += row["n"]
    top = list(_money_by(errors, "account_id").order_by("-total", "account_id")[:limit])
    names = Account.objects.filter(tenant=tenant, pk__in=[r["account_id"] for r in top]).in_bulk()
    accounts = [
        Breakdown(
            key=names[r["account_id"]].key,
            label=names[r["account_id"]].name,
            under=_sum(r["under"]),
            over=_sum(r["over"]),
            findings=r["n"],
            extra={"account_id": r["account_id"]},
        )
        for r in top
    ]

    def largest(table: dict[str, Breakdown]) -> list[Breakdown]:
        return sorted(table.values(), key=lambda b: (-b.total, b.label))[:limit]

    return {"meters": largest(meters), "segments": largest(segments), "accounts": accounts}


@dataclass
class NextSteps:
    awaiting_you: list[Proposal]
    awaiting_you_count: int
    awaiting_others_count: int
    failed: list[Proposal]
    failed_count: int
    my_queue: int
    unassigned: list[dict[str, Any]]
    largest_open: list[Discrepancy]


def next_steps(tenant: Tenant, *, user_id: int | None, role: str | None, currency: str | None) -> NextSteps:
    """What the signed-in person could do next: approvals, failed fixes, their queue, the biggest gaps."""
    pending = Proposal.objects.filter(tenant=tenant, status=Proposal.Status.PROPOSED).select_related(
        "discrepancy__account", "discrepancy__meter", "proposed_by"
    )
    if role_can(role or "", Action.PROPOSAL_APPROVE):
        # maker-checker: one's own proposals, and those one already decided, wait for somebody else
        yours = pending.exclude(proposed_by_id=user_id).exclude(approvals__approver_id=user_id)
    else:
        yours = pending.none()
    failed = Proposal.objects.filter(tenant=tenant, status=Proposal.Status.FAILED).select_related(
        "discrepancy__account", "discrepancy__meter", "outbox"
    )
    active = {"status": "active"}
    largest = discrepancy_queue(tenant, filters=active, user_id=user_id, role=role, sort="amount").exclude(
        classification=Classification.TIMING
    )
    your_count = yours.count()
    return NextSteps(
        awaiting_you=list(yours.order_by("created_at")[:5]),
        awaiting_you_count=your_count,
        awaiting_others_count=pending.count() - your_count,
        failed=list(failed.order_by("created_at")[:5]),
        failed_count=failed.count(),
        my_queue=discrepancy_queue(
            tenant, filters={**active, "mine": True}, user_id=user_id, role=role
        ).count(),
        unassigned=[
            {**row, "label": str(Role(row["owner_role"]).label)}
            for row in Discrepancy.objects.filter(tenant=tenant, status__in=ACTIVE, owner__isnull=True)
            .exclude(owner_role="")
            .values("owner_role")
            .annotate(n=Count("id"))
            .order_by("-n", "owner_role")
        ],
        largest_open=list(largest.filter(currency=currency)[:5]) if currency else [],
    )


def recent_runs(tenant: Tenant, *, limit: int = 5) -> list[ReconciliationRun]:
    return list(ReconciliationRun.objects.filter(tenant=tenant).select_related("started_by")[:limit])


# --- the monthly billing accuracy report ------------------------------------------------------


def period_runs(tenant: Tenant, period: str) -> list[ReconciliationRun]:
    """The runs whose lines stand for ``period`` now, newest first.

    A finished full run supersedes every earlier run of its period; a partial run supersedes
    only partial runs it covers. So what stands is the newest full run plus any partial runs
    that finished after it, each account taken from the newest run that reconciled it.
    """
    return list(
        ReconciliationRun.objects.filter(
            tenant=tenant,
            period=period,
            status=ReconciliationRun.Status.SUCCEEDED,
            superseded_by__isnull=True,
        )
        .select_related("started_by")
        .order_by(F("finished_at").desc(nulls_last=True), "-id")
    )


def period_lines(tenant: Tenant, runs: list[ReconciliationRun]) -> QuerySet[ReconciliationLine]:
    """Every reconciled line of the period (matched ones included), one per account line."""
    lines = ReconciliationLine.objects.filter(tenant=tenant)
    if not runs:
        return lines.none()
    wanted = Q(pk__in=[])
    claimed: set[int] = set()
    for run in runs:
        if run.account_ids is None:  # the full run: every account the later partial runs did not redo
            wanted |= Q(run=run) & ~Q(account_id__in=claimed)
            break
        accounts = set(run.account_ids) - claimed
        wanted |= Q(run=run, account_id__in=accounts)
        claimed |= accounts
    return lines.filter(wanted)


def mismatched_lines(tenant: Tenant, runs: list[ReconciliationRun]) -> QuerySet[ReconciliationLine]:
    """The period's lines that did not match, each with the status of its finding."""
    finding = Discrepancy.objects.filter(tenant=tenant, line=OuterRef("pk")).values("status")[:1]
    return (
        period_lines(tenant, runs)
        .exclude(classification__in=(Classification.MATCHED, Classification.WITHIN_TOLERANCE))
        .select_related("account", "meter")
        .annotate(finding_status=Subquery(finding))
        .order_by("currency", "account__key", "meter__key", "pk")
    )


@dataclass
class MismatchRow:
    classification: str
    label: str
    direction: str
    currency: str
    lines: int
    amount: Decimal  # positive: under-billed; over-billed amounts are shown as positive too
    source: str = ""

    @property
    def is_error(self) -> bool:
        return self.classification in BILLING_ERRORS


@dataclass
class CurrencyFigures:
    currency: str
    lines: int = 0
    expected: Decimal = ZERO
    billed: Decimal = ZERO
    leaked: Decimal = ZERO
    over_billed: Decimal = ZERO
    late: Decimal = ZERO
    credits_on_invoices: Decimal = ZERO
    recovered: Decimal = ZERO
    credits_issued: Decimal = ZERO
    drafts_reduced: Decimal = ZERO  # over-billing taken off a draft invoice before it went out
    written_off: Decimal = ZERO
    corrections: int = 0
    in_progress: Decimal = ZERO
    in_progress_count: int = 0

    @property
    def leakage_rate(self) -> Decimal | None:
        return self.leaked / self.expected if self.expected else None

    @property
    def net_error(self) -> Decimal:
        return self.leaked - self.over_billed


@dataclass
class AccuracyReport:
    tenant: Tenant
    period: str
    runs: list[ReconciliationRun]
    lines: int = 0
    accounts: int = 0
    invoices_checked: int = 0
    invoices_with_errors: int = 0
    invoices_over_billed: int = 0
    accounts_without_invoice: int = 0
    mismatches: list[MismatchRow] = field(default_factory=list)
    by_source: list[MismatchRow] = field(default_factory=list)
    currencies: list[CurrencyFigures] = field(default_factory=list)
    finding_statuses: list[tuple[str, str, int]] = field(default_factory=list)
    corrections: list[dict[str, Any]] = field(default_factory=list)

    @property
    def corrections_applied(self) -> int:
        return sum(c.corrections for c in self.currencies)

    @property
    def accurate_invoices(self) -> int:
        return self.invoices_checked - self.invoices_with_errors

    @property
    def accuracy_rate(self) -> Decimal | None:
        return Decimal(self.accurate_invoices) / self.invoices_checked if self.invoices_checked else None

    @property
    def dispute_rate(self) -> Decimal | None:
        """Invoices a customer could rightly dispute (an over-billed line) per invoice checked."""
        return Decimal(self.invoices_over_billed) / self.invoices_checked if self.invoices_checked else None


def accuracy_report(tenant: Tenant, period: str) -> AccuracyReport:
    """One month's billing accuracy: invoices checked, mismatches, corrections, money recovered, credits."""
    runs = period_runs(tenant, period)
    report = AccuracyReport(tenant=tenant, period=period, runs=runs)
    lines = period_lines(tenant, runs)
    money: dict[str, CurrencyFigures] = {}

    def figures(currency: str) -> CurrencyFigures:
        return money.setdefault(currency, CurrencyFigures(currency=currency))

    rows = (
        lines.values("classification", "direction", "source", "currency")
        .annotate(
            n=Count("id"),
            difference=Sum("difference"),
            expected=Sum("expected_amount"),
            billed=Sum("billed_amount"),
            credited=Sum("credited_amount"),
        )
        .order_by("currency", "classification", "direction", "source")
    )
    by_class: dict[tuple[str, str, str], MismatchRow] = {}
    by_source: dict[tuple[str, str, str], MismatchRow] = {}
    for row in rows:
        cls, direction, currency, n = row["classification"], row["direction"], row["currency"], row["n"]
        difference = _sum(row["difference"])
        cur = figures(currency)
        cur.lines += n
        cur.expected += _sum(row["expected"])
        cur.billed += _sum(row["billed"])
        cur.credits_on_invoices += _sum(row["credited"])
        report.lines += n
        if cls in (Classification.MATCHED, Classification.WITHIN_TOLERANCE):
            continue
        if cls in BILLING_ERRORS:
            if difference > 0:
                cur.leaked += difference
            else:
                cur.over_billed -= difference
        elif cls == Classification.TIMING:
            cur.late += difference
        key = (cls, direction, currency)
        if key not in by_class:
            by_class[key] = MismatchRow(cls, str(Classification(cls).label), direction, currency, 0, ZERO)
        by_class[key].lines += n
        by_class[key].amount += abs(difference)
        if row["source"]:
            skey = (row["source"], direction, currency)
            if skey not in by_source:
                label = str(FindingSource(row["source"]).label)
                by_source[skey] = MismatchRow("", label, direction, currency, 0, ZERO, row["source"])
            by_source[skey].lines += n
            by_source[skey].amount += abs(difference)
    _count_invoices(report, lines)
    _count_corrections(report, tenant, period, figures)
    report.currencies = sorted(money.values(), key=lambda c: (-c.lines, c.currency))
    rank = {c.currency: i for i, c in enumerate(report.currencies)}
    order = {str(c): i for i, c in enumerate(CLASS_ORDER)}
    report.mismatches = sorted(
        by_class.values(), key=lambda r: (rank[r.currency], order[r.classification], r.direction)
    )
    report.by_source = sorted(by_source.values(), key=lambda r: (rank[r.currency], r.source, r.direction))
    report.finding_statuses = [
        (row["status"], str(Discrepancy.Status(row["status"]).label), row["n"])
        for row in Discrepancy.objects.filter(tenant=tenant, period=period)
        .values("status")
        .annotate(n=Count("id"))
        .order_by("status")
    ]
    return report


def _count_invoices(report: AccuracyReport, lines: QuerySet[ReconciliationLine]) -> None:
    """Invoices checked and those with a billing error (one GROUP BY per account and invoice).

    A line the provider never invoiced has no invoice line: it belongs to the account's invoice
    for the period, or, when the account got no invoice at all, to an invoice that is missing.
    """
    rows = (
        lines.values("account_id", "invoice_line__invoice_id")
        .annotate(
            errors=Count("id", filter=Q(classification__in=BILLING_ERRORS)),
            over=Count("id", filter=Q(classification__in=BILLING_ERRORS, direction="over")),
        )
        .order_by()
    )
    invoices: dict[int, set[int]] = defaultdict(set)
    wrong: set[int] = set()
    over: set[int] = set()
    uninvoiced: dict[int, bool] = {}
    for row in rows:
        account, invoice = row["account_id"], row["invoice_line__invoice_id"]
        if invoice is None:
            uninvoiced[account] = uninvoiced.get(account, False) or row["errors"] > 0
            continue
        invoices[account].add(invoice)
        if row["errors"]:
            wrong.add(invoice)
        if row["over"]:
            over.add(invoice)
    for account, has_errors in uninvoiced.items():
        if has_errors and invoices.get(account):
            wrong.update(invoices[account])
    report.accounts = len(set(invoices) | set(uninvoiced))
    report.invoices_checked = sum(len(i) for i in invoices.values())
    report.invoices_with_errors = len(wrong)
    report.invoices_over_billed = len(over)
    report.accounts_without_invoice = len([a for a in uninvoiced if not invoices.get(a)])


def _count_corrections(report: AccuracyReport, tenant: Tenant, period: str, figures: Any) -> None:
    """Fixes proposed for the period's findings: applied at the provider, or still on their way."""
    rows = _fixes(Proposal.objects.filter(tenant=tenant, discrepancy__period=period), "currency", "status")
    under_way = (Proposal.Status.PROPOSED, Proposal.Status.APPROVED, Proposal.Status.FAILED)
    table: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        cur, amount, n = figures(row["currency"]), _sum(row["amount"]), row["n"]
        effect = fix_effect(row["kind"], amount)
        if row["status"] == Proposal.Status.EXECUTED and effect is not None:
            cur.corrections += n
            if effect == RECOVERED:
                cur.recovered += amount
            elif effect == CREDITED and row["kind"] == "credit_note":
                cur.credits_issued += amount
            elif effect == CREDITED:
                cur.drafts_reduced += abs(amount)
            else:
                cur.written_off += amount
        elif row["status"] in under_way and effect is not None:
            cur.in_progress += abs(amount)
            cur.in_progress_count += n
        key = (row["currency"], row["kind"], row["status"])
        entry = table.setdefault(
            key,
            {
                "currency": row["currency"],
                "kind": row["kind"],
                "status": row["status"],
                "kind_label": str(Proposal.Kind(row["kind"]).label),
                "status_label": str(Proposal.Status(row["status"]).label),
                "n": 0,
                "amount": ZERO,
            },
        )
        entry["n"] += n
        entry["amount"] += abs(amount)
    report.corrections = list(table.values())
