"""The first-run demo, end to end, the way a new user meets it.

``demo_setup`` with both sandboxes replays Northwind on Stripe and Globex on Chargebee (usage through
the events API, billing through the real SDKs), syncs them with the real adapters and reconciles three
months. Every injected fault must be found and classified as intended, nothing else flagged, and the
findings must be on the dashboard and in the queue. Then a browser walks the main screens and saves
the screenshots the README shows (docs/screenshots/, with `make screenshots`). Running the
loader again changes nothing.
"""

from __future__ import annotations

import io
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from apps.accounts.models import Account
from apps.demo.scenario import World, chargebee_world, stripe_world
from apps.reconciliation.models import Discrepancy
from apps.tenancy.context import tenant_context
from apps.tenancy.management.commands.demo_setup import DEMO_PASSWORD
from apps.tenancy.models import Tenant
from apps.users.models import User
from tests.providers.conftest import chargebee_sandbox, stripe_sandbox  # noqa: F401 - the sandbox fixtures

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
# `make screenshots` refreshes the README's pictures in docs/; a plain test run keeps them in var/.
DOCS = ROOT / ("docs" if os.environ.get("TRUEUP_SCREENSHOTS_TO_DOCS") else "var") / "screenshots"


def _findings(tenant: Tenant) -> dict[tuple[str, str | None, str], Discrepancy]:
    with tenant_context(tenant):
        return {
            (d.account.key, d.meter.key if d.meter else None, d.period): d
            for d in Discrepancy.objects.select_related("account", "meter")
        }


def _check(tenant: Tenant, world: World) -> None:
    found = _findings(tenant)
    for fault in world.expected:
        finding = found.pop((fault.account, fault.meter, fault.period), None)
        assert finding is not None, f"{tenant.slug}: {fault.fault} not found: {fault}"
        assert finding.classification == fault.classification, (fault, finding.classification)
        assert finding.source == fault.source, (fault, finding.source)
    assert found == {}, f"{tenant.slug}: flagged without a fault: {sorted(found)}"


def _money(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def _screens(tenant: Tenant, world: World) -> None:
    client = Client()
    client.force_login(User.objects.get(email="analyst@northwind.test"))
    queue = client.get(f"/t/{tenant.slug}/reconciliation/discrepancies/").content.decode()
    for fault in world.expected:
        assert world.customer(fault.account).name in queue, (
            fault,
            re.findall(r"<td>([^<]+)</td><td><a", queue),
        )
    dashboard = client.get(f"/t/{tenant.slug}/").content.decode()
    # Late usage (the watch-list) and intended credits are shown apart, not as billing errors.
    errors = [f for f in _findings(tenant).values() if f.classification not in ("timing", "credit")]
    leaked = sum((f.amount for f in errors if f.direction == "under"), Decimal(0))
    over = sum((-f.amount for f in errors if f.direction == "over"), Decimal(0))
    assert leaked > 0 and over > 0
    assert _money(leaked) in dashboard, f"{tenant.slug}: leakage {leaked} is not on the dashboard"
    assert _money(over) in dashboard, f"{tenant.slug}: over-billing {over} is not on the dashboard"


def _shoot(page: Any, url: str, name: str) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    DOCS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS / f"{name}.png"), full_page=True)
    assert page.console_errors == [], (name, page.console_errors)


def test_the_demo_finds_every_injected_fault_and_shows_it(
    stripe_sandbox: Any,  # noqa: F811
    chargebee_sandbox: Any,  # noqa: F811
    live_server: Any,
    page: Any,
) -> None:
    out = io.StringIO()
    urls = {"stripe_url": stripe_sandbox.url, "chargebee_url": chargebee_sandbox.url}
    call_command("demo_setup", url=live_server.url, stdout=out, **urls)
    northwind, globex = Tenant.objects.get(slug="northwind"), Tenant.objects.get(slug="globex")
    _check(northwind, stripe_world())
    _check(globex, chargebee_world())
    _screens(northwind, stripe_world())
    _screens(globex, chargebee_world())

    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "analyst@northwind.test")
    page.fill("#id_password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)
    base = f"{live_server.url}/t/northwind"
    _shoot(page, f"{base}/", "dashboard")
    assert page.evaluate(
        "() => [...document.querySelectorAll('canvas[data-chart]')].every(c => Chart.getChart(c))"
    )
    _shoot(page, f"{base}/reconciliation/discrepancies/", "queue")
    wayne = _findings(northwind)["wayne", None, "2026-09"]
    _shoot(page, f"{base}/reconciliation/discrepancies/{wayne.pk}/", "discrepancy")
    assert "Proration" in page.content()
    with tenant_context(northwind):
        acme = Account.objects.get(key="acme")
    _shoot(page, f"{base}/accounts/{acme.pk}/", "account")
    _shoot(page, f"{base}/reconciliation/runs/", "runs")

    before = {t.slug: set(_findings(t)) for t in (northwind, globex)}
    call_command("demo_setup", url=live_server.url, stdout=out, **urls)
    assert {t.slug: set(_findings(t)) for t in (northwind, globex)} == before
    assert "already loaded" in out.getvalue()
