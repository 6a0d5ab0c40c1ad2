from __future__ import annotations

import base64
import json
import logging
import time

import pytest
import stripe
from django.db import connection as db
from django.test import TestCase
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.billing.models import ProviderConnection, WebhookEvent
from apps.billing.services import connection_create
from apps.tenancy.context import tenant_context
from apps.tenancy.roles import Role
from tests.conftest import member

pytestmark = pytest.mark.django_db
SECRET = "whsec_test_secret"


@pytest.fixture
def stripe_connection(tenant_a):
    with tenant_context(tenant_a):
        return connection_create(
            actor=None,
            provider="stripe",
            name="Stripe",
            credentials={"api_key": "sk_test_supersecret123", "webhook_secret": SECRET},
        )


@pytest.fixture
def chargebee_connection(tenant_a):
    with tenant_context(tenant_a):
        return connection_create(
            actor=None,
            provider="chargebee",
            name="Chargebee",
            site="acme",
            credentials={
                "api_key": "cb_test_key",
                "webhook_username": "hooks",
                "webhook_password": "s3cret-pass",
            },
        )


def test_credentials_are_encrypted_at_rest_and_never_audited(stripe_connection, tenant_a):
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT credentials FROM billing_providerconnection WHERE id = %s", [stripe_connection.pk]
        )
        stored = cursor.fetchone()
    with tenant_context(tenant_a):
        row = ProviderConnection.objects.get()
        trail = json.dumps(list(AuditEvent.objects.values("after", "before")), default=str)
    assert stored is None or "supersecret" not in str(stored)  # RLS hides it without a tenant; with one:
    assert (
        "supersecret" not in row.credentials and row.get_credentials()["api_key"] == "sk_test_supersecret123"
    )
    assert "supersecret" not in trail and "api_key" in trail
    assert "supersecret" not in repr(row) and not row.allow_writes, "new connections are read-only"


def _stripe_post(client, connection, payload: dict, *, secret=SECRET, timestamp=None):
    body = json.dumps(payload)
    header = stripe.WebhookSignature.generate_signature_header(
        body, secret, timestamp=timestamp or int(time.time())
    )
    return client.post(
        reverse("webhook-stripe", args=[connection.public_id]),
        body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=header,
    )


EVENT = {"id": "evt_1", "object": "event", "type": "customer.updated", "data": {"object": {"id": "cus_1"}}}


def test_a_signed_stripe_event_is_stored_once(client, stripe_connection, tenant_a):
    with TestCase.captureOnCommitCallbacks(execute=True):
        first = _stripe_post(client, stripe_connection, EVENT)
    second = _stripe_post(client, stripe_connection, EVENT)  # a redelivery
    assert first.status_code == 200 and second.status_code == 200 and second.json()["duplicate"] is True
    with tenant_context(tenant_a):
        event = WebhookEvent.objects.get()
    assert event.event_type == "customer.updated" and event.status == "ignored"


@pytest.mark.parametrize("tamper", ["signature", "secret", "stale"])
def test_a_bad_stripe_signature_gets_400_and_stores_nothing(
    client, stripe_connection, tenant_a, caplog, tamper
):
    caplog.set_level(logging.WARNING, logger="trueup.security")
    if tamper == "signature":
        response = client.post(
            reverse("webhook-stripe", args=[stripe_connection.public_id]),
            json.dumps(EVENT),
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE="t=1,v1=deadbeef",
        )
    elif tamper == "secret":
        response = _stripe_post(client, stripe_connection, EVENT, secret="whsec_other")
    else:  # older than the 300 s tolerance
        response = _stripe_post(client, stripe_connection, EVENT, timestamp=int(time.time()) - 301)
    assert response.status_code == 400
    with tenant_context(tenant_a):
        assert not WebhookEvent.objects.exists()
    assert any("stripe webhook refused" in r.getMessage() for r in caplog.records)


def _basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_chargebee_webhooks_need_the_basic_credentials(client, chargebee_connection, tenant_a):
    url = reverse("webhook-chargebee", args=[chargebee_connection.public_id])
    body = json.dumps({"id": "ev_1", "event_type": "customer_changed", "api_version": "v2", "content": {}})
    assert client.post(url, body, content_type="application/json").status_code == 400
    assert (
        client.post(
            url, body, content_type="application/json", HTTP_AUTHORIZATION=_basic("hooks", "wrong")
        ).status_code
        == 400
    )
    with TestCase.captureOnCommitCallbacks(execute=True):
        ok = client.post(
            url, body, content_type="application/json", HTTP_AUTHORIZATION=_basic("hooks", "s3cret-pass")
        )
    assert ok.status_code == 200
    with tenant_context(tenant_a):
        assert WebhookEvent.objects.get().event_id == "ev_1"


def test_a_webhook_for_another_providers_connection_is_refused(client, stripe_connection):
    url = reverse("webhook-chargebee", args=[stripe_connection.public_id])
    assert client.post(url, "{}", content_type="application/json").status_code == 400


def test_only_admins_manage_connections_and_writes_start_disabled(client, tenant_a):
    url = reverse("connections", args=[tenant_a.slug])
    client.force_login(member(tenant_a, Role.FINANCE_APPROVER))
    assert client.post(url, {"provider": "stripe", "name": "x", "api_key": "sk"}).status_code == 403
    client.force_login(member(tenant_a, Role.ADMIN))
    response = client.post(url, {"provider": "stripe", "name": "Live", "api_key": "sk_test_1"})
    assert response.status_code == 302
    with tenant_context(tenant_a):
        created = ProviderConnection.objects.get(name="Live")
    assert not created.allow_writes
    page = client.get(response["Location"]).content.decode()
    assert f"/webhooks/stripe/{created.public_id}/" in page and "sk_test_1" not in page
