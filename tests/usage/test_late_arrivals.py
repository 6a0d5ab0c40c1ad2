"""Late arrivals: per period and account, the events received after the cut-off."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse

from apps.tenancy.context import tenant_context
from apps.tenancy.roles import Role
from apps.usage.selectors import late_events, late_summary, late_summary_for_month, month_bounds
from tests.conftest import member
from tests.factories import UsageEventFactory, UsageSettingsFactory

pytestmark = pytest.mark.django_db
UTC = dt.UTC
OCT = dt.date(2026, 10, 1)


def at(day: int, hour: int = 12, month: int = 10) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=UTC)


@pytest.fixture
def usage(cat_a):
    """acme (UTC) and globex (New York) in October; some events arrive late."""
    acme, globex = cat_a.accounts["acme"], cat_a.accounts["globex"]
    calls, storage = cat_a.meters["api_calls"], cat_a.meters["storage_gb"]

    def add(event_id, account, meter, quantity, occurred, received):
        UsageEventFactory(
            tenant=cat_a.tenant,
            event_id=event_id,
            account=account,
            meter=meter,
            quantity=Decimal(quantity),
            occurred_at=occurred,
            received_at=received,
        )

    add("a-on-time", acme, calls, "100", at(10), at(10))
    add("a-grace", acme, calls, "5", at(31, 20), at(3, 23, month=11))  # within the 3 days of grace
    add("a-late", acme, calls, "7", at(30), at(4, 1, month=11))  # after Nov 4 00:00 UTC
    add("a-late-storage", acme, storage, "2.5", at(2), at(9, month=11))
    add("a-november", acme, calls, "1000", at(2, month=11), at(20, month=11))  # not in October
    # globex's October runs in New York time: Oct 1 04:00 UTC to Nov 1 04:00 UTC
    add("g-edge", globex, calls, "3", at(1, 2, month=11), at(4, 6, month=11))  # Oct 31 22:00 NY, late
    add("g-before", globex, calls, "9", at(1, 2), at(20, month=11))  # Sep 30 in New York
    return cat_a


def test_month_bounds_are_the_calendar_month_in_the_accounts_zone():
    assert month_bounds(OCT, "UTC") == (at(1, 0), at(1, 0, month=11))
    start, end = month_bounds(dt.date(2026, 12, 1), "America/New_York")
    assert (start.astimezone(UTC), end.astimezone(UTC)) == (
        dt.datetime(2026, 12, 1, 5, tzinfo=UTC),
        dt.datetime(2027, 1, 1, 5, tzinfo=UTC),
    )


def test_late_events_of_an_account_for_a_cutoff(usage):
    acme = usage.accounts["acme"]
    start, end = month_bounds(OCT, "UTC")
    with tenant_context(usage.tenant):
        late = late_events(
            usage.tenant, account=acme, period_start=start, period_end=end, cutoff=at(4, 0, month=11)
        )
        assert [e.event_id for e in late] == ["a-late", "a-late-storage"]
        # the invoice's own cut-off (what reconciliation will pass): finalized on Nov 1
        finalized = late_events(
            usage.tenant, account=acme, period_start=start, period_end=end, cutoff=at(1, 0, month=11)
        )
        assert [e.event_id for e in finalized] == ["a-grace", "a-late", "a-late-storage"]


def test_summary_with_one_window_and_cutoff_for_all_accounts(usage):
    start, end = month_bounds(OCT, "UTC")
    with tenant_context(usage.tenant):
        lines = late_summary(
            usage.tenant, period_start=start, period_end=end, cutoff=at(4, 0, month=11), only_late=False
        )
    got = {(line.account.key, line.meter.key): line for line in lines}
    calls = got[("acme", "api_calls")]
    assert (calls.events, calls.quantity, calls.late_events, calls.late_quantity) == (
        3,
        Decimal(112),
        1,
        Decimal(7),
    )
    assert calls.on_time_quantity == Decimal(105) and calls.last_received_at == at(4, 1, month=11)
    assert got[("acme", "storage_gb")].late_quantity == Decimal("2.5")
    # globex in UTC terms here: g-edge is in November, g-before in October (on time? received Nov 20: late)
    assert got[("globex", "api_calls")].late_events == 1


def test_month_summary_uses_each_accounts_zone_and_the_grace_days(usage):
    with tenant_context(usage.tenant):
        lines = late_summary_for_month(usage.tenant, month=OCT, grace_days=3)
    got = {(line.account.key, line.meter.key): line for line in lines}
    assert set(got) == {("acme", "api_calls"), ("acme", "storage_gb"), ("globex", "api_calls")}
    assert (got[("acme", "api_calls")].late_events, got[("acme", "api_calls")].late_quantity) == (
        1,
        Decimal(7),
    )
    assert got[("acme", "api_calls")].cutoff == at(4, 0, month=11)
    edge = got[("globex", "api_calls")]
    assert (edge.events, edge.late_events, edge.late_quantity) == (1, 1, Decimal(3)), "only g-edge is October"
    # three calendar days in New York: midnight on Nov 4, after the clocks went back on Nov 1
    assert edge.cutoff == dt.datetime(2026, 11, 4, 5, tzinfo=UTC)
    with tenant_context(usage.tenant):
        generous = late_summary_for_month(usage.tenant, month=OCT, grace_days=10)
        explicit = late_summary_for_month(usage.tenant, month=OCT, grace_days=3, cutoff=at(1, 0, month=11))
    assert {(line.account.key, line.meter.key) for line in generous} == set(), "nothing is late after 10 days"
    assert sum(line.late_events for line in explicit) == 4, "a-grace, a-late, a-late-storage, g-edge"


def test_the_late_arrivals_screen_lists_accounts_and_their_late_events(client, usage):
    UsageSettingsFactory(tenant=usage.tenant, late_grace_days=3)
    client.force_login(member(usage.tenant, Role.CSM))
    url = reverse("usage-late", kwargs={"tenant_slug": usage.tenant.slug})
    page = client.get(url, {"month": "2026-10"})
    html = page.content.decode()
    assert page.status_code == 200
    assert "2 accounts had events arrive late for October 2026." in html
    assert "Acme" in html and "Globex" in html and "Initech" not in html
    assert "2.5" in html and "105" in html, "late and on-time quantities, exactly"
    rows = client.get(url, {"month": "2026-10"}, HTTP_HX_REQUEST="true").content.decode()
    assert rows.lstrip().startswith('<div id="late-rows">')
    acme = usage.accounts["acme"]
    calls = usage.meters["api_calls"]
    events = client.get(
        url, {"month": "2026-10", "account": acme.pk, "meter": calls.pk}, HTTP_HX_REQUEST="true"
    )
    html = events.content.decode()
    assert "a-late" in html and "a-grace" not in html and "a-late-storage" not in html
    # a cut-off picked by hand, in the tenant's time zone (UTC): Nov 1 00:00
    picked = client.get(url, {"month": "2026-10", "cutoff": "2026-11-01T00:00"}).content.decode()
    assert "Nov 1, 2026 00:00" in picked
    assert client.get(url, {"month": "October"}).status_code == 422


def test_another_tenants_account_is_not_found(client, usage, cat_b):
    client.force_login(member(usage.tenant, Role.ADMIN))
    url = reverse("usage-late", kwargs={"tenant_slug": usage.tenant.slug})
    theirs = cat_b.accounts["acme"]
    assert client.get(url, {"month": "2026-10", "account": theirs.pk}).status_code == 404
    assert client.get(url, {"month": "2026-10", "account": "x"}).status_code == 404
