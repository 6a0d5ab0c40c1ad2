"""Small hand-made reconciliation inputs: one account, the seed tiers, October 2026."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from itertools import count
from zoneinfo import ZoneInfo

from apps.pricing import Charge, Meter, Plan, PlanCharge, Tier, UnitRule
from apps.reconciliation.core import (
    Account,
    CreditNote,
    InvoiceLine,
    InvoiceStatus,
    Materiality,
    MeteredUsage,
    Month,
    ReconciledLine,
    Reconciliation,
    SubscriptionPhase,
    UsageEvent,
    reconcile_period,
)

D = Decimal
OCTOBER = Month(2026, 10)
OCT_1 = datetime(2026, 10, 1, tzinfo=UTC)
NOV_1 = datetime(2026, 11, 1, tzinfo=UTC)
CUT_OFF = datetime(2026, 11, 1, 2, tzinfo=UTC)
RUN_TIME = datetime(2026, 11, 20, tzinfo=UTC)
TOKYO = ZoneInfo("Asia/Tokyo")

# The seed tier table, per 1,000 calls: $10, then $8 up to 10 units, then $5.
SEED_GRADUATED = Charge(
    "graduated", tiers=(Tier(D(1), D("10.00")), Tier(D(10), D("8.00")), Tier(None, D("5.00")))
)
SCALE_API = Charge(
    "graduated",
    tiers=(Tier(D(10), D(0)), Tier(D(100), D("6.00"), D("25.00")), Tier(None, D("4.00"))),
)
METERS = {
    "api_calls": Meter("api_calls", "API calls", UnitRule(D(1000), "up")),
    "storage_gb": Meter("storage_gb", "Storage", UnitRule(D(1), "none")),
}
GROWTH = Plan(
    "growth",
    "Growth",
    "USD",
    D("99.00"),
    (
        PlanCharge("api_calls", SEED_GRADUATED),
        PlanCharge("storage_gb", Charge("per_unit", unit_amount=D("0.25"))),
    ),
)
SCALE = Plan(
    "scale",
    "Scale",
    "USD",
    D("499.00"),
    (PlanCharge("api_calls", SCALE_API), PlanCharge("storage_gb", Charge("per_unit", unit_amount=D("0.18")))),
)
TOKYO_PLAN = Plan(
    "tokyo",
    "Tokyo",
    "JPY",
    D(15000),
    (PlanCharge("api_calls", Charge("per_unit", unit_amount=D("13.7"))),),
)

ACCOUNT = Account("a1", "Acme", "smb", "UTC")

_ids = count(1)


def event(
    quantity: int | str,
    occurred_at: datetime = datetime(2026, 10, 10, tzinfo=UTC),
    received_at: datetime | None = None,
    *,
    event_id: str | None = None,
    account: str = "a1",
    meter: str = "api_calls",
) -> UsageEvent:
    return UsageEvent(
        event_id or f"evt_{next(_ids)}",
        account,
        meter,
        D(quantity),
        occurred_at,
        received_at or occurred_at,
    )


def line(
    meter: str | None,
    quantity: int | str,
    amount: str,
    *,
    account: str = "a1",
    invoice_id: str = "in_1",
    status: InvoiceStatus = "finalized",
    finalized_at: datetime | None = CUT_OFF,
    period: tuple[datetime, datetime] = (OCT_1, NOV_1),
    currency: str = "USD",
) -> InvoiceLine:
    return InvoiceLine(
        invoice_id,
        account,
        period[0],
        period[1],
        status,
        finalized_at,
        currency,
        meter,
        D(quantity),
        D(amount),
    )


def base_fee(amount: str = "99.00", **kwargs: object) -> InvoiceLine:
    return line(None, 1, amount, **kwargs)  # type: ignore[arg-type]


def credit(amount: str, meter: str | None = "api_calls", *, invoice_id: str = "in_1") -> CreditNote:
    return CreditNote(f"cn_{next(_ids)}", invoice_id, "a1", meter, D(amount), "goodwill", CUT_OFF)


def metered(quantity: int | str, meter: str = "api_calls", *, account: str = "a1") -> MeteredUsage:
    return MeteredUsage(account, meter, OCT_1, NOV_1, D(quantity))


def growth_phase(account: str = "a1") -> SubscriptionPhase:
    return SubscriptionPhase(account, GROWTH, OCT_1)


def run(
    *,
    events: Iterable[UsageEvent] = (),
    lines: Iterable[InvoiceLine] = (),
    credits: Iterable[CreditNote] = (),
    counted: Iterable[MeteredUsage] = (),
    phases: Sequence[SubscriptionPhase] | None = None,
    accounts: Sequence[Account] = (ACCOUNT,),
    materiality: Materiality | None = None,
    run_time: datetime = RUN_TIME,
    month: Month = OCTOBER,
) -> Reconciliation:
    return reconcile_period(
        month=month,
        run_time=run_time,
        accounts=accounts,
        phases=[growth_phase()] if phases is None else phases,
        meters=METERS,
        events=events,
        metered=counted,
        invoice_lines=lines,
        credits=credits,
        materiality=materiality or Materiality(),
    )


def only(result: Reconciliation, meter: str | None = "api_calls", account: str = "a1") -> ReconciledLine:
    found = [item for item in result.lines if item.account_id == account and item.meter == meter]
    assert len(found) == 1, f"expected one line for {account}/{meter}, got {found}"
    return found[0]
