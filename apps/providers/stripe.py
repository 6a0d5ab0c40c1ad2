"""Stripe behind Trueup's provider protocol, through the official SDK (API ``2026-10-28.endive``).

Stripe keeps money as integer minor units; the protocol wants ``Decimal`` major units, so every
amount crosses ``_major``/``_minor`` with the currency's exponent (JPY and friends have none).
Stripe's ``starting_after`` object id is the opaque cursor. Writes carry the caller's idempotency
key, which the SDK also reuses on its own retries, so a retried write has one effect at Stripe.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import stripe

from apps.providers.base import (
    CreditNote,
    CreditNoteLine,
    CreditNoteRequest,
    Customer,
    Invoice,
    InvoiceItemRequest,
    InvoiceLine,
    InvoiceStatus,
    MeteredTotal,
    Page,
    Price,
    PriceTier,
    ProviderError,
    SubscriptionPhase,
    UsagePushResult,
    UsageRecord,
    WritesDisabled,
)

API_VERSION = "2026-10-28.endive"
# Stripe's zero- and three-decimal currencies
ZERO_DECIMAL = frozenset(
    {
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    }
)
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
STRIPE_REASONS = frozenset({"duplicate", "fraudulent", "order_change", "product_unsatisfactory"})


def exponent(currency: str) -> int:
    c = currency.lower()
    return 0 if c in ZERO_DECIMAL else 3 if c in THREE_DECIMAL else 2


def _major(minor: Any, currency: str) -> Decimal:
    return Decimal(str(minor)).scaleb(-exponent(currency))


def _minor(major: Decimal, currency: str) -> int:
    scaled = major.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ProviderError(
            f"{major} {currency.upper()} has more decimals than the currency allows", code="amount_precision"
        )
    return int(scaled)


def _ts(value: Any) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(int(value), tz=dt.UTC)


def _when(value: Any) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(value), tz=dt.UTC)


def _epoch(value: dt.datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("aware datetimes only")
    return int(value.timestamp())


def _g(obj: Any, key: str, default: Any = None) -> Any:
    """A field of a ``StripeObject`` (no longer a dict) or a dict, or ``default`` when absent or null."""
    if obj is None or key not in obj:
        return default
    value = obj[key]
    return default if value is None else value


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _header(headers: Any, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def provider_error(exc: stripe.StripeError) -> ProviderError:
    """429, 409, 5xx and connection failures may succeed later; everything else will not."""
    if isinstance(exc, stripe.APIConnectionError):
        return ProviderError(
            f"Stripe unreachable: {exc.user_message or exc}", retryable=True, code="connection"
        )
    status = exc.http_status
    retry_after: float | None = None
    if raw := _header(exc.headers, "Retry-After"):
        try:
            retry_after = float(raw)
        except ValueError:
            retry_after = None
    should_retry = _header(exc.headers, "Stripe-Should-Retry")
    retryable = status is not None and (status in (409, 429) or status >= 500)
    if should_retry is not None:
        retryable = should_retry == "true"
    code = "idempotency_error" if isinstance(exc, stripe.IdempotencyError) else (exc.code or "")
    return ProviderError(
        f"Stripe: {exc.user_message or exc}",
        retryable=retryable,
        retry_after=retry_after,
        status=status,
        code=code,
    )


class StripeProvider:
    name = "stripe"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        allow_writes: bool = False,
        meter_map: dict[str, str] | None = None,
        max_network_retries: int = 0,
        timeout: float = 30.0,
        page_size: int = 100,
    ) -> None:
        """``meter_map`` maps a Stripe meter id or event_name to a Trueup meter key; by default a
        meter's ``event_name`` is its Trueup key."""
        base: Any = {"api": base_url, "meter_events": base_url} if base_url else {}
        self.client = stripe.StripeClient(
            api_key,
            base_addresses=base,
            stripe_version=API_VERSION,
            max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=timeout),
        )
        self.allow_writes = allow_writes
        self.meter_map = dict(meter_map or {})
        self.page_size = page_size
        self._meters: dict[str, tuple[str, str]] | None = None  # stripe id -> (event_name, trueup key)
        self._prices: dict[str, Any] = {}
        self._invoice_line_meters: dict[str, dict[str, str | None]] = {}

    # --- plumbing -------------------------------------------------------------------
    @contextmanager
    def _calls(self) -> Iterator[None]:
        try:
            yield
        except stripe.StripeError as exc:
            raise provider_error(exc) from exc

    def _writes(self) -> None:
        if not self.allow_writes:
            raise WritesDisabled("this Stripe connection is read-only", code="writes_disabled")

    def _list_params(self, cursor: str | None, **extra: Any) -> Any:
        params: Any = {"limit": self.page_size, **extra}
        if cursor:
            params["starting_after"] = cursor
        return params

    @staticmethod
    def _cursor(listing: Any) -> str | None:
        return listing.data[-1].id if listing.has_more and listing.data else None

    def _meter_index(self) -> dict[str, tuple[str, str]]:
        if self._meters is None:
            meters: dict[str, tuple[str, str]] = {}
            params: Any = {"limit": 100}
            with self._calls():
                while True:
                    listing = self.client.v1.billing.meters.list(params=params)
                    for m in listing.data:
                        key = self.meter_map.get(m.id) or self.meter_map.get(m.event_name) or m.event_name
                        meters[m.id] = (m.event_name, key)
                    if not listing.has_more:
                        break
                    params["starting_after"] = listing.data[-1].id
            self._meters = meters
        return self._meters

    def _stripe_meter(self, key: str) -> tuple[str, str]:
        """Trueup meter key → (Stripe meter id, event_name); a miss re-reads the meters once."""
        for attempt in range(2):
            if attempt:
                self._meters = None
            for meter_id, (event_name, trueup_key) in self._meter_index().items():
                if trueup_key == key:
                    return meter_id, event_name
        raise ProviderError(f"no Stripe meter is mapped to the Trueup meter {key!r}", code="unknown_meter")

    def _price(self, price_id: str) -> Any:
        if price_id not in self._prices:
            with self._calls():
                self._prices[price_id] = self.client.v1.prices.retrieve(
                    price_id, params={"expand": ["tiers"]}
                )
        return self._prices[price_id]

    def _price_meter(self, price_id: str | None) -> str | None:
        if not price_id:
            return None
        recurring = _g(self._price(price_id), "recurring")
        meter_id = _g(recurring, "meter") if recurring else None
        if not meter_id:
            return None
        entry = self._meter_index().get(meter_id)
        return entry[1] if entry else self.meter_map.get(meter_id, meter_id)

    # --- mapping ----------------------------------------------------------------------
    def _customer(self, c: Any) -> Customer:
        return Customer(
            id=c.id,
            name=_g(c, "name") or "",
            email=_g(c, "email") or "",
            currency=_g(c, "currency"),
            metadata={str(k): str(v) for k, v in _plain(_g(c, "metadata", {})).items()},
            updated_at=None,  # Stripe keeps no update time on customers
        )

    def _price_record(self, p: Any) -> Price:
        currency = p.currency
        recurring = _g(p, "recurring")
        meter = self._price_meter(p.id) if recurring and _g(recurring, "meter") else None
        self._prices.setdefault(p.id, p)
        interval = recurring.interval if recurring else "one_time"
        if p.billing_scheme == "tiered":
            tiers = tuple(
                PriceTier(
                    up_to=None if _g(t, "up_to") is None else Decimal(t.up_to),
                    unit_amount=_major(_g(t, "unit_amount_decimal") or _g(t, "unit_amount") or 0, currency),
                    flat_amount=_major(_g(t, "flat_amount_decimal") or _g(t, "flat_amount") or 0, currency),
                )
                for t in (_g(p, "tiers") or [])
            )
            if p.tiers_mode == "volume":
                return Price(p.id, p.product, currency, meter, "volume", tiers=tiers, interval=interval)
            return Price(p.id, p.product, currency, meter, "graduated", tiers=tiers, interval=interval)
        unit = _major(_g(p, "unit_amount_decimal") or _g(p, "unit_amount") or 0, currency)
        transform = _g(p, "transform_quantity")
        if transform:
            return Price(
                p.id, p.product, currency, meter, "package", unit_amount=unit,
                package_size=Decimal(transform.divide_by), interval=interval,
            )  # fmt: skip
        return Price(
            p.id, p.product, currency, meter, "per_unit" if meter else "flat", unit, interval=interval
        )

    def _invoice(self, inv: Any) -> Invoice:
        currency = inv.currency
        lines_data = list(inv.lines.data)
        if inv.lines.has_more:
            lines_data = self._all_lines(inv.id)
        lines = []
        for ln in lines_data:
            pricing = _g(ln, "pricing") or {}
            details = _g(pricing, "price_details") if pricing else None
            price_id = _g(details, "price") if details else None
            period = _g(ln, "period") or {}
            lines.append(
                InvoiceLine(
                    id=ln.id,
                    meter=self._price_meter(price_id),
                    price=price_id,
                    quantity=Decimal(str(_g(ln, "quantity") or 0)),
                    amount=_major(ln.amount, currency),
                    period_start=_ts(_g(period, "start")),
                    period_end=_ts(_g(period, "end")),
                    description=_g(ln, "description") or "",
                )
            )
        self._invoice_line_meters[inv.id] = {line.id: line.meter for line in lines}
        parent = _g(inv, "parent")
        sub_details = _g(parent, "subscription_details") if parent else None
        status: InvoiceStatus = {"draft": "draft", "paid": "paid", "void": "void"}.get(inv.status, "open")  # type: ignore[assignment]
        transitions = _g(inv, "status_transitions") or {}
        return Invoice(
            id=inv.id,
            customer=inv.customer,
            subscription=_g(sub_details, "subscription") if sub_details else None,
            status=status,
            currency=currency,
            period_start=_when(inv.period_start),
            period_end=_when(inv.period_end),
            finalized_at=_ts(_g(transitions, "finalized_at")),
            lines=tuple(lines),
            total=_major(inv.total, currency),
            auto_advance=_g(inv, "auto_advance"),
        )

    def _all_lines(self, invoice_id: str) -> list[Any]:
        out: list[Any] = []
        params: Any = {"limit": 100}
        with self._calls():
            while True:
                listing = self.client.v1.invoices.line_items.list(invoice_id, params=params)
                out.extend(listing.data)
                if not listing.has_more:
                    return out
                params["starting_after"] = listing.data[-1].id

    def _line_meter(self, invoice_id: str, line_id: str | None) -> str | None:
        if not line_id:
            return None
        if invoice_id not in self._invoice_line_meters:
            self.get_invoice(invoice_id)
        return self._invoice_line_meters.get(invoice_id, {}).get(line_id)

    def _credit_note(self, cn: Any) -> CreditNote:
        currency = cn.currency
        lines = tuple(
            CreditNoteLine(
                invoice_line=_g(ln, "invoice_line_item"),
                meter=self._line_meter(cn.invoice, _g(ln, "invoice_line_item")),
                amount=_major(ln.amount, currency),
            )
            for ln in cn.lines.data
        )
        metadata = _g(cn, "metadata") or {}
        return CreditNote(
            id=cn.id,
            invoice=cn.invoice,
            customer=cn.customer,
            amount=_major(cn.amount, currency),
            currency=currency,
            reason=_g(metadata, "trueup_reason") or _g(cn, "reason") or "",
            issued_at=_when(_g(cn, "effective_at") or cn.created),
            lines=lines,
        )

    # --- reading ---------------------------------------------------------------------------
    def check(self) -> str:
        with self._calls():
            account = self.client.v1.accounts.retrieve_current()
        profile = _g(account, "business_profile") or {}
        label = (_g(profile, "name") if profile else None) or _g(account, "email") or account.id
        return f"Stripe account {account.id} ({label})"

    def list_customers(
        self, *, cursor: str | None = None, updated_since: dt.datetime | None = None
    ) -> Page[Customer]:
        # Stripe cannot filter by update time: the whole list is a safe superset of "updated since".
        with self._calls():
            listing = self.client.v1.customers.list(params=self._list_params(cursor))
        return Page(tuple(self._customer(c) for c in listing.data), self._cursor(listing))

    def list_prices(self, *, cursor: str | None = None) -> Page[Price]:
        params = self._list_params(cursor, expand=["data.tiers"])
        with self._calls():
            listing = self.client.v1.prices.list(params=params)
        return Page(tuple(self._price_record(p) for p in listing.data), self._cursor(listing))

    def list_subscription_phases(self, *, cursor: str | None = None) -> Page[SubscriptionPhase]:
        with self._calls():
            listing = self.client.v1.subscriptions.list(params=self._list_params(cursor, status="all"))
        phases = []
        for sub in listing.data:
            phases.append(
                SubscriptionPhase(
                    customer=str(sub.customer),
                    subscription=sub.id,
                    prices=tuple(item.price.id for item in sub["items"].data),
                    starts_at=_when(_g(sub, "start_date") or sub.created),
                    ends_at=_ts(_g(sub, "ended_at") or _g(sub, "cancel_at")),
                )
            )
        return Page(tuple(phases), self._cursor(listing))

    def list_invoices(
        self, *, cursor: str | None = None, created_since: dt.datetime | None = None
    ) -> Page[Invoice]:
        extra = {"created": {"gte": _epoch(created_since)}} if created_since else {}
        with self._calls():
            listing = self.client.v1.invoices.list(params=self._list_params(cursor, **extra))
        return Page(tuple(self._invoice(i) for i in listing.data), self._cursor(listing))

    def get_invoice(self, invoice_id: str) -> Invoice:
        with self._calls():
            return self._invoice(self.client.v1.invoices.retrieve(invoice_id))

    def list_credit_notes(
        self, *, cursor: str | None = None, created_since: dt.datetime | None = None
    ) -> Page[CreditNote]:
        extra = {"created": {"gte": _epoch(created_since)}} if created_since else {}
        with self._calls():
            listing = self.client.v1.credit_notes.list(params=self._list_params(cursor, **extra))
        return Page(tuple(self._credit_note(cn) for cn in listing.data), self._cursor(listing))

    def metered_totals(
        self, *, customer: str, meter: str, start: dt.datetime, end: dt.datetime
    ) -> MeteredTotal:
        """Stripe only sums over whole minutes: the bounds widen to the minutes that hold them."""
        meter_id, _ = self._stripe_meter(meter)
        params: Any = {
            "customer": customer,
            "start_time": _epoch(start) // 60 * 60,
            "end_time": math.ceil(_epoch(end) / 60) * 60,
        }
        total = Decimal(0)
        with self._calls():
            while True:
                listing = self.client.v1.billing.meters.event_summaries.list(meter_id, params=params)
                total += sum((Decimal(str(s.aggregated_value)) for s in listing.data), Decimal(0))
                if not listing.has_more:
                    break
                params["starting_after"] = listing.data[-1].id
        return MeteredTotal(customer=customer, meter=meter, start=start, end=end, quantity=total)

    # --- writing ---------------------------------------------------------------------------------
    def _credit_note_params(self, request: CreditNoteRequest) -> Any:
        invoice = self.get_invoice(request.invoice)
        lines = []
        for line in request.lines:
            amount = _minor(line.amount, invoice.currency)
            if line.invoice_line:
                lines.append(
                    {"type": "invoice_line_item", "invoice_line_item": line.invoice_line, "amount": amount}
                )
            else:
                lines.append({
                    "type": "custom_line_item", "quantity": 1, "unit_amount": amount,
                    "description": request.memo or request.reason or "Credit",
                })  # fmt: skip
        params: Any = {"invoice": request.invoice, "lines": lines}
        if request.reason in STRIPE_REASONS:
            params["reason"] = request.reason
        elif request.reason:
            params["metadata"] = {"trueup_reason": request.reason}
        if request.memo:
            params["memo"] = request.memo
        return params

    def preview_credit_note(self, request: CreditNoteRequest) -> CreditNote:
        self._writes()
        params = self._credit_note_params(request)
        with self._calls():
            return self._credit_note(self.client.v1.credit_notes.preview(params=params))

    def create_credit_note(self, request: CreditNoteRequest, *, idempotency_key: str) -> CreditNote:
        self._writes()
        params = self._credit_note_params(request)
        with self._calls():
            cn = self.client.v1.credit_notes.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        return self._credit_note(cn)

    def create_invoice_item(self, request: InvoiceItemRequest, *, idempotency_key: str) -> str:
        self._writes()
        params: Any = {
            "customer": request.customer,
            "amount": _minor(request.amount, request.currency),
            "currency": request.currency.lower(),
            "description": request.description,
        }
        if request.invoice:
            params["invoice"] = request.invoice
        if request.subscription:
            params["subscription"] = request.subscription
        with self._calls():
            item = self.client.v1.invoice_items.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        return str(item.id)

    def hold_invoice(self, invoice_id: str, *, idempotency_key: str) -> Invoice:
        """``auto_advance=false`` on a draft: Stripe will not finalize it on its own.

        Refused for an invoice that is no longer a draft: on an open invoice the same update would
        quietly switch off Stripe's payment collection instead of holding anything.
        """
        self._writes()
        current = self.get_invoice(invoice_id)
        if current.status != "draft":
            raise ProviderError(
                f"invoice {invoice_id} is {current.status}, not a draft: it cannot be held",
                code="invalid_state",
                status=409,
            )
        with self._calls():
            inv = self.client.v1.invoices.update(
                invoice_id, params={"auto_advance": False}, options={"idempotency_key": idempotency_key}
            )
        return self._invoice(inv)

    def release_invoice(self, invoice_id: str, *, idempotency_key: str) -> Invoice:
        """Finalize, and hand the invoice back to Stripe's automatic collection (the hold took it away).

        An invoice finalized meanwhile (at Stripe, or by an earlier attempt under another key) is
        released already: the same effect, so it is answered, not refused. A voided one is refused.
        """
        self._writes()
        try:
            with self._calls():
                inv = self.client.v1.invoices.finalize_invoice(
                    invoice_id, params={"auto_advance": True}, options={"idempotency_key": idempotency_key}
                )
        except ProviderError as err:
            if err.code != "invoice_not_editable":
                raise
            invoice = self.get_invoice(invoice_id)
            if invoice.status in ("draft", "void"):
                raise
            return invoice
        return self._invoice(inv)

    def push_usage(self, records: Sequence[UsageRecord], *, idempotency_key: str) -> UsagePushResult:
        """One meter event per record, ``identifier`` = the event id (Stripe counts it once)."""
        self._writes()
        accepted: list[str] = []
        failed: list[tuple[str, str]] = []
        for record in records:
            try:
                _, event_name = self._stripe_meter(record.meter)
                with self._calls():
                    self.client.v1.billing.meter_events.create(
                        params={
                            "event_name": event_name,
                            "identifier": record.identifier,
                            "timestamp": _epoch(record.timestamp),
                            "payload": {"stripe_customer_id": record.customer, "value": str(record.quantity)},
                        },
                        options={"idempotency_key": f"{idempotency_key}:{record.identifier}"},
                    )
            except ProviderError as exc:
                failed.append((record.identifier, str(exc)))
            else:
                accepted.append(record.identifier)
        return UsagePushResult(accepted=tuple(accepted), failed=tuple(failed))
