"""Each account's period, cut-off and subscription phases for one requested month."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from .errors import ReconciliationInputError
from .inputs import Account, InvoiceLine, InvoiceStatus, Month, SubscriptionPhase

PeriodSource = Literal["invoice", "calendar"]
CutOffSource = Literal["finalized_at", "run_time"]


@dataclass(frozen=True, slots=True)
class InvoiceHeader:
    """The invoice-level facts shared by all lines of one invoice."""

    invoice_id: str
    account_id: str
    period_start: datetime
    period_end: datetime
    status: InvoiceStatus
    finalized_at: datetime | None
    currency: str

    @classmethod
    def of(cls, line: InvoiceLine) -> InvoiceHeader:
        return cls(
            invoice_id=line.invoice_id,
            account_id=line.account_id,
            period_start=line.period_start,
            period_end=line.period_end,
            status=line.status,
            finalized_at=line.finalized_at,
            currency=line.currency,
        )


@dataclass(frozen=True, slots=True)
class AccountPeriod:
    """One account's reconciliation window [start, end), its cut-off and the phases inside it."""

    account: Account
    start: datetime
    end: datetime
    period_source: PeriodSource
    cut_off: datetime
    cut_off_source: CutOffSource
    phases: tuple[SubscriptionPhase, ...]
    invoice: InvoiceHeader | None

    def holds(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def phase_slot(self, moment: datetime) -> int:
        """Return the index of the phase holding `moment`; len(phases) when none does."""
        for index, phase in enumerate(self.phases):
            if phase.holds(moment):
                return index
        return len(self.phases)

    @property
    def changed_plan(self) -> bool:
        return len(self.phases) > 1

    @property
    def currency(self) -> str | None:
        """The currency its lines are priced in: the plans', else the invoice's, else unknown."""
        if self.phases:
            return self.phases[0].plan.currency
        return None if self.invoice is None else self.invoice.currency


def invoice_headers(lines: Iterable[InvoiceLine]) -> list[InvoiceHeader]:
    """Return one header per invoice id (its first line), void invoices left out: they bill nothing."""
    headers: dict[str, InvoiceHeader] = {}
    for line in lines:
        if line.status != "void" and line.invoice_id not in headers:
            headers[line.invoice_id] = InvoiceHeader.of(line)
    return list(headers.values())


def resolve_periods(
    *,
    month: Month,
    accounts: Iterable[Account],
    phases: Iterable[SubscriptionPhase],
    invoices: Iterable[InvoiceHeader],
    run_time: datetime,
) -> dict[str, AccountPeriod]:
    """Work out every account's period for `month`.

    An invoice belongs to the month when its stated period starts inside that calendar
    month in the account's time zone, and its stated period then wins over the calendar
    month. The cut-off is the invoice's `finalized_at`; a draft invoice, or no invoice at
    all, is cut off at `run_time` (a pre-invoice run sees what has arrived so far).
    """
    if run_time.tzinfo is None:
        raise ReconciliationInputError("run_time must be an aware datetime")
    by_account = {account.id: account for account in accounts}
    chosen = _invoices_of_month(month, by_account, invoices)
    phases_of: dict[str, list[SubscriptionPhase]] = {}
    for phase in phases:
        phases_of.setdefault(phase.account_id, []).append(phase)
    periods: dict[str, AccountPeriod] = {}
    for account_id, account in by_account.items():
        invoice = chosen.get(account_id)
        source: PeriodSource = "calendar"
        start, end = month.bounds(account.zone)
        if invoice is not None:
            start, end, source = invoice.period_start, invoice.period_end, "invoice"
        inside = _phases_inside(account_id, phases_of.get(account_id, []), start, end)
        cut_off, cut_off_source = _cut_off(invoice, run_time)
        period = AccountPeriod(
            account=account,
            start=start,
            end=end,
            period_source=source,
            cut_off=cut_off,
            cut_off_source=cut_off_source,
            phases=inside,
            invoice=invoice,
        )
        _check_currency(period)
        periods[account_id] = period
    return periods


def _cut_off(invoice: InvoiceHeader | None, run_time: datetime) -> tuple[datetime, CutOffSource]:
    if invoice is not None and invoice.status != "draft" and invoice.finalized_at is not None:
        return invoice.finalized_at, "finalized_at"
    return run_time, "run_time"


def _invoices_of_month(
    month: Month, accounts: Mapping[str, Account], invoices: Iterable[InvoiceHeader]
) -> dict[str, InvoiceHeader]:
    chosen: dict[str, InvoiceHeader] = {}
    for invoice in invoices:
        account = accounts.get(invoice.account_id)
        if account is None:
            raise ReconciliationInputError(
                f"invoice {invoice.invoice_id} is for unknown account {invoice.account_id!r}"
            )
        if invoice.status == "void" or not month.holds(invoice.period_start, account.zone):
            continue
        if invoice.period_end <= invoice.period_start:
            raise ReconciliationInputError(f"invoice {invoice.invoice_id} ends before it starts")
        earlier = chosen.get(account.id)
        if earlier is not None and earlier.invoice_id != invoice.invoice_id:
            raise ReconciliationInputError(
                f"account {account.id} has two invoices for {month}: {earlier.invoice_id} and "
                f"{invoice.invoice_id}"
            )
        chosen[account.id] = invoice
    return chosen


def _phases_inside(
    account_id: str, phases: list[SubscriptionPhase], start: datetime, end: datetime
) -> tuple[SubscriptionPhase, ...]:
    inside = sorted((p for p in phases if p.overlaps(start, end)), key=lambda p: p.starts_at)
    for before, after in itertools.pairwise(inside):
        if before.ends_at is None or before.ends_at > after.starts_at:
            raise ReconciliationInputError(
                f"account {account_id}: phases on {before.plan.key!r} and {after.plan.key!r} overlap"
            )
    return tuple(inside)


def _check_currency(period: AccountPeriod) -> None:
    currencies = {phase.plan.currency for phase in period.phases}
    if period.invoice is not None and period.phases:
        currencies.add(period.invoice.currency)
    if len(currencies) > 1:
        raise ReconciliationInputError(
            f"account {period.account.id}: its plans and invoice for the period mix currencies "
            f"({', '.join(sorted(currencies))}); amounts in different currencies cannot be compared"
        )
