"""The bundle's smaller files: accounts, subscriptions, invoices, credit notes and metered counts.

Each reader returns only the rows it could read and that agree with what was read
before (a known account, meter, plan or invoice); every other row is an import error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apps.pricing import Catalog, UnknownCurrencyError, normalize_currency
from apps.reconciliation.core import (
    INVOICE_STATUSES,
    Account,
    CreditNote,
    InvoiceLine,
    InvoiceStatus,
    MeteredUsage,
    Month,
    SubscriptionPhase,
)

from .rows import ImportLog, Row, read_rows
from .source import BundleSource

ACCOUNTS: Final = "accounts.csv"
SUBSCRIPTIONS: Final = "subscriptions.csv"
INVOICES: Final = "invoices.csv"
CREDITS: Final = "credits.csv"
METERED: Final = "metered.csv"

_FINALIZED: Final = frozenset({"open", "finalized", "paid"})


def _account(row: Row, accounts: dict[str, Account]) -> str:
    account_id = row.text("account_id")
    if account_id and account_id not in accounts:
        row.problem("account_id", f"unknown account {account_id!r} (not in {ACCOUNTS})")
    return account_id


def _meter(row: Row, catalog: Catalog, *, required: bool) -> str | None:
    meter = row.text("meter", required=required)
    if not meter:
        return None
    known = [m.key for m in catalog.meters]
    if meter not in known:
        row.problem("meter", f"unknown meter {meter!r} (pricing.json defines {', '.join(sorted(known))})")
    return meter


def read_accounts(source: BundleSource, log: ImportLog) -> dict[str, Account]:
    accounts: dict[str, Account] = {}
    first_line: dict[str, int] = {}
    for row in read_rows(source, ACCOUNTS, ("account_id", "name", "segment", "timezone"), log):
        account_id = row.text("account_id")
        if account_id in first_line:
            row.problem("account_id", f"{account_id!r} is already defined on line {first_line[account_id]}")
        time_zone = row.text("timezone")
        if time_zone:
            try:
                ZoneInfo(time_zone)
            except (ZoneInfoNotFoundError, ValueError):
                row.problem(
                    "timezone", f"unknown time zone {time_zone!r} (use an IANA name such as Asia/Tokyo)"
                )
        if row.problems:
            log.add(ACCOUNTS, row.line, "; ".join(row.problems))
            continue
        first_line[account_id] = row.line
        name, segment = row.text("name", required=False), row.text("segment", required=False)
        accounts[account_id] = Account(account_id, name, segment, time_zone)
    return accounts


def _overlap(a: SubscriptionPhase, b: SubscriptionPhase) -> bool:
    return (a.ends_at is None or b.starts_at < a.ends_at) and (b.ends_at is None or a.starts_at < b.ends_at)


def read_subscriptions(
    source: BundleSource, log: ImportLog, accounts: dict[str, Account], catalog: Catalog
) -> list[SubscriptionPhase]:
    plans = {plan.key: plan for plan in catalog.plans}
    accepted: dict[str, list[tuple[SubscriptionPhase, int]]] = {}
    columns = ("account_id", "plan", "starts_at", "ends_at")
    for row in read_rows(source, SUBSCRIPTIONS, columns, log):
        account_id = _account(row, accounts)
        plan_key = row.text("plan")
        plan = plans.get(plan_key)
        if plan_key and plan is None:
            row.problem(
                "plan", f"unknown plan {plan_key!r} (pricing.json defines {', '.join(sorted(plans))})"
            )
        starts_at = row.timestamp("starts_at")
        ends_at = row.timestamp("ends_at", required=False)
        if starts_at is not None and ends_at is not None and ends_at <= starts_at:
            row.problem("ends_at", f"{ends_at.isoformat()} is not after starts_at")
        if row.problems or plan is None or starts_at is None:
            log.add(SUBSCRIPTIONS, row.line, "; ".join(row.problems))
            continue
        phase = SubscriptionPhase(account_id, plan, starts_at, ends_at)
        for other, line in accepted.get(account_id, []):
            if _overlap(phase, other):
                row.problem("starts_at", f"overlaps the phase on line {line}: a moment has one plan only")
            elif other.plan.currency != plan.currency:
                row.problem(
                    "plan",
                    f"{plan_key!r} is priced in {plan.currency} but the phase on line {line} is in "
                    f"{other.plan.currency}: one account is billed in one currency",
                )
        if row.problems:
            log.add(SUBSCRIPTIONS, row.line, "; ".join(row.problems))
            continue
        accepted.setdefault(account_id, []).append((phase, row.line))
    return [phase for phases in accepted.values() for phase, _line in phases]


@dataclass(slots=True)
class InvoicesRead:
    """The lines of the month's invoices, and the owner of every readable invoice (for credits)."""

    lines: list[InvoiceLine] = field(default_factory=list)
    owners: dict[str, str] = field(default_factory=dict)


