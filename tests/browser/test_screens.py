"""The screens in a real browser: sign-in, the tenant shell, HTMX search and in-place edit under the CSP."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import AccountFactory, TenantFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def test_finance_user_signs_in_searches_and_edits_without_reloads(page, live_server):
    tenant = TenantFactory(slug="northwind", name="Northwind Cloud")
    other = TenantFactory(slug="globex", name="Globex Analytics")
    user = member(tenant, Role.ADMIN, email="ada@northwind.test", full_name="Ada Admin")
    from tests.factories import MembershipFactory

    MembershipFactory(tenant=other, user=user, role=Role.VIEWER)
    member(tenant, Role.CSM, email="cora@northwind.test", full_name="Cora CSM")
    for name in ("Acme Robotics", "Initech", "Umbrella Health", "Hooli"):
        AccountFactory(tenant=tenant, name=name)
    AccountFactory(tenant=other, name="Massive Dynamic")

    page.goto(f"{live_server.url}/t/northwind/accounts/")  # signed out: to the login page, then back here
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.fill("#id_username", "ada@northwind.test")
    page.fill("#id_password", "pw-for-tests")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/t/northwind/accounts/")
    page.click("text=Overview")
    assert page.locator("h1").inner_text() == "Northwind Cloud"
    page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)

    page.click("text=Accounts")
    page.wait_for_url("**/t/northwind/accounts/")
    page.evaluate("window.__noReload = true")
    page.fill("#q", "acme")
    # (wait_for_function would eval a string, which this page's CSP rightly forbids)
    expect(page.locator("#account-rows tbody tr")).to_have_count(1)
    assert page.locator("#account-rows").inner_text().count("Acme Robotics") == 1
    assert "q=acme" in page.url, "the filter is in the address bar, so it can be shared and reloaded"
    assert page.evaluate("window.__noReload") is True, "search must not reload the page"
    page.screenshot(path=str(SHOTS / "accounts.png"), full_page=True)

    page.click("text=Acme Robotics")
    page.evaluate("window.__noReload = true")
    page.click("#account-info >> text=Edit")
    page.wait_for_selector("#account-info form")
    page.fill("#id_timezone", "Mars/Olympus")
    page.click("#account-info button[type=submit]")
    page.wait_for_selector("#id_timezone-error")
    assert "is not an IANA time zone" in page.inner_text("#id_timezone-error")
    page.fill("#id_timezone", "Asia/Tokyo")
    page.select_option("#id_csm_owner", label="Cora CSM")
    page.click("#account-info button[type=submit]")
    page.wait_for_selector("#account-info dl")
    card = page.inner_text("#account-info")
    assert "Asia/Tokyo" in card and "Cora CSM" in card
    assert page.evaluate("window.__noReload") is True, "the edit is swapped in place"
    page.screenshot(path=str(SHOTS / "account-detail.png"), full_page=True)

    page.click(".switcher summary")
    page.click(".switcher >> text=Globex Analytics")
    page.wait_for_url("**/t/globex/")
    page.click("text=Accounts")
    assert "Massive Dynamic" in page.inner_text("#account-rows")
    assert "Acme Robotics" not in page.inner_text("#account-rows")

    assert page.console_errors == [], f"browser errors (CSP violations show here): {page.console_errors}"
    assert [r.split()[0] for r in page.failed_requests] == ["422"], (
        page.failed_requests
    )  # only the invalid form
