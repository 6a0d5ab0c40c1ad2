"""Late arrivals are judged against the invoice's own cut-off where the month is invoiced."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import AccountFactory, InvoiceFactory, MeterFactory, add_events

pytestmark = pytest.mark.django_db
UTC = dt.UTC
OCT_1, NOV_1 = dt.datetime(2026, 10, 1, tzinfo=UTC), dt.datetime(2026, 11, 1, tzinfo=UTC)


def test_the_invoice_cut_off_decides_what_is_late(client, tenant_a):
    invoiced = AccountFactory(tenant=tenant_a, name="Invoiced Co", timezone="UTC")
    other = AccountFactory(tenant=tenant_a, name="Not Yet Invoiced", timezone="UTC")
    meter = MeterFactory(tenant=tenant_a, key="api_calls")
    # finalized early, one hour after the month ended: an event received 2 hours after is late
    InvoiceFactory(
        tenant=tenant_a,
        account=invoiced,
        period_start=OCT_1,
        period_end=NOV_1,
        finalized_at=NOV_1 + dt.timedelta(hours=1),
    )
    two_hours_late = NOV_1 + dt.timedelta(hours=2)
    add_events(
        tenant_a,
        [
            ("a1", invoiced, meter, "5", OCT_1 + dt.timedelta(days=30), two_hours_late),
            ("b1", other, meter, "5", OCT_1 + dt.timedelta(days=30), two_hours_late),  # within 3 days' grace
        ],
    )
    client.force_login(member(tenant_a, Role.FINANCE_ANALYST))
    page = client.get(reverse("usage-late", args=[tenant_a.slug]), {"month": "2026-10"}).content.decode()
    assert "Invoiced Co" in page and "Not Yet Invoiced" not in page
