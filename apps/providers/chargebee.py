"""Chargebee behind Trueup's ``BillingProvider`` protocol, with the official ``chargebee`` SDK.

Mapping choices (Chargebee → protocol):

- Money: Chargebee's integer minor units → ``Decimal`` major units (exponent per currency).
- Invoice status: ``pending`` → ``draft`` (metered invoice still collecting usage); ``posted`` →
  ``finalized`` (closed, nothing due yet); ``payment_due`` / ``not_paid`` → ``open``; ``paid`` →
  ``paid``; ``voided`` → ``void``. ``finalized_at`` is ``generated_at`` (when a pending invoice was
  closed), else the invoice ``date`` for invoices that never were pending; None while pending.
  Invoices carry no period, so the period is the span of their line items' ``date_from``/``date_to``.
- Lines map to meters through their ``entity_id`` (the item price) and the meter map; flat fees,
  ad-hoc charges and unmapped item prices have ``meter=None``.
- Item price models: per_unit, tiered → graduated, volume, stairstep → volume whose tiers are flat
  amounts, package, flat_fee → flat.
- ``push_usage`` sends one usage per record with ``id`` derived from the event id: Chargebee
  refuses a second usage with the same id (``duplicate_entry``), which counts as accepted. We do
  not send ``dedupe_option``: it de-duplicates on ``usage_date`` and would merge two distinct
  events that happened in the same second.
- ``preview_credit_note`` reads the invoice and its existing credit notes and computes, without
  writing, the credit note that ``create_credit_note`` would make (same validation as the API:
  each line at most what is left to credit on its invoice line). It is refused on read-only
  connections like every method of the protocol's writing section.
- ``hold_invoice`` keeps a pending invoice pending (no call needed); ``release_invoice`` closes it.
- Retries: none by default (the outbox retries); ``retries=N`` turns on the SDK's retry, which
  reuses our idempotency key. The SDK retries 429 without limit, so leave it off when rate limits
  should surface.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import functools
import hashlib
import re
import ssl
import types
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
from chargebee import APIError, Chargebee
from chargebee import http_request as chargebee_http
from chargebee.retry_config import RetryConfig

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


class _SdkHttpx(types.ModuleType):
    """The ``httpx`` the chargebee SDK sees: the same module, but its clients share one TLS context.

    The SDK opens a new ``httpx.Client`` for every request, and each one builds a fresh default
    SSL context (loading the CA bundle: about 70 ms of CPU per call, over https or http alike).
    A shared context is the same trust store, built once.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(httpx, name)


@functools.cache
def _shared_ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


class _SharedContextClient(httpx.Client):
    def __init__(self, *, verify: Any = True, **kwargs: Any) -> None:
        super().__init__(verify=_shared_ssl_context() if verify is True else verify, **kwargs)


_sdk_httpx = _SdkHttpx("httpx")
setattr(_sdk_httpx, "Client", _SharedContextClient)  # noqa: B010 - a module attribute mypy can't see
chargebee_http.httpx = _sdk_httpx

JSON = dict[str, Any]
IDEMPOTENCY_HEADER = "chargebee-idempotency-key"
RETRYABLE_STATUSES = {429, 500, 502, 503, 504}
ZERO_DECIMAL = {"JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF", "PYG", "RWF"}
INVOICE_STATUS: dict[str, InvoiceStatus] = {
    "pending": "draft",
    "posted": "finalized",
    "payment_due": "open",
    "not_paid": "open",
    "paid": "paid",
    "voided": "void",
}
PRICE_MODELS = {
    "per_unit": "per_unit",
    "tiered": "graduated",
    "volume": "volume",
    "stairstep": "volume",
    "package": "package",
    "flat_fee": "flat",
}
REASON_CODES = {
    "write_off",
    "subscription_change",
    "subscription_cancellation",
    "subscription_pause",
    "chargeback",
    "product_unsatisfactory",
    "service_unsatisfactory",
    "order_change",
    "order_cancellation",
    "waiver",
    "other",
    "fraudulent",
}


