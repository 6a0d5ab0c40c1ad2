"""Reading a provider into Trueup: customers, subscriptions, invoices, credit notes, metered totals.

Every listing is paginated and checkpointed: the cursor of each page is saved (in its own
transaction) once the page is stored, so a sync that crashes resumes where it stopped and,
because rows are found again by their provider ids, never duplicates anything. Calls that
the provider throttles (429) or fails (5xx) are retried after ``Retry-After`` or with
exponential backoff and jitter. At most ``SYNC_CONCURRENCY_PER_TENANT`` syncs run at once
for one tenant.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps import pricing
from apps.accounts.models import Account, AccountExternalId
from apps.billing.models import (
    CreditNote,
    CreditNoteLine,
    Invoice,
    InvoiceLine,
    MeteredUsage,
    ProviderConnection,
    WebhookEvent,
)
from apps.catalog.models import Meter
from apps.providers import base
from apps.providers.registry import item_price_map, provider_for
from apps.tenancy.context import tenant_context

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_ATTEMPTS = 6
BACKOFF_BASE, BACKOFF_CAP = 0.5, 30.0
STEPS = ("customers", "prices", "invoices", "credit_notes", "metered")
DONE = "__done__"


class SyncBusy(Exception):
    """Too many syncs are running for this tenant; try again shortly."""


@dataclass
class SyncReport:
    counts: Counter[str] = field(default_factory=Counter)
    drift: list[dict[str, Any]] = field(default_factory=list)


def with_backoff(call: Callable[[], T], *, sleep: Callable[[float], None] = time.sleep) -> T:
    """Call, retrying retryable provider errors: after Retry-After if given, else 0.5 s doubling, jittered."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return call()
        except base.ProviderError as exc:
            if not exc.retryable or attempt == MAX_ATTEMPTS:
                raise
            delay = (
                exc.retry_after
                if exc.retry_after is not None
                else min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
            )
            sleep(delay + random.uniform(0, delay / 4))  # noqa: S311 - jitter, not security
    raise AssertionError("unreachable")


def _slot_key(tenant_id: int, slot: int) -> str:
    return f"trueup:sync:{tenant_id}:{slot}"


def _acquire(tenant_id: int) -> str:
    for slot in range(max(1, settings.SYNC_CONCURRENCY_PER_TENANT)):
        key = _slot_key(tenant_id, slot)
        if cache.add(key, "busy", timeout=settings.SYNC_LOCK_SECONDS):
            return key
    raise SyncBusy(f"tenant {tenant_id} already runs {settings.SYNC_CONCURRENCY_PER_TENANT} sync(s)")


def sync_connection(
    tenant_id: int, connection_id: int, *, full: bool = False, sleep: Callable[[float], None] = time.sleep
) -> SyncReport:
    """Sync one connection, step by step, page by page, resuming from the saved cursors."""
    slot = _acquire(tenant_id)
    report = SyncReport()
    try:
        with tenant_context(tenant_id):
            connection = ProviderConnection.objects.get(pk=connection_id)
            if full:
                connection.cursors = {}
            ProviderConnection.objects.filter(pk=connection.pk).update(
                last_sync_status="running", last_error="", cursors=connection.cursors
            )
            item_prices = item_price_map(connection)
        provider = provider_for(connection, item_prices=item_prices)
        since = (
            connection.last_sync_at - dt.timedelta(days=1) if connection.last_sync_at and not full else None
        )
        for step in STEPS:
            _run_step(tenant_id, connection, provider, step, since, report, sleep)
        with tenant_context(tenant_id):
            ProviderConnection.objects.filter(pk=connection.pk).update(
                last_sync_at=timezone.now(), last_sync_status="ok", cursors={}, drift=report.drift
            )
        return report
    except Exception as exc:
        with tenant_context(tenant_id):
            ProviderConnection.objects.filter(pk=connection_id).update(
                last_sync_status="failed", last_error=f"{exc.__class__.__name__}: {exc}"[:2000]
            )
        raise
    finally:
        cache.delete(slot)


def _run_step(
    tenant_id: int,
    connection: ProviderConnection,
    provider: base.BillingProvider,
    step: str,
    since: dt.datetime | None,
    report: SyncReport,
    sleep: Callable[[float], None],
) -> None:
    cursor = connection.cursors.get(step)
    if cursor == DONE:
        return
    if step == "metered":
        with tenant_context(tenant_id):
            _sync_metered(connection, provider, report, sleep, everything=since is None)
        _checkpoint(tenant_id, connection, step, DONE)
        return
    if step == "prices":
        _sync_prices_and_phases(tenant_id, connection, provider, report, sleep)
        _checkpoint(tenant_id, connection, step, DONE)
        return
    while True:
        page = with_backoff(functools.partial(_page, provider, step, cursor, since), sleep=sleep)
        with tenant_context(tenant_id):
            for item in page.items:
                _store_item(connection, step, item, report)
        cursor = page.next_cursor
        _checkpoint(tenant_id, connection, step, cursor or DONE)
        if cursor is None:
            return


