"""What reconciliation reads: plain, immutable records, whatever they were loaded from.

An export bundle, the database or a provider sync all end up as these records, so the
rules in this package run the same on each of them. Every datetime is aware.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final, Literal
from zoneinfo import ZoneInfo

from apps.pricing import Plan

from .errors import ReconciliationInputError

InvoiceStatus = Literal["draft", "open", "finalized", "paid", "void"]
INVOICE_STATUSES: Final[tuple[InvoiceStatus, ...]] = ("draft", "open", "finalized", "paid", "void")

_MONTH: Final = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


@dataclass(frozen=True, slots=True, order=True)
class Month:
    """A calendar month, the unit a period is requested in ("2026-10")."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        """Read "YYYY-MM"; raise ReconciliationInputError on anything else."""
        found = _MONTH.fullmatch(text.strip())
        if found is None:
            raise ReconciliationInputError(
                f"period {text!r} is not a month written as YYYY-MM (e.g. 2026-10)"
            )
        return cls(int(found.group(1)), int(found.group(2)))

    def next(self) -> Month:
        return Month(self.year + 1, 1) if self.month == 12 else Month(self.year, self.month + 1)

    def previous(self) -> Month:
        return Month(self.year - 1, 12) if self.month == 1 else Month(self.year, self.month - 1)

    def bounds(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """Return [first local midnight of the month, first local midnight of the next) in `zone`."""
        following = self.next()
        return (
            datetime(self.year, self.month, 1, tzinfo=zone),
            datetime(following.year, following.month, 1, tzinfo=zone),
        )

    def holds(self, moment: datetime, zone: ZoneInfo) -> bool:
        """Tell whether `moment`, read on the wall clock of `zone`, falls in this month."""
        local = moment.astimezone(zone)
        return (local.year, local.month) == (self.year, self.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True, slots=True)
class Account:
    """The tenant's customer; its time zone decides where its months begin and end."""

    id: str
    name: str = ""
    segment: str = ""
    time_zone: str = "UTC"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


@dataclass(frozen=True, slots=True)
class SubscriptionPhase:
    """The plan an account is on from `starts_at` up to (not including) `ends_at`; None = open."""

    account_id: str
    plan: Plan
    starts_at: datetime
    ends_at: datetime | None = None

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.starts_at < end and (self.ends_at is None or self.ends_at > start)

    def holds(self, moment: datetime) -> bool:
        return self.starts_at <= moment and (self.ends_at is None or moment < self.ends_at)


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One raw usage event; `event_id` is the idempotency key (the first occurrence wins)."""

    event_id: str
    account_id: str
    meter: str
    quantity: Decimal
    occurred_at: datetime
    received_at: datetime


@dataclass(frozen=True, slots=True)
class MeteredUsage:
    """What the provider's metering layer counted, in raw meter units, over its own interval."""

    account_id: str
    meter: str
    period_start: datetime
    period_end: datetime
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """One line of a provider invoice: a meter's billing units and amount, or the base fee (meter None).

    The invoice-level fields (period, status, finalized_at, currency) repeat on each of its lines.
    """

    invoice_id: str
    account_id: str
    period_start: datetime
    period_end: datetime
    status: InvoiceStatus
    finalized_at: datetime | None
    currency: str
    meter: str | None
    quantity: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class CreditNote:
    """A credit note already issued against one line (invoice and meter; meter None = the base fee)."""

    credit_note_id: str
    invoice_id: str
    account_id: str
    meter: str | None
    amount: Decimal
    reason: str = ""
    issued_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Materiality:
    """When a difference matters: |difference| >= absolute AND >= relative x |expected|.

    The defaults (0 and 0) make every minor unit count.
    """

    absolute: Decimal = Decimal(0)
    relative: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        for name in ("absolute", "relative"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise ReconciliationInputError(f"materiality {name} must be a Decimal >= 0 (got {value!r})")

    def is_material(self, difference: Decimal, expected: Decimal) -> bool:
        size = abs(difference)
        return size >= self.absolute and size >= self.relative * abs(expected)
