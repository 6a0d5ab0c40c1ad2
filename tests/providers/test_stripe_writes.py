"""Writes to Stripe: exactly once per idempotency key, refused on read-only connections."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from apps.providers.base import (
    CreditNoteLine,
    CreditNoteRequest,
    InvoiceItemRequest,
    ProviderError,
    UsageRecord,
    WritesDisabled,
)
from tests.providers.conftest import make_stripe_provider, stripe_sandbox_call


def stripe_invoice(server: Any, seeded: dict[str, Any], *, finalize: bool, auto_advance: bool = False) -> str:
    params = {"customer": seeded["acme"], "subscription": seeded["sub"], "auto_advance": auto_advance}
    objects: list[dict[str, Any]] = [{"ref": "inv", "path": "/v1/invoices", "params": params}]
    if finalize:
        objects.append({"path": "/v1/invoices/$inv/finalize"})
    return str(stripe_sandbox_call(server, "POST", "seed", {"objects": objects})["ids"]["inv"])


def stripe_posts(server: Any, path: str) -> list[dict[str, Any]]:
    log = stripe_sandbox_call(server, "GET", "requests")["data"]
    return [r for r in log if r["method"] == "POST" and r["path"] == path]


def api_line_credit(provider: Any, invoice_id: str, amount: str) -> CreditNoteRequest:
    invoice = provider.get_invoice(invoice_id)
    line = next(ln for ln in invoice.lines if ln.meter == "api_calls")
    return CreditNoteRequest(
        invoice=invoice_id,
        lines=(CreditNoteLine(invoice_line=line.id, meter="api_calls", amount=Decimal(amount)),),
        reason="order_change",
        memo="API calls were over-billed",
    )


def test_the_same_key_twice_makes_one_credit_note(
    stripe_sandbox: Any, stripe_provider: Any, stripe_seeded: dict[str, Any]
) -> None:
    invoice_id = stripe_invoice(stripe_sandbox, stripe_seeded, finalize=True)
    request = api_line_credit(stripe_provider, invoice_id, "10.00")
    first = stripe_provider.create_credit_note(request, idempotency_key="proposal-41")
    second = stripe_provider.create_credit_note(request, idempotency_key="proposal-41")
    assert first == second
    assert (first.amount, first.currency, first.reason, first.invoice) == (
        Decimal("10.00"),
        "usd",
        "order_change",
        invoice_id,
    )
    assert [(ln.meter, ln.amount) for ln in first.lines] == [("api_calls", Decimal("10.00"))]
    assert [cn.id for cn in stripe_provider.list_credit_notes().items] == [first.id]
    assert [r["idempotency_key"] for r in stripe_posts(stripe_sandbox, "/v1/credit_notes")] == [
        "proposal-41"
    ] * 2


def test_the_same_key_with_other_params_is_refused(
    stripe_sandbox: Any, stripe_provider: Any, stripe_seeded: dict[str, Any]
) -> None:
    invoice_id = stripe_invoice(stripe_sandbox, stripe_seeded, finalize=True)
    stripe_provider.create_credit_note(
        api_line_credit(stripe_provider, invoice_id, "10.00"), idempotency_key="k"
    )
    with pytest.raises(ProviderError) as caught:
        stripe_provider.create_credit_note(
            api_line_credit(stripe_provider, invoice_id, "11.00"), idempotency_key="k"
        )
    assert (caught.value.code, caught.value.status, caught.value.retryable) == (
        "idempotency_error",
        400,
        False,
    )
    assert len(stripe_provider.list_credit_notes().items) == 1


def test_crediting_more_than_the_line_is_refused(
    stripe_sandbox: Any, stripe_provider: Any, stripe_seeded: dict[str, Any]
) -> None:
    invoice_id = stripe_invoice(stripe_sandbox, stripe_seeded, finalize=True)
    with pytest.raises(ProviderError) as caught:
        stripe_provider.create_credit_note(
            api_line_credit(stripe_provider, invoice_id, "100.01"), idempotency_key="x"
        )
    assert (caught.value.status, caught.value.retryable) == (400, False)


def test_a_custom_credit_with_a_trueup_reason(
    stripe_sandbox: Any, stripe_provider: Any, stripe_seeded: dict[str, Any]
) -> None:
    invoice_id = stripe_invoice(stripe_sandbox, stripe_seeded, finalize=True)
    request = CreditNoteRequest(
        invoice=invoice_id, lines=(CreditNoteLine(None, None, Decimal("2.50")),), reason="late_usage"
    )
    note = stripe_provider.create_credit_note(request, idempotency_key="custom-1")
    assert (note.amount, note.reason, note.lines[0].invoice_line) == (Decimal("2.50"), "late_usage", None)


def test_previewing_a_credit_note_creates_nothing(
    stripe_sandbox: Any, stripe_provider: Any, stripe_seeded: dict[str, Any]
) -> None:
    invoice_id = stripe_invoice(stripe_sandbox, stripe_seeded, finalize=True)
    preview = stripe_provider.preview_credit_note(api_line_credit(stripe_provider, invoice_id, "12.34"))
    assert preview.amount == Decimal("12.34")
    assert stripe_provider.list_credit_notes().items == ()
    assert stripe_posts(stripe_sandbox, "/v1/credit_notes") == []


def test_an_invoice_item_lands_on_the_next_invoice_or_on_a_given_draft(
    stripe_sandbox: Any, stripe_provider: Any, stripe_seeded: dict[str, Any]
) -> None:
    catch_up = InvoiceItemRequest(
        customer=stripe_seeded["acme"],
        amount=Decimal("12.34"),
        currency="USD",
        description="Catch-up: API calls",
    )
    item_id = stripe_provider.create_invoice_item(catch_up, idempotency_key="catch-up-1")
    assert stripe_provider.create_invoice_item(catch_up, idempotency_key="catch-up-1") == item_id
    invoice = stripe_provider.get_invoice(stripe_invoice(stripe_sandbox, stripe_seeded, finalize=False))
    extra = [ln for ln in invoice.lines if ln.description == "Catch-up: API calls"]
    assert [(ln.amount, ln.meter) for ln in extra] == [(Decimal("12.34"), None)]
    assert invoice.total == Decimal("222.50") + Decimal("12.34")

    fix = InvoiceItemRequest(
        customer=stripe_seeded["acme"],
        amount=Decimal("1.00"),
        currency="usd",
        description="Fix",
        invoice=invoice.id,
    )
    stripe_provider.create_invoice_item(fix, idempotency_key="fix-1")
    assert stripe_provider.get_invoice(invoice.id).total == invoice.total + Decimal("1.00")


def test_hold_then_release_a_draft(
    stripe_sandbox: Any, stripe_provider: Any, stripe_seeded: dict[str, Any]
) -> None:
    invoice_id = stripe_invoice(stripe_sandbox, stripe_seeded, finalize=False, auto_advance=True)
    assert stripe_provider.get_invoice(invoice_id).auto_advance is True
    held = stripe_provider.hold_invoice(invoice_id, idempotency_key="hold-1")
    assert (held.status, held.auto_advance, held.finalized_at) == ("draft", False, None)
    released = stripe_provider.release_invoice(invoice_id, idempotency_key="release-1")
    assert released.status == "open" and released.finalized_at is not None
    assert stripe_provider.release_invoice(invoice_id, idempotency_key="release-1") == released  # a replay


def test_a_read_only_connection_writes_nothing(stripe_sandbox: Any, stripe_seeded: dict[str, Any]) -> None:
    invoice_id = stripe_invoice(stripe_sandbox, stripe_seeded, finalize=True)
    writer = make_stripe_provider(stripe_sandbox)
    request = api_line_credit(writer, invoice_id, "1.00")
    reader = make_stripe_provider(stripe_sandbox, allow_writes=False)
    before = stripe_sandbox_call(stripe_sandbox, "GET", "requests")["data"]
    item = InvoiceItemRequest(
        customer=stripe_seeded["acme"], amount=Decimal(1), currency="usd", description="x"
    )
    usage = UsageRecord(
        "e1", stripe_seeded["acme"], "api_calls", Decimal(1), writer.get_invoice(invoice_id).period_start
    )
    writes = [
        lambda: reader.preview_credit_note(request),
        lambda: reader.create_credit_note(request, idempotency_key="k"),
        lambda: reader.create_invoice_item(item, idempotency_key="k"),
        lambda: reader.hold_invoice(invoice_id, idempotency_key="k"),
        lambda: reader.release_invoice(invoice_id, idempotency_key="k"),
        lambda: reader.push_usage([usage], idempotency_key="k"),
    ]
    for write in writes:
        with pytest.raises(WritesDisabled):
            write()
    after = stripe_sandbox_call(stripe_sandbox, "GET", "requests")["data"]
    assert [r for r in after[len(before) :] if r["method"] == "POST"] == []
