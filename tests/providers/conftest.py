"""Shared fixtures of the provider tests (Stripe and Chargebee sandboxes)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from apps.providers.chargebee import ChargebeeProvider
from apps.providers.sandbox.chargebee_server import ChargebeeSandbox

CHARGEBEE_METERS = {"api-calls-usd": "api_calls", "storage-usd": "storage_gb", "seats-usd": "seats"}
CHARGEBEE_OCTOBER = (dt.datetime(2026, 10, 1, tzinfo=dt.UTC), dt.datetime(2026, 11, 1, tzinfo=dt.UTC))


@pytest.fixture
def chargebee_sandbox() -> Iterator[ChargebeeSandbox]:
    """A fresh Chargebee sandbox on a free port of 127.0.0.1, served by a thread of the test process."""
    with ChargebeeSandbox(api_key="test_chargebee_key", site="trueup-test") as sandbox:
        yield sandbox


def make_chargebee_provider(sandbox: ChargebeeSandbox, **kwargs: Any) -> ChargebeeProvider:
    options: dict[str, Any] = {"allow_writes": True, "meters": CHARGEBEE_METERS, **kwargs}
    return ChargebeeProvider(api_key=sandbox.api_key, site=sandbox.site, base_url=sandbox.url, **options)


@pytest.fixture
def chargebee_provider(chargebee_sandbox: ChargebeeSandbox) -> ChargebeeProvider:
    return make_chargebee_provider(chargebee_sandbox)


@pytest.fixture
def chargebee_seeded(chargebee_sandbox: ChargebeeSandbox) -> ChargebeeSandbox:
    """Two customers, a base fee and three metered item prices, one subscription with October usage."""
    start, _ = CHARGEBEE_OCTOBER
    day = int(start.timestamp()) + 86_400
    chargebee_sandbox.admin(
        "seed",
        {
            "customers": [
                {
                    "id": "acme",
                    "company": "Acme Ltd",
                    "email": "billing@acme.test",
                    "preferred_currency_code": "USD",
                    "meta_data": '{"segment": "smb"}',
                },
                {"id": "globex", "first_name": "Hank", "last_name": "Scorpio", "email": "hank@globex.test"},
            ],
            "item_prices": [
                {
                    "id": "base-usd",
                    "name": "Base",
                    "item_id": "base",
                    "pricing_model": "flat_fee",
                    "price": 4900,
                },
                {
                    "id": "api-calls-usd",
                    "name": "API calls",
                    "item_id": "api",
                    "pricing_model": "tiered",
                    "tiers": [
                        {"starting_unit": 1, "ending_unit": 1000, "price": 0},
                        {"starting_unit": 1001, "ending_unit": 5000, "price_in_decimal": "0.02"},
                        {"starting_unit": 5001, "price_in_decimal": "0.01"},
                    ],
                },
                {
                    "id": "storage-usd",
                    "name": "Storage",
                    "item_id": "storage",
                    "pricing_model": "volume",
                    "tiers": [
                        {"starting_unit": 1, "ending_unit": 100, "price": 50},
                        {"starting_unit": 101, "price": 25},
                    ],
                },
                {
                    "id": "seats-usd",
                    "name": "Seats",
                    "item_id": "seats",
                    "pricing_model": "per_unit",
                    "price": 1200,
                },
            ],
            "subscriptions": [
                {
                    "id": "sub_acme",
                    "customer_id": "acme",
                    "start_date": int(start.timestamp()),
                    "subscription_items": [
                        {"item_price_id": "base-usd"},
                        {"item_price_id": "api-calls-usd"},
                        {"item_price_id": "storage-usd"},
                        {"item_price_id": "seats-usd"},
                    ],
                },
            ],
            "usages": [
                {
                    "subscription_id": "sub_acme",
                    "item_price_id": "api-calls-usd",
                    "quantity": "4000",
                    "usage_date": day,
                },
                {
                    "subscription_id": "sub_acme",
                    "item_price_id": "api-calls-usd",
                    "quantity": "2500",
                    "usage_date": day + 86_400,
                },
                {
                    "subscription_id": "sub_acme",
                    "item_price_id": "storage-usd",
                    "quantity": "150",
                    "usage_date": day,
                },
                {
                    "subscription_id": "sub_acme",
                    "item_price_id": "seats-usd",
                    "quantity": "3",
                    "usage_date": day,
                },
            ],
        },
    )
    return chargebee_sandbox


def chargebee_invoice(sandbox: ChargebeeSandbox, *, close: bool, subscription: str = "sub_acme") -> str:
    """Have the sandbox bill ``subscription`` for October; returns the invoice id."""
    start, end = CHARGEBEE_OCTOBER
    body = {
        "subscription_id": subscription,
        "period_start": int(start.timestamp()),
        "period_end": int(end.timestamp()),
        "close": close,
    }
    return str(sandbox.admin("invoices", body)["invoice"]["id"])


# --- Stripe -------------------------------------------------------------------------------------
STRIPE_DAY = 86_400


@pytest.fixture
def stripe_sandbox() -> Iterator[Any]:
    """A fresh Stripe sandbox on a free port of 127.0.0.1, served by a thread of the test process."""
    from apps.providers.sandbox.stripe import StripeSandboxServer

    with StripeSandboxServer() as server:
        yield server


def stripe_sandbox_call(server: Any, method: str, path: str, body: Any = None) -> Any:
    """The sandbox's test-helper API (``/_sandbox/...``), over HTTP like everything else."""
    import requests

    response = requests.request(method, f"{server.url}/_sandbox/{path}", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def make_stripe_provider(server: Any, **kwargs: Any) -> Any:
    from apps.providers.stripe import StripeProvider

    options: dict[str, Any] = {"allow_writes": True, **kwargs}
    return StripeProvider(api_key=server.api_key, base_url=server.url, **options)


@pytest.fixture
def stripe_provider(stripe_sandbox: Any) -> Any:
    return make_stripe_provider(stripe_sandbox)


@pytest.fixture
def stripe_seeded(stripe_sandbox: Any) -> dict[str, Any]:
    """Acme on base fee + graduated API calls + volume storage + per-unit seats (all metered but the
    base fee), ten days into its current period, with usage; Globex with nothing; a JPY customer.

    Returns the sandbox's ids by ref plus ``now`` and ``period`` (the subscription's current period).
    """
    import time

    now = int(time.time())
    start = now - 10 * STRIPE_DAY
    recurring = {"interval": "month", "usage_type": "metered"}
    objects: list[dict[str, Any]] = [
        {
            "ref": "acme",
            "path": "/v1/customers",
            "params": {"name": "Acme Ltd", "email": "billing@acme.test", "metadata": {"segment": "smb"}},
        },
        {"ref": "globex", "path": "/v1/customers", "params": {"name": "Globex"}},
        {"ref": "tanaka", "path": "/v1/customers", "params": {"name": "Tanaka KK"}},
        {
            "ref": "m_api",
            "path": "/v1/billing/meters",
            "params": {
                "display_name": "API calls",
                "event_name": "api_calls",
                "default_aggregation": {"formula": "sum"},
            },
        },
        {
            "ref": "m_storage",
            "path": "/v1/billing/meters",
            "params": {
                "display_name": "Storage",
                "event_name": "storage_gb",
                "default_aggregation": {"formula": "sum"},
            },
        },
        {
            "ref": "m_seats",
            "path": "/v1/billing/meters",
            "params": {
                "display_name": "Seats",
                "event_name": "seats",
                "default_aggregation": {"formula": "sum"},
            },
        },
        {"ref": "product", "path": "/v1/products", "params": {"name": "Trueup Cloud"}},
        {
            "ref": "p_base",
            "path": "/v1/prices",
            "params": {
                "currency": "usd",
                "product": "$product",
                "unit_amount": 4900,
                "recurring": {"interval": "month"},
            },
        },
        {
            "ref": "p_api",
            "path": "/v1/prices",
            "params": {
                "currency": "usd",
                "product": "$product",
                "billing_scheme": "tiered",
                "tiers_mode": "graduated",
                "recurring": {**recurring, "meter": "$m_api"},
                "tiers": [
                    {"up_to": 1000, "unit_amount": 0},
                    {"up_to": 5000, "unit_amount_decimal": "2"},
                    {"up_to": "inf", "unit_amount_decimal": "1", "flat_amount": 500},
                ],
            },
        },
        {
            "ref": "p_storage",
            "path": "/v1/prices",
            "params": {
                "currency": "usd",
                "product": "$product",
                "billing_scheme": "tiered",
                "tiers_mode": "volume",
                "recurring": {**recurring, "meter": "$m_storage"},
                "tiers": [{"up_to": 100, "unit_amount": 50}, {"up_to": "inf", "unit_amount": 25}],
            },
        },
        {
            "ref": "p_seats",
            "path": "/v1/prices",
            "params": {
                "currency": "usd",
                "product": "$product",
                "unit_amount_decimal": "1200",
                "recurring": {**recurring, "meter": "$m_seats"},
            },
        },
        {
            "ref": "p_yen",
            "path": "/v1/prices",
            "params": {
                "currency": "jpy",
                "product": "$product",
                "unit_amount": 5000,
                "recurring": {"interval": "month"},
            },
        },
        {
            "ref": "sub",
            "path": "/v1/subscriptions",
            "params": {
                "customer": "$acme",
                "backdate_start_date": start,
                "items": [
                    {"price": "$p_base"},
                    {"price": "$p_api"},
                    {"price": "$p_storage"},
                    {"price": "$p_seats"},
                ],
            },
        },
        {
            "ref": "sub_yen",
            "path": "/v1/subscriptions",
            "params": {
                "customer": "$tanaka",
                "backdate_start_date": start,
                "items": [{"price": "$p_yen", "quantity": 3}],
            },
        },
    ]
    usage = [
        ("api_calls", 4000, 1),
        ("api_calls", 2500, 2),
        ("storage_gb", 150, 1),
        ("seats", 3, 1),
        ("api_calls", 99, -40),
    ]  # the last is before the period: counted by nobody's invoice
    for i, (event, value, day) in enumerate(usage):
        objects.append(
            {
                "path": "/v1/billing/meter_events",
                "params": {
                    "event_name": event,
                    "identifier": f"seed-{i}",
                    "timestamp": start + day * STRIPE_DAY,
                    "payload": {"stripe_customer_id": "$acme", "value": value},
                },
            }
        )
    ids: dict[str, Any] = stripe_sandbox_call(stripe_sandbox, "POST", "seed", {"objects": objects})["ids"]
    ids["now"], ids["start"] = now, start
    return ids
