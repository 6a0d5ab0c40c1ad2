"""Each classification rule of PRODUCT.md on small hand-made inputs (no database).

Seed tiers per 1,000 calls: 25,000 calls = $157.00, 20,000 = $132.00, 12,000 = $92.00,
5,000 = $42.00.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.reconciliation.core import Materiality, SubscriptionPhase

from .builders import (
    CUT_OFF,
    GROWTH,
    NOV_1,
    OCT_1,
    SCALE,
    base_fee,
    credit,
    event,
    line,
    metered,
    only,
    run,
)

D = Decimal
LATE = datetime(2026, 11, 1, 3, tzinfo=UTC)  # an hour after the invoice's cut-off


def test_matched_when_the_invoice_prices_every_event() -> None:
    result = run(events=[event(20_000), event(5_000)], lines=[base_fee(), line("api_calls", 25, "157.00")])

    api = only(result)
    assert (api.expected_amount, api.billed_amount, api.difference) == (D("157.00"), D("157.00"), 0)
    assert (api.classification, api.direction, api.source) == ("matched", "none", None)
    assert only(result, None).classification == "matched"


def test_the_smallest_difference_counts_by_default() -> None:
    api = only(run(events=[event(25_000)], lines=[base_fee(), line("api_calls", 25, "156.99")]))

    assert (api.difference, api.classification, api.source) == (D("0.01"), "under_bill", "billing")


@pytest.mark.parametrize(
    ("invoiced", "absolute", "relative", "expected_class"),
    [
        ("156.50", "1", "0", "within_tolerance"),  # 0.50 < 1
        ("156.50", "0.50", "0", "under_bill"),  # |difference| >= absolute is material
        ("156.50", "0", "0.01", "within_tolerance"),  # 0.50 < 1% of 157.00
        ("155.00", "1", "0.01", "under_bill"),  # 2.00 clears both thresholds
        ("155.50", "1", "0.01", "within_tolerance"),  # 1.50 clears 1 but not 1.57: both must hold
        ("158.00", "1", "0", "over_bill"),  # -1.00: the size counts, not the sign
    ],
)
def test_materiality_needs_both_the_absolute_and_the_relative_threshold(
    invoiced: str, absolute: str, relative: str, expected_class: str
) -> None:
    materiality = Materiality(absolute=D(absolute), relative=D(relative))
    api = only(run(events=[event(25_000)], lines=[line("api_calls", 25, invoiced)], materiality=materiality))

    assert api.classification == expected_class
    assert api.direction == ("under" if D(invoiced) < D("157.00") else "over")
    assert api.working.material is (expected_class != "within_tolerance")


def test_credit_when_the_invoice_was_right_and_a_credit_note_took_something_off() -> None:
    result = run(
        events=[event(25_000)],
        lines=[base_fee(), line("api_calls", 25, "157.00")],
        credits=[credit("10.00", "api_calls"), credit("5.00", None)],
    )

    api = only(result)
    assert (api.invoiced_amount, api.credited_amount, api.billed_amount) == (
        D("157.00"),
        D("10.00"),
        D("147.00"),
    )
    assert (api.difference, api.classification, api.direction, api.source) == (
        D("10.00"),
        "credit",
        "under",
        None,
    )
    assert [applied.amount for applied in api.working.credits] == [D("10.00")]
    assert only(result, None).classification == "credit"  # the base-fee credit stays on its own line


def test_a_credit_on_a_wrong_invoice_is_not_waved_through_as_intentional() -> None:
    api = only(run(events=[event(25_000)], lines=[line("api_calls", 20, "132.00")], credits=[credit("5.00")]))

    assert (api.difference, api.classification, api.source) == (D("30.00"), "under_bill", "billing")


def test_timing_when_the_invoice_priced_exactly_what_arrived_by_the_cut_off() -> None:
    late = event(5_000, datetime(2026, 10, 31, 23, tzinfo=UTC), LATE)
    api = only(run(events=[event(20_000), late], lines=[line("api_calls", 20, "132.00")]))

    assert (api.expected_amount, api.difference) == (D("157.00"), D("25.00"))
    assert (api.classification, api.direction, api.source) == ("timing", "under", None)
    assert (api.raw_units, api.on_time_units) == (25, 20)
    assert api.working.late_event_ids == (late.event_id,)
    assert api.working.on_time is not None and api.working.on_time.usage_total == D("132.00")


def test_an_event_received_exactly_at_the_cut_off_is_on_time() -> None:
    at_cut_off = event(5_000, datetime(2026, 10, 31, 23, tzinfo=UTC), CUT_OFF)
    api = only(run(events=[event(20_000), at_cut_off], lines=[line("api_calls", 20, "132.00")]))

    assert (api.on_time_units, api.working.late_event_count) == (25, 0)
    assert api.classification == "under_bill"


def test_late_events_that_do_not_explain_the_invoice_are_not_timing() -> None:
    late = event(5_000, datetime(2026, 10, 31, 23, tzinfo=UTC), LATE)
    api = only(run(events=[event(20_000), late], lines=[line("api_calls", 19, "127.00")]))

    assert api.classification == "under_bill"


def test_a_draft_invoice_is_cut_off_at_the_run_time() -> None:
    run_time = datetime(2026, 11, 1, 1, tzinfo=UTC)
    after_run = event(5_000, datetime(2026, 10, 31, 23, tzinfo=UTC), datetime(2026, 11, 1, 1, 30, tzinfo=UTC))
    draft = line("api_calls", 20, "132.00", status="draft", finalized_at=None)
    api = only(run(events=[event(20_000), after_run], lines=[draft], run_time=run_time))

    assert (api.working.cut_off, api.working.cut_off_source) == (run_time, "run_time")
    assert api.classification == "timing"


PLAN_CHANGE = [
    SubscriptionPhase("a1", GROWTH, OCT_1, datetime(2026, 10, 17, tzinfo=UTC)),
    SubscriptionPhase("a1", SCALE, datetime(2026, 10, 17, tzinfo=UTC)),
]
# 5,000 calls on growth (5 units: $42.00) and 12,000 on scale (12 units: 2 x $6 + $25 = $37.00).
SPLIT_USAGE = [
    event(5_000, datetime(2026, 10, 5, tzinfo=UTC)),
    event(12_000, datetime(2026, 10, 20, tzinfo=UTC)),
]


def test_proration_when_the_plan_changed_inside_the_period_and_the_invoice_ignored_it() -> None:
    # The provider charged a whole month of scale and priced all 17 units on scale's tiers.
    result = run(
        events=SPLIT_USAGE,
        phases=PLAN_CHANGE,
        lines=[base_fee("499.00"), line("api_calls", 17, "67.00")],
    )

    fee, api = only(result, None), only(result)
    # 99 x 16/31 + 499 x 15/31 = 292.548...
    assert (fee.expected_amount, fee.difference, fee.classification) == (
        D("292.55"),
        D("-206.45"),
        "proration",
    )
    assert fee.direction == "over"
    assert (api.expected_amount, api.raw_units, api.classification) == (D("79.00"), 17, "proration")
    assert api.direction == "under" and api.source is None


def test_a_plan_change_invoiced_right_is_matched() -> None:
    result = run(
        events=SPLIT_USAGE, phases=PLAN_CHANGE, lines=[base_fee("292.55"), line("api_calls", 17, "79.00")]
    )

    assert {item.classification for item in result.lines} == {"matched"}


def test_over_bill_from_billing_when_metering_agrees_with_the_events() -> None:
    api = only(run(events=[event(5_000)], lines=[line("api_calls", 12, "92.00")], counted=[metered(5_000)]))

    assert (api.difference, api.classification, api.direction, api.source) == (
        D("-50.00"),
        "over_bill",
        "over",
        "billing",
    )


def test_over_bill_from_metering_when_the_metered_units_differ_from_the_on_time_units() -> None:
    api = only(run(events=[event(5_000)], lines=[line("api_calls", 12, "92.00")], counted=[metered(12_000)]))

    assert (api.on_time_units, api.metered_units, api.invoiced_units) == (5, 12, 12)
    assert (api.classification, api.source) == ("over_bill", "metering")


@pytest.mark.parametrize(
    ("metered_calls", "source"),
    [
        (20_000, "metering"),  # metering lost 5 units and the invoice followed it
        (24_500, "billing"),  # a different raw count, but the same 25 billing units: not metering's fault
        (None, "billing"),  # no metered count: metering is not blamed without evidence
    ],
)
def test_under_bill_source_compares_metered_and_on_time_billing_units(
    metered_calls: int | None, source: str
) -> None:
    counted = [] if metered_calls is None else [metered(metered_calls)]
    api = only(run(events=[event(25_000)], lines=[line("api_calls", 20, "132.00")], counted=counted))

    assert (api.classification, api.direction, api.source) == ("under_bill", "under", source)
    assert api.metered_units == (None if metered_calls is None else -(-metered_calls // 1000))


def test_usage_without_an_invoice_line_is_reconciled_as_invoiced_at_zero() -> None:
    storage = event("100", meter="storage_gb")
    result = run(
        events=[event(5_000), storage],
        lines=[base_fee(), line("api_calls", 5, "42.00")],
        counted=[metered(5_000), metered("100", "storage_gb")],
    )

    leak = only(result, "storage_gb")
    assert (leak.invoiced_units, leak.invoiced_amount, leak.billed_amount) == (0, 0, 0)
    assert (leak.expected_amount, leak.classification, leak.source) == (D("25.00"), "under_bill", "billing")
    assert leak.as_dict()["invoiced_amount"] == "0.00"
    assert [(item.meter, item.classification) for item in result.lines] == [
        (None, "matched"),
        ("api_calls", "matched"),
        ("storage_gb", "under_bill"),
    ]


def test_unbilled_usage_that_all_arrived_late_is_timing() -> None:
    storage = event("100", datetime(2026, 10, 31, 23, tzinfo=UTC), LATE, meter="storage_gb")
    leak = only(run(events=[storage], lines=[base_fee()]), "storage_gb")

    assert (leak.classification, leak.on_time_units, leak.raw_units) == ("timing", 0, 100)


def test_an_account_with_usage_and_no_invoice_shows_its_base_fee_and_usage_as_leakage() -> None:
    result = run(events=[event(5_000)])

    fee, api = only(result, None), only(result)
    assert (fee.expected_amount, fee.billed_amount, fee.classification) == (D("99.00"), 0, "under_bill")
    assert (api.expected_amount, api.classification) == (D("42.00"), "under_bill")
    assert (api.working.period_source, api.working.cut_off_source) == ("calendar", "run_time")


def test_a_base_fee_missing_from_the_invoice_is_leakage() -> None:
    fee = only(run(events=[event(5_000)], lines=[line("api_calls", 5, "42.00")]), None)

    assert (fee.invoiced_units, fee.expected_amount, fee.difference, fee.classification) == (
        0,
        D("99.00"),
        D("99.00"),
        "under_bill",
    )


def test_an_account_without_a_plan_or_an_invoice_is_reported_not_guessed() -> None:
    result = run(events=[event(5_000)], phases=[])

    assert result.lines == ()
    assert (
        len(result.warnings) == 1 and "a1" in result.warnings[0] and "no subscription" in result.warnings[0]
    )


def test_an_invoice_for_an_account_without_a_plan_is_an_over_bill_in_the_invoice_currency() -> None:
    api = only(run(events=[event(5_000)], phases=[], lines=[line("api_calls", 5, "42.00")]))

    assert (api.currency, api.expected_amount, api.classification) == ("USD", 0, "over_bill")


def test_void_invoices_bill_nothing() -> None:
    void = line("api_calls", 5, "42.00", status="void")
    api = only(run(events=[event(5_000)], lines=[void, base_fee(invoice_id="in_2")]))

    assert (api.invoiced_amount, api.classification) == (0, "under_bill")


def test_split_invoice_lines_for_one_meter_add_up() -> None:
    # Some providers show a tiered charge as one line per tier.
    tiers = [line("api_calls", 1, "10.00"), line("api_calls", 9, "72.00"), line("api_calls", 15, "75.00")]
    api = only(run(events=[event(25_000)], lines=tiers))

    assert (api.invoiced_units, api.invoiced_amount, api.classification) == (25, D("157.00"), "matched")
    assert api.working.invoice_line_count == 3


def test_usage_outside_every_phase_is_counted_but_not_priced() -> None:
    late_start = [SubscriptionPhase("a1", GROWTH, datetime(2026, 10, 15, tzinfo=UTC))]
    before_plan = event(5_000, datetime(2026, 10, 2, tzinfo=UTC))
    result = run(events=[before_plan, event(5_000, datetime(2026, 10, 20, tzinfo=UTC))], phases=late_start)

    api = only(result)
    assert (api.raw_units, api.expected_amount) == (10, D("42.00"))
    assert api.working.notes and "no subscription phase" in api.working.notes[0]
    assert (api.working.period_start, api.working.period_end) == (OCT_1, NOV_1)
    assert only(result, None).expected_amount == D("54.29")  # 99 x 17/31