_INVOICE_COLUMNS: Final = (
    "invoice_id",
    "account_id",
    "period_start",
    "period_end",
    "status",
    "finalized_at",
    "currency",
    "meter",
    "quantity",
    "amount",
)


def _status(row: Row) -> InvoiceStatus | None:
    value = row.text("status").lower()
    for status in INVOICE_STATUSES:
        if value == status:
            return status
    if value:
        row.problem("status", f"unknown status {value!r} (use one of {', '.join(INVOICE_STATUSES)})")
    return None


def _currency(row: Row) -> str:
    raw = row.text("currency")
    try:
        return normalize_currency(raw)
    except UnknownCurrencyError:
        if raw:
            row.problem("currency", f"{raw!r} is not an ISO 4217 currency code")
        return raw


class _InvoiceChecks:
    """What must hold across rows: one header per invoice, one invoice per account and month."""

    def __init__(self, month: Month, accounts: dict[str, Account], phases: list[SubscriptionPhase]) -> None:
        self.month = month
        self.accounts = accounts
        self.phases = phases
        self.headers: dict[str, tuple[tuple[object, ...], int]] = {}
        self.chosen: dict[str, str] = {}

    def agree(self, row: Row, line: InvoiceLine) -> None:
        header = (
            line.account_id,
            line.period_start,
            line.period_end,
            line.status,
            line.finalized_at,
            line.currency,
        )
        first = self.headers.setdefault(line.invoice_id, (header, row.line))
        names = ("account_id", "period_start", "period_end", "status", "finalized_at", "currency")
        for name, mine, theirs in zip(names, header, first[0], strict=True):
            if mine != theirs:
                row.problem(name, f"differs from line {first[1]} of invoice {line.invoice_id} ({theirs})")

    def in_month(self, line: InvoiceLine) -> bool:
        return line.status != "void" and self.month.holds(
            line.period_start, self.accounts[line.account_id].zone
        )

    def belongs(self, row: Row, line: InvoiceLine) -> None:
        """Check an invoice of the month: the account's only one, in its plans' currency."""
        chosen = self.chosen.setdefault(line.account_id, line.invoice_id)
        if chosen != line.invoice_id:
            row.problem(
                "invoice_id", f"account {line.account_id} already has invoice {chosen} for {self.month}"
            )
        for phase in self.phases:
            inside = phase.starts_at < line.period_end and (
                phase.ends_at is None or phase.ends_at > line.period_start
            )
            if phase.account_id == line.account_id and inside and phase.plan.currency != line.currency:
                row.problem(
                    "currency",
                    f"{line.currency} but plan {phase.plan.key!r} of {line.account_id} is priced in "
                    f"{phase.plan.currency}",
                )
                break


def read_invoices(
    source: BundleSource,
    log: ImportLog,
    month: Month,
    accounts: dict[str, Account],
    catalog: Catalog,
    phases: list[SubscriptionPhase],
) -> InvoicesRead:
    read = InvoicesRead()
    checks = _InvoiceChecks(month, accounts, phases)
    for row in read_rows(source, INVOICES, _INVOICE_COLUMNS, log):
        line = _invoice_line(row, accounts, catalog)
        if line is not None:
            checks.agree(row, line)
            if not row.problems and checks.in_month(line):
                checks.belongs(row, line)
        if row.problems or line is None:
            log.add(INVOICES, row.line, "; ".join(row.problems))
            continue
        read.owners.setdefault(line.invoice_id, line.account_id)
        if checks.in_month(line):
            read.lines.append(line)
    return read


