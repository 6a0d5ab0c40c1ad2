"""The Stripe adapter reads the sandbox through the real SDK over HTTP and maps Stripe's objects."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from apps.providers.base import BillingProvider, PriceTier, ProviderError
from tests.providers.conftest import make_stripe_provider, stripe_sandbox_call


def _invoice(server: Any, customer: str, subscription: str, *, finalize: bool) -> str:
    objects: list[dict[str, Any]] = [
        {"ref": "inv", "path": "/v1/invoices", "params": {"customer": customer, "subscription": subscription}}
    ]
    if finalize:
        objects.append({"path": "/v1/invoices/$inv/finalize", "params": {}})
    return str(stripe_sandbox_call(server, "POST", "seed", {"objects": objects})["ids"]["inv"])


def test_the_adapter_implements_the_protocol(stripe_provider: Any) -> None:
    assert isinstance(stripe_provider, BillingProvider)
    assert "Stripe account acct_sandbox" in stripe_provider.check()


def test_a_wrong_key_is_a_non_retryable_401(stripe_sandbox: Any) -> None:
    provider = make_stripe_provider(stripe_sandbox)
    provider.client = type(provider.client)(
        "sk_test_wrong", base_addresses={"api": stripe_sandbox.url, "meter_events": stripe_sandbox.url}
    )
    with pytest.raises(ProviderError) as caught:
        provider.check()
    assert (caught.value.status, caught.value.retryable) == (401, False)


def test_customers_come_in_pages_with_opaque_cursors(
    stripe_sandbox: Any, stripe_seeded: dict[str, Any]
) -> None:
    stripe_sandbox_call(
        stripe_sandbox,
        "POST",
        "seed",
        {"objects": [{"path": "/v1/customers", "params": {"name": f"Extra {i}"}} for i in range(4)]},
    )
    provider = make_stripe_provider(stripe_sandbox, page_size=2)
    seen, cursor, pages = [], None, 0
    while True:
        page = provider.list_customers(cursor=cursor)
        pages += 1
        seen.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 4 and len(seen) == 7 == len({c.id for c in seen})
    acme = next(c for c in seen if c.id == stripe_seeded["acme"])
    assert (acme.name, acme.email, acme.metadata, acme.currency) == (
        "Acme Ltd",
        "billing@acme.test",
        {"segment": "smb"},
        "usd",
    )


def test_prices_keep_their_tiers_meters_and_minor_unit_maths(
    stripe_sandbox: Any, stripe_seeded: dict[str, Any]
) -> None:
    provider = make_stripe_provider(stripe_sandbox, page_size=2)
    prices, cursor = {}, None
    while True:
        page = provider.list_prices(cursor=cursor)
        prices.update({p.id: p for p in page.items})
        if (cursor := page.next_cursor) is None:
            break
    assert len(prices) == 5
    api = prices[stripe_seeded["p_api"]]
    assert (api.model, api.meter, api.currency, api.product) == (
        "graduated",
        "api_calls",
        "usd",
        stripe_seeded["product"],
    )
    assert api.tiers == (
        PriceTier(Decimal(1000), Decimal("0.00")),
        PriceTier(Decimal(5000), Decimal("0.02")),
        PriceTier(None, Decimal("0.01"), Decimal("5.00")),
    )
    storage = prices[stripe_seeded["p_storage"]]
    assert (storage.model, storage.meter) == ("volume", "storage_gb")
    assert storage.tiers[1] == PriceTier(None, Decimal("0.25"))
    seats = prices[stripe_seeded["p_seats"]]
    assert (seats.model, seats.meter, seats.unit_amount) == ("per_unit", "seats", Decimal("12.00"))
    base = prices[stripe_seeded["p_base"]]
    assert (base.model, base.meter, base.unit_amount, base.interval) == (
        "flat",
        None,
        Decimal("49.00"),
        "month",
    )
    assert prices[stripe_seeded["p_yen"]].unit_amount == Decimal(5000)  # JPY has no minor unit


def test_subscription_phases(stripe_provider: Any, stripe_seeded: dict[str, Any]) -> None:
    phases = {p.subscription: p for p in stripe_provider.list_subscription_phases().items}
    acme = phases[stripe_seeded["sub"]]
    assert acme.customer == stripe_seeded["acme"]
    assert set(acme.prices) == {stripe_seeded[k] for k in ("p_base", "p_api", "p_storage", "p_seats")}
    assert acme.starts_at == dt.datetime.fromtimestamp(stripe_seeded["start"], tz=dt.UTC)
    assert acme.ends_at is None


def test_a_draft_subscription_invoice_is_priced_from_the_sandbox_state(
    stripe_sandbox: Any, stripe_provider: Any, stripe_seeded: dict[str, Any]
) -> None:
    invoice_id = _invoice(stripe_sandbox, stripe_seeded["acme"], stripe_seeded["sub"], finalize=False)
    invoice = stripe_provider.get_invoice(invoice_id)
    assert (invoice.status, invoice.subscription, invoice.customer, invoice.finalized_at) == (
        "draft",
        stripe_seeded["sub"],
        stripe_seeded["acme"],
        None,
    )
    by_meter = {line.meter: line for line in invoice.lines}
    # graduated: 1000 free, 4000 at 2c, 1500 at 1c plus the top tier's 5.00 flat fee
    assert (by_meter["api_calls"].quantity, by_meter["api_calls"].amount) == (
        Decimal(6500),
        Decimal("100.00"),
    )
    assert (by_meter["storage_gb"].quantity, by_meter["storage_gb"].amount) == (
        Decimal(150),
        Decimal("37.50"),
    )
    assert (by_meter["seats"].quantity, by_meter["seats"].amount) == (Decimal(3), Decimal("36.00"))
    assert (by_meter[None].price, by_meter[None].amount) == (stripe_seeded["p_base"], Decimal("49.00"))
    assert invoice.total == Decimal("222.50") == sum(line.amount for line in invoice.lines)
    start = dt.datetime.fromtimestamp(stripe_seeded["start"], tz=dt.UTC)
    assert invoice.period_start == start == by_meter["api_calls"].period_start
    assert invoice.period_end > dt.datetime.now(tz=dt.UTC)


def test_finalized_invoices_and_created_since(
    stripe_sandbox: Any, stripe_provider: Any, stripe_seeded: dict[str, Any]
) -> None:
    before = dt.datetime.now(tz=dt.UTC).replace(microsecond=0)
    usd = _invoice(stripe_sandbox, stripe_seeded["acme"], stripe_seeded["sub"], finalize=True)
    yen = _invoice(stripe_sandbox, stripe_seeded["tanaka"], stripe_seeded["sub_yen"], finalize=True)
    listed = {i.id: i for i in stripe_provider.list_invoices(created_since=before).items}
    assert set(listed) == {usd, yen}
    assert listed[usd].status == "open" and listed[usd].finalized_at is not None
    assert listed[usd].finalized_at >= before
    assert (listed[yen].currency, listed[yen].total) == ("jpy", Decimal(15000))
    future = dt.datetime.now(tz=dt.UTC) + dt.timedelta(hours=1)
    assert stripe_provider.list_invoices(created_since=future).items == ()
