"""When a scheduled reconciliation is due: plain date arithmetic on the tenant's wall clock.

No Django and no database, so the due-logic can be tested across time zones and DST on its own.
A schedule fires, in each calendar month of the tenant's time zone:

- ``monthly``: on ``day_of_month`` at ``hour``, a run of the previous month;
- ``pre_invoice`` (optional): ``pre_invoice_days`` days before the month ends, at ``hour``, a
  pre-invoice run of the month itself (its cut-off is the run time).

A run is due once its time has passed and its period is later than the last period that kind
was started for, so an hourly beat that ticks late, twice, or on two workers starts it once.
A tick missed inside the month is caught up by the next one; the month's own fire time is
the only one looked at, so a new schedule never replays old months.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final, Literal
from zoneinfo import ZoneInfo

from apps.reconciliation.core import Month

Kind = Literal["monthly", "pre_invoice"]
MONTHLY: Final = "monthly"
PRE_INVOICE: Final = "pre_invoice"


@dataclass(frozen=True, slots=True)
class Rule:
    """A tenant's schedule as the due-logic reads it."""

    time_zone: str = "UTC"
    enabled: bool = True
    day_of_month: int = 2
    hour: int = 6
    pre_invoice_days: int | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


@dataclass(frozen=True, slots=True)
class Firing:
    """One run a schedule starts: its kind, the period it reconciles, and when (aware, local time)."""

    kind: Kind
    period: Month
    at: dt.datetime

    @property
    def pre_invoice(self) -> bool:
        return self.kind == PRE_INVOICE


def firings_in(rule: Rule, month: Month) -> list[Firing]:
    """The runs ``rule`` fires during the local calendar month ``month``, in time order."""
    zone = rule.zone
    firings = [
        Firing(
            MONTHLY,
            month.previous(),
            dt.datetime(month.year, month.month, rule.day_of_month, rule.hour, tzinfo=zone),
        )
    ]
    if rule.pre_invoice_days:
        following = month.next()
        day = dt.date(following.year, following.month, 1) - dt.timedelta(days=rule.pre_invoice_days)
        firings.append(
            Firing(PRE_INVOICE, month, dt.datetime(day.year, day.month, day.day, rule.hour, tzinfo=zone))
        )
    return sorted(firings, key=lambda f: f.at)


def _started(period: Month, last: str) -> bool:
    return bool(last) and period <= Month.parse(last)


def next_firings(
    rule: Rule, now: dt.datetime, *, last_monthly: str = "", last_pre_invoice: str = ""
) -> list[Firing]:
    """For each kind the rule runs, its next firing: one whose time has passed is due right now."""
    if not rule.enabled:
        return []
    local = now.astimezone(rule.zone)
    month = Month(local.year, local.month)
    last = {MONTHLY: last_monthly, PRE_INVOICE: last_pre_invoice}
    found: dict[str, Firing] = {}
    for _ in range(3):  # this month's firings, else next month's (two months cover any rule)
        for firing in firings_in(rule, month):
            if firing.kind not in found and not _started(firing.period, last[firing.kind]):
                found[firing.kind] = firing
        month = month.next()
    return sorted(found.values(), key=lambda f: f.at)


def due_firings(
    rule: Rule, now: dt.datetime, *, last_monthly: str = "", last_pre_invoice: str = ""
) -> list[Firing]:
    """The runs to start at ``now`` (an aware datetime)."""
    return [
        firing
        for firing in next_firings(rule, now, last_monthly=last_monthly, last_pre_invoice=last_pre_invoice)
        if firing.at <= now
    ]
