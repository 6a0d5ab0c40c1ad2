"""What reconciliation produces: one line per invoice line (or unbilled usage), with its working."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from apps.pricing import PeriodBreakdown, decimal_str, minor_units

from .classify import CLASSIFICATIONS, Classification, Direction, Source
from .inputs import Materiality


def money_str(amount: Decimal, currency: str) -> str:
    """Render an amount with the currency's minor-unit places ("0.00", JPY "15000").

    An amount written with more places than the currency has (a provider's sub-cent line)
    keeps them: the output never rounds what was read.
    """
    places = minor_units(currency)
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent <= places:
        amount = amount.quantize(Decimal(1).scaleb(-places))
    return decimal_str(amount)


def units_str(value: Decimal) -> str:
    """Render units without trailing zeros ("704.1", "5"), however they were written or computed."""
    text = decimal_str(value)
    return text.rstrip("0").rstrip(".") if "." in text else text


def _opt(value: Decimal | None) -> str | None:
    return None if value is None else decimal_str(value)


def _opt_units(value: Decimal | None) -> str | None:
    return None if value is None else units_str(value)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


@dataclass(frozen=True, slots=True)
class AppliedCredit:
    credit_note_id: str
    amount: Decimal
    reason: str
    issued_at: datetime | None

    def as_dict(self, currency: str) -> dict[str, Any]:
        return {
            "credit_note_id": self.credit_note_id,
            "amount": money_str(self.amount, currency),
            "reason": self.reason,
            "issued_at": _iso(self.issued_at),
        }


@dataclass(frozen=True, slots=True)
class LineWorking:
    """How a line's numbers came about: the period, the pricing tier by tier, the events, the credits."""

    period_start: datetime
    period_end: datetime
    time_zone: str
    period_source: str
    cut_off: datetime
    cut_off_source: str
    invoice_id: str | None
    invoice_status: str | None
    invoice_line_count: int
    plans: tuple[str, ...]
    expected: PeriodBreakdown
    on_time: PeriodBreakdown | None
    raw_quantity: Decimal | None
    on_time_quantity: Decimal | None
    metered_quantity: Decimal | None
    event_count: int
    late_event_count: int
    late_event_ids: tuple[str, ...]
    credits: tuple[AppliedCredit, ...]
    materiality: Materiality
    material: bool
    notes: tuple[str, ...] = ()

    def as_dict(self, currency: str) -> dict[str, Any]:
        return {
            "period": {
                "start": _iso(self.period_start),
                "end": _iso(self.period_end),
                "time_zone": self.time_zone,
                "stated_by": self.period_source,
            },
            "cut_off": {"at": _iso(self.cut_off), "from": self.cut_off_source},
            "invoice": {
                "invoice_id": self.invoice_id,
                "status": self.invoice_status,
                "lines": self.invoice_line_count,
            },
            "plans": list(self.plans),
            "quantities": {
                "raw": _opt(self.raw_quantity),
                "on_time": _opt(self.on_time_quantity),
                "metered": _opt(self.metered_quantity),
            },
            "events": {
                "count": self.event_count,
                "late_count": self.late_event_count,
                "late_event_ids": list(self.late_event_ids),
                "late_event_ids_complete": len(self.late_event_ids) == self.late_event_count,
            },
            "expected": self.expected.as_dict(),
            "on_time": None if self.on_time is None else self.on_time.as_dict(),
            "credits": [credit.as_dict(currency) for credit in self.credits],
            "materiality": {
                "absolute": decimal_str(self.materiality.absolute),
                "relative": decimal_str(self.materiality.relative),
                "material": self.material,
            },
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class ReconciledLine:
    """One reconciled line: account x meter for the period, or the base fee (meter None).

    Units are billing units (raw quantity / unit_size, rounded per the meter and per
    phase); `raw_units`, `on_time_units` and `metered_units` are None for the base fee and
    `metered_units` is None when the provider reported no metered count.
    """

    account_id: str
    meter: str | None
    currency: str
    raw_units: Decimal | None
    on_time_units: Decimal | None
    metered_units: Decimal | None
    invoiced_units: Decimal
    expected_amount: Decimal
    invoiced_amount: Decimal
    credited_amount: Decimal
    billed_amount: Decimal
    difference: Decimal
    classification: Classification
    direction: Direction
    source: Source | None
    working: LineWorking

    @property
    def sort_key(self) -> tuple[str, bool, str]:
        """Account, then the base fee, then meters by key: the order of the expected output."""
        return (self.account_id, self.meter is not None, self.meter or "")

    def as_dict(self, *, working: bool = False) -> dict[str, Any]:
        """The line as PRODUCT.md's bundle JSON shows it, decimals as strings."""
        money = self.currency
        data: dict[str, Any] = {
            "account_id": self.account_id,
            "meter": self.meter,
            "currency": self.currency,
            "raw_units": _opt_units(self.raw_units),
            "on_time_units": _opt_units(self.on_time_units),
            "metered_units": _opt_units(self.metered_units),
            "invoiced_units": units_str(self.invoiced_units),
            "expected_amount": money_str(self.expected_amount, money),
            "invoiced_amount": money_str(self.invoiced_amount, money),
            "credited_amount": money_str(self.credited_amount, money),
            "billed_amount": money_str(self.billed_amount, money),
            "difference": money_str(self.difference, money),
            "classification": self.classification,
            "direction": self.direction,
            "source": self.source,
        }
        if working:
            data["working"] = self.working.as_dict(money)
        return data


def _zero_by_class() -> dict[Classification, tuple[int, Decimal]]:
    return dict.fromkeys(CLASSIFICATIONS, (0, Decimal(0)))


@dataclass(slots=True)
class CurrencyTotals:
    """Per-currency sums of a run. under_billed / over_billed add up the differences by
    direction (over_billed as a positive amount), whatever their class; `by_classification`
    says how much of each is timing, credits, proration or a real under- or over-bill."""

    currency: str
    lines: int = 0
    discrepancies: int = 0
    expected: Decimal = Decimal(0)
    invoiced: Decimal = Decimal(0)
    credited: Decimal = Decimal(0)
    billed: Decimal = Decimal(0)
    difference: Decimal = Decimal(0)
    under_billed: Decimal = Decimal(0)
    over_billed: Decimal = Decimal(0)
    by_classification: dict[Classification, tuple[int, Decimal]] = field(default_factory=_zero_by_class)

    def add(self, line: ReconciledLine) -> None:
        self.lines += 1
        self.discrepancies += line.classification != "matched"
        self.expected += line.expected_amount
        self.invoiced += line.invoiced_amount
        self.credited += line.credited_amount
        self.billed += line.billed_amount
        self.difference += line.difference
        if line.difference > 0:
            self.under_billed += line.difference
        else:
            self.over_billed -= line.difference
        count, amount = self.by_classification[line.classification]
        self.by_classification[line.classification] = (count + 1, amount + line.difference)

    def as_dict(self) -> dict[str, Any]:
        money = self.currency
        return {
            "lines": self.lines,
            "discrepancies": self.discrepancies,
            "expected": money_str(self.expected, money),
            "invoiced": money_str(self.invoiced, money),
            "credited": money_str(self.credited, money),
            "billed": money_str(self.billed, money),
            "difference": money_str(self.difference, money),
            "under_billed": money_str(self.under_billed, money),
            "over_billed": money_str(self.over_billed, money),
            "by_classification": {
                name: {"lines": count, "difference": money_str(amount, money)}
                for name, (count, amount) in self.by_classification.items()
            },
        }


def currency_totals(lines: Iterable[ReconciledLine]) -> dict[str, CurrencyTotals]:
    """Sum the lines per currency (never across currencies), currencies in alphabetical order."""
    totals: dict[str, CurrencyTotals] = {}
    for line in lines:
        totals.setdefault(line.currency, CurrencyTotals(line.currency)).add(line)
    return dict(sorted(totals.items()))
