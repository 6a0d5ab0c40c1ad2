"""The demo's world, with no I/O: customers, plans, three months of usage, and the faults in them.

Everything is generated from a fixed seed, so every run of the demo (and its end-to-end test)
tells the same story. Each fault is a thing that really goes wrong between a product's usage
and its invoices; ``EXPECTED`` says what Trueup must find for each.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

MONTHS = ("2026-08", "2026-09", "2026-10")
FIRST = dt.date(2026, 8, 1)
END = dt.date(2026, 11, 1)  # exclusive: usage stops at the start of November, local time
SEND_HOURS = (4, 12, 20)  # UTC: the tenant's pipeline ships usage three times a day
PLAN_BY_SEGMENT = {"enterprise": "scale", "mid-market": "growth", "self-serve": "starter"}
DAILY_CALLS = {"enterprise": 60_000, "mid-market": 8_000, "self-serve": 1_500}
WEEKLY_GB = {"enterprise": 80, "mid-market": 12, "self-serve": 0}
SEATS = {"enterprise": 40, "mid-market": 12, "self-serve": 4}


@dataclass(frozen=True)
class Customer:
    key: str
    name: str
    segment: str
    timezone: str
    plan_key: str = ""

    @property
    def plan(self) -> str:
        return self.plan_key or PLAN_BY_SEGMENT[self.segment]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local(self, day: dt.date, hour: int = 0) -> dt.datetime:
        return dt.datetime(day.year, day.month, day.day, hour, tzinfo=self.zone)


@dataclass(frozen=True)
class Event:
    event_id: str
    account: str
    meter: str
    quantity: int
    occurred_at: dt.datetime


@dataclass(frozen=True)
class Finding:
    """What Trueup must report for one injected fault."""

    fault: str
    account: str
    meter: str | None
    period: str
    classification: str
    source: str = ""


@dataclass
class World:
    name: str
    customers: list[Customer]
    events: list[Event] = field(default_factory=list)
    # faults, by account key
    double_counted: dict[str, tuple[dt.date, dt.date]] = field(default_factory=dict)
    metering_gap: dict[str, tuple[dt.date, dt.date]] = field(default_factory=dict)
    late: dict[str, tuple[dt.date, dt.date, dt.timedelta]] = field(default_factory=dict)
    wrong_tier: dict[str, str] = field(default_factory=dict)  # account -> which charge the provider has wrong
    plan_change: dict[str, tuple[str, dt.date]] = field(
        default_factory=dict
    )  # account -> (new plan, local day)
    credits: dict[str, tuple[str, str, Decimal, str]] = field(
        default_factory=dict
    )  # period, meter, amount, why
    # account -> (meter, tier index, the contract's unit price for that tier)
    negotiated: dict[str, tuple[str, int, Decimal]] = field(default_factory=dict)
    expected: list[Finding] = field(default_factory=list)

    def customer(self, key: str) -> Customer:
        return next(c for c in self.customers if c.key == key)

    def send_time(self, event: Event) -> dt.datetime:
        """When the tenant's pipeline delivers the event: at the next shipment (04:00, 12:00 or 20:00
        UTC, which reaches every time zone's month before its invoice is finalized), or late."""
        occurred = event.occurred_at.astimezone(dt.UTC)
        day = occurred.replace(hour=0, minute=0, second=0, microsecond=0)
        ticks = [day + dt.timedelta(hours=h) for h in SEND_HOURS] + [
            day + dt.timedelta(hours=24 + SEND_HOURS[0])
        ]
        tick = next(t for t in ticks if t > occurred) + dt.timedelta(minutes=5)
        if event.meter == "api_calls" and event.account in self.late:
            first, last, delay = self.late[event.account]
            local_day = event.occurred_at.astimezone(self.customer(event.account).zone).date()
            if first <= local_day <= last:
                return tick + delay
        return tick

    def to_provider(self, event: Event) -> int:
        """How many times the tenant's metering pipeline forwards the event to the provider (0 = lost)."""
        local_day = event.occurred_at.astimezone(self.customer(event.account).zone).date()
        if event.meter == "api_calls" and event.account in self.metering_gap:
            first, last = self.metering_gap[event.account]
            if first <= local_day <= last:
                return 0
        if event.meter == "api_calls" and event.account in self.double_counted:
            first, last = self.double_counted[event.account]
            if first <= local_day <= last:
                return 2
        return 1


def _days(first: dt.date, end: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((end - first).days)]


def _usage(world: World, seed: int, hours: tuple[int, ...] = (10, 15)) -> None:
    """Usage reported at ``hours`` (local) each day, seats on the 1st, storage on Wednesdays."""
    rng = random.Random(seed)  # noqa: S311 - a fixed seed: the same demo every time
    for customer in world.customers:
        for day in _days(FIRST, END):
            weekend = day.weekday() >= 5
            if day.day == 1:
                seats = SEATS[customer.segment] + rng.randint(0, 3)
                world.events.append(_event(world, customer, "seats", seats, customer.local(day, 9)))
            for hour in hours:
                base = DAILY_CALLS[customer.segment] / len(hours) * (0.4 if weekend else 1.0)
                calls = int(base * rng.uniform(0.7, 1.3))
                world.events.append(_event(world, customer, "api_calls", calls, customer.local(day, hour)))
            if day.weekday() == 2 and WEEKLY_GB[customer.segment]:
                gb = int(WEEKLY_GB[customer.segment] * rng.uniform(0.5, 1.5))
                world.events.append(_event(world, customer, "storage_gb", gb, customer.local(day, 11)))


