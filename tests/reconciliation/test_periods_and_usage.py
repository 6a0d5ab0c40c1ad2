"""Which events count: de-duplication, periods in the account's time zone, invoice-stated periods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from apps.reconciliation.core import (
    Account,
    LineFacts,
    Materiality,
    Month,
    ReconciliationInputError,
    SubscriptionPhase,
    UsageAccumulator,
    classify,
    invoice_headers,
    resolve_periods,
)

from .builders import (
    ACCOUNT,
    GROWTH,
    OCT_1,
    OCTOBER,
    RUN_TIME,
    TOKYO,
    TOKYO_PLAN,
    base_fee,
    event,
    growth_phase,
    line,
    only,
    run,
)

D = Decimal


def test_a_repeated_event_id_counts_once_and_the_first_occurrence_wins() -> None:
    first = event(5_000, event_id="evt_dup")
    again = event(9_000, datetime(2026, 10, 20, tzinfo=UTC), event_id="evt_dup")
    periods = resolve_periods(
        month=OCTOBER, accounts=[ACCOUNT], phases=[growth_phase()], invoices=[], run_time=RUN_TIME
    )
    accumulator = UsageAccumulator(periods)

    assert [accumulator.add(first), accumulator.add(again)] == ["counted", "duplicate"]
    usage = accumulator.usage[("a1", "api_calls")]
    assert (usage.total, usage.events, accumulator.duplicates) == (5_000, 1, 1)
    assert only(run(events=[first, again])).raw_units == 5


def test_the_first_occurrence_wins_even_when_it_falls_outside_the_period() -> None:
    september = event(5_000, datetime(2026, 9, 30, 23, tzinfo=UTC), event_id="evt_dup")
    october = event(5_000, datetime(2026, 10, 5, tzinfo=UTC), event_id="evt_dup")

    result = run(events=[september, october], lines=[base_fee()])

    assert [item.meter for item in result.lines] == [None]  # no October usage at all


TOKYO_ACCOUNT = Account("tk", "Tokyo KK", "smb", "Asia/Tokyo")
TOKYO_MIDNIGHT_OCT_1 = datetime(2026, 10, 1, tzinfo=TOKYO)  # 2026-09-30T15:00:00Z
TOKYO_MIDNIGHT_NOV_1 = datetime(2026, 11, 1, tzinfo=TOKYO)  # 2026-10-31T15:00:00Z
SECOND = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("account", "phase", "counted"),
    [
        # In Tokyo, October starts at 15:00 UTC on 30 September and ends at 15:00 UTC on 31 October.
        (TOKYO_ACCOUNT, SubscriptionPhase("tk", TOKYO_PLAN, TOKYO_MIDNIGHT_OCT_1), D(10 + 100)),
        # The same instants seen from a UTC account: the first two are September, the last two October.
        (Account("utc", "UTC Ltd", "smb", "UTC"), SubscriptionPhase("utc", GROWTH, OCT_1), D(100 + 1000)),
    ],
)
def test_a_period_is_the_calendar_month_in_the_accounts_time_zone(
    account: Account, phase: SubscriptionPhase, counted: Decimal
) -> None:
    events = [
        event(1, TOKYO_MIDNIGHT_OCT_1 - SECOND, account=account.id),
        event(10, TOKYO_MIDNIGHT_OCT_1, account=account.id),
        event(100, TOKYO_MIDNIGHT_NOV_1 - SECOND, account=account.id),
        event(1000, TOKYO_MIDNIGHT_NOV_1, account=account.id),
    ]
    result = run(events=events, accounts=[account], phases=[phase])

    api = only(result, account=account.id)
    assert api.working.raw_quantity == counted
    assert api.working.period_source == "calendar"
    assert api.working.period_start == datetime(2026, 10, 1, tzinfo=account.zone)


def test_an_invoice_stating_its_own_period_wins_over_the_calendar_month() -> None:
    mid_oct, mid_nov = datetime(2026, 10, 15, tzinfo=UTC), datetime(2026, 11, 15, tzinfo=UTC)
    finalized = mid_nov + timedelta(hours=2)
    events = [
        event(1_000, datetime(2026, 10, 10, tzinfo=UTC)),  # before the invoice's period
        event(2_000, datetime(2026, 10, 20, tzinfo=UTC)),
        event(3_000, datetime(2026, 11, 10, tzinfo=UTC)),  # November, but inside the invoice's period
        event(4_000, mid_nov),  # the period is half-open
    ]
    invoice = [line("api_calls", 5, "42.00", period=(mid_oct, mid_nov), finalized_at=finalized)]

    api = only(run(events=events, lines=invoice))

    assert (api.working.raw_quantity, api.classification) == (5_000, "matched")
    assert (api.working.period_source, api.working.period_start, api.working.cut_off) == (
        "invoice",
        mid_oct,
        finalized,
    )


def test_an_invoice_for_another_month_is_not_this_months_invoice() -> None:
    november = line(
        "api_calls", 5, "42.00", period=(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    )

    api = only(run(events=[event(5_000)], lines=[november]))

    assert (api.invoiced_amount, api.classification, api.working.invoice_id) == (0, "under_bill", None)


def test_jpy_is_rounded_once_half_up_to_whole_yen() -> None:
    # 4,001 calls = 5 units (rounded up) x 13.7 = 68.5 yen: half-up gives 69 (banker's rounding 68).
    invoice = {
        "account": "tk",
        "currency": "JPY",
        "period": (TOKYO_MIDNIGHT_OCT_1, TOKYO_MIDNIGHT_NOV_1),
        "finalized_at": TOKYO_MIDNIGHT_NOV_1 + timedelta(hours=2),
    }
    result = run(
        events=[event(4_001, account="tk")],
        accounts=[TOKYO_ACCOUNT],
        phases=[SubscriptionPhase("tk", TOKYO_PLAN, TOKYO_MIDNIGHT_OCT_1)],
        lines=[base_fee("15000", **invoice), line("api_calls", 5, "69", **invoice)],  # type: ignore[arg-type]
    )

    api = only(result, account="tk")
    assert (api.raw_units, api.expected_amount) == (5, D(69))
    assert (api.as_dict()["expected_amount"], api.as_dict()["difference"]) == ("69", "0")
    assert only(result, None, account="tk").as_dict()["expected_amount"] == "15000"


def test_two_invoices_for_one_account_and_month_are_refused() -> None:
    with pytest.raises(ReconciliationInputError, match="two invoices"):
        resolve_periods(
            month=OCTOBER,
            accounts=[ACCOUNT],
            phases=[],
            invoices=invoice_headers([base_fee(), base_fee(invoice_id="in_2")]),
            run_time=RUN_TIME,
        )


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "202610", "Oct 2026", ""])
def test_a_month_is_written_yyyy_mm(text: str) -> None:
    with pytest.raises(ReconciliationInputError, match="YYYY-MM"):
        Month.parse(text)


def test_december_runs_into_january_of_the_next_year() -> None:
    start, end = Month.parse("2026-12").bounds(TOKYO)
    assert (start.isoformat(), end.isoformat()) == ("2026-12-01T00:00:00+09:00", "2027-01-01T00:00:00+09:00")


def test_the_rules_apply_in_order_credit_then_timing_then_proration() -> None:
    # Every later rule's condition also holds; the earliest must name the difference.
    facts = LineFacts(
        expected=D("157.00"),
        invoiced=D("157.00"),
        credited=D("10.00"),
        has_credits=True,
        has_late_events=True,
        on_time_expected=D("157.00"),
        plan_changed=True,
        metered_units=D(20),
        on_time_units=D(25),
    )
    assert classify(facts).classification == "credit"
    not_a_credit = LineFacts(
        expected=D("157.00"),
        invoiced=D("132.00"),
        has_late_events=True,
        on_time_expected=D("132.00"),
        plan_changed=True,
    )
    assert classify(not_a_credit).classification == "timing"
    assert (
        classify(LineFacts(expected=D(157), invoiced=D(132), plan_changed=True)).classification == "proration"
    )
    tolerated = classify(LineFacts(expected=D(157), invoiced=D(132), plan_changed=True), Materiality(D(30)))
    assert (tolerated.classification, tolerated.direction, tolerated.source) == (
        "within_tolerance",
        "under",
        None,
    )
