"""Finance uploads an export bundle in the browser and reads a line's working."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import TenantFactory
from tests.reconciliation.test_run_screens import BUNDLE, zipped

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def test_upload_a_bundle_and_read_the_working(page, live_server, tmp_path):
    TenantFactory(slug="northwind", name="Northwind Cloud")
    from apps.tenancy.models import Tenant

    member(Tenant.objects.get(slug="northwind"), Role.FINANCE_ANALYST, email="fiona@northwind.test")
    archive = tmp_path / "bundle-2026-10.zip"
    archive.write_bytes(zipped(BUNDLE).getvalue())

    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "fiona@northwind.test")
    page.fill("#id_password", "pw-for-tests")
    page.click("button[type=submit]")
    page.click("nav >> text=Runs")
    page.click("text=Reconcile an export bundle")
    page.set_input_files("#id_bundle", str(archive))
    page.click("text=Load and reconcile")
    expect(page.locator("h1")).to_contain_text("Reconciliation of 2026-10")
    expect(page.locator(".flash")).to_contain_text("4 unreadable rows were skipped")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "run.png"), full_page=True)
    page.select_option("#class", "timing")
    page.click("text=Filter")
    page.locator("table.lines tbody tr").first.locator("td").nth(1).locator("a").click()
    expect(page.locator("main")).to_contain_text("Late events")
    page.screenshot(path=str(SHOTS / "line-working.png"), full_page=True)
    assert page.console_errors == [], page.console_errors
