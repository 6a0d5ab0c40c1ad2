"""Writes through the adapter: exactly once per idempotency key, refused on read-only connections."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.providers.base import (
    CreditNoteLine,
    CreditNoteRequest,
    InvoiceItemRequest,
    ProviderError,
    UsageRecord,
    WritesDisabled,
)
from apps.providers.chargebee import ChargebeeProvider
from apps.providers.sandbox.chargebee_server import ChargebeeSandbox
from tests.providers.conftest import CHARGEBEE_OCTOBER, chargebee_invoice, make_chargebee_provider


def _credit(invoice: str, amount: str, meter: str | None = "api_calls") -> CreditNoteRequest:
    return CreditNoteRequest(
        invoice=invoice, lines=(CreditNoteLine(None, meter, Decimal(amount)),), reason="waiver"
    )


def _credit_notes(sandbox: ChargebeeSandbox) -> list[dict]:
    return list(sandbox.state.credit_notes.values())


def test_the_same_idempotency_key_makes_one_credit_note(
    chargebee_seeded: ChargebeeSandbox, chargebee_provider: ChargebeeProvider
) -> None:
    invoice = chargebee_invoice(chargebee_seeded, close=True)
    first = chargebee_provider.create_credit_note(_credit(invoice, "95.00"), idempotency_key="prop-1")
    second = chargebee_provider.create_credit_note(_credit(invoice, "95.00"), idempotency_key="prop-1")
    assert first == second
    assert len(_credit_notes(chargebee_seeded)) == 1
    assert first.amount == Decimal("95.00") and first.invoice == invoice and first.customer == "acme"
    assert first.lines[0].meter == "api_calls"
    note = _credit_notes(chargebee_seeded)[0]
    assert (note["type"], note["reason_code"], note["total"]) == ("adjustment", "waiver", 9500)
    assert (note["round_off_amount"], note["fractional_correction"]) == (0, 0)
    assert [n.id for n in chargebee_provider.list_credit_notes().items] == [first.id]
    assert chargebee_provider.get_invoice(invoice).total == Decimal("217.50")
    assert chargebee_seeded.state.invoices[invoice]["amount_due"] == 21750 - 9500


def test_other_params_with_the_same_key_are_refused(
    chargebee_seeded: ChargebeeSandbox, chargebee_provider: ChargebeeProvider
) -> None:
    invoice = chargebee_invoice(chargebee_seeded, close=True)
    chargebee_provider.create_credit_note(_credit(invoice, "5.00"), idempotency_key="prop-2")
    with pytest.raises(ProviderError) as caught:
        chargebee_provider.create_credit_note(_credit(invoice, "6.00"), idempotency_key="prop-2")
    assert not caught.value.retryable
    assert caught.value.status == 409
    assert len(_credit_notes(chargebee_seeded)) == 1


def test_preview_computes_without_creating(
    chargebee_seeded: ChargebeeSandbox, chargebee_provider: ChargebeeProvider
) -> None:
    invoice = chargebee_invoice(chargebee_seeded, close=True)
    chargebee_provider.create_credit_note(_credit(invoice, "90.00"), idempotency_key="earlier")
    preview = chargebee_provider.preview_credit_note(_credit(invoice, "5.00"))
    assert (preview.amount, preview.lines[0].meter, preview.currency) == (Decimal("5.00"), "api_calls", "USD")
    assert len(_credit_notes(chargebee_seeded)) == 1
    with pytest.raises(ProviderError, match="exceeds"):  # 90 of the line's 95 are credited already
        chargebee_provider.preview_credit_note(_credit(invoice, "5.01"))


def test_over_crediting_is_refused_by_chargebee(
    chargebee_seeded: ChargebeeSandbox, chargebee_provider: ChargebeeProvider
) -> None:
    invoice = chargebee_invoice(chargebee_seeded, close=True)
    chargebee_provider.create_credit_note(_credit(invoice, "95.00"), idempotency_key="all-of-it")
    with pytest.raises(ProviderError) as caught:
        chargebee_provider.create_credit_note(
            _credit(invoice, "200.00", meter=None), idempotency_key="too-much"
        )
    assert caught.value.status == 400
    assert len(_credit_notes(chargebee_seeded)) == 1


def test_an_unbilled_charge_appears_on_the_next_invoice(
    chargebee_seeded: ChargebeeSandbox, chargebee_provider: ChargebeeProvider
) -> None:
    request = InvoiceItemRequest(
        customer="acme", amount=Decimal("12.34"), currency="USD", description="Catch-up"
    )
    charge_id = chargebee_provider.create_invoice_item(request, idempotency_key="catch-up-1")
    assert chargebee_provider.create_invoice_item(request, idempotency_key="catch-up-1") == charge_id
    invoice = chargebee_provider.get_invoice(chargebee_invoice(chargebee_seeded, close=True))
    extra = [line for line in invoice.lines if line.description == "Catch-up"]
    assert [(line.amount, line.meter) for line in extra] == [(Decimal("12.34"), None)]
    assert invoice.total == Decimal("217.50") + Decimal("12.34")


def test_a_charge_can_be_added_to_a_pending_invoice(
    chargebee_seeded: ChargebeeSandbox, chargebee_provider: ChargebeeProvider
) -> None:
    invoice_id = chargebee_invoice(chargebee_seeded, close=False)
    request = InvoiceItemRequest(
        customer="acme", amount=Decimal("3.00"), currency="USD", description="Fix", invoice=invoice_id
    )
    line_id = chargebee_provider.create_invoice_item(request, idempotency_key="fix-1")
    invoice = chargebee_provider.get_invoice(invoice_id)
    assert {line.id: line.amount for line in invoice.lines}[line_id] == Decimal("3.00")


def test_hold_keeps_a_pending_invoice_pending_and_release_closes_it(
    chargebee_seeded: ChargebeeSandbox, chargebee_provider: ChargebeeProvider
) -> None:
    invoice_id = chargebee_invoice(chargebee_seeded, close=False)
    held = chargebee_provider.hold_invoice(invoice_id, idempotency_key="hold-1")
    assert held.status == "draft" and held.finalized_at is None
    assert chargebee_provider.get_invoice(invoice_id).status == "draft"
    # usage arriving while the invoice is held is still billed on it
    chargebee_provider.push_usage(
        [UsageRecord("late", "acme", "seats", Decimal(1), CHARGEBEE_OCTOBER[0])], idempotency_key="late"
    )
    chargebee_seeded.admin("clock", {"now": 1_793_600_000})
    released = chargebee_provider.release_invoice(invoice_id, idempotency_key="release-1")
    assert released.status == "open"
    assert released.finalized_at is not None and int(released.finalized_at.timestamp()) == 1_793_600_000
    assert released.total == Decimal("229.50")
    assert chargebee_provider.release_invoice(invoice_id, idempotency_key="release-2") == released
    with pytest.raises(ProviderError, match="not pending"):
        chargebee_provider.hold_invoice(invoice_id, idempotency_key="hold-2")


def test_a_read_only_connection_refuses_every_write(chargebee_seeded: ChargebeeSandbox) -> None:
    invoice_id = chargebee_invoice(chargebee_seeded, close=False)
    provider = make_chargebee_provider(chargebee_seeded, allow_writes=False)
    before = len(chargebee_seeded.state.requests)
    writes = [
        lambda: provider.preview_credit_note(_credit(invoice_id, "1.00")),
        lambda: provider.create_credit_note(_credit(invoice_id, "1.00"), idempotency_key="k"),
        lambda: provider.create_invoice_item(
            InvoiceItemRequest("acme", Decimal(1), "USD", "x"), idempotency_key="k"
        ),
        lambda: provider.hold_invoice(invoice_id, idempotency_key="k"),
        lambda: provider.release_invoice(invoice_id, idempotency_key="k"),
        lambda: provider.push_usage(
            [UsageRecord("e", "acme", "seats", Decimal(1), CHARGEBEE_OCTOBER[0])], idempotency_key="k"
        ),
    ]
    for write in writes:
        with pytest.raises(WritesDisabled):
            write()
    assert provider.get_invoice(invoice_id).status == "draft"  # reads still work
    methods = [r["method"] for r in chargebee_seeded.state.requests[before:]]
    assert methods == ["GET"]
