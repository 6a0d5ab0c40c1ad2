"""The sandbox's own contract, as Stripe's API behaves: auth, idempotency, lists, form encoding, previews."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import requests
import stripe

from apps.providers.base import InvoiceItemRequest, ProviderError
from apps.providers.sandbox.stripe.server import decode_form


def _client(server: Any) -> stripe.StripeClient:
    return stripe.StripeClient(
        server.api_key,
        base_addresses={"api": server.url, "meter_events": server.url},
        stripe_version="2026-10-28.endive",
    )


def test_form_keys_nest_like_stripes() -> None:
    pairs = [
        ("lines[1][amount]", "5"),
        ("lines[0][type]", "custom_line_item"),
        ("created[gte]", "1"),
        ("x", "y"),
    ]
    assert decode_form(pairs) == {
        "lines": [{"type": "custom_line_item"}, {"amount": "5"}],
        "created": {"gte": "1"},
        "x": "y",
    }


def test_requests_without_the_secret_key_get_stripes_401(stripe_sandbox: Any) -> None:
    for headers in ({}, {"Authorization": "Bearer sk_test_nope"}):
        response = requests.get(f"{stripe_sandbox.url}/v1/customers", headers=headers, timeout=5)
        assert response.status_code == 401
        assert set(response.json()["error"]) >= {"type", "code", "message"}


def test_idempotent_replays_are_flagged_and_conflicts_refused(stripe_sandbox: Any) -> None:
    url, auth = f"{stripe_sandbox.url}/v1/customers", (stripe_sandbox.api_key, "")
    first = requests.post(url, data={"name": "Ann"}, headers={"Idempotency-Key": "k1"}, auth=auth, timeout=5)
    again = requests.post(url, data={"name": "Ann"}, headers={"Idempotency-Key": "k1"}, auth=auth, timeout=5)
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    other = requests.post(url, data={"name": "Bob"}, headers={"Idempotency-Key": "k1"}, auth=auth, timeout=5)
    assert (other.status_code, other.json()["error"]["type"]) == (400, "idempotency_error")
    listing = requests.get(url, params={"limit": 5}, auth=auth, timeout=5).json()
    assert (listing["object"], listing["url"], listing["has_more"], len(listing["data"])) == (
        "list",
        "/v1/customers",
        False,
        1,
    )


def test_the_sdk_auto_pages_and_previews_the_next_invoice(
    stripe_sandbox: Any, stripe_seeded: dict[str, Any]
) -> None:
    client = _client(stripe_sandbox)
    prices = list(client.v1.prices.list(params={"limit": 2}).auto_paging_iter())
    assert len(prices) == 5
    preview = client.v1.invoices.create_preview(
        params={"customer": stripe_seeded["acme"], "subscription": stripe_seeded["sub"]}
    )
    assert (preview.status, preview.total) == ("draft", 22250)
    assert preview.parent.subscription_details.subscription == stripe_seeded["sub"]
    assert list(client.v1.invoices.list().auto_paging_iter()) == []  # a preview is not stored


def test_metered_prices_need_a_meter_and_tiers_end_at_inf(
    stripe_sandbox: Any, stripe_seeded: dict[str, Any]
) -> None:
    client = _client(stripe_sandbox)
    base = {"currency": "usd", "product": stripe_seeded["product"]}
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.prices.create(
            params={**base, "unit_amount": 1, "recurring": {"interval": "month", "usage_type": "metered"}}
        )
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.prices.create(
            params={
                **base,
                "billing_scheme": "tiered",
                "tiers_mode": "volume",
                "tiers": [{"up_to": 5, "unit_amount": 1}],
            }
        )
    package = client.v1.prices.create(
        params={**base, "unit_amount": 300, "transform_quantity": {"divide_by": 1000, "round": "up"}}
    )
    assert package.transform_quantity.divide_by == 1000


def test_zero_decimal_currencies_are_whole_units(
    stripe_sandbox: Any, stripe_provider: Any, stripe_seeded: dict[str, Any]
) -> None:
    yen = InvoiceItemRequest(
        customer=stripe_seeded["tanaka"], amount=Decimal(500), currency="jpy", description="Fix"
    )
    item_id = stripe_provider.create_invoice_item(yen, idempotency_key="yen-1")
    item = _client(stripe_sandbox).v1.invoice_items.retrieve(item_id)
    assert (item.amount, item.currency) == (500, "jpy")
    with pytest.raises(ProviderError) as caught:
        stripe_provider.create_invoice_item(
            InvoiceItemRequest(stripe_seeded["tanaka"], Decimal("500.5"), "jpy", "Fix"),
            idempotency_key="yen-2",
        )
    assert caught.value.code == "amount_precision"
    usd = InvoiceItemRequest(stripe_seeded["acme"], Decimal("0.5"), "usd", "Half a dollar")
    assert (
        _client(stripe_sandbox)
        .v1.invoice_items.retrieve(stripe_provider.create_invoice_item(usd, idempotency_key="usd-1"))
        .amount
        == 50
    )
