"""Faults injected by the sandbox surface as ProviderError; webhooks arrive with Basic credentials."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from apps.providers.base import CreditNoteLine, CreditNoteRequest, ProviderError, UsageRecord
from apps.providers.sandbox.chargebee_server import ChargebeeSandbox
from tests.providers.conftest import CHARGEBEE_OCTOBER, chargebee_invoice, make_chargebee_provider


def test_a_429_is_retryable_with_retry_after(chargebee_seeded: ChargebeeSandbox) -> None:
    provider = make_chargebee_provider(chargebee_seeded)
    chargebee_seeded.admin("faults", {"path": "/customers", "count": 1, "status": 429, "retry_after": 7})
    with pytest.raises(ProviderError) as caught:
        provider.list_customers()
    assert (caught.value.status, caught.value.retryable, caught.value.retry_after) == (429, True, 7.0)
    assert len(provider.list_customers().items) == 2  # the fault was for one request only


def test_a_500_is_retryable_without_sdk_retries(chargebee_seeded: ChargebeeSandbox) -> None:
    provider = make_chargebee_provider(chargebee_seeded)
    chargebee_seeded.admin("faults", {"path": "/invoices", "count": 1, "status": 500})
    with pytest.raises(ProviderError) as caught:
        provider.list_invoices()
    assert (caught.value.status, caught.value.retryable) == (500, True)


def test_sdk_retries_reuse_the_idempotency_key_and_create_one_credit_note(
    chargebee_seeded: ChargebeeSandbox,
) -> None:
    invoice = chargebee_invoice(chargebee_seeded, close=True)
    provider = make_chargebee_provider(chargebee_seeded, retries=2)
    chargebee_seeded.admin("faults", {"path": "/credit_notes", "method": "POST", "count": 1, "status": 500})
    request = CreditNoteRequest(invoice, (CreditNoteLine(None, "seats", Decimal("12.00")),), reason="other")
    note = provider.create_credit_note(request, idempotency_key="outbox-42")
    assert len(chargebee_seeded.state.credit_notes) == 1
    assert note.amount == Decimal("12.00")
    posts = [r for r in chargebee_seeded.state.requests if r["method"] == "POST"]
    assert [(r["path"], r["idempotency_key"]) for r in posts] == [("/credit_notes", "outbox-42")] * 2


def test_a_delay_fault_slows_the_answer(chargebee_seeded: ChargebeeSandbox) -> None:
    provider = make_chargebee_provider(chargebee_seeded)
    chargebee_seeded.admin("faults", {"path": "/item_prices", "count": 1, "delay": 0.3})
    began = time.monotonic()
    assert len(provider.list_prices().items) == 4
    assert time.monotonic() - began >= 0.3


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.headers.get("Authorization", ""), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def chargebee_webhook_receiver() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    received: list[tuple[str, bytes]] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/chargebee", received
    server.shutdown()
    server.server_close()


def test_webhooks_arrive_with_basic_credentials_and_deserialize(
    chargebee_seeded: ChargebeeSandbox, chargebee_webhook_receiver: tuple[str, list[tuple[str, bytes]]]
) -> None:
    url, received = chargebee_webhook_receiver
    provider = make_chargebee_provider(chargebee_seeded)
    chargebee_seeded.admin("webhooks", {"url": url, "username": "hook", "password": "s3cret"})
    invoice = chargebee_seeded.state.invoices[chargebee_invoice(chargebee_seeded, close=True)]
    result = chargebee_seeded.admin(
        "events",
        {
            "events": [
                {"event_type": "invoice_generated", "content": {"invoice": {"id": invoice["id"]}}},
                {"event_type": "credit_note_created", "content": {"credit_note": {"id": "CN-1"}}},
            ],
            "duplicate": True,
            "reorder": True,
        },
    )
    assert [d["status"] for d in result["deliveries"]] == [200] * 4
    expected = "Basic " + base64.b64encode(b"hook:s3cret").decode()
    assert {auth for auth, _ in received} == {expected}
    events = [provider.cb.Event.deserialize(body.decode()) for _, body in received]
    assert [e.event_type for e in events] == ["credit_note_created"] * 2 + ["invoice_generated"] * 2
    assert events[0].id == events[1].id  # a duplicate delivery carries the same event id
    assert events[-1].content["invoice"]["id"] == invoice["id"]
    assert events[-1].api_version == "v2"


def test_a_timed_out_write_applied_late_is_not_repeated_by_the_retry(
    chargebee_seeded: ChargebeeSandbox,
) -> None:
    invoice = chargebee_invoice(chargebee_seeded, close=True)
    impatient = make_chargebee_provider(chargebee_seeded, timeout=0.2)
    chargebee_seeded.admin("faults", {"path": "/credit_notes", "method": "POST", "count": 1, "delay": 0.5})
    request = CreditNoteRequest(invoice, (CreditNoteLine(None, "seats", Decimal("12.00")),), reason="other")
    with pytest.raises(ProviderError) as caught:
        impatient.create_credit_note(request, idempotency_key="outbox-43")
    assert caught.value.retryable
    time.sleep(0.5)  # the sandbox finishes the first attempt after the client gave up
    note = make_chargebee_provider(chargebee_seeded).create_credit_note(request, idempotency_key="outbox-43")
    assert list(chargebee_seeded.state.credit_notes) == [note.id]


def test_a_rate_limit_mid_batch_fails_the_rest_of_the_batch(chargebee_seeded: ChargebeeSandbox) -> None:
    provider = make_chargebee_provider(chargebee_seeded)
    start = CHARGEBEE_OCTOBER[0]
    records = [UsageRecord(f"ev-{i}", "acme", "seats", Decimal(1), start) for i in range(4)]
    provider.push_usage(records[:1], idempotency_key="b0")
    chargebee_seeded.admin(
        "faults", {"path": "/subscriptions/sub_acme/usages", "skip": 1, "status": 429, "retry_after": 3}
    )
    result = provider.push_usage(records, idempotency_key="b1")
    assert result.accepted == ("ev-0",)  # already at Chargebee: the duplicate id counts as accepted
    assert [identifier for identifier, _ in result.failed] == ["ev-1", "ev-2", "ev-3"]
    retried = provider.push_usage(records, idempotency_key="b2")
    assert retried.accepted == ("ev-0", "ev-1", "ev-2", "ev-3")
    total = provider.metered_totals(customer="acme", meter="seats", start=start, end=CHARGEBEE_OCTOBER[1])
    assert total.quantity == Decimal(3 + 4)


def test_state_changes_are_recorded_as_events_and_delivered_once(
    chargebee_seeded: ChargebeeSandbox, chargebee_webhook_receiver: tuple[str, list[tuple[str, bytes]]]
) -> None:
    url, received = chargebee_webhook_receiver
    provider = make_chargebee_provider(chargebee_seeded)
    chargebee_seeded.admin("webhooks", {"url": url, "username": "hook", "password": "s3cret"})
    invoice = chargebee_invoice(chargebee_seeded, close=True)
    request = CreditNoteRequest(invoice, (CreditNoteLine(None, None, Decimal("1.00")),), reason="other")
    provider.create_credit_note(request, idempotency_key="cn")
    chargebee_seeded.admin("events", {"pending": True})
    chargebee_seeded.admin("events", {"pending": True})  # nothing new: nothing delivered twice
    types = [provider.cb.Event.deserialize(body.decode()).event_type for _, body in received]
    assert types == [
        "customer_created",
        "customer_created",
        "subscription_created",
        "pending_invoice_created",
        "invoice_generated",
        "credit_note_created",
    ]
    listed = provider.cb.Event.list({"limit": 100})
    assert [entry.event.event_type for entry in listed.list] == types
