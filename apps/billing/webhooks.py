"""Receiving provider webhooks: verify, store once per provider event id, process later.

A request that fails verification gets 400 and leaves nothing behind but a security log
line. A verified event is stored (a redelivery of a stored event is acknowledged and not
stored again) and processed asynchronously, by re-fetching the object it names, so the
order in which events arrive does not matter.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.billing.models import ProviderConnection, WebhookEvent
from apps.tenancy.context import tenant_context, unscoped_context

security_log = logging.getLogger("trueup.security")
STRIPE_TOLERANCE_SECONDS = 300
MAX_BODY = 1024 * 1024


def _connection(public_id: str, provider: str) -> ProviderConnection | None:
    # The URL names the connection, and through it the tenant: this one lookup crosses tenants.
    with unscoped_context(reason="find the connection a webhook is addressed to"):
        return ProviderConnection.unscoped_objects.filter(public_id=public_id, provider=provider).first()


def _refuse(request: HttpRequest, provider: str, why: str) -> HttpResponse:
    security_log.warning("%s webhook refused from %s: %s", provider, request.META.get("REMOTE_ADDR"), why)
    return JsonResponse({"error": "the webhook could not be verified"}, status=400)


def _store(
    connection: ProviderConnection, event_id: str, event_type: str, payload: dict[str, Any]
) -> HttpResponse:
    with tenant_context(connection.tenant_id):
        try:
            with transaction.atomic():
                event = WebhookEvent.objects.create(
                    connection=connection, event_id=event_id, event_type=event_type, payload=payload
                )
        except IntegrityError:
            return JsonResponse({"received": True, "duplicate": True})
        transaction.on_commit(lambda: _enqueue(connection.tenant_id, event.pk))
    return JsonResponse({"received": True})


def _enqueue(tenant_id: int, event_pk: int) -> None:
    from apps.billing.tasks import process_webhook_event

    process_webhook_event.delay(tenant_id, event_pk)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest, public_id: str) -> HttpResponse:
    import stripe

    connection = _connection(public_id, ProviderConnection.Provider.STRIPE)
    if connection is None or len(request.body) > MAX_BODY:
        return _refuse(request, "stripe", "unknown connection or oversized body")
    secret = connection.get_credentials().get("webhook_secret", "")
    try:
        event = stripe.Webhook.construct_event(
            request.body.decode(),
            request.headers.get("Stripe-Signature", ""),
            secret,
            tolerance=STRIPE_TOLERANCE_SECONDS,
        )
    except (ValueError, stripe.SignatureVerificationError) as exc:
        return _refuse(request, "stripe", f"bad signature ({exc.__class__.__name__})")
    payload = json.loads(request.body)
    return _store(connection, event.id, payload.get("type", ""), payload)


@csrf_exempt
@require_POST
def chargebee_webhook(request: HttpRequest, public_id: str) -> HttpResponse:
    connection = _connection(public_id, ProviderConnection.Provider.CHARGEBEE)
    if connection is None or len(request.body) > MAX_BODY:
        return _refuse(request, "chargebee", "unknown connection or oversized body")
    credentials = connection.get_credentials()
    expected = f"{credentials.get('webhook_username', '')}:{credentials.get('webhook_password', '')}"
    header = request.headers.get("Authorization", "")
    try:
        given = base64.b64decode(header.removeprefix("Basic ").strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        given = ""
    if (
        not header.startswith("Basic ")
        or not credentials.get("webhook_password")
        or not hmac.compare_digest(given.encode(), expected.encode())
    ):
        return _refuse(request, "chargebee", "bad HTTP Basic credentials")
    try:
        payload = json.loads(request.body)
        event_id, event_type = str(payload["id"]), str(payload["event_type"])
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": "not a Chargebee event"}, status=400)
    return _store(connection, event_id, event_type, payload)