def _invoice_line(row: Row, accounts: dict[str, Account], catalog: Catalog) -> InvoiceLine | None:
    invoice_id = row.text("invoice_id")
    account_id = _account(row, accounts)
    period_start, period_end = row.timestamp("period_start"), row.timestamp("period_end")
    if period_start is not None and period_end is not None and period_end <= period_start:
        row.problem("period_end", f"{period_end.isoformat()} is not after period_start")
    status = _status(row)
    finalized_at = row.timestamp("finalized_at", required=status in _FINALIZED)
    currency = _currency(row)
    meter = _meter(row, catalog, required=False)
    quantity, amount = row.decimal("quantity"), row.decimal("amount", negative=True)
    if row.problems or period_start is None or period_end is None or status is None:
        return None
    if quantity is None or amount is None:
        return None
    return InvoiceLine(
        invoice_id,
        account_id,
        period_start,
        period_end,
        status,
        finalized_at,
        currency,
        meter,
        quantity,
        amount,
    )


def read_credits(
    source: BundleSource,
    log: ImportLog,
    accounts: dict[str, Account],
    catalog: Catalog,
    invoices: InvoicesRead,
) -> list[CreditNote]:
    if not source.exists(CREDITS):
        return []  # no credit note issued
    credits: list[CreditNote] = []
    seen: dict[str, int] = {}
    columns = ("credit_note_id", "invoice_id", "account_id", "meter", "amount", "reason", "issued_at")
    for row in read_rows(source, CREDITS, columns, log):
        credit_id = row.text("credit_note_id")
        if credit_id in seen:
            row.problem("credit_note_id", f"{credit_id!r} is already listed on line {seen[credit_id]}")
        invoice_id = row.text("invoice_id")
        account_id = _account(row, accounts)
        owner = invoices.owners.get(invoice_id)
        if invoice_id and owner is None:
            row.problem("invoice_id", f"unknown invoice {invoice_id!r} (no readable row in {INVOICES})")
        elif owner is not None and account_id and owner != account_id:
            row.problem("account_id", f"{account_id!r} but invoice {invoice_id} belongs to {owner!r}")
        meter = _meter(row, catalog, required=False)
        amount = row.decimal("amount")
        issued_at = row.timestamp("issued_at", required=False)
        if row.problems or amount is None:
            log.add(CREDITS, row.line, "; ".join(row.problems))
            continue
        seen[credit_id] = row.line
        credits.append(
            CreditNote(
                credit_id,
                invoice_id,
                account_id,
                meter,
                amount,
                row.text("reason", required=False),
                issued_at,
            )
        )
    return credits


def read_metered(
    source: BundleSource, log: ImportLog, accounts: dict[str, Account], catalog: Catalog
) -> list[MeteredUsage]:
    if not source.exists(METERED):
        return []  # no metered counts: metering is then never blamed for a difference
    metered: list[MeteredUsage] = []
    columns = ("account_id", "meter", "period_start", "period_end", "quantity")
    for row in read_rows(source, METERED, columns, log):
        account_id = _account(row, accounts)
        meter = _meter(row, catalog, required=True)
        start: datetime | None = row.timestamp("period_start")
        end: datetime | None = row.timestamp("period_end")
        if start is not None and end is not None and end <= start:
            row.problem("period_end", f"{end.isoformat()} is not after period_start")
        quantity: Decimal | None = row.decimal("quantity")
        if row.problems or meter is None or start is None or end is None or quantity is None:
            log.add(METERED, row.line, "; ".join(row.problems))
            continue
        metered.append(MeteredUsage(account_id, meter, start, end, quantity))
    return metered
