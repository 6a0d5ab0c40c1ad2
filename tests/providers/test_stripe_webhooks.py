"""Webhooks from the sandbox are signed like Stripe's; duplicates and reordering are on request."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe

from tests.providers.conftest import stripe_sandbox_call
from tests.providers.test_stripe_writes import stripe_invoice

SECRET = "whsec_test_trueup"


@pytest.fixture
def stripe_webhook_receiver(stripe_sandbox: Any) -> Iterator[list[tuple[bytes, str]]]:
    received: list[tuple[bytes, str]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((body, self.headers["Stripe-Signature"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/stripe"
    stripe_sandbox_call(stripe_sandbox, "POST", "webhooks", {"url": url, "secret": SECRET})
    yield received
    server.shutdown()
    server.server_close()


def test_deliveries_verify_and_can_be_duplicated_and_reordered(
    stripe_sandbox: Any, stripe_seeded: dict[str, Any], stripe_webhook_receiver: list[tuple[bytes, str]]
) -> None:
    invoice_id = stripe_invoice(stripe_sandbox, stripe_seeded, finalize=True)
    report = stripe_sandbox_call(
        stripe_sandbox,
        "POST",
        "webhooks/deliver",
        {"types": ["invoice.created", "invoice.finalized"], "duplicate": 1, "order": "reverse"},
    )["data"]
    assert [d["status"] for d in report] == [200] * 4
    events = [
        stripe.Webhook.construct_event(body, header, SECRET, tolerance=300)
        for body, header in stripe_webhook_receiver
    ]
    assert [e.type for e in events] == ["invoice.finalized"] * 2 + ["invoice.created"] * 2
    assert events[0].id == events[1].id != events[2].id
    assert events[0].data.object.id == invoice_id and events[0].data.object.status == "open"
    # already delivered events are not sent again
    assert (
        stripe_sandbox_call(stripe_sandbox, "POST", "webhooks/deliver", {"types": ["invoice.created"]})[
            "data"
        ]
        == []
    )


def test_a_tampered_body_or_another_secret_fails_verification(
    stripe_sandbox: Any, stripe_seeded: dict[str, Any], stripe_webhook_receiver: list[tuple[bytes, str]]
) -> None:
    stripe_sandbox_call(stripe_sandbox, "POST", "webhooks/deliver", {"types": ["customer.created"]})
    body, header = stripe_webhook_receiver[0]
    assert stripe.Webhook.construct_event(body, header, SECRET, tolerance=300).type == "customer.created"
    tampered = body.replace(b"Acme Ltd", b"Evil Ltd")
    assert tampered != body
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(tampered, header, SECRET, tolerance=300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, header, "whsec_other", tolerance=300)
