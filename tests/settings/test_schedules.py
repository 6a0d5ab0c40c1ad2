"""Per-tenant reconciliation schedules: when a run is due (time zones, DST, catch-up) and that the
hourly beat starts each period's run once, however often it ticks."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.audit.models import AuditEvent
from apps.reconciliation.models import ReconciliationRun, ReconciliationSchedule
from apps.reconciliation.schedule import MONTHLY, PRE_INVOICE, Rule, due_firings, next_firings
from apps.reconciliation.settings_services import schedule_start_due
from apps.reconciliation.tasks import run_due_schedules
from apps.tenancy.context import tenant_context
from tests.factories import ReconciliationScheduleFactory, TenantFactory

UTC = dt.UTC


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def due(rule: Rule, now: dt.datetime, **last: str) -> list[tuple[str, str]]:
    return [(f.kind, str(f.period)) for f in due_firings(rule, now, **last)]


# --- the due-logic, on its own -------------------------------------------------------------------


def test_the_default_is_the_previous_month_on_the_2nd_at_six_utc():
    rule = Rule()
    assert due(rule, at(2026, 11, 2, 5, 59)) == []
    assert due(rule, at(2026, 11, 2, 6, 0)) == [(MONTHLY, "2026-10")]
    assert due(rule, at(2026, 11, 2, 6, 0), last_monthly="2026-10") == []


@pytest.mark.parametrize(
    ("zone", "not_yet", "due_at"),
    [
        # Auckland is UTC+13 in November: its 2 Nov 06:00 is 1 Nov 17:00 UTC, still October in UTC.
        ("Pacific/Auckland", at(2026, 11, 1, 16, 59), at(2026, 11, 1, 17, 0)),
        # Los Angeles is back on PST (UTC-8) after 1 Nov 2026: 06:00 local is 14:00 UTC.
        ("America/Los_Angeles", at(2026, 11, 2, 13, 59), at(2026, 11, 2, 14, 0)),
        # Kolkata is UTC+5:30: 06:00 is 00:30 UTC, so the 00:00 UTC tick is too early, 01:00 is not.
        ("Asia/Kolkata", at(2026, 11, 2, 0, 0), at(2026, 11, 2, 1, 0)),
    ],
)
def test_a_run_is_due_at_the_tenants_own_wall_clock_time(zone, not_yet, due_at):
    rule = Rule(time_zone=zone)
    assert due(rule, not_yet) == []
    assert due(rule, due_at) == [(MONTHLY, "2026-10")]


def test_the_period_is_the_month_before_the_local_month_not_the_utc_one():
    moment = at(2026, 10, 31, 18, 0)  # 31 Oct in UTC, 1 Nov 07:00 in Auckland
    assert due(Rule(time_zone="Pacific/Auckland", day_of_month=1), moment) == [(MONTHLY, "2026-10")]
    assert due(Rule(time_zone="UTC", day_of_month=1), moment) == [(MONTHLY, "2026-09")]


def test_a_missed_tick_is_caught_up_later_in_the_month_but_old_months_are_not_replayed():
    rule = Rule()
    assert due(rule, at(2026, 11, 20, 9, 0), last_monthly="2026-09") == [(MONTHLY, "2026-10")]
    # A brand-new schedule starts last month's run once, never September's or earlier.
    assert due(rule, at(2026, 11, 20, 9, 0)) == [(MONTHLY, "2026-10")]


def test_the_next_run_after_a_started_period_is_next_month():
    [firing] = next_firings(Rule(time_zone="Europe/Paris"), at(2026, 11, 2, 8, 0), last_monthly="2026-10")
    assert (firing.kind, str(firing.period)) == (MONTHLY, "2026-11")
    assert firing.at == dt.datetime(2026, 12, 2, 6, 0, tzinfo=firing.at.tzinfo)
    assert firing.at.astimezone(UTC) == at(2026, 12, 2, 5, 0)  # CET is UTC+1 in December


def test_a_pre_invoice_run_of_the_current_month_fires_days_before_it_ends():
    rule = Rule(time_zone="Europe/Paris", pre_invoice_days=1)
    # 31 Oct 2026 06:00 in Paris (CET, after the 25 Oct DST change) is 05:00 UTC.
    assert due(rule, at(2026, 10, 31, 4, 59), last_monthly="2026-09") == []
    assert due(rule, at(2026, 10, 31, 5, 0), last_monthly="2026-09") == [(PRE_INVOICE, "2026-10")]
    assert due(rule, at(2026, 10, 31, 5, 0), last_monthly="2026-09", last_pre_invoice="2026-10") == []
    # February 2027 has 28 days: three days before its end is the 26th.
    firings = next_firings(
        Rule(pre_invoice_days=3), at(2027, 2, 10, 0, 0), last_monthly="2027-01", last_pre_invoice="2027-01"
    )
    assert [(f.kind, str(f.period), f.at.date()) for f in firings] == [
        (PRE_INVOICE, "2027-02", dt.date(2027, 2, 26)),
        (MONTHLY, "2027-02", dt.date(2027, 3, 2)),
    ]


def test_a_fire_time_in_the_spring_forward_gap_still_fires_once():
    # 02:00 on 8 Mar 2026 does not exist in New York; it is read as 02:00 EST = 07:00 UTC.
    rule = Rule(time_zone="America/New_York", day_of_month=8, hour=2)
    assert due(rule, at(2026, 3, 8, 6, 59)) == []
    assert due(rule, at(2026, 3, 8, 7, 0)) == [(MONTHLY, "2026-02")]
    assert due(rule, at(2026, 3, 8, 8, 0), last_monthly="2026-02") == []


def test_a_disabled_schedule_never_fires():
    assert due(Rule(enabled=False), at(2026, 11, 2, 6, 0)) == []
    assert next_firings(Rule(enabled=False), at(2026, 11, 2, 6, 0)) == []


# --- starting the runs ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_tenant_without_a_schedule_gets_the_default_and_each_period_starts_once(tenant_a):
    assert schedule_start_due(tenant_id=tenant_a.pk, now=at(2026, 11, 2, 5, 0)) == []
    with tenant_context(tenant_a):
        assert not ReconciliationSchedule.objects.exists()  # nothing due: nothing stored
    [run] = schedule_start_due(tenant_id=tenant_a.pk, now=at(2026, 11, 2, 6, 0))
    assert (run.period, run.trigger, run.pre_invoice) == ("2026-10", "schedule", False)
    for hour in (6, 7, 23):
        assert schedule_start_due(tenant_id=tenant_a.pk, now=at(2026, 11, 2, hour, 30)) == []
    with tenant_context(tenant_a):
        row = ReconciliationSchedule.objects.get()
        assert (row.enabled, row.day_of_month, row.hour, row.last_monthly_period) == (True, 2, 6, "2026-10")
        assert list(ReconciliationRun.objects.values_list("period", flat=True)) == ["2026-10"]
        assert AuditEvent.objects.filter(action="run.create", actor_label="system").count() == 1


@pytest.mark.django_db
def test_the_hourly_beat_starts_each_tenants_runs_in_its_own_time_zone(tenant_a):
    auckland = TenantFactory(slug="kiwi", default_timezone="Pacific/Auckland")
    ReconciliationScheduleFactory(
        tenant=auckland,
        day_of_month=1,
        hour=6,
        pre_invoice_days_before_month_end=2,
        last_monthly_period="2026-09",
    )
    ReconciliationScheduleFactory(tenant=TenantFactory(slug="off"), enabled=False)

    def periods(tenant):
        with tenant_context(tenant):
            return sorted(ReconciliationRun.objects.values_list("period", "pre_invoice"))

    assert run_due_schedules("2026-10-02T05:00:00+00:00") == 0
    # tenant_a has no schedule row: the default, the 2nd at 06:00 in its time zone (UTC).
    assert run_due_schedules("2026-10-02T06:00:00+00:00") == 1
    assert periods(tenant_a) == [("2026-09", False)]
    # 29 Oct 18:00 UTC is 30 Oct 07:00 in Auckland: two days before October ends there.
    assert run_due_schedules("2026-10-29T18:00:00+00:00") == 1
    assert periods(auckland) == [("2026-10", True)]
    # 31 Oct 17:30 UTC is 1 Nov 06:30 in Auckland: its run of October, while UTC is still in October.
    assert run_due_schedules("2026-10-31T17:30:00+00:00") == 1
    assert periods(auckland) == [("2026-10", False), ("2026-10", True)]
    assert run_due_schedules("2026-11-02T06:00:00+00:00") == 1
    assert periods(tenant_a) == [("2026-09", False), ("2026-10", False)]
    for tick in ("2026-11-02T06:00:00+00:00", "2026-11-02T07:00:00+00:00", "2026-11-20T00:00:00+00:00"):
        assert run_due_schedules(tick) == 0
    with tenant_context(auckland):
        row = ReconciliationSchedule.objects.get()
        assert (row.last_monthly_period, row.last_pre_invoice_period) == ("2026-10", "2026-10")


@pytest.mark.django_db
def test_the_beat_refuses_a_naive_time():
    with pytest.raises(ValueError, match="aware"):
        run_due_schedules("2026-11-02T06:00:00")