def _page(
    provider: base.BillingProvider, step: str, cursor: str | None, since: dt.datetime | None
) -> base.Page[Any]:
    if step == "customers":
        return provider.list_customers(cursor=cursor)
    if step == "invoices":
        return provider.list_invoices(cursor=cursor, created_since=since)
    return provider.list_credit_notes(cursor=cursor, created_since=since)


def _store_item(connection: ProviderConnection, step: str, item: Any, report: SyncReport) -> None:
    if step == "customers":
        _store_customer(connection, item, report)
    elif step == "invoices":
        store_invoice(connection, item, report)
    else:
        _store_credit_note(connection, item, report)


def _all_pages(fetch: Callable[[str | None], base.Page[T]], sleep: Callable[[float], None]) -> list[T]:
    items: list[T] = []
    cursor: str | None = None
    while True:
        page = with_backoff(functools.partial(fetch, cursor), sleep=sleep)
        items.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return items


def _sync_prices_and_phases(
    tenant_id: int,
    connection: ProviderConnection,
    provider: base.BillingProvider,
    report: SyncReport,
    sleep: Callable[[float], None],
) -> None:
    """Report where the provider's prices differ from the catalogue, and record each subscription's plan."""
    from apps.billing.catalog_match import plan_for, price_drift
    from apps.catalog.models import SubscriptionPhase

    prices = _all_pages(lambda c: provider.list_prices(cursor=c), sleep)
    phases = _all_pages(lambda c: provider.list_subscription_phases(cursor=c), sleep)
    by_id = {price.id: price for price in prices}
    with tenant_context(tenant_id):
        report.drift = price_drift(prices, timezone.now())
        for phase in phases:
            account = _account_for(connection, phase.customer)
            plan = plan_for(phase.prices, by_id, phase.starts_at) if account else None
            if account is None or plan is None:
                report.counts["subscriptions matching no single plan"] += 1
                continue
            if _recorded_by_people(account, phase.starts_at):
                report.counts["subscriptions kept as recorded in Trueup"] += 1
                continue
            _, created = SubscriptionPhase.objects.update_or_create(
                account=account,
                starts_at=phase.starts_at,
                defaults={"plan": plan, "ends_at": phase.ends_at, "external_id": phase.subscription},
            )
            report.counts["subscription phases created" if created else "subscription phases updated"] += 1


def _recorded_by_people(account: Account, at: dt.datetime) -> bool:
    """Phases RevOps entered (no provider id) are the contract: a provider's subscription, which may
    not show a plan change it was never told about, does not rewrite them."""
    from apps.catalog.models import SubscriptionPhase

    return (
        SubscriptionPhase.objects.filter(account=account, external_id="", starts_at__lte=at)
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=at))
        .exists()
    )


def _checkpoint(tenant_id: int, connection: ProviderConnection, step: str, cursor: str) -> None:
    connection.cursors = {**connection.cursors, step: cursor}
    with tenant_context(tenant_id):
        ProviderConnection.objects.filter(pk=connection.pk).update(cursors=connection.cursors)


def _account_for(connection: ProviderConnection, customer_id: str) -> Account | None:
    link = (
        AccountExternalId.objects.filter(provider=connection.provider, external_id=customer_id)
        .select_related("account")
        .first()
    )
    return link.account if link else None


def _store_customer(connection: ProviderConnection, customer: base.Customer, report: SyncReport) -> None:
    if _account_for(connection, customer.id) is not None:
        report.counts["customers unchanged"] += 1
        return
    key = customer.metadata.get("account_id") or customer.id
    account = Account.objects.filter(key=key).first()
    if account is None:
        account = Account(key=key, name=customer.name or key)
        account.full_clean()
        account.save()
        report.counts["accounts created"] += 1
    AccountExternalId.objects.create(account=account, provider=connection.provider, external_id=customer.id)
    report.counts["customers linked"] += 1


def _meters() -> dict[str, Meter]:
    return {m.key: m for m in Meter.objects.all()}


@transaction.atomic
def store_invoice(
    connection: ProviderConnection, invoice: base.Invoice, report: SyncReport
) -> Invoice | None:
    """Create or refresh the invoice and replace its lines (what the provider says now is the truth)."""
    account = _account_for(connection, invoice.customer)
    if account is None:
        report.counts["invoices of unknown customers"] += 1
        return None
    meters = _meters()
    stored, created = Invoice.objects.update_or_create(
        source=connection.provider,
        external_id=invoice.id,
        defaults={
            "account": account,
            "status": invoice.status,
            "currency": invoice.currency.upper(),
            "period_start": invoice.period_start,
            "period_end": invoice.period_end,
            "finalized_at": invoice.finalized_at,
            "synced_at": timezone.now(),
        },
    )
    stored.lines.all().delete()
    merged: dict[str | None, tuple[Any, Any]] = {}
    for line in invoice.lines:  # lines of one meter (tiers split into lines) are one line to reconcile
        meter = line.meter if line.meter in meters else None
        quantity, amount = merged.get(meter, (0, 0))
        merged[meter] = (quantity + line.quantity, amount + line.amount)
    InvoiceLine.objects.bulk_create(
        InvoiceLine(invoice=stored, meter=meters[key] if key else None, quantity=quantity, amount=amount)
        for key, (quantity, amount) in merged.items()
    )
    report.counts["invoices created" if created else "invoices updated"] += 1
    return stored


