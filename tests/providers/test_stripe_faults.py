"""Faults injected by the sandbox: rate limits, 500s and timeouts never make two credit notes."""

from __future__ import annotations

import time
from typing import Any

import pytest

from apps.providers.base import ProviderError
from tests.providers.conftest import make_stripe_provider, stripe_sandbox_call
from tests.providers.test_stripe_writes import api_line_credit, stripe_invoice, stripe_posts


def _fault(server: Any, **spec: Any) -> None:
    stripe_sandbox_call(server, "POST", "faults", {"path": "^/v1/credit_notes$", "method": "POST", **spec})


@pytest.fixture
def stripe_finalized_invoice(stripe_sandbox: Any, stripe_seeded: dict[str, Any]) -> str:
    return stripe_invoice(stripe_sandbox, stripe_seeded, finalize=True)


def test_a_429_without_sdk_retries_is_a_retryable_error_with_retry_after(
    stripe_sandbox: Any, stripe_finalized_invoice: str
) -> None:
    provider = make_stripe_provider(stripe_sandbox, max_network_retries=0)
    request = api_line_credit(provider, stripe_finalized_invoice, "5.00")
    _fault(stripe_sandbox, status=429, retry_after=7)
    with pytest.raises(ProviderError) as caught:
        provider.create_credit_note(request, idempotency_key="rl-1")
    assert (caught.value.status, caught.value.retryable, caught.value.retry_after) == (429, True, 7.0)
    assert provider.list_credit_notes().items == ()
    # the outbox retries later with the same key: one credit note
    note = provider.create_credit_note(request, idempotency_key="rl-1")
    assert [cn.id for cn in provider.list_credit_notes().items] == [note.id]


def test_a_429_the_api_asks_to_retry_is_retried_by_the_sdk(
    stripe_sandbox: Any, stripe_finalized_invoice: str
) -> None:
    provider = make_stripe_provider(stripe_sandbox, max_network_retries=2)
    request = api_line_credit(provider, stripe_finalized_invoice, "5.00")
    _fault(stripe_sandbox, status=429, retry_after=0, should_retry=True)
    note = provider.create_credit_note(request, idempotency_key="rl-2")
    assert [cn.id for cn in provider.list_credit_notes().items] == [note.id]
    posts = stripe_posts(stripe_sandbox, "/v1/credit_notes")
    assert [(p["status"], p["idempotency_key"]) for p in posts] == [(429, "rl-2"), (200, "rl-2")]


def test_a_500_then_success_with_sdk_retries_makes_one_credit_note(
    stripe_sandbox: Any, stripe_finalized_invoice: str
) -> None:
    provider = make_stripe_provider(stripe_sandbox, max_network_retries=2)
    request = api_line_credit(provider, stripe_finalized_invoice, "5.00")
    _fault(stripe_sandbox, status=500)
    note = provider.create_credit_note(request, idempotency_key="flaky-1")
    assert [cn.id for cn in provider.list_credit_notes().items] == [note.id]
    posts = stripe_posts(stripe_sandbox, "/v1/credit_notes")
    assert [(p["status"], p["idempotency_key"]) for p in posts] == [(500, "flaky-1"), (200, "flaky-1")]


def test_a_500_without_retries_is_retryable(stripe_sandbox: Any, stripe_finalized_invoice: str) -> None:
    provider = make_stripe_provider(stripe_sandbox)
    request = api_line_credit(provider, stripe_finalized_invoice, "5.00")
    _fault(stripe_sandbox, status=500)
    with pytest.raises(ProviderError) as caught:
        provider.create_credit_note(request, idempotency_key="flaky-2")
    assert (caught.value.status, caught.value.retryable) == (500, True)


def test_a_timeout_after_stripe_acted_is_answered_by_the_replay(
    stripe_sandbox: Any, stripe_finalized_invoice: str
) -> None:
    provider = make_stripe_provider(stripe_sandbox, timeout=0.3)
    request = api_line_credit(provider, stripe_finalized_invoice, "5.00")
    _fault(stripe_sandbox, delay=0.8)
    with pytest.raises(ProviderError) as caught:
        provider.create_credit_note(request, idempotency_key="slow-1")
    assert (caught.value.code, caught.value.retryable, caught.value.status) == ("connection", True, None)
    time.sleep(0.8)  # the sandbox finishes the request the client gave up on
    note = provider.create_credit_note(request, idempotency_key="slow-1")
    assert [cn.id for cn in provider.list_credit_notes().items] == [note.id]
