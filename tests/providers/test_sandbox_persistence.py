"""The sandboxes' state file: what the SDKs created is served again by a new server on the same file."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests
import stripe

from apps.providers.base import UsageRecord
from apps.providers.sandbox.chargebee_server import ChargebeeSandbox
from apps.providers.sandbox.persistence import StateFile
from apps.providers.sandbox.stripe import API_VERSION, StripeSandboxServer
from tests.providers.conftest import make_chargebee_provider, stripe_sandbox_call


def stripe_client(server: StripeSandboxServer) -> stripe.StripeClient:
    base: Any = {"api": server.url, "meter_events": server.url}
    return stripe.StripeClient(server.api_key, base_addresses=base, stripe_version=API_VERSION)


def test_stripe_objects_events_and_idempotency_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "sandbox" / "stripe.pickle"
    with StripeSandboxServer(state_file=state) as first:
        client = stripe_client(first)
        params: Any = {"name": "Acme Ltd", "email": "billing@acme.test", "metadata": {"segment": "smb"}}
        acme = client.v1.customers.create(params=params, options={"idempotency_key": "create-acme"})
        meter = client.v1.billing.meters.create(
            params={
                "display_name": "API calls",
                "event_name": "api_calls",
                "default_aggregation": {"formula": "sum"},
            }
        )
        now = int(time.time()) // 60 * 60  # summaries take minute-aligned bounds
        for i, value in enumerate((4000, 2500)):
            client.v1.billing.meter_events.create(
                params={
                    "event_name": "api_calls",
                    "identifier": f"evt-{i}",
                    "timestamp": now - 60,
                    "payload": {"stripe_customer_id": acme.id, "value": str(value)},
                }
            )
        stripe_sandbox_call(
            first, "POST", "webhooks", {"url": "http://127.0.0.1:9/hook", "secret": "whsec_x"}
        )
    # The server stopped cleanly right after the last acknowledged write: all of it is on disk.
    assert state.exists()

    with StripeSandboxServer(state_file=state) as second:
        client = stripe_client(second)
        again = client.v1.customers.retrieve(acme.id)
        assert (again.name, again.email, again.metadata["segment"]) == (
            "Acme Ltd",
            "billing@acme.test",
            "smb",
        )

        def metered() -> Decimal:
            summaries = client.v1.billing.meters.event_summaries.list(
                meter.id,
                params={"customer": acme.id, "start_time": now - 3600, "end_time": now + 3600},
            )
            return sum((Decimal(str(s.aggregated_value)) for s in summaries.data), Decimal(0))

        assert metered() == 6500
        # The same request with the same key, after the restart: the same customer, replayed.
        retried = client.v1.customers.create(params=params, options={"idempotency_key": "create-acme"})
        assert retried.id == acme.id
        assert retried.last_response.headers.get("Idempotent-Replayed") == "true"
        # A meter event sent again is still known by its identifier: counted once.
        client.v1.billing.meter_events.create(
            params={
                "event_name": "api_calls",
                "identifier": "evt-0",
                "timestamp": now - 60,
                "payload": {"stripe_customer_id": acme.id, "value": "4000"},
            }
        )
        assert metered() == 6500
        # New objects continue the old sequence: the newest is listed first, ahead of Acme.
        globex = client.v1.customers.create(params={"name": "Globex"})
        assert [c.id for c in client.v1.customers.list().data] == [globex.id, acme.id]
        # The webhook endpoint and the events not yet delivered were kept.
        assert (second.sandbox.webhook_url, second.sandbox.webhook_secret) == (
            "http://127.0.0.1:9/hook",
            "whsec_x",
        )
        delivered = stripe_sandbox_call(second, "POST", "webhooks/deliver", {"types": ["customer.created"]})
        assert {d["event"] for d in delivered["data"]} == {
            e.id for e in client.v1.events.list(params={"type": "customer.created"}).data
        }
        assert len(delivered["data"]) == 2


def test_chargebee_objects_ids_and_idempotency_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "chargebee.pickle"
    october = dt.datetime(2026, 10, 2, tzinfo=dt.UTC)
    with ChargebeeSandbox(state_file=state) as first:
        first.admin(
            "seed",
            {
                "item_prices": [{"id": "api-calls-usd", "pricing_model": "per_unit", "price": 2}],
                "customers": [{"id": "acme", "company": "Acme Ltd"}],
                "subscriptions": [
                    {
                        "id": "sub_acme",
                        "customer_id": "acme",
                        "subscription_items": [{"item_price_id": "api-calls-usd"}],
                    }
                ],
            },
        )
        cb = make_chargebee_provider(first).cb
        created = cb.Customer.create({"company": "Globex"}, {"chargebee-idempotency-key": "create-globex"})
        globex_id = created.customer.id
        provider = make_chargebee_provider(first)
        record = UsageRecord(
            identifier="u-1",
            customer="acme",
            meter="api_calls",
            quantity=Decimal(1500),
            timestamp=october,
            subscription="sub_acme",
        )
        assert provider.push_usage([record], idempotency_key="push-1").accepted == ("u-1",)

    with ChargebeeSandbox(state_file=state) as second:
        provider = make_chargebee_provider(second)
        customers = {c.id: c.name for c in provider.list_customers().items}
        assert customers == {"acme": "Acme Ltd", globex_id: "Globex"}
        start, end = october.replace(day=1), dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
        total = provider.metered_totals(customer="acme", meter="api_calls", start=start, end=end)
        assert total.quantity == 1500
        # The push retried with its idempotency key after the restart: replayed, not counted twice.
        assert provider.push_usage([record], idempotency_key="push-1").accepted == ("u-1",)
        total = provider.metered_totals(customer="acme", meter="api_calls", start=start, end=end)
        assert total.quantity == 1500
        replay = provider.cb.Customer.create(
            {"company": "Globex"}, {"chargebee-idempotency-key": "create-globex"}
        )
        assert replay.customer.id == globex_id
        assert replay.is_idempotency_replayed
        # The id sequence carries on: a new customer never takes an old one's id.
        fresh = provider.cb.Customer.create({"company": "Initech"})
        assert fresh.customer.id not in customers


def test_a_sandbox_stopped_by_sigterm_saves_what_it_acknowledged(tmp_path: Path) -> None:
    """The process a supervisor runs: SIGTERM right after a write, then a new process on the file."""
    state = tmp_path / "stripe.pickle"

    def run(port: int) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "apps.providers.sandbox.stripe", "--port", str(port)]
        process = subprocess.Popen([*argv, "--state-file", str(state)], stdout=subprocess.PIPE)
        assert process.stdout is not None
        assert b"listening" in process.stdout.readline()
        return process

    port = _free_port()
    process = run(port)
    try:
        headers = {"Authorization": "Bearer sk_test_trueup_sandbox"}
        created = requests.post(
            f"http://127.0.0.1:{port}/v1/customers", data={"name": "Acme"}, headers=headers, timeout=10
        ).json()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        process.kill()
    process = run(port)
    try:
        got = requests.get(
            f"http://127.0.0.1:{port}/v1/customers/{created['id']}", headers=headers, timeout=10
        )
        assert got.status_code == 200
        assert got.json()["name"] == "Acme"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


def test_the_state_file_keeps_new_attributes_and_leaves_out_machinery(tmp_path: Path) -> None:
    import itertools
    import threading

    class State:
        def __init__(self) -> None:
            self.lock = threading.RLock()
            self.clock = time.time
            self.routes = [("GET", lambda: None)]
            self.offset = 0
            self.seq = itertools.count(1)
            self.seen: set[str] = set()

    path = tmp_path / "state.pickle"
    old = State()
    old.offset, old.seen = 3600, {"evt_1"}
    next(old.seq), next(old.seq)
    StateFile(path, {"state": old}, lock=old.lock).save()
    new = State()
    assert StateFile(path, {"state": new}, lock=new.lock).load()
    assert (new.offset, new.seen, next(new.seq)) == (3600, {"evt_1"}, 3)
    assert new.lock is not old.lock and new.routes is not old.routes and new.clock is time.time
    assert not [p for p in os.listdir(tmp_path) if p != "state.pickle"]  # no temp file left behind


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
