"""Meter totals and usage push: Stripe's meter event summaries, meter events de-duplicated by identifier."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from apps.providers.base import UsageRecord
from tests.providers.conftest import STRIPE_DAY, make_stripe_provider
from tests.providers.test_stripe_writes import stripe_invoice


def _at(ts: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


def test_metered_totals_are_the_sums_of_the_meter_events(
    stripe_provider: Any, stripe_seeded: dict[str, Any]
) -> None:
    acme, start, now = stripe_seeded["acme"], stripe_seeded["start"], stripe_seeded["now"]
    period = {"customer": acme, "start": _at(start), "end": _at(now + 60)}
    assert stripe_provider.metered_totals(meter="api_calls", **period).quantity == Decimal(6500)
    assert stripe_provider.metered_totals(meter="storage_gb", **period).quantity == Decimal(150)
    everything = {"customer": acme, "start": _at(start - 50 * STRIPE_DAY), "end": _at(now + 60)}
    assert stripe_provider.metered_totals(meter="api_calls", **everything).quantity == Decimal(6599)
    other = {**period, "customer": stripe_seeded["globex"]}
    assert stripe_provider.metered_totals(meter="api_calls", **other).quantity == Decimal(0)


def test_pushed_usage_counts_once_per_identifier_and_reaches_the_invoice(
    stripe_sandbox: Any, stripe_provider: Any, stripe_seeded: dict[str, Any]
) -> None:
    acme, start, now = stripe_seeded["acme"], stripe_seeded["start"], stripe_seeded["now"]
    at = _at(start + 3 * STRIPE_DAY)
    records = [
        UsageRecord("evt-1", acme, "api_calls", Decimal(300), at),
        UsageRecord("evt-2", acme, "api_calls", Decimal(200), at),
    ]
    first = stripe_provider.push_usage(records, idempotency_key="batch-1")
    assert (first.accepted, first.failed) == (("evt-1", "evt-2"), ())
    again = stripe_provider.push_usage([records[0]], idempotency_key="batch-2")  # a replay under a new batch
    assert again.accepted == ("evt-1",)
    total = stripe_provider.metered_totals(
        meter="api_calls", customer=acme, start=_at(start), end=_at(now + 60)
    )
    assert total.quantity == Decimal(6500 + 500)
    invoice = stripe_provider.get_invoice(stripe_invoice(stripe_sandbox, stripe_seeded, finalize=False))
    api = next(ln for ln in invoice.lines if ln.meter == "api_calls")
    assert (api.quantity, api.amount) == (Decimal(7000), Decimal("105.00"))  # 500 more at 1c


def test_push_usage_reports_each_failure(stripe_provider: Any, stripe_seeded: dict[str, Any]) -> None:
    at = _at(stripe_seeded["start"] + STRIPE_DAY)
    result = stripe_provider.push_usage(
        [
            UsageRecord("ok", stripe_seeded["acme"], "seats", Decimal(1), at),
            UsageRecord("no-meter", stripe_seeded["acme"], "bandwidth", Decimal(1), at),
            UsageRecord("no-customer", "cus_missing", "seats", Decimal(1), at),
        ],
        idempotency_key="batch-3",
    )
    assert result.accepted == ("ok",)
    assert [identifier for identifier, _ in result.failed] == ["no-meter", "no-customer"]
    assert "bandwidth" in result.failed[0][1]


def test_a_meter_map_renames_stripe_meters(stripe_sandbox: Any, stripe_seeded: dict[str, Any]) -> None:
    provider = make_stripe_provider(
        stripe_sandbox, meter_map={stripe_seeded["m_api"]: "requests", "seats": "users"}
    )
    acme, start, now = stripe_seeded["acme"], stripe_seeded["start"], stripe_seeded["now"]
    total = provider.metered_totals(meter="requests", customer=acme, start=_at(start), end=_at(now + 60))
    assert total.quantity == Decimal(6500)
    invoice = provider.get_invoice(stripe_invoice(stripe_sandbox, stripe_seeded, finalize=False))
    assert {ln.meter for ln in invoice.lines} == {None, "requests", "storage_gb", "users"}