def _event(world: World, customer: Customer, meter: str, quantity: int, at: dt.datetime) -> Event:
    stamp = at.astimezone(dt.UTC).strftime("%Y%m%dT%H")
    return Event(f"{world.name}-{customer.key}-{meter}-{stamp}", customer.key, meter, quantity, at)


CUSTOMERS_STRIPE = [
    Customer("acme", "Acme Robotics", "enterprise", "America/New_York"),
    Customer("initech", "Initech", "enterprise", "America/Chicago"),
    Customer("umbrella", "Umbrella Health", "enterprise", "Europe/London"),
    Customer("hooli", "Hooli", "enterprise", "America/Los_Angeles"),
    Customer("stark", "Stark Logistics", "mid-market", "America/New_York"),
    Customer("wayne", "Wayne Analytics", "mid-market", "America/New_York"),
    Customer("tyrell", "Tyrell Genomics", "mid-market", "Asia/Tokyo"),
    Customer("soylent", "Soylent Foods", "mid-market", "Europe/Paris"),
    Customer("cyberdyne", "Cyberdyne Systems", "self-serve", "America/Denver"),
    Customer("gringotts", "Gringotts Payments", "self-serve", "Europe/London"),
    Customer("oscorp", "Oscorp Labs", "self-serve", "America/New_York"),
    Customer("wonka", "Wonka Media", "self-serve", "Europe/Zurich"),
]


def stripe_world() -> World:
    """Northwind Cloud bills through Stripe; its pipeline and its Stripe setup have six faults."""
    world = World("nw", list(CUSTOMERS_STRIPE))
    _usage(world, seed=2026_08)
    world.double_counted["acme"] = (dt.date(2026, 8, 11), dt.date(2026, 8, 12))
    world.metering_gap["initech"] = (dt.date(2026, 9, 14), dt.date(2026, 9, 16))
    world.late["tyrell"] = (dt.date(2026, 10, 30), dt.date(2026, 10, 31), dt.timedelta(days=3))
    world.wrong_tier["stark"] = "api_calls"
    world.plan_change["wayne"] = ("scale", dt.date(2026, 9, 15))
    world.credits["umbrella"] = ("2026-09", "storage_gb", Decimal("25.00"), "Goodwill credit agreed by sales")
    world.expected = [
        Finding("double-counted events", "acme", "api_calls", "2026-08", "over_bill", "metering"),
        Finding("metering gap", "initech", "api_calls", "2026-09", "under_bill", "metering"),
        *(Finding("wrong tier", "stark", "api_calls", month, "over_bill", "billing") for month in MONTHS),
        Finding("mis-prorated plan change", "wayne", None, "2026-09", "proration"),
        *(
            Finding("mis-prorated plan change", "wayne", meter, "2026-09", "proration")
            for meter in ("api_calls", "storage_gb", "seats")
        ),
        Finding("negotiated credit", "umbrella", "storage_gb", "2026-09", "credit"),
        Finding("late events", "tyrell", "api_calls", "2026-10", "timing"),
    ]
    return world


CUSTOMERS_CHARGEBEE = [
    Customer("massive", "Massive Dynamic", "enterprise", "America/New_York", "growth"),
    Customer("vandelay", "Vandelay Industries", "mid-market", "America/New_York", "growth"),
    Customer("bluth", "Bluth Company", "mid-market", "America/Los_Angeles", "growth"),
    Customer("dunder", "Dunder Mifflin", "mid-market", "America/New_York", "growth"),
    Customer("prestige", "Prestige Worldwide", "mid-market", "Europe/Berlin", "growth"),
    Customer("pied-piper", "Pied Piper", "self-serve", "America/Los_Angeles", "growth"),
    Customer("hooli-xyz", "Hooli XYZ", "self-serve", "Europe/Berlin", "growth"),
    Customer("aviato", "Aviato", "self-serve", "Europe/Berlin", "growth"),
]


def chargebee_world() -> World:
    """Globex Analytics sells its Growth plan through Chargebee; five faults."""
    world = World("gx", list(CUSTOMERS_CHARGEBEE))
    _usage(world, seed=2026_09, hours=(13,))  # a daily roll-up from the product
    world.double_counted["vandelay"] = (dt.date(2026, 8, 18), dt.date(2026, 8, 19))
    world.metering_gap["bluth"] = (dt.date(2026, 10, 6), dt.date(2026, 10, 8))
    world.late["dunder"] = (dt.date(2026, 10, 30), dt.date(2026, 10, 31), dt.timedelta(days=3))
    # The contract gives Massive a lower second tier; nobody changed its price in Chargebee.
    world.negotiated["massive"] = ("api_calls", 1, Decimal("0.0006"))
    world.credits["pied-piper"] = ("2026-08", "seats", Decimal("10.00"), "Onboarding credit in the contract")
    world.expected = [
        Finding("double-counted usage", "vandelay", "api_calls", "2026-08", "over_bill", "metering"),
        Finding("metering gap", "bluth", "api_calls", "2026-10", "under_bill", "metering"),
        Finding("late events", "dunder", "api_calls", "2026-10", "timing"),
        *(
            Finding("negotiated tier not applied", "massive", "api_calls", month, "over_bill", "billing")
            for month in MONTHS
        ),
        Finding("negotiated credit", "pied-piper", "seats", "2026-08", "credit"),
    ]
    return world
