"""Raw events folded into per-(account, meter) totals: de-duplicated, in period, by phase and cut-off.

Reconciliation never needs the events themselves, only how much occurred in each phase
and how much of that had arrived by the cut-off; so millions of events become a few
numbers per account and meter (plus the ids of the late ones, to show the working).
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, Literal

from .errors import ReconciliationInputError
from .inputs import UsageEvent
from .periods import AccountPeriod

# Quantities are summed exactly: a sum that would need rounding raises instead.
EXACT: Final = decimal.Context(prec=100, traps=[decimal.Inexact, decimal.InvalidOperation])
_ZERO: Final = Decimal(0)

LATE_ID_LIMIT: Final = 1000
"""Late event ids kept per line for its working; beyond it only the count grows."""

EventFate = Literal["counted", "duplicate", "outside_period"]


@dataclass(slots=True)
class MeterUsage:
    """One account's usage of one meter in its period.

    `quantity[i]` and `on_time_quantity[i]` are the raw quantities that occurred during
    phase i of the period (all of them, and those received by the cut-off); the last
    slot, index len(phases), holds usage that occurred while no phase was active. A
    database engine can fill this straight from a GROUP BY (account, meter, phase, late).
    """

    account_id: str
    meter: str
    quantity: list[Decimal]
    on_time_quantity: list[Decimal]
    events: int = 0
    late_events: int = 0
    late_event_ids: list[str] = field(default_factory=list)

    @classmethod
    def empty(cls, account_id: str, meter: str, slots: int) -> MeterUsage:
        return cls(account_id, meter, [_ZERO] * slots, [_ZERO] * slots)

    @property
    def total(self) -> Decimal:
        return exact_sum(self.quantity)

    @property
    def on_time_total(self) -> Decimal:
        return exact_sum(self.on_time_quantity)

    def add(self, slot: int, quantity: Decimal, *, late: bool, event_id: str) -> None:
        self.quantity[slot] = EXACT.add(self.quantity[slot], quantity)
        self.events += 1
        if late:
            self.late_events += 1
            if len(self.late_event_ids) < LATE_ID_LIMIT:
                self.late_event_ids.append(event_id)
        else:
            self.on_time_quantity[slot] = EXACT.add(self.on_time_quantity[slot], quantity)


def exact_sum(values: Iterable[Decimal]) -> Decimal:
    """Add decimals without the default context's 28-digit rounding."""
    total = _ZERO
    for value in values:
        total = EXACT.add(total, value)
    return total


UsageKey = tuple[str, str]
"""(account_id, meter)"""


class UsageAccumulator:
    """Folds events, one at a time, into MeterUsage totals; memory grows with distinct event ids only."""

    def __init__(self, periods: Mapping[str, AccountPeriod]) -> None:
        self._periods = periods
        self._seen: set[str] = set()
        self.usage: dict[UsageKey, MeterUsage] = {}
        self.counted = 0
        self.duplicates = 0
        self.outside_period = 0

    def add(self, event: UsageEvent) -> EventFate:
        """Count one event: the first occurrence of an event id wins, later ones are dropped."""
        if event.event_id in self._seen:
            self.duplicates += 1
            return "duplicate"
        self._seen.add(event.event_id)
        period = self._periods.get(event.account_id)
        if period is None:
            raise ReconciliationInputError(
                f"event {event.event_id} is for unknown account {event.account_id!r}"
            )
        if event.quantity < 0 or not event.quantity.is_finite():
            raise ReconciliationInputError(f"event {event.event_id} has quantity {event.quantity}")
        if not period.holds(event.occurred_at):
            self.outside_period += 1
            return "outside_period"
        key = (event.account_id, event.meter)
        usage = self.usage.get(key)
        if usage is None:
            usage = self.usage[key] = MeterUsage.empty(event.account_id, event.meter, len(period.phases) + 1)
        late = event.received_at > period.cut_off
        usage.add(period.phase_slot(event.occurred_at), event.quantity, late=late, event_id=event.event_id)
        self.counted += 1
        return "counted"

    def add_all(self, events: Iterable[UsageEvent]) -> UsageAccumulator:
        for event in events:
            self.add(event)
        return self
