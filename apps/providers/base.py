"""One protocol for every billing provider: what Trueup reads from it and what it writes back.

Adapters (``stripe.py``, ``chargebee.py``) implement it with the providers' official SDKs;
everything else in Trueup (sync, webhooks, the outbox, usage push) talks to this protocol
only. Records are plain, provider-neutral and immutable; money is ``Decimal`` in the major
unit of its currency (never the provider's integer minor units); times are aware UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Generic, Literal, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")

InvoiceStatus = Literal["draft", "open", "finalized", "paid", "void"]


class ProviderError(Exception):
    """The provider refused or failed a call. ``retryable`` says whether trying again may help."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
        code: str = "",
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.code = code


class WritesDisabled(ProviderError):
    """The connection is read-only; a tenant admin must enable writes first."""


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; ``next_cursor`` is None on the last page. Cursors are opaque strings."""

    items: tuple[T, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str
    email: str = ""
    currency: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    updated_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class PriceTier:
    up_to: Decimal | None
    unit_amount: Decimal
    flat_amount: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Price:
    """A provider price for one meter (or the recurring base fee when ``meter`` is None)."""

    id: str
    product: str
    currency: str
    meter: str | None
    model: Literal["per_unit", "graduated", "volume", "package", "flat"]
    unit_amount: Decimal | None = None
    tiers: tuple[PriceTier, ...] = ()
    package_size: Decimal | None = None
    interval: str = "month"


@dataclass(frozen=True, slots=True)
class SubscriptionPhase:
    customer: str
    subscription: str
    prices: tuple[str, ...]
    starts_at: dt.datetime
    ends_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    id: str
    meter: str | None  # None: the base fee (or any line not tied to a meter)
    price: str | None
    quantity: Decimal
    amount: Decimal
    period_start: dt.datetime | None = None
    period_end: dt.datetime | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class Invoice:
    id: str
    customer: str
    subscription: str | None
    status: InvoiceStatus
    currency: str
    period_start: dt.datetime
    period_end: dt.datetime
    finalized_at: dt.datetime | None
    lines: tuple[InvoiceLine, ...]
    total: Decimal
    auto_advance: bool | None = None


@dataclass(frozen=True, slots=True)
class CreditNoteLine:
    invoice_line: str | None
    meter: str | None
    amount: Decimal


@dataclass(frozen=True, slots=True)
class CreditNote:
    id: str
    invoice: str
    customer: str
    amount: Decimal
    currency: str
    reason: str
    issued_at: dt.datetime
    lines: tuple[CreditNoteLine, ...] = ()


@dataclass(frozen=True, slots=True)
class MeteredTotal:
    """What the provider's metering counted for a customer and meter over [start, end), in raw units."""

    customer: str
    meter: str
    start: dt.datetime
    end: dt.datetime
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One event to forward: ``identifier`` is the event id, so the provider de-duplicates it too."""

    identifier: str
    customer: str
    meter: str
    quantity: Decimal
    timestamp: dt.datetime
    subscription: str | None = None


@dataclass(frozen=True, slots=True)
class UsagePushResult:
    accepted: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]  # (identifier, reason)


@dataclass(frozen=True, slots=True)
class CreditNoteRequest:
    invoice: str
    lines: tuple[CreditNoteLine, ...]
    reason: str
    memo: str = ""


@dataclass(frozen=True, slots=True)
class InvoiceItemRequest:
    """A catch-up charge: an item on the customer's next invoice (or on a given draft invoice)."""

    customer: str
    amount: Decimal
    currency: str
    description: str
    invoice: str | None = None
    subscription: str | None = None


@runtime_checkable
class BillingProvider(Protocol):
    """Reads are paginated with opaque cursors; every write takes an idempotency key.

    The same key sent twice (after a timeout, a crash, a double click) must give the same
    single effect at the provider: that is how the outbox acts exactly once.
    """

    name: str

    # --- reading -------------------------------------------------------------
    def check(self) -> str: ...  # "test connection": a short description of the account, or ProviderError
    def list_customers(
        self, *, cursor: str | None = None, updated_since: dt.datetime | None = None
    ) -> Page[Customer]: ...
    def list_prices(self, *, cursor: str | None = None) -> Page[Price]: ...
    def list_subscription_phases(self, *, cursor: str | None = None) -> Page[SubscriptionPhase]: ...
    def list_invoices(
        self, *, cursor: str | None = None, created_since: dt.datetime | None = None
    ) -> Page[Invoice]: ...
    def get_invoice(self, invoice_id: str) -> Invoice: ...
    def list_credit_notes(
        self, *, cursor: str | None = None, created_since: dt.datetime | None = None
    ) -> Page[CreditNote]: ...
    def metered_totals(
        self, *, customer: str, meter: str, start: dt.datetime, end: dt.datetime
    ) -> MeteredTotal: ...

    # --- writing (refused with WritesDisabled unless the connection allows writes) ---
    def preview_credit_note(self, request: CreditNoteRequest) -> CreditNote: ...
    def create_credit_note(self, request: CreditNoteRequest, *, idempotency_key: str) -> CreditNote: ...
    def create_invoice_item(self, request: InvoiceItemRequest, *, idempotency_key: str) -> str: ...
    def hold_invoice(self, invoice_id: str, *, idempotency_key: str) -> Invoice: ...
    def release_invoice(self, invoice_id: str, *, idempotency_key: str) -> Invoice: ...
    def push_usage(self, records: Sequence[UsageRecord], *, idempotency_key: str) -> UsagePushResult: ...
