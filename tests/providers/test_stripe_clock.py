"""The Stripe sandbox's test clock bills subscriptions as their periods end; plan changes, with and
without proration. Over HTTP, through the official stripe SDK."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import stripe

from tests.providers.conftest import stripe_sandbox_call

AUG = int(dt.datetime(2026, 8, 1, tzinfo=dt.UTC).timestamp())
SEP = int(dt.datetime(2026, 9, 1, tzinfo=dt.UTC).timestamp())
OCT = int(dt.datetime(2026, 10, 1, tzinfo=dt.UTC).timestamp())
DAY = 86_400


@pytest.fixture
def world(stripe_sandbox: Any) -> dict[str, Any]:
    stripe_sandbox_call(stripe_sandbox, "POST", "clock", {"frozen_time": AUG})
    objects = [
        {"ref": "acme", "path": "/v1/customers", "params": {"name": "Acme"}},
        {
            "ref": "meter",
            "path": "/v1/billing/meters",
            "params": {
                "display_name": "API",
                "event_name": "api_calls",
                "default_aggregation": {"formula": "sum"},
            },
        },
        {"ref": "product", "path": "/v1/products", "params": {"name": "Cloud"}},
        {
            "ref": "small",
            "path": "/v1/prices",
            "params": {
                "currency": "usd",
                "product": "$product",
                "unit_amount": 3000,
                "recurring": {"interval": "month"},
            },
        },
        {
            "ref": "large",
            "path": "/v1/prices",
            "params": {
                "currency": "usd",
                "product": "$product",
                "unit_amount": 9000,
                "recurring": {"interval": "month"},
            },
        },
        {
            "ref": "calls",
            "path": "/v1/prices",
            "params": {
                "currency": "usd",
                "product": "$product",
                "unit_amount_decimal": "2",
                "recurring": {"interval": "month", "usage_type": "metered", "meter": "$meter"},
            },
        },
        {
            "ref": "sub",
            "path": "/v1/subscriptions",
            "params": {"customer": "$acme", "items": [{"price": "$small"}, {"price": "$calls"}]},
        },
    ]
    ids: dict[str, Any] = stripe_sandbox_call(stripe_sandbox, "POST", "seed", {"objects": objects})["ids"]
    return ids


def _client(server: Any) -> stripe.StripeClient:
    return stripe.StripeClient(server.api_key, base_addresses={"api": server.url, "meter_events": server.url})


def _meter_event(client: stripe.StripeClient, customer: str, value: int, at: int, identifier: str) -> None:
    client.v1.billing.meter_events.create(
        params={
            "event_name": "api_calls",
            "identifier": identifier,
            "timestamp": at,
            "payload": {"stripe_customer_id": customer, "value": str(value)},
        }
    )


def test_advancing_the_clock_invoices_each_ended_period_and_finalizes_an_hour_later(stripe_sandbox, world):
    client = _client(stripe_sandbox)
    _meter_event(client, world["acme"], 100, AUG + 3 * DAY, "a")
    _meter_event(client, world["acme"], 50, SEP + 2 * DAY, "b")

    moved = stripe_sandbox_call(stripe_sandbox, "POST", "clock", {"frozen_time": SEP + 600})
    assert len(moved["created"]) == 1 and moved["finalized"] == []
    august = client.v1.invoices.retrieve(moved["created"][0])
    assert (august.status, august.period_start, august.period_end) == ("draft", AUG, SEP)
    assert august.total == 3000 + 100 * 2  # the base fee and August's calls only

    moved = stripe_sandbox_call(stripe_sandbox, "POST", "clock", {"frozen_time": OCT + 2 * 3600})
    assert moved["finalized"][0] == august.id and len(moved["created"]) == 1
    august = client.v1.invoices.retrieve(august.id)
    assert august.status == "open" and august.status_transitions.finalized_at == SEP + 3600
    september = client.v1.invoices.retrieve(moved["created"][0])
    assert september.status == "open" and september.total == 3000 + 50 * 2

    import requests

    back = requests.post(f"{stripe_sandbox.url}/_sandbox/clock", json={"frozen_time": AUG}, timeout=5)
    assert back.status_code == 400 and "forward" in back.text  # a clock never goes back


def test_a_plan_change_without_proration_bills_the_new_price_for_the_whole_period(stripe_sandbox, world):
    client = _client(stripe_sandbox)
    stripe_sandbox_call(stripe_sandbox, "POST", "clock", {"frozen_time": AUG + 15 * DAY})
    sub = client.v1.subscriptions.retrieve(world["sub"])
    base_item = next(i for i in sub["items"].data if i.price.id == world["small"])
    client.v1.subscriptions.update(
        sub.id,
        params={"items": [{"id": base_item.id, "price": world["large"]}], "proration_behavior": "none"},
    )
    moved = stripe_sandbox_call(stripe_sandbox, "POST", "clock", {"frozen_time": SEP + 60})
    assert client.v1.invoices.retrieve(moved["created"][0]).total == 9000


def test_a_plan_change_with_proration_credits_unused_time_and_charges_the_rest(stripe_sandbox, world):
    client = _client(stripe_sandbox)
    stripe_sandbox_call(stripe_sandbox, "POST", "clock", {"frozen_time": AUG + 15 * DAY + DAY // 2})
    sub = client.v1.subscriptions.retrieve(world["sub"])
    base_item = next(i for i in sub["items"].data if i.price.id == world["small"])
    client.v1.subscriptions.update(sub.id, params={"items": [{"id": base_item.id, "price": world["large"]}]})
    moved = stripe_sandbox_call(stripe_sandbox, "POST", "clock", {"frozen_time": SEP + 60})
    invoice = client.v1.invoices.retrieve(moved["created"][0])
    # 31-day August, changed half way (15.5 days left): -1500 unused small, +4500 remaining large, 9000 large
    assert invoice.total == 9000 - 1500 + 4500


def test_usage_that_reaches_the_meter_before_finalization_is_billed_and_later_usage_is_not(
    stripe_sandbox, world
):
    client = _client(stripe_sandbox)
    stripe_sandbox_call(stripe_sandbox, "POST", "clock", {"frozen_time": SEP + 60})  # the draft exists
    _meter_event(client, world["acme"], 10, SEP - 100, "in-grace")  # August usage, 61 s after the draft
    moved = stripe_sandbox_call(stripe_sandbox, "POST", "clock", {"frozen_time": SEP + 2 * 3600})
    _meter_event(client, world["acme"], 7, SEP - 50, "too-late")  # after finalization
    invoice = client.v1.invoices.retrieve(moved["finalized"][0])
    assert invoice.total == 3000 + 10 * 2