def _exponent(currency: str) -> int:
    return 0 if currency.upper() in ZERO_DECIMAL else 2


def to_major(minor: Any, currency: str) -> Decimal:
    return Decimal(int(minor or 0)).scaleb(-_exponent(currency))


def to_minor(amount: Decimal, currency: str) -> int:
    return int(amount.scaleb(_exponent(currency)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _when(ts: Any) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(int(ts), tz=dt.UTC) if ts not in (None, "") else None


def _ts(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("aware datetimes only")
    return int(moment.timestamp())


def _retry_after(value: str | None) -> float | None:
    """Retry-After is seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return max(
            0.0, (email.utils.parsedate_to_datetime(value) - dt.datetime.now(tz=dt.UTC)).total_seconds()
        )
    except (TypeError, ValueError):
        return None


def usage_id(identifier: str) -> str:
    """Chargebee ids are at most 50 characters: long event ids are hashed, the same way every time."""
    return (
        identifier if len(identifier) <= 50 else "tu_" + hashlib.sha256(identifier.encode()).hexdigest()[:40]
    )


class ChargebeeProvider:
    name = "chargebee"

    def __init__(
        self,
        *,
        api_key: str,
        site: str,
        base_url: str | None = None,
        allow_writes: bool = False,
        meters: Mapping[str, str] | None = None,
        page_size: int = 100,
        retries: int = 0,
        timeout: float = 30.0,
    ) -> None:
        """``meters`` maps Chargebee item price ids to Trueup meter keys; ``base_url`` points at a sandbox."""
        self.site = site
        self.allow_writes = allow_writes
        self.meters = dict(meters or {})
        self.item_prices = {meter: item_price for item_price, meter in self.meters.items()}
        self.page_size = page_size
        self.cb = Chargebee(api_key=api_key, site=site, connection_time_out=timeout, read_time_out=timeout)
        if base_url is not None:
            # The SDK forces https while this class attribute is True (see provider-sdks.md).
            Chargebee.verify_ca_certs = False
            self.cb.env.protocol = "http" if base_url.startswith("http://") else "https"
            self.cb.env.api_endpoint = base_url.rstrip("/") + "/api/v2"
        self.cb.update_retry_config(RetryConfig(enabled=retries > 0, max_retries=retries, delay_ms=100))

    # --- plumbing ------------------------------------------------------------------------------
    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except APIError as err:
            status = int(err.http_code or 0)
            headers = err.http_headers or {}
            raise ProviderError(
                str(err) or err.api_error_code or "Chargebee error",
                retryable=status in RETRYABLE_STATUSES,
                retry_after=_retry_after(headers.get("retry-after") if hasattr(headers, "get") else None),
                status=status,
                code=err.api_error_code or "",
            ) from err
        except httpx.HTTPError as err:
            raise ProviderError(f"Chargebee unreachable: {err}", retryable=True, code="network") from err
        except Exception as err:
            # The SDK raises a bare Exception naming the status in its text when the answer is not JSON
            # (a proxy's 502 page, maintenance); anything else is a bug and must not be retried forever.
            found = re.search(r"http_status_code:\s*(\d{3})", str(err))
            if found is None:
                raise
            status = int(found.group(1))
            raise ProviderError(
                f"Chargebee error: {err}",
                retryable=status in RETRYABLE_STATUSES,
                status=status,
                code="unexpected_response",
            ) from err

    def _list(
        self, fn: Callable[..., Any], key: str, cursor: str | None, **filters: Any
    ) -> tuple[list[JSON], str | None]:
        params: JSON = {"limit": self.page_size, **filters}
        if cursor:
            params["offset"] = cursor
        response = self._call(fn, params)
        return [getattr(entry, key).raw_data for entry in response.list], response.next_offset or None

    def _writes(self) -> None:
        if not self.allow_writes:
            raise WritesDisabled("This Chargebee connection is read-only", code="writes_disabled")

    @staticmethod
    def _headers(idempotency_key: str) -> dict[str, str]:
        return {IDEMPOTENCY_HEADER: idempotency_key}

    # --- mapping ------------------------------------------------------------------------------
    def _customer(self, c: JSON) -> Customer:
        name = c.get("company") or " ".join(filter(None, [c.get("first_name"), c.get("last_name")]))
        meta: dict[str, Any] = c["meta_data"] if isinstance(c.get("meta_data"), dict) else {}
        return Customer(
            id=c["id"],
            name=name or c["id"],
            email=c.get("email") or "",
            currency=c.get("preferred_currency_code"),
            metadata={str(k): str(v) for k, v in meta.items()},
            updated_at=_when(c.get("updated_at")),
        )

    def _unit(self, obj: JSON, currency: str) -> Decimal:
        if obj.get("price_in_decimal") not in (None, ""):
            return Decimal(str(obj["price_in_decimal"]))
        return to_major(obj.get("price"), currency)

    def _price(self, ip: JSON) -> Price:
        currency, model = ip.get("currency_code", "USD"), ip.get("pricing_model", "per_unit")
        tiers = []
        for t in ip.get("tiers") or []:
            end = t.get("ending_unit_in_decimal") or t.get("ending_unit")
            unit = self._unit(t, currency)
            flat = model == "stairstep"
            tiers.append(
                PriceTier(
                    up_to=Decimal(str(end)) if end not in (None, "") else None,
                    unit_amount=Decimal(0) if flat else unit,
                    flat_amount=unit if flat else Decimal(0),
                )
            )
        return Price(
            id=ip["id"],
            product=ip.get("item_id", ""),
            currency=currency,
            meter=self.meters.get(ip["id"]),
            model=PRICE_MODELS.get(model, "per_unit"),  # type: ignore[arg-type]
            unit_amount=None if tiers else self._unit(ip, currency),
            tiers=tuple(tiers),
            package_size=Decimal(ip["package_size"])
            if model == "package" and ip.get("package_size")
            else None,
            interval=ip.get("period_unit") or "month",
        )

    def _invoice(self, inv: JSON) -> Invoice:
        currency = inv.get("currency_code", "USD")
        lines = []
        for li in inv.get("line_items") or []:
            quantity = li.get("quantity_in_decimal") or li.get("quantity") or 0
            entity = li.get("entity_id") if li.get("entity_type") != "adhoc" else None
            lines.append(
                InvoiceLine(
                    id=li["id"],
                    meter=self.meters.get(entity or ""),
                    price=entity,
                    quantity=Decimal(str(quantity)),
                    amount=to_major(li.get("amount"), currency),
                    period_start=_when(li.get("date_from")),
                    period_end=_when(li.get("date_to")),
                    description=li.get("description") or "",
                )
            )
        date = _when(inv.get("date")) or dt.datetime.fromtimestamp(0, tz=dt.UTC)
        starts = [line.period_start for line in lines if line.period_start]
        ends = [line.period_end for line in lines if line.period_end]
        status = INVOICE_STATUS.get(inv.get("status", ""), "open")
        finalized = None if status == "draft" else _when(inv.get("generated_at")) or date
        return Invoice(
            id=inv["id"],
            customer=inv.get("customer_id", ""),
            subscription=inv.get("subscription_id"),
            status=status,
            currency=currency,
            period_start=min(starts, default=date),
            period_end=max(ends, default=date),
            finalized_at=finalized,
            lines=tuple(lines),
            total=to_major(inv.get("total"), currency),
        )

    def _credit_note(self, cn: JSON) -> CreditNote:
        currency = cn.get("currency_code", "USD")
        return CreditNote(
            id=cn["id"],
            invoice=cn.get("reference_invoice_id", ""),
            customer=cn.get("customer_id", ""),
            amount=to_major(cn.get("total"), currency),
            currency=currency,
            reason=cn.get("create_reason_code") or cn.get("reason_code") or "",
            issued_at=_when(cn.get("date")) or dt.datetime.fromtimestamp(0, tz=dt.UTC),
            lines=tuple(
                CreditNoteLine(
                    invoice_line=li.get("reference_line_item_id"),
                    meter=self.meters.get(li.get("entity_id") or ""),
                    amount=to_major(li.get("amount"), currency),
                )
                for li in cn.get("line_items") or []
            ),
        )

    # --- reading ------------------------------------------------------------------------------
    def check(self) -> str:
        self._call(self.cb.Customer.list, {"limit": 1})
        return f"Chargebee site {self.site}"

    def list_customers(
        self, *, cursor: str | None = None, updated_since: dt.datetime | None = None
    ) -> Page[Customer]:
        filters = {"updated_at": {"after": _ts(updated_since)}} if updated_since else {}
        rows, nxt = self._list(self.cb.Customer.list, "customer", cursor, **filters)
        return Page(tuple(self._customer(r) for r in rows), nxt)

    def list_prices(self, *, cursor: str | None = None) -> Page[Price]:
        rows, nxt = self._list(self.cb.ItemPrice.list, "item_price", cursor)
        return Page(tuple(self._price(r) for r in rows), nxt)

    def list_subscription_phases(self, *, cursor: str | None = None) -> Page[SubscriptionPhase]:
        rows, nxt = self._list(self.cb.Subscription.list, "subscription", cursor)
        phases = tuple(
            SubscriptionPhase(
                customer=s["customer_id"],
                subscription=s["id"],
                prices=tuple(i["item_price_id"] for i in s.get("subscription_items") or []),
                starts_at=_when(s.get("started_at") or s.get("start_date") or s.get("created_at"))
                or dt.datetime.fromtimestamp(0, tz=dt.UTC),
                ends_at=_when(s.get("cancelled_at")),
            )
            for s in rows
        )
        return Page(phases, nxt)

    def list_invoices(
        self, *, cursor: str | None = None, created_since: dt.datetime | None = None
    ) -> Page[Invoice]:
        filters = {"date": {"after": _ts(created_since)}} if created_since else {}
        rows, nxt = self._list(self.cb.Invoice.list, "invoice", cursor, **filters)
        return Page(tuple(self._invoice(r) for r in rows), nxt)

    def get_invoice(self, invoice_id: str) -> Invoice:
        return self._invoice(self._call(self.cb.Invoice.retrieve, invoice_id).invoice.raw_data)

    def list_credit_notes(
        self, *, cursor: str | None = None, created_since: dt.datetime | None = None
    ) -> Page[CreditNote]:
        filters = {"date": {"after": _ts(created_since)}} if created_since else {}
        rows, nxt = self._list(self.cb.CreditNote.list, "credit_note", cursor, **filters)
        return Page(tuple(self._credit_note(r) for r in rows), nxt)

    def _all(self, fn: Callable[..., Any], key: str, **filters: Any) -> list[JSON]:
        rows, cursor = self._list(fn, key, None, **filters)
        while cursor:
            more, cursor = self._list(fn, key, cursor, **filters)
            rows += more
        return rows

    def _subscriptions_with(self, customer: str, item_price: str) -> list[str]:
        subs = self._all(self.cb.Subscription.list, "subscription", customer_id={"is": customer})
        return [
            s["id"]
            for s in subs
            if item_price in {i["item_price_id"] for i in s.get("subscription_items") or []}
        ]

    def _item_price_for(self, meter: str) -> str:
        if meter not in self.item_prices:
            raise ProviderError(
                f"no Chargebee item price is mapped to meter {meter!r}", code="unmapped_meter"
            )
        return self.item_prices[meter]

    def metered_totals(
        self, *, customer: str, meter: str, start: dt.datetime, end: dt.datetime
    ) -> MeteredTotal:
        item_price = self._item_price_for(meter)
        quantity = Decimal(0)
        for sub in self._subscriptions_with(customer, item_price):
            for usage in self._all(
                self.cb.Usage.list,
                "usage",
                subscription_id={"is": sub},
                item_price_id={"is": item_price},
                usage_date={"between": [_ts(start), _ts(end) - 1]},  # whole seconds: [start, end)
            ):
                quantity += Decimal(str(usage["quantity"]))
        return MeteredTotal(customer=customer, meter=meter, start=start, end=end, quantity=quantity)

    # --- writing ------------------------------------------------------------------------------
    def _credit_note_plan(
        self, request: CreditNoteRequest, *, preview: bool
    ) -> tuple[JSON, JSON, list[JSON]]:
        """What we would send for ``request``, checked against the invoice: (params, invoice, lines).

        Only a preview subtracts earlier credit notes: a retried create must send the same parameters
        as its first attempt (which may have succeeded), and Chargebee itself refuses over-crediting.
        """
        invoice = self._call(self.cb.Invoice.retrieve, request.invoice).invoice.raw_data
        currency = invoice.get("currency_code", "USD")
        if invoice.get("status") in {"pending", "voided"}:
            raise ProviderError(f"invoice {request.invoice} is {invoice.get('status')}", code="invalid_state")
        credited: dict[str | None, int] = {}
        notes = (
            self._all(self.cb.CreditNote.list, "credit_note", reference_invoice_id={"is": invoice["id"]})
            if preview
            else []
        )
        for note in notes:
            for li in note.get("line_items") or []:
                ref = li.get("reference_line_item_id")
                credited[ref] = credited.get(ref, 0) + int(li.get("amount") or 0)
        by_meter = {self.meters.get(li.get("entity_id") or ""): li for li in invoice.get("line_items") or []}
        by_id = {li["id"]: li for li in invoice.get("line_items") or []}
        line_items: list[JSON] = []
        for line in request.lines:
            target = by_id.get(line.invoice_line or "") or (by_meter.get(line.meter) if line.meter else None)
            if target is None:
                line_items = []
                break
            amount = to_minor(line.amount, currency)
            if amount <= 0 or amount + credited.get(target["id"], 0) > int(target.get("amount") or 0):
                raise ProviderError(
                    f"credit of {line.amount} exceeds what is left on line {target['id']}",
                    code="amount_too_high",
                )
            line_items.append(
                {
                    "reference_line_item_id": target["id"],
                    "amount": amount,
                    "entity_id": target.get("entity_id"),
                }
            )
        total = sum(to_minor(line.amount, currency) for line in request.lines)
        if total <= 0 or total + sum(credited.values()) > int(invoice.get("total") or 0):
            raise ProviderError(f"credit of {total} minor units exceeds the invoice", code="amount_too_high")
        params: JSON = {
            "reference_invoice_id": invoice["id"],
            "type": "refundable" if invoice.get("status") == "paid" else "adjustment",
            "reason_code": request.reason if request.reason in REASON_CODES else "other",
        }
        if params["reason_code"] != request.reason:
            params["comment"] = request.reason  # free-text reasons are kept as the credit note's comment
        if request.memo:
            params["customer_notes"] = request.memo
        if line_items:
            params["line_items"] = [{k: v for k, v in li.items() if k != "entity_id"} for li in line_items]
        else:
            params["total"] = total
        return params, invoice, line_items

    def preview_credit_note(self, request: CreditNoteRequest) -> CreditNote:
        self._writes()
        params, invoice, line_items = self._credit_note_plan(request, preview=True)
        total = sum(li["amount"] for li in line_items) or params.get("total", 0)
        return self._credit_note(
            {
                "id": "preview",
                "reference_invoice_id": invoice["id"],
                "customer_id": invoice.get("customer_id"),
                "currency_code": invoice.get("currency_code"),
                "total": total,
                "reason_code": params["reason_code"],
                "date": int(dt.datetime.now(tz=dt.UTC).timestamp()),
                "line_items": line_items
                or [{"amount": total, "reference_line_item_id": None, "entity_id": None}],
            }
        )

    def create_credit_note(self, request: CreditNoteRequest, *, idempotency_key: str) -> CreditNote:
        self._writes()
        params, _, _ = self._credit_note_plan(request, preview=False)
        response = self._call(self.cb.CreditNote.create, params, self._headers(idempotency_key))
        return self._credit_note(response.credit_note.raw_data)

    def _subscription_of(self, customer: str, subscription: str | None) -> str:
        if subscription:
            return subscription
        subs = self._all(self.cb.Subscription.list, "subscription", customer_id={"is": customer})
        active = [s["id"] for s in subs if s.get("status") in {"active", "in_trial", "non_renewing"}]
        if not active:
            raise ProviderError(
                f"customer {customer} has no active Chargebee subscription", code="no_subscription"
            )
        return active[0]

    def create_invoice_item(self, request: InvoiceItemRequest, *, idempotency_key: str) -> str:
        """An unbilled charge on the next invoice, or a charge on the given pending invoice: its id."""
        self._writes()
        amount = to_minor(request.amount, request.currency)
        headers = self._headers(idempotency_key)
        if request.invoice:
            params: JSON = {"amount": amount, "description": request.description}
            response = self._call(self.cb.Invoice.add_charge, request.invoice, params, headers)
            lines = response.invoice.raw_data.get("line_items") or []
            added = [
                li
                for li in lines
                if li.get("entity_type") == "adhoc"
                and li.get("amount") == amount
                and li.get("description") == request.description
            ]
            return str(added[-1]["id"] if added else request.invoice)
        subscription = self._subscription_of(request.customer, request.subscription)
        params = {
            "subscription_id": subscription,
            "currency_code": request.currency,
            "charges": [{"amount": amount, "description": request.description}],
        }
        response = self._call(self.cb.UnbilledCharge.create, params, headers)
        return str(response.unbilled_charges[0].raw_data["id"])

    def hold_invoice(self, invoice_id: str, *, idempotency_key: str) -> Invoice:
        """A pending invoice stays pending until someone closes it: holding is checking it is pending."""
        self._writes()
        invoice = self.get_invoice(invoice_id)
        if invoice.status != "draft":
            raise ProviderError(
                f"invoice {invoice_id} is not pending; it cannot be held", code="invalid_state", status=409
            )
        return invoice

    def release_invoice(self, invoice_id: str, *, idempotency_key: str) -> Invoice:
        self._writes()
        try:
            response = self._call(self.cb.Invoice.close, invoice_id, None, self._headers(idempotency_key))
        except ProviderError as err:
            if err.code != "invalid_state_for_request":
                raise
            invoice = self.get_invoice(invoice_id)  # closed already (by us or at the provider): same effect
            if invoice.status in {"draft", "void"}:
                raise
            return invoice
        return self._invoice(response.invoice.raw_data)

    def push_usage(self, records: Sequence[UsageRecord], *, idempotency_key: str) -> UsagePushResult:
        self._writes()
        accepted: list[str] = []
        failed: list[tuple[str, str]] = []
        subscriptions: dict[tuple[str, str], str] = {}
        for record in records:
            try:
                item_price = self._item_price_for(record.meter)
                sub = record.subscription
                if sub is None:
                    key = (record.customer, item_price)
                    if key not in subscriptions:
                        found = self._subscriptions_with(record.customer, item_price)
                        if not found:
                            raise ProviderError(f"no subscription of {record.customer} bills {record.meter}")
                        subscriptions[key] = found[0]
                    sub = subscriptions[key]
                params = {
                    "id": usage_id(record.identifier),
                    "item_price_id": item_price,
                    "quantity": str(record.quantity),
                    "usage_date": _ts(record.timestamp),
                }
                headers = self._headers(f"{idempotency_key}:{usage_id(record.identifier)}")
                self._call(self.cb.Usage.create, sub, params, headers)
            except ProviderError as err:
                if err.code == "duplicate_entry":
                    accepted.append(record.identifier)  # already counted at Chargebee
                elif err.retryable:
                    # Rate limited or down: the rest would fail the same way; the caller retries them all.
                    rest = records[len(accepted) + len(failed) :]
                    failed += [(r.identifier, f"not sent: {err}") for r in rest]
                    break
                else:
                    failed.append((record.identifier, str(err)))
            except ValueError as err:
                failed.append((record.identifier, str(err)))
            else:
                accepted.append(record.identifier)
        return UsagePushResult(accepted=tuple(accepted), failed=tuple(failed))
