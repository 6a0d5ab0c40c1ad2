"""Usage pushed through the adapter is what Chargebee's metering counts, once per event."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

from apps.providers.base import UsageRecord
from apps.providers.chargebee import ChargebeeProvider
from apps.providers.sandbox.chargebee_server import ChargebeeSandbox
from tests.providers.conftest import CHARGEBEE_OCTOBER, make_chargebee_provider

START, END = CHARGEBEE_OCTOBER


def _record(identifier: str, quantity: str, at: dt.datetime, meter: str = "api_calls") -> UsageRecord:
    return UsageRecord(
        identifier=identifier, customer="acme", meter=meter, quantity=Decimal(quantity), timestamp=at
    )


def test_metered_totals_sum_the_seeded_usage(
    chargebee_seeded: ChargebeeSandbox, chargebee_provider: ChargebeeProvider
) -> None:
    total = chargebee_provider.metered_totals(customer="acme", meter="api_calls", start=START, end=END)
    assert total.quantity == Decimal(6500)
    assert (total.customer, total.meter, total.start, total.end) == ("acme", "api_calls", START, END)


def test_metered_totals_equal_the_pushed_usage_and_duplicates_count_once(
    chargebee_seeded: ChargebeeSandbox, chargebee_provider: ChargebeeProvider
) -> None:
    before = chargebee_provider.metered_totals(
        customer="acme", meter="storage_gb", start=START, end=END
    ).quantity
    noon = START + dt.timedelta(days=3, hours=12)
    records = [
        _record("ev-1", "10.5", noon, "storage_gb"),
        _record("ev-2", "4", noon, "storage_gb"),  # same second as ev-1: still a different event
        _record("ev-3", "0.25", noon + dt.timedelta(days=1), "storage_gb"),
    ]
    first = chargebee_provider.push_usage(records, idempotency_key="batch-1")
    again = chargebee_provider.push_usage([records[0], records[0]], idempotency_key="batch-2")
    assert first.accepted == ("ev-1", "ev-2", "ev-3") and first.failed == ()
    assert again.accepted == ("ev-1", "ev-1") and again.failed == ()
    after = chargebee_provider.metered_totals(
        customer="acme", meter="storage_gb", start=START, end=END
    ).quantity
    assert after - before == Decimal("14.75")
    assert chargebee_seeded.admin(
        "usage_totals",
        {
            "subscription_id": "sub_acme",
            "item_price_id": "storage-usd",
            "from": int(START.timestamp()),
            "to": int(END.timestamp()),
        },
    ) == {"quantity": str(after)}


def test_periods_are_half_open(
    chargebee_sandbox: ChargebeeSandbox, chargebee_seeded: ChargebeeSandbox
) -> None:
    provider = ChargebeeProvider(
        api_key=chargebee_sandbox.api_key,
        site=chargebee_sandbox.site,
        base_url=chargebee_sandbox.url,
        allow_writes=True,
        meters={"seats-usd": "seats"},
    )
    provider.push_usage(
        [_record("at-end", "100", END, "seats"), _record("at-start", "7", START, "seats")],
        idempotency_key="edges",
    )
    october = provider.metered_totals(customer="acme", meter="seats", start=START, end=END).quantity
    november = provider.metered_totals(
        customer="acme", meter="seats", start=END, end=END + dt.timedelta(days=30)
    )
    assert october == Decimal(3 + 7)
    assert november.quantity == Decimal(100)


def test_failures_are_reported_per_record(
    chargebee_seeded: ChargebeeSandbox, chargebee_provider: ChargebeeProvider
) -> None:
    records = [
        _record("ok", "1", START + dt.timedelta(days=5)),
        _record("unmapped", "1", START, meter="bandwidth"),
        UsageRecord("nobody", "no-such-customer", "api_calls", Decimal(1), START),
        _record("negative", "-5", START + dt.timedelta(days=5)),
    ]
    result = chargebee_provider.push_usage(records, idempotency_key="mixed")
    assert result.accepted == ("ok",)
    assert [identifier for identifier, _ in result.failed] == ["unmapped", "nobody", "negative"]
    assert "bandwidth" in result.failed[0][1]
    assert "negative" in result.failed[2][1]


def test_totals_follow_pages_and_concurrent_pushes(chargebee_seeded: ChargebeeSandbox) -> None:
    provider = make_chargebee_provider(chargebee_seeded, page_size=3)  # many pages of usages

    def push(worker: int) -> None:
        records = [_record(f"w{worker}-{i}", "1.5", START + dt.timedelta(hours=i)) for i in range(5)]
        assert provider.push_usage(records, idempotency_key=f"w{worker}").failed == ()

    threads = [threading.Thread(target=push, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = provider.metered_totals(customer="acme", meter="api_calls", start=START, end=END)
    assert total.quantity == Decimal(6500) + 4 * 5 * Decimal("1.5")
