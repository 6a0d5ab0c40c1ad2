"""The same sync against the Chargebee sandbox: customers, invoices mapped to meters, metered totals."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from apps.accounts.models import AccountExternalId
from apps.billing.models import Invoice, MeteredUsage, UsagePushSettings
from apps.billing.services import connection_create
from apps.billing.sync import sync_connection
from apps.tenancy.context import tenant_context
from tests.factories import MeterFactory
from tests.providers.conftest import chargebee_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture
def connected(tenant_a, chargebee_seeded) -> Any:
    for key in ("api_calls", "storage_gb", "seats"):
        MeterFactory(tenant=tenant_a, key=key, name=key)
    with tenant_context(tenant_a):
        connection = connection_create(
            actor=None,
            provider="chargebee",
            name="Sandbox",
            site=chargebee_seeded.site,
            base_url=chargebee_seeded.url,
            credentials={"api_key": chargebee_seeded.api_key},
        )
        UsagePushSettings.objects.create(
            connection=connection,
            item_prices={"api_calls": "api-calls-usd", "storage_gb": "storage-usd", "seats": "seats-usd"},
        )
    cache.clear()
    return connection


def test_a_chargebee_sync_maps_lines_to_meters_through_the_item_price_map(
    connected, tenant_a, chargebee_seeded
):
    invoice_id = chargebee_invoice(chargebee_seeded, close=True)
    sync_connection(tenant_a.pk, connected.pk, full=True, sleep=lambda _s: None)
    with tenant_context(tenant_a):
        acme = AccountExternalId.objects.get(provider="chargebee", external_id="acme").account
        invoice = Invoice.objects.get(external_id=invoice_id)
        assert invoice.account == acme and invoice.status in ("open", "finalized") and invoice.finalized_at
        metered_lines = {line.meter.key: line.quantity for line in invoice.lines.exclude(meter=None)}
        assert metered_lines["api_calls"] == 6500
        totals = {
            m.meter.key: m.quantity for m in MeteredUsage.objects.filter(account=acme).select_related("meter")
        }
        assert totals["api_calls"] == 6500
