"""RevOps sets a threshold and tries it; then the audit log is filtered in place (HTMX, under the CSP)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from playwright.sync_api import expect

from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import AuditEventFactory, MeterFactory, TenantFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def test_revops_sets_a_threshold_and_filters_the_audit_log_without_a_reload(page, live_server):
    tenant = TenantFactory(slug="northwind", name="Northwind Cloud", default_timezone="Europe/Paris")
    member(tenant, Role.REVOPS, email="rory@northwind.test", full_name="Rory RevOps")
    MeterFactory(tenant=tenant, key="api_calls", name="API calls")
    start = dt.datetime(2026, 10, 1, 9, tzinfo=dt.UTC)
    for i in range(60):  # a log with more than one page of other people's work
        AuditEventFactory(
            tenant=tenant,
            created_at=start + dt.timedelta(hours=i),
            actor_label="fiona@northwind.test",
            action="proposal.approve" if i % 2 else "discrepancy.status",
            object_type="approvals.proposal",
            object_repr=f"Credit note {i}",
            before={"status": "proposed"},
            after={"status": "approved"},
            reason="Checked with the customer",
        )
    other = TenantFactory(slug="globex", name="Globex")
    AuditEventFactory(
        tenant=other, actor_label="x@globex.test", action="threshold.create", object_repr="Globex secret"
    )

    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "rory@northwind.test")
    page.fill("#id_password", "pw-for-tests")
    page.click("button[type=submit]")
    page.click("nav.mainnav >> text=Settings")
    expect(page.locator("h1")).to_have_text("Settings")
    page.click("text=Materiality thresholds")
    page.fill("#id_segment", "enterprise")
    page.select_option("#id_meter", label="API calls")
    page.fill("#id_absolute", "25")
    page.fill("#id_relative", "0.02")
    page.click("text=Add threshold")
    expect(page.locator(".flash")).to_contain_text(
        "Threshold for segment “enterprise” and meter API calls saved"
    )

    page.evaluate("window.__noReload = true")
    trial = page.locator("#trial")
    trial.locator("#id_segment").fill("enterprise")
    trial.locator("#id_meter").select_option(label="API calls")
    trial.locator("#id_expected").fill("1000")
    trial.locator("#id_difference").fill("-30")
    trial.locator("button[type=submit]").click()
    expect(page.locator("#trial-result h3")).to_have_text("Material: it becomes a discrepancy")
    expect(page.locator("#trial-result")).to_contain_text("over_bill")
    assert page.evaluate("window.__noReload") is True, "trying a threshold must not reload the page"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "settings.png"), full_page=True)

    page.click("nav.mainnav >> text=Audit log")
    expect(page.locator("ol.audit-log > li")).to_have_count(50)
    page.evaluate("window.__noReload = true")
    page.fill("#id_action", "threshold.")
    page.press("#id_action", "Enter")
    expect(page.locator("ol.audit-log > li")).to_have_count(1)
    assert "action=threshold." in page.url, "the filter is in the address bar"
    assert page.evaluate("window.__noReload") is True, "filtering must not reload the page"
    row = page.locator("ol.audit-log > li").first
    expect(row).to_contain_text("rory@northwind.test")
    expect(row).not_to_contain_text("Globex")
    row.locator("summary").click()
    expect(row.locator(".audit-detail")).to_contain_text("relative")
    expect(row.locator(".audit-detail")).to_contain_text("0.02")

    page.fill("#id_action", "proposal.")
    page.press("#id_action", "Enter")
    expect(page.locator("ol.audit-log > li")).to_have_count(30)
    page.locator("ol.audit-log > li").first.locator("summary").click()
    expect(page.locator(".audit-detail").first).to_contain_text("Checked with the customer")
    assert page.evaluate("window.__noReload") is True
    page.screenshot(path=str(SHOTS / "audit.png"), full_page=True)
    assert page.console_errors == [], page.console_errors
    assert page.failed_requests == [], page.failed_requests