@transaction.atomic
def _store_credit_note(connection: ProviderConnection, note: base.CreditNote, report: SyncReport) -> None:
    invoice = Invoice.objects.filter(source=connection.provider, external_id=note.invoice).first()
    if invoice is None:
        report.counts["credit notes of unknown invoices"] += 1
        return
    stored, created = CreditNote.objects.update_or_create(
        source=connection.provider,
        external_id=note.id,
        defaults={"invoice": invoice, "reason": note.reason[:300], "issued_at": note.issued_at},
    )
    stored.lines.all().delete()
    meters = _meters()
    lines = note.lines or (base.CreditNoteLine(invoice_line=None, meter=None, amount=note.amount),)
    CreditNoteLine.objects.bulk_create(
        CreditNoteLine(credit_note=stored, meter=meters.get(line.meter or ""), amount=line.amount)
        for line in lines
    )
    report.counts["credit notes created" if created else "credit notes updated"] += 1


def _sync_metered(
    connection: ProviderConnection,
    provider: base.BillingProvider,
    report: SyncReport,
    sleep: Callable[[float], None],
    *,
    everything: bool = False,
) -> None:
    """What the provider metered, for each synced invoice's period and meter (one call each: no bulk API).

    A first or full sync reads every invoice's period; later syncs the last two months'."""
    invoices = Invoice.objects.filter(source=connection.provider).select_related("account")
    if not everything:
        invoices = invoices.filter(period_start__gte=timezone.now() - dt.timedelta(days=62))
    customers = dict(
        AccountExternalId.objects.filter(provider=connection.provider).values_list(
            "account_id", "external_id"
        )
    )
    meters = list(Meter.objects.all())
    for invoice in invoices:
        customer = customers.get(invoice.account_id)
        if customer is None:
            continue
        for meter in meters:
            total = with_backoff(
                functools.partial(
                    provider.metered_totals,
                    customer=customer,
                    meter=meter.key,
                    start=invoice.period_start,
                    end=invoice.period_end,
                ),
                sleep=sleep,
            )
            MeteredUsage.objects.update_or_create(
                account=invoice.account,
                meter=meter,
                source=connection.provider,
                period_start=invoice.period_start,
                period_end=invoice.period_end,
                defaults={"quantity": pricing.trimmed(total.quantity), "synced_at": timezone.now()},
            )
            report.counts["metered totals"] += 1


def handle_webhook_event(event: WebhookEvent) -> str:
    """Process one stored event by re-fetching the object it names (order-independent)."""
    from apps.reconciliation.services import run_create

    connection = event.connection
    invoice_id = _invoice_id_of(connection.provider, event.event_type, event.payload)
    if invoice_id is None:
        WebhookEvent.objects.filter(pk=event.pk).update(
            status=WebhookEvent.Status.IGNORED, processed_at=timezone.now()
        )
        return WebhookEvent.Status.IGNORED
    provider = provider_for(connection)
    fresh = with_backoff(lambda: provider.get_invoice(invoice_id))
    stored = store_invoice(connection, fresh, SyncReport())
    if stored is not None and fresh.status == "draft" and _is_creation(connection.provider, event.event_type):
        zone = stored.account.timezone
        local = fresh.period_start.astimezone(ZoneInfo(zone))
        run_create(
            actor=None,
            period=f"{local.year:04d}-{local.month:02d}",
            trigger="webhook",
            pre_invoice=True,
            account_ids=[stored.account_id],
        )
    WebhookEvent.objects.filter(pk=event.pk).update(
        status=WebhookEvent.Status.PROCESSED, processed_at=timezone.now()
    )
    return WebhookEvent.Status.PROCESSED


def _is_creation(provider: str, event_type: str) -> bool:
    return event_type in ("invoice.created", "pending_invoice_created")


def _invoice_id_of(provider: str, event_type: str, payload: dict[str, Any]) -> str | None:
    if provider == "stripe" and event_type.startswith("invoice."):
        return str(payload.get("data", {}).get("object", {}).get("id") or "") or None
    if provider == "chargebee" and ("invoice" in event_type):
        return str(payload.get("content", {}).get("invoice", {}).get("id") or "") or None
    return None
