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


def test_a_pending_invoice_webhook_starts_a_pre_invoice_reconciliation(
    client, connected, tenant_a, chargebee_seeded
):
    import base64
    import json

    from django.test import TestCase

    from apps.billing.models import ProviderConnection, WebhookEvent
    from apps.billing.services import connection_update
    from apps.reconciliation.models import ReconciliationRun

    with tenant_context(tenant_a):
        connection = ProviderConnection.objects.get()
        connection_update(
            actor=None,
            connection=connection,
            data={},
            credentials={"webhook_username": "hooks", "webhook_password": "pw-123"},
        )
    sync_connection(tenant_a.pk, connected.pk, full=True, sleep=lambda _s: None)  # customers known
    pending = chargebee_invoice(chargebee_seeded, close=False)
    body = json.dumps(
        {
            "id": "ev_pending_1",
            "event_type": "pending_invoice_created",
            "api_version": "v2",
            "content": {"invoice": {"id": pending, "status": "pending"}},
        }
    )
    auth = "Basic " + base64.b64encode(b"hooks:pw-123").decode()
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post(
            f"/webhooks/chargebee/{connected.public_id}/",
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=auth,
        )
    assert response.status_code == 200
    with tenant_context(tenant_a):
        assert WebhookEvent.objects.get().status == "processed"
        invoice = Invoice.objects.get(external_id=pending)
        assert invoice.status == "draft"
        run = ReconciliationRun.objects.get(trigger="webhook")
        assert run.pre_invoice and run.account_ids == [invoice.account_id]


def test_chargebee_subscriptions_become_phases_and_prices_are_compared(connected, tenant_a, chargebee_seeded):
    import datetime as dt
    from decimal import Decimal as D

    from apps import pricing
    from apps.billing.models import ProviderConnection
    from apps.catalog.models import Meter, SubscriptionPhase
    from apps.catalog.services import ChargeSpec, charge_save
    from tests.factories import PlanFactory, PlanVersionFactory

    with tenant_context(tenant_a):
        Meter.objects.filter(key="api_calls").update(unit_size=D(1000), rounding="up")
        meters = {m.key: m for m in Meter.objects.all()}
    plan = PlanFactory(tenant=tenant_a, key="cloud", currency="USD")
    version = PlanVersionFactory(
        tenant=tenant_a, plan=plan, base_fee=D(49), effective_from=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    )
    with tenant_context(tenant_a):
        charge_save(
            actor=None,
            version=version,
            meter=meters["api_calls"],
            spec=ChargeSpec(
                model="graduated",
                tiers=(pricing.Tier(D(1), D(0)), pricing.Tier(D(5), D(20)), pricing.Tier(None, D(10))),
            ),
        )
        charge_save(
            actor=None,
            version=version,
            meter=meters["storage_gb"],
            spec=ChargeSpec(
                model="volume", tiers=(pricing.Tier(D(100), D("0.5")), pricing.Tier(None, D("0.25")))
            ),
        )
        charge_save(
            actor=None,
            version=version,
            meter=meters["seats"],
            spec=ChargeSpec(model="per_unit", unit_amount=D(12)),
        )
    sync_connection(tenant_a.pk, connected.pk, full=True, sleep=lambda _s: None)
    with tenant_context(tenant_a):
        phase = SubscriptionPhase.objects.get()
        assert (phase.plan, phase.account.key, phase.external_id) == (plan, "acme", "sub_acme")
        assert ProviderConnection.objects.get().drift == []
