"""The three-way match: expected (priced from raw usage) vs metered vs invoiced, line by line."""

from __future__ import annotations

import decimal
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from apps.pricing import (
    Meter,
    PeriodBreakdown,
    PhaseSpec,
    PricingError,
    Proration,
    UnitRule,
    price_period,
    to_decimal,
    units_for,
)

from .classify import LineFacts, classify
from .errors import ReconciliationInputError
from .inputs import (
    Account,
    CreditNote,
    InvoiceLine,
    Materiality,
    MeteredUsage,
    Month,
    SubscriptionPhase,
    UsageEvent,
)
from .periods import AccountPeriod, invoice_headers, resolve_periods
from .results import AppliedCredit, CurrencyTotals, LineWorking, ReconciledLine, currency_totals
from .usage import MeterUsage, UsageAccumulator, UsageKey, exact_sum

_ZERO = Decimal(0)

LineKey = tuple[str, str | None]
"""(account_id, meter); meter None is the base fee line."""


MaterialityFor = Callable[[Account, str | None], Materiality]
"""Materiality per line: the account (for its segment) and the meter (None for the base fee)."""


@dataclass(frozen=True, slots=True)
class Pricing:
    """How amounts are computed: base-fee proration and the one rounding step's mode."""

    proration: Proration = "days"
    rounding: str = decimal.ROUND_HALF_UP


@dataclass(slots=True)
class _Invoiced:
    quantity: Decimal = _ZERO
    amount: Decimal = _ZERO
    lines: int = 0


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """A reconciled period: its lines in a stable order, and what could not be reconciled at all."""

    lines: tuple[ReconciledLine, ...]
    warnings: tuple[str, ...] = ()

    def totals(self) -> dict[str, CurrencyTotals]:
        return currency_totals(self.lines)


def reconcile(
    *,
    periods: Mapping[str, AccountPeriod],
    meters: Mapping[str, Meter],
    usage: Mapping[UsageKey, MeterUsage],
    metered: Iterable[MeteredUsage] = (),
    invoice_lines: Iterable[InvoiceLine] = (),
    credits: Iterable[CreditNote] = (),
    materiality: Materiality | MaterialityFor = Materiality(),  # noqa: B008 - immutable
    pricing: Pricing = Pricing(),
) -> Reconciliation:
    """Reconcile every invoice line of the periods, and every account x meter used but not invoiced.

    `usage` comes from `UsageAccumulator` (or a database GROUP BY with the same shape).
    A line missing from the invoice is reconciled as invoiced at 0: that is the silent
    leakage. A base fee missing from an account's lines is reported the same way.
    """
    invoiced = _invoiced(periods, invoice_lines)
    applied = _credits(periods, credits)
    counted = _metered(periods, metered)
    keys: set[LineKey] = set(invoiced) | set(applied)
    keys.update(key for key, used in usage.items() if used.events and used.total > 0)
    keys.update({(account_id, None) for account_id, _meter in keys})
    lines: list[ReconciledLine] = []
    warnings: list[str] = []
    for account_id, meter_key in sorted(keys, key=lambda k: (k[0], k[1] is not None, k[1] or "")):
        period = periods[account_id]
        currency = period.currency
        if currency is None:
            if meter_key is not None:  # no plan means no base fee either: only usage is worth a warning
                warnings.append(_unpriceable(period, meter_key, usage))
            continue
        threshold = materiality(period.account, meter_key) if callable(materiality) else materiality
        builder = _LineBuilder(period, currency, threshold, pricing)
        key = (account_id, meter_key)
        billed = invoiced.get(key)
        if meter_key is None:
            line = builder.base_fee(billed, applied.get(key, []))
            if billed is None and not applied.get(key) and line.expected_amount == 0:
                continue  # nothing owed, nothing invoiced: no line to show
        else:
            meter = meters.get(meter_key)
            if meter is None:
                raise ReconciliationInputError(f"account {account_id}: unknown meter {meter_key!r}")
            used_key = (account_id, meter_key)
            line = builder.usage(
                meter, usage.get(used_key), counted.get(used_key), billed, applied.get(key, [])
            )
        lines.append(line)
    return Reconciliation(lines=tuple(lines), warnings=tuple(warnings))


def reconcile_period(
    *,
    month: Month,
    run_time: datetime,
    accounts: Iterable[Account],
    phases: Iterable[SubscriptionPhase],
    meters: Mapping[str, Meter],
    events: Iterable[UsageEvent] = (),
    metered: Iterable[MeteredUsage] = (),
    invoice_lines: Iterable[InvoiceLine] = (),
    credits: Iterable[CreditNote] = (),
    materiality: Materiality = Materiality(),  # noqa: B008 - immutable
    pricing: Pricing = Pricing(),
) -> Reconciliation:
    """Everything in one call, from plain records: periods, usage folding, then `reconcile`."""
    invoice_lines = list(invoice_lines)
    periods = resolve_periods(
        month=month,
        accounts=accounts,
        phases=phases,
        invoices=invoice_headers(invoice_lines),
        run_time=run_time,
    )
    usage = UsageAccumulator(periods).add_all(events).usage
    return reconcile(
        periods=periods,
        meters=meters,
        usage=usage,
        metered=metered,
        invoice_lines=invoice_lines,
        credits=credits,
        materiality=materiality,
        pricing=pricing,
    )


