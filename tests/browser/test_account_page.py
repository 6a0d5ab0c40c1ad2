"""A CSM reads an account's history in a real browser and adds a note without a reload."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import (
    AccountFactory,
    ChargeFactory,
    DiscrepancyFactory,
    MeterFactory,
    PlanVersionFactory,
    ProposalFactory,
    ReconciliationLineFactory,
    SubscriptionPhaseFactory,
    TenantFactory,
    TierFactory,
    add_events,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def _finding(tenant, account, meter, period, amount, direction):
    line = ReconciliationLineFactory(tenant=tenant, account=account, meter=meter, difference=Decimal(amount))
    return DiscrepancyFactory(
        tenant=tenant,
        line=line,
        account=account,
        meter=meter,
        period=period,
        direction=direction,
        classification="under_bill" if direction == "under" else "over_bill",
        amount=Decimal(amount),
    )


def test_csm_reads_the_history_and_adds_a_note_without_a_reload(page, live_server):
    tenant = TenantFactory(slug="northwind", name="Northwind Cloud")
    member(tenant, Role.CSM, email="cora@northwind.test", full_name="Cora CSM")
    analyst = member(tenant, Role.FINANCE_ANALYST, email="fiona@northwind.test")
    account = AccountFactory(tenant=tenant, name="Acme Robotics", timezone="UTC")
    calls = MeterFactory(
        tenant=tenant, key="api_calls", name="API calls", unit_size=Decimal(1000), rounding="up"
    )
    storage = MeterFactory(tenant=tenant, key="storage_gb", name="Storage")
    _finding(tenant, account, calls, "2026-09", "157.00", "under")
    _finding(tenant, account, storage, "2026-09", "-12.50", "over")
    over = _finding(tenant, account, calls, "2026-10", "-45.25", "over")
    ProposalFactory(tenant=tenant, discrepancy=over, proposed_by=analyst, amount=Decimal("45.25"))

    version = PlanVersionFactory(tenant=tenant, effective_from=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    charge = ChargeFactory(
        tenant=tenant, plan_version=version, meter=calls, model="graduated", unit_amount=None
    )
    TierFactory(tenant=tenant, charge=charge, position=0, up_to=Decimal(50), unit_amount=Decimal(0))
    TierFactory(tenant=tenant, charge=charge, position=1, up_to=None, unit_amount=Decimal(1))
    SubscriptionPhaseFactory(
        tenant=tenant, account=account, plan=version.plan, starts_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    )
    now = timezone.now()
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    add_events(
        tenant, [("evt-1", account, calls, "32000", max(month_start, now - dt.timedelta(minutes=5)), now)]
    )

    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "cora@northwind.test")
    page.fill("#id_password", "pw-for-tests")
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/t/northwind/accounts/{account.pk}/")
    expect(page.locator("h1")).to_have_text("Acme Robotics")

    history = page.locator('canvas[data-chart="history-chart-usd"]')
    expect(history).to_have_attribute("data-drawn", "1")
    drawn = page.evaluate(
        """() => {
            const chart = Chart.getChart(document.querySelector('canvas[data-chart="history-chart-usd"]'));
            return chart ? chart.data.labels.concat(chart.data.datasets.map(d => d.label)) : null;
        }"""
    )
    assert drawn == [
        "2026-09",
        "2026-10",
        "Under-billed",
        "Over-billed",
        "Credits issued",
        "Catch-up charges",
    ]
    usage = page.locator("#usage canvas[data-chart]")
    expect(usage).to_have_attribute("data-drawn", "1")
    assert page.locator("#usage meter.allotment").get_attribute("value") == "32"
    assert page.locator("#usage meter.allotment").get_attribute("max") == "50"

    # The proposal is there for the CSM to follow, but no approve (or reject) button.
    expect(page.locator("#proposals")).to_contain_text("Credit note of 45.25 USD")
    expect(page.locator("button[value=approve]")).to_have_count(0)
    expect(page.locator("button[value=reject]")).to_have_count(0)

    page.evaluate("window.__noReload = true")
    page.fill("#note-body", "Renewal call on Friday: they asked about the October credit.")
    page.click("#notes button[type=submit]")
    expect(page.locator("#notes .notes-list li").first).to_contain_text("they asked about the October credit")
    expect(page.locator("#notes .notes-list li").first).to_contain_text("Cora CSM")
    assert page.evaluate("window.__noReload") is True, "the note is added in place, without a reload"
    assert page.input_value("#note-body") == "", "the form is fresh for the next note"

    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "account.png"), full_page=True)
    assert page.console_errors == [], f"browser errors (CSP violations show here): {page.console_errors}"
    assert page.failed_requests == [], page.failed_requests
