"""The Chargebee adapter reads customers, prices, subscriptions and invoices from the sandbox over HTTP."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from chargebee import Chargebee

from apps.providers.base import BillingProvider, ProviderError
from apps.providers.chargebee import ChargebeeProvider
from apps.providers.sandbox.chargebee_server import ChargebeeSandbox
from tests.providers.conftest import CHARGEBEE_OCTOBER, chargebee_invoice, make_chargebee_provider


def test_the_adapter_implements_the_protocol(chargebee_provider: ChargebeeProvider) -> None:
    assert isinstance(chargebee_provider, BillingProvider)
    assert chargebee_provider.check() == "Chargebee site trueup-test"


def test_a_wrong_api_key_is_refused(chargebee_sandbox: ChargebeeSandbox) -> None:
    provider = ChargebeeProvider(api_key="wrong", site="trueup-test", base_url=chargebee_sandbox.url)
    with pytest.raises(ProviderError) as caught:
        provider.check()
    assert caught.value.status == 401
    assert not caught.value.retryable


def test_customers_are_mapped(
    chargebee_seeded: ChargebeeSandbox, chargebee_provider: ChargebeeProvider
) -> None:
    customers = {c.id: c for c in chargebee_provider.list_customers().items}
    assert customers["acme"].name == "Acme Ltd"
    assert customers["acme"].email == "billing@acme.test"
    assert customers["acme"].currency == "USD"
    assert customers["acme"].metadata == {"segment": "smb"}
    assert customers["globex"].name == "Hank Scorpio"
    assert customers["acme"].updated_at is not None and customers["acme"].updated_at.tzinfo == dt.UTC


def test_updated_since_filters_customers(chargebee_sandbox: ChargebeeSandbox) -> None:
    provider = make_chargebee_provider(chargebee_sandbox)
    chargebee_sandbox.admin("clock", {"now": 1_790_000_000})
    provider.cb.Customer.create({"id": "old"})
    chargebee_sandbox.admin("clock", {"now": 1_795_000_000})
    provider.cb.Customer.create({"id": "new"})
    since = dt.datetime.fromtimestamp(1_792_000_000, tz=dt.UTC)
    assert [c.id for c in provider.list_customers(updated_since=since).items] == ["new"]


def test_prices_map_every_pricing_model(
    chargebee_seeded: ChargebeeSandbox, chargebee_provider: ChargebeeProvider
) -> None:
    chargebee_provider.cb.ItemPrice.create(
        {
            "id": "steps-usd",
            "name": "Steps",
            "item_id": "steps",
            "pricing_model": "stairstep",
            "tiers": [
                {"starting_unit": 1, "ending_unit": 10, "price": 1000},
                {"starting_unit": 11, "price": 1500},
            ],
        }
    )
    prices = {p.id: p for p in chargebee_provider.list_prices().items}
    assert prices["base-usd"].model == "flat" and prices["base-usd"].meter is None
    assert prices["base-usd"].unit_amount == Decimal("49.00")
    api = prices["api-calls-usd"]
    assert (api.model, api.meter) == ("graduated", "api_calls")
    assert [(t.up_to, t.unit_amount) for t in api.tiers] == [
        (Decimal(1000), Decimal(0)),
        (Decimal(5000), Decimal("0.02")),
        (None, Decimal("0.01")),
    ]
    assert prices["storage-usd"].model == "volume"
    assert prices["storage-usd"].tiers[1].unit_amount == Decimal("0.25")
    assert (prices["seats-usd"].model, prices["seats-usd"].unit_amount) == ("per_unit", Decimal("12.00"))
    steps = prices["steps-usd"]
    assert steps.model == "volume"
    assert [(t.unit_amount, t.flat_amount) for t in steps.tiers] == [
        (Decimal(0), Decimal("10.00")),
        (Decimal(0), Decimal("15.00")),
    ]


def test_subscription_phases(
    chargebee_seeded: ChargebeeSandbox, chargebee_provider: ChargebeeProvider
) -> None:
    (phase,) = chargebee_provider.list_subscription_phases().items
    assert (phase.customer, phase.subscription) == ("acme", "sub_acme")
    assert phase.prices == ("base-usd", "api-calls-usd", "storage-usd", "seats-usd")
    assert phase.starts_at == CHARGEBEE_OCTOBER[0]
    assert phase.ends_at is None


def test_a_pending_invoice_is_a_draft_priced_from_the_usage(
    chargebee_seeded: ChargebeeSandbox, chargebee_provider: ChargebeeProvider
) -> None:
    invoice = chargebee_provider.get_invoice(chargebee_invoice(chargebee_seeded, close=False))
    assert invoice.status == "draft"
    assert invoice.finalized_at is None
    assert (invoice.period_start, invoice.period_end) == CHARGEBEE_OCTOBER
    lines = {line.meter: line for line in invoice.lines}
    assert (lines[None].price, lines[None].amount) == ("base-usd", Decimal("49.00"))
    # tiered: 1000 free, 4000 x 0.02, 1500 x 0.01
    assert (lines["api_calls"].quantity, lines["api_calls"].amount) == (Decimal(6500), Decimal("95.00"))
    # volume: all 150 units at the second tier's 0.25
    assert (lines["storage_gb"].quantity, lines["storage_gb"].amount) == (Decimal(150), Decimal("37.50"))
    assert lines["seats"].amount == Decimal("36.00")
    assert invoice.total == Decimal("217.50")
    assert invoice.currency == "USD" and invoice.customer == "acme" and invoice.subscription == "sub_acme"


def test_a_closed_invoice_is_open_with_finalized_at(
    chargebee_seeded: ChargebeeSandbox, chargebee_provider: ChargebeeProvider
) -> None:
    chargebee_seeded.admin("clock", {"now": 1_793_500_000})
    invoice = chargebee_provider.get_invoice(chargebee_invoice(chargebee_seeded, close=True))
    assert invoice.status == "open"
    assert invoice.finalized_at == dt.datetime.fromtimestamp(1_793_500_000, tz=dt.UTC)
    assert invoice.total == Decimal("217.50")


def test_invoices_paginate_with_next_offset(chargebee_seeded: ChargebeeSandbox) -> None:
    provider = make_chargebee_provider(chargebee_seeded, page_size=2)
    created = [chargebee_invoice(chargebee_seeded, close=i % 2 == 0) for i in range(5)]
    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        page = provider.list_invoices(cursor=cursor)
        pages += 1
        seen += [invoice.id for invoice in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == created
    assert pages == 3


def test_created_since_filters_invoices(
    chargebee_seeded: ChargebeeSandbox, chargebee_provider: ChargebeeProvider
) -> None:
    chargebee_invoice(chargebee_seeded, close=True)
    after_october = CHARGEBEE_OCTOBER[1] + dt.timedelta(days=1)
    assert chargebee_provider.list_invoices(created_since=after_october).items == ()
    assert len(chargebee_provider.list_invoices(created_since=CHARGEBEE_OCTOBER[0]).items) == 1


def test_a_missing_invoice_is_a_404(chargebee_provider: ChargebeeProvider) -> None:
    with pytest.raises(ProviderError) as caught:
        chargebee_provider.get_invoice("inv_missing")
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (
        404,
        "resource_not_found",
        False,
    )


def test_the_sdk_is_pointed_at_the_sandbox_not_chargebee(chargebee_provider: ChargebeeProvider) -> None:
    assert chargebee_provider.cb.env.api_endpoint.startswith("http://127.0.0.1:")
    assert Chargebee.verify_ca_certs is False


@pytest.mark.parametrize(
    ("model", "extra", "quantity", "amount"),
    [
        (
            "stairstep",
            {
                "tiers": [
                    {"starting_unit": 1, "ending_unit": 10, "price": 1000},
                    {"starting_unit": 11, "price": 1500},
                ]
            },
            "11",
            Decimal("15.00"),
        ),
        ("package", {"price": 500, "package_size": 100}, "201", Decimal("15.00")),
        (
            "volume",
            {
                "tiers": [
                    {"starting_unit": 1, "ending_unit": 10, "price": 100},
                    {"starting_unit": 11, "price": 80},
                ]
            },
            "10",
            Decimal("10.00"),
        ),
        (
            "tiered",
            {
                "tiers": [
                    {"starting_unit": 1, "ending_unit": 10, "price": 100},
                    {"starting_unit": 11, "price": 80},
                ]
            },
            "12.5",
            Decimal("12.00"),
        ),
        ("per_unit", {"price_in_decimal": "0.0015"}, "1001", Decimal("1.50")),
    ],
)
def test_the_sandbox_prices_usage_by_model(
    chargebee_sandbox: ChargebeeSandbox, model: str, extra: dict, quantity: str, amount: Decimal
) -> None:
    provider = make_chargebee_provider(chargebee_sandbox, meters={"m-usd": "m"})
    provider.cb.Customer.create({"id": "c"})
    provider.cb.ItemPrice.create(
        {"id": "m-usd", "name": "M", "item_id": "m", "pricing_model": model, **extra}
    )
    provider.cb.Subscription.create_with_items(
        "c", {"id": "s", "subscription_items": [{"item_price_id": "m-usd"}]}
    )
    start = CHARGEBEE_OCTOBER[0]
    provider.cb.Usage.create(
        "s", {"item_price_id": "m-usd", "quantity": quantity, "usage_date": int(start.timestamp())}
    )
    invoice = provider.get_invoice(chargebee_invoice(chargebee_sandbox, close=True, subscription="s"))
    assert [(line.meter, line.quantity, line.amount) for line in invoice.lines] == [
        ("m", Decimal(quantity), amount)
    ]


def test_the_sdk_builds_no_tls_context_per_request(chargebee_provider, monkeypatch):
    """The SDK opens a client per request; ours reuse one TLS context instead of reloading the CA
    bundle each time (70 ms of CPU per call)."""
    import certifi

    chargebee_provider.check()  # the shared context exists from here on
    monkeypatch.setattr(certifi, "where", lambda: pytest.fail("a new TLS context was built"))
    for _ in range(3):
        chargebee_provider.check()
