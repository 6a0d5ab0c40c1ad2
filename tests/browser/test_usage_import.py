"""A CSV of events uploaded in the browser imports behind a progress bar, with an error report to download."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from apps.tenancy.models import Tenant
from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import AccountFactory, MeterFactory, TenantFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def test_csv_upload_shows_progress_then_the_result(page, live_server, tmp_path):
    TenantFactory(slug="northwind", name="Northwind Cloud")
    tenant = Tenant.objects.get(slug="northwind")
    member(tenant, Role.REVOPS, email="rex@northwind.test")
    AccountFactory(tenant=tenant, key="acme", name="Acme")
    MeterFactory(tenant=tenant, key="api_calls", name="API calls")
    rows = ["event_id,account_id,meter,quantity,occurred_at"]
    rows += [f"e{i},acme,api_calls,{i % 7 + 1},2026-10-{i % 28 + 1:02d}T10:00:00Z" for i in range(20000)]
    rows += [
        "bad-1,nobody,api_calls,1,2026-10-02T10:00:00Z",
        "bad-2,acme,api_calls,lots,2026-10-02T10:00:00Z",
    ]
    csv_file = tmp_path / "usage.csv"
    csv_file.write_text("\n".join(rows) + "\n")

    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "rex@northwind.test")
    page.fill("#id_password", "pw-for-tests")
    page.click("button[type=submit]")
    page.click("nav >> text=Usage")
    page.goto(f"{live_server.url}/t/northwind/usage/imports/")
    page.set_input_files("input[type=file]", str(csv_file))
    page.click("text=Upload and import")
    expect(page.locator("#import-progress")).to_be_visible()
    expect(page.locator("main")).to_contain_text("100% · Done", timeout=60_000)
    text = page.inner_text("main")
    assert re.search(r"Accepted\s*20000\b", text) and re.search(r"Rejected\s*2\b", text), text
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "csv-import.png"), full_page=True)
    with page.expect_download() as download:
        page.click("text=Download the error report")
    report = Path(download.value.path()).read_text()
    assert "nobody" in report or "unknown_account" in report
    assert page.console_errors == [], page.console_errors
