"""Sync and webhooks end to end: the real Stripe SDK, the sandbox over HTTP, the database."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.test import TestCase

from apps.accounts.models import AccountExternalId
from apps.billing.models import Invoice, InvoiceLine, MeteredUsage, ProviderConnection, WebhookEvent
from apps.billing.services import connection_check, connection_create
from apps.billing.sync import SyncBusy, _acquire, sync_connection
from apps.reconciliation.models import ReconciliationRun
from apps.tenancy.context import tenant_context
from tests.factories import MeterFactory
from tests.providers.conftest import stripe_sandbox_call
from tests.providers.test_stripe_read import _invoice

pytestmark = pytest.mark.django_db


@pytest.fixture
def connected(tenant_a, stripe_sandbox, stripe_seeded) -> Any:
    for key in ("api_calls", "storage_gb", "seats"):
        MeterFactory(tenant=tenant_a, key=key, name=key)
    with tenant_context(tenant_a):
        connection = connection_create(
            actor=None,
            provider="stripe",
            name="Sandbox",
            base_url=stripe_sandbox.url,
            credentials={"api_key": stripe_sandbox.api_key, "webhook_secret": "whsec_trueup_sandbox"},
        )
    cache.clear()
    return connection


def test_test_connection_talks_to_the_provider(connected, tenant_a):
    with tenant_context(tenant_a):
        worked, said = connection_check(connection=connected)
    assert worked and "acct_sandbox" in said


def test_a_full_sync_links_customers_and_stores_invoices_and_metered_totals(
    connected, tenant_a, stripe_sandbox, stripe_seeded
):
    invoice_id = _invoice(stripe_sandbox, stripe_seeded["acme"], stripe_seeded["sub"], finalize=True)
    report = sync_connection(tenant_a.pk, connected.pk, full=True, sleep=lambda _s: None)
    assert report.counts["customers linked"] == 3
    with tenant_context(tenant_a):
        acme = AccountExternalId.objects.get(external_id=stripe_seeded["acme"]).account
        assert acme.name == "Acme Ltd"
        invoice = Invoice.objects.get(external_id=invoice_id)
        assert (invoice.account, invoice.source, invoice.finalized_at is not None) == (acme, "stripe", True)
        lines = {
            (line.meter.key if line.meter else None): line
            for line in InvoiceLine.objects.filter(invoice=invoice).select_related("meter")
        }
        assert set(lines) == {None, "api_calls", "storage_gb", "seats"}
        assert lines["api_calls"].quantity == 6500  # the meter events of the period
        metered = MeteredUsage.objects.get(
            account=acme, meter__key="api_calls", period_start=invoice.period_start
        )
        assert metered.quantity == 6500
        connection = ProviderConnection.objects.get()
        assert connection.last_sync_status == "ok" and connection.cursors == {}
    # syncing again finds everything again: nothing is duplicated
    sync_connection(tenant_a.pk, connected.pk, full=True, sleep=lambda _s: None)
    with tenant_context(tenant_a):
        assert Invoice.objects.count() == 1 and AccountExternalId.objects.count() == 3


def test_a_crashed_sync_resumes_from_its_checkpoint_without_duplicates(connected, tenant_a, stripe_sandbox):
    from apps.providers.base import ProviderError

    # customers come 100 a page; make page reads of invoices fail hard once (a 400 is not retried)
    stripe_sandbox_call(
        stripe_sandbox, "POST", "faults", {"path": "/v1/invoices", "method": "GET", "status": 400, "count": 1}
    )
    with pytest.raises(ProviderError):
        sync_connection(tenant_a.pk, connected.pk, sleep=lambda _s: None)
    with tenant_context(tenant_a):
        connection = ProviderConnection.objects.get()
        assert connection.last_sync_status == "failed" and connection.cursors.get("customers") == "__done__"
        linked = AccountExternalId.objects.count()
    sync_connection(tenant_a.pk, connected.pk, sleep=lambda _s: None)
    with tenant_context(tenant_a):
        assert AccountExternalId.objects.count() == linked == 3
        assert ProviderConnection.objects.get().last_sync_status == "ok"


def test_throttling_waits_for_retry_after(connected, tenant_a, stripe_sandbox):
    stripe_sandbox_call(
        stripe_sandbox,
        "POST",
        "faults",
        {"path": "/v1/customers", "method": "GET", "status": 429, "retry_after": 7, "count": 2},
    )
    waited: list[float] = []
    sync_connection(tenant_a.pk, connected.pk, full=True, sleep=waited.append)
    assert len(waited) == 2 and all(7 <= w <= 7 * 1.25 for w in waited)


def test_one_sync_at_a_time_per_tenant(connected, tenant_a):
    slot = _acquire(tenant_a.pk)
    try:
        with pytest.raises(SyncBusy):
            sync_connection(tenant_a.pk, connected.pk, sleep=lambda _s: None)
    finally:
        cache.delete(slot)


def test_a_draft_invoice_webhook_triggers_a_pre_invoice_reconciliation(
    client, connected, tenant_a, stripe_sandbox, stripe_seeded
):
    import json
    import time

    import stripe

    sync_connection(tenant_a.pk, connected.pk, full=True, sleep=lambda _s: None)  # customers known
    draft = _invoice(stripe_sandbox, stripe_seeded["acme"], stripe_seeded["sub"], finalize=False)
    event = {
        "id": "evt_draft_1",
        "object": "event",
        "type": "invoice.created",
        "data": {"object": {"id": draft, "object": "invoice", "status": "draft"}},
    }
    body = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(
        body, "whsec_trueup_sandbox", timestamp=int(time.time())
    )
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post(
            f"/webhooks/stripe/{connected.public_id}/",
            body,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=header,
        )
    assert response.status_code == 200
    with tenant_context(tenant_a):
        stored = WebhookEvent.objects.get()
        assert stored.status == "processed"
        invoice = Invoice.objects.get(external_id=draft)
        assert invoice.status == "draft"
        run = ReconciliationRun.objects.get(trigger="webhook")
        assert run.pre_invoice and run.account_ids == [invoice.account_id]


def _cloud_plan(tenant) -> Any:
    """The catalogue that matches the sandbox's seeded prices, expressed in billing units."""
    import datetime as dt
    from decimal import Decimal as D

    from apps import pricing
    from apps.catalog.models import Meter
    from apps.catalog.services import ChargeSpec, charge_save
    from tests.factories import PlanFactory, PlanVersionFactory

    with tenant_context(tenant):
        Meter.objects.filter(key="api_calls").update(unit_size=D(1000), rounding="up")
        meters = {m.key: m for m in Meter.objects.all()}
    plan = PlanFactory(tenant=tenant, key="cloud", name="Cloud", currency="USD")
    version = PlanVersionFactory(
        tenant=tenant, plan=plan, base_fee=D("49"), effective_from=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    )
    with tenant_context(tenant):
        charge_save(
            actor=None,
            version=version,
            meter=meters["api_calls"],
            spec=ChargeSpec(
                model="graduated",
                tiers=(pricing.Tier(D(1), D(0)), pricing.Tier(D(5), D(20)), pricing.Tier(None, D(10), D(5))),
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
    return plan


def test_sync_records_subscription_phases_and_reports_price_drift(connected, tenant_a, stripe_seeded):
    from apps.catalog.models import SubscriptionPhase

    plan = _cloud_plan(tenant_a)
    report = sync_connection(tenant_a.pk, connected.pk, full=True, sleep=lambda _s: None)
    with tenant_context(tenant_a):
        phase = SubscriptionPhase.objects.get()
        assert (phase.plan, phase.account.name, phase.external_id) == (plan, "Acme Ltd", stripe_seeded["sub"])
        drift = ProviderConnection.objects.get().drift
    # the yen base fee has no plan in the catalogue; every USD price matches the Cloud plan
    assert [d["currency"] for d in drift] == ["JPY"] and report.counts[
        "subscriptions matching no single plan"
    ] == 1


def test_a_catalogue_that_disagrees_with_the_provider_shows_as_drift(connected, tenant_a):
    from decimal import Decimal as D

    from apps import pricing
    from apps.catalog.models import Meter, PlanVersion
    from apps.catalog.services import ChargeSpec, charge_save

    plan = _cloud_plan(tenant_a)
    with tenant_context(tenant_a):  # RevOps typed $11 where the provider charges $10 per 1,000 calls
        charge_save(
            actor=None,
            version=PlanVersion.objects.get(plan=plan),
            meter=Meter.objects.get(key="api_calls"),
            spec=ChargeSpec(
                model="graduated",
                tiers=(pricing.Tier(D(1), D(0)), pricing.Tier(D(5), D(20)), pricing.Tier(None, D(11), D(5))),
            ),
        )
    sync_connection(tenant_a.pk, connected.pk, full=True, sleep=lambda _s: None)
    with tenant_context(tenant_a):
        drift = {d.get("meter"): d for d in ProviderConnection.objects.get().drift}
    assert "api_calls" in drift and "≤∞ @ 10" in drift["api_calls"]["provider_per_billing_unit"]


def test_credit_notes_issued_at_the_provider_are_synced_against_their_invoice(
    connected, tenant_a, stripe_sandbox, stripe_seeded
):
    from decimal import Decimal as D

    from apps.billing.models import CreditNote
    from apps.providers.base import CreditNoteLine as Line
    from apps.providers.base import CreditNoteRequest
    from tests.providers.conftest import make_stripe_provider

    invoice_id = _invoice(stripe_sandbox, stripe_seeded["acme"], stripe_seeded["sub"], finalize=True)
    make_stripe_provider(stripe_sandbox).create_credit_note(
        CreditNoteRequest(
            invoice=invoice_id,
            lines=(Line(invoice_line=None, meter=None, amount=D("12.50")),),
            reason="goodwill",
        ),
        idempotency_key="cn-sync-test",
    )
    sync_connection(tenant_a.pk, connected.pk, full=True, sleep=lambda _s: None)
    with tenant_context(tenant_a):
        note = CreditNote.objects.get()
        assert note.invoice.external_id == invoice_id and sum(line.amount for line in note.lines.all()) == D(
            "12.50"
        )


def test_phases_recorded_in_trueup_are_kept_when_the_provider_shows_another_plan(
    connected, tenant_a, stripe_seeded
):
    """A plan change RevOps entered (the contract) is not rewritten by a subscription that was never
    told about it: the sync reports the disagreement instead."""
    import datetime as dt

    from apps.accounts.models import AccountExternalId
    from apps.catalog.models import SubscriptionPhase
    from apps.catalog.services import phase_create
    from tests.factories import PlanFactory

    _cloud_plan(tenant_a)
    sync_connection(tenant_a.pk, connected.pk, full=True, sleep=lambda _s: None)
    other = PlanFactory(tenant=tenant_a, key="legacy", name="Legacy", currency="USD")
    with tenant_context(tenant_a):
        acme = AccountExternalId.objects.get(external_id=stripe_seeded["acme"]).account
        SubscriptionPhase.objects.all().delete()
        start = dt.datetime.fromtimestamp(stripe_seeded["start"], tz=dt.UTC)
        recorded = phase_create(actor=None, account=acme, plan=other, starts_at=start - dt.timedelta(days=1))
    report = sync_connection(tenant_a.pk, connected.pk, full=True, sleep=lambda _s: None)
    with tenant_context(tenant_a):
        assert list(SubscriptionPhase.objects.values_list("pk", "plan_id", "ends_at")) == [
            (recorded.pk, other.pk, None)
        ]
    assert report.counts["subscriptions kept as recorded in Trueup"] == 1
