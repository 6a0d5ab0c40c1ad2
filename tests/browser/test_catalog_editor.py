"""RevOps builds a tier table in the browser and watches the price preview follow as they type."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import expect

from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import MeterFactory, PlanFactory, PlanVersionFactory, TenantFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def test_tier_editor_and_live_preview(page, live_server):
    tenant = TenantFactory(slug="northwind", name="Northwind Cloud")
    member(tenant, Role.REVOPS, email="rex@northwind.test")
    meter = MeterFactory(
        tenant=tenant, key="api_calls", name="API calls", unit_size=Decimal(1000), rounding="up"
    )
    version = PlanVersionFactory(tenant=tenant, plan=PlanFactory(tenant=tenant, name="Growth"), number=1)

    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "rex@northwind.test")
    page.fill("#id_password", "pw-for-tests")
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/t/northwind/catalog/versions/{version.pk}/charges/{meter.pk}/")
    page.evaluate("window.__noReload = true")

    rows = page.locator(".tier-row")
    expect(rows).to_have_count(2)
    page.click("text=Add tier")
    expect(rows).to_have_count(3)
    for i, (up_to, price) in enumerate([("1", "10"), ("10", "8"), ("", "5")]):
        page.fill(f"#tier-{i}-up_to", up_to)
        page.fill(f"#tier-{i}-unit_amount", price)
    page.fill("#preview_quantity", "25000")
    expect(page.locator("#price-preview .total")).to_have_text("157.00 USD")
    # change a price: the preview follows without a click
    page.fill("#tier-2-unit_amount", "6")
    expect(page.locator("#price-preview .total")).to_have_text("172.00 USD")
    page.select_option("#id_model", "volume")
    # the editor is redrawn for the new model and keeps the quantity being previewed
    expect(page.locator("#price-preview .total")).to_have_text("150.00 USD")
    expect(page.locator("#preview_quantity")).to_have_value("25000")
    page.fill("#preview_quantity", "25001")
    expect(page.locator("#price-preview .total")).to_have_text("156.00 USD")  # 26 units x $6, rounded up
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "tier-editor.png"), full_page=True)

    # a wrong tier table: the error sits next to the field, nothing is saved
    page.fill("#tier-1-up_to", "0.5")
    page.click("text=Save prices")
    expect(page.locator("#tier-1-up_to-error")).to_contain_text("strictly increases")
    page.fill("#tier-1-up_to", "10")
    page.click("text=Save prices")
    page.wait_for_url(f"**/catalog/versions/{version.pk}/")
    expect(page.locator("main")).to_contain_text("Volume tiers")
    assert page.console_errors == [], page.console_errors