def _period_of(periods: Mapping[str, AccountPeriod], account_id: str, what: str) -> AccountPeriod:
    period = periods.get(account_id)
    if period is None:
        raise ReconciliationInputError(f"{what} is for unknown account {account_id!r}")
    return period


def _invoiced(periods: Mapping[str, AccountPeriod], lines: Iterable[InvoiceLine]) -> dict[LineKey, _Invoiced]:
    # Several lines for one meter (a provider may split tiers into lines) add up.
    invoiced: dict[LineKey, _Invoiced] = {}
    for line in lines:
        period = _period_of(periods, line.account_id, f"invoice {line.invoice_id}")
        if period.invoice is None or period.invoice.invoice_id != line.invoice_id:
            continue  # another period's (or a void) invoice
        total = invoiced.setdefault((line.account_id, line.meter), _Invoiced())
        total.quantity += line.quantity
        total.amount += line.amount
        total.lines += 1
    return invoiced


def _credits(
    periods: Mapping[str, AccountPeriod], credits: Iterable[CreditNote]
) -> dict[LineKey, list[AppliedCredit]]:
    owners = {p.invoice.invoice_id: p.account.id for p in periods.values() if p.invoice is not None}
    applied: dict[LineKey, list[AppliedCredit]] = {}
    for credit in credits:
        owner = owners.get(credit.invoice_id)
        if owner is None:
            continue  # a credit against another period's invoice
        if credit.account_id != owner:
            raise ReconciliationInputError(
                f"credit note {credit.credit_note_id} names account {credit.account_id!r} but invoice "
                f"{credit.invoice_id} belongs to {owner!r}"
            )
        applied.setdefault((owner, credit.meter), []).append(
            AppliedCredit(credit.credit_note_id, credit.amount, credit.reason, credit.issued_at)
        )
    return applied


def _metered(
    periods: Mapping[str, AccountPeriod], metered: Iterable[MeteredUsage]
) -> dict[UsageKey, Decimal]:
    # A metered count belongs to the account's period when its own interval starts inside
    # it; several (e.g. daily summaries) add up.
    counted: dict[UsageKey, Decimal] = {}
    for row in metered:
        period = _period_of(periods, row.account_id, "a metered count")
        if period.holds(row.period_start):
            key = (row.account_id, row.meter)
            counted[key] = exact_sum((counted.get(key, _ZERO), row.quantity))
    return counted


def _unpriceable(period: AccountPeriod, meter: str, usage: Mapping[UsageKey, MeterUsage]) -> str:
    used = usage.get((period.account.id, meter))
    amount = "" if used is None else f" ({used.total} raw units in {used.events} events)"
    return (
        f"account {period.account.id}: {meter}{amount} cannot be reconciled: the account "
        f"has no subscription phase and no invoice in the period, so there is no price or currency"
    )


@dataclass(frozen=True, slots=True)
class _UsageSide:
    """A meter line's usage: how much, in which units, re-priced on time, with notes on what is free."""

    used: MeterUsage
    raw_units: Decimal
    on_time_units: Decimal
    metered_quantity: Decimal | None
    metered_units: Decimal | None
    on_time: PeriodBreakdown
    notes: tuple[str, ...]


