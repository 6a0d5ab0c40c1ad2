"""Finance opens the dashboard, starts a run and sees it finish, then reads and exports the report."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import TenantFactory
from tests.reports.conftest import reconcile_bundle

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def test_dashboard_and_accuracy_report_in_the_browser(page, live_server):
    tenant = TenantFactory(slug="northwind", name="Northwind Cloud")
    member(tenant, Role.FINANCE_ANALYST, email="fiona@northwind.test")
    reconcile_bundle(tenant)

    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "fiona@northwind.test")
    page.fill("#id_password", "pw-for-tests")
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/t/northwind/")
    expect(page.locator("[data-figure=leaked]")).to_have_text("233.53 USD")
    expect(page.locator("[data-figure=over_billed]")).to_have_text("524.28 USD")
    expect(page.locator("canvas[data-chart][data-drawn='1']")).to_have_count(3)  # drawn under the CSP
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)

    page.fill("#run-period", "2026-09")
    page.click("text=Start a run")
    # the run card polls while the run goes on, then the page reloads with the new figures
    expect(page.locator("#dash-runs-table tbody tr").first).to_contain_text("2026-09")
    expect(page.locator("#dash-runs-table tbody tr").first).to_contain_text("Succeeded")
    expect(page.locator(".flash")).to_contain_text("Reconciliation of 2026-09 started")

    page.click("text=Billing accuracy report")
    expect(page.locator("h1")).to_contain_text("Billing accuracy · 2026-10")
    expect(page.locator("[data-figure=invoices_checked]")).to_have_text("24")
    expect(page.locator("canvas[data-chart][data-drawn='1']")).to_have_count(1)
    page.screenshot(path=str(SHOTS / "accuracy-report.png"), full_page=True)
    with page.expect_download() as download:
        page.click("text=Export XLSX")
    assert download.value.suggested_filename == "trueup-northwind-billing-accuracy-2026-10.xlsx"
    page.select_option("#period", "2026-09")
    page.click("text=Show")
    expect(page.locator("h1")).to_contain_text("2026-09")
    assert page.console_errors == [], page.console_errors
    assert page.failed_requests == [], page.failed_requests