class _LineBuilder:
    """Prices and classifies the lines of one account's period."""

    def __init__(self, period: AccountPeriod, currency: str, materiality: Materiality, pricing: Pricing):
        self.period = period
        self.currency = currency
        self.materiality = materiality
        self.pricing = pricing

    def base_fee(self, invoiced: _Invoiced | None, credits: list[AppliedCredit]) -> ReconciledLine:
        specs = [
            PhaseSpec(
                phase.starts_at, phase.ends_at, None, UnitRule(), phase.plan.base_fee, _ZERO, phase.plan.key
            )
            for phase in self.period.phases
        ]
        expected = self._price(specs)
        return self._line(None, expected.base_fee_total, expected, invoiced, credits, None)

    def usage(
        self,
        meter: Meter,
        used: MeterUsage | None,
        metered: Decimal | None,
        invoiced: _Invoiced | None,
        credits: list[AppliedCredit],
    ) -> ReconciledLine:
        used = used or MeterUsage.empty(self.period.account.id, meter.key, len(self.period.phases) + 1)
        rule = meter.unit_rule
        all_specs, notes = self._usage_specs(meter, used.quantity)
        on_time_specs, _ = self._usage_specs(meter, used.on_time_quantity)
        if used.quantity[-1] > 0:
            notes.append(
                f"{used.quantity[-1]} raw units occurred while no subscription phase was active: not priced"
            )
        expected = self._price(all_specs)
        side = _UsageSide(
            used=used,
            raw_units=_units(used.quantity, rule),
            on_time_units=_units(used.on_time_quantity, rule),
            metered_quantity=metered,
            metered_units=None if metered is None else to_decimal(units_for(metered, rule)),
            on_time=self._price(on_time_specs),
            notes=tuple(notes),
        )
        return self._line(meter.key, expected.usage_total, expected, invoiced, credits, side)

    def _usage_specs(self, meter: Meter, quantities: Sequence[Decimal]) -> tuple[list[PhaseSpec], list[str]]:
        specs: list[PhaseSpec] = []
        notes: list[str] = []
        for phase, quantity in zip(self.period.phases, quantities, strict=False):
            charge = phase.plan.charge_for(meter.key)
            if charge is None and quantity > 0:
                # The plan does not price this meter: its usage is included, i.e. free.
                notes.append(f"plan {phase.plan.key!r} does not price {meter.key}: {quantity} raw units free")
                quantity = _ZERO
            specs.append(
                PhaseSpec(
                    phase.starts_at, phase.ends_at, charge, meter.unit_rule, _ZERO, quantity, phase.plan.key
                )
            )
        return specs, notes

    def _price(self, specs: Sequence[PhaseSpec]) -> PeriodBreakdown:
        try:
            return price_period(
                period_start=self.period.start,
                period_end=self.period.end,
                time_zone=self.period.account.time_zone,
                phases=specs,
                currency=self.currency,
                proration=self.pricing.proration,
                rounding=self.pricing.rounding,
            )
        except PricingError as exc:
            raise ReconciliationInputError(f"account {self.period.account.id}: {exc}") from exc

    def _line(
        self,
        meter: str | None,
        expected_amount: Decimal,
        expected: PeriodBreakdown,
        invoiced: _Invoiced | None,
        credits: list[AppliedCredit],
        side: _UsageSide | None,
    ) -> ReconciledLine:
        facts = LineFacts(
            expected=expected_amount,
            invoiced=_ZERO if invoiced is None else invoiced.amount,
            credited=sum((credit.amount for credit in credits), _ZERO),
            has_credits=bool(credits),
            has_late_events=side is not None and side.used.late_events > 0,
            on_time_expected=None if side is None else side.on_time.usage_total,
            plan_changed=self.period.changed_plan,
            metered_units=None if side is None else side.metered_units,
            on_time_units=None if side is None else side.on_time_units,
        )
        verdict = classify(facts, self.materiality)
        return ReconciledLine(
            account_id=self.period.account.id,
            meter=meter,
            currency=self.currency,
            raw_units=None if side is None else side.raw_units,
            on_time_units=None if side is None else side.on_time_units,
            metered_units=None if side is None else side.metered_units,
            invoiced_units=_ZERO if invoiced is None else invoiced.quantity,
            expected_amount=facts.expected,
            invoiced_amount=facts.invoiced,
            credited_amount=facts.credited,
            billed_amount=facts.billed,
            difference=facts.difference,
            classification=verdict.classification,
            direction=verdict.direction,
            source=verdict.source,
            working=self._working(expected, invoiced, credits, side, material=verdict.material),
        )

    def _working(
        self,
        expected: PeriodBreakdown,
        invoiced: _Invoiced | None,
        credits: list[AppliedCredit],
        side: _UsageSide | None,
        *,
        material: bool,
    ) -> LineWorking:
        period = self.period
        used = None if side is None else side.used
        return LineWorking(
            period_start=period.start,
            period_end=period.end,
            time_zone=period.account.time_zone,
            period_source=period.period_source,
            cut_off=period.cut_off,
            cut_off_source=period.cut_off_source,
            invoice_id=None if period.invoice is None else period.invoice.invoice_id,
            invoice_status=None if period.invoice is None else period.invoice.status,
            invoice_line_count=0 if invoiced is None else invoiced.lines,
            plans=tuple(phase.plan.key for phase in period.phases),
            expected=expected,
            on_time=None if side is None else side.on_time,
            raw_quantity=None if used is None else used.total,
            on_time_quantity=None if used is None else used.on_time_total,
            metered_quantity=None if side is None else side.metered_quantity,
            event_count=0 if used is None else used.events,
            late_event_count=0 if used is None else used.late_events,
            late_event_ids=() if used is None else tuple(used.late_event_ids),
            credits=tuple(credits),
            materiality=self.materiality,
            material=material,
            notes=() if side is None else side.notes,
        )


def _units(quantities: Sequence[Decimal], rule: UnitRule) -> Decimal:
    # Each phase's total is normalized on its own (PRODUCT.md), so units add up per phase.
    return to_decimal(sum((units_for(quantity, rule) for quantity in quantities), Fraction(0)))
