"""Usage push: forwarding the events Trueup ingests to the billing provider.

A transactional outbox. When a batch of events is stored, one :class:`UsagePush` row per new
event and push-enabled connection is written in the same transaction (one ``INSERT ...
SELECT``), and a task is enqueued on commit. The task takes due rows in batches (Stripe 100,
Chargebee 25), paced by a simple rate limiter, maps each account to its provider customer
(``AccountExternalId``) and calls ``provider.push_usage``. Every record's identifier is the
event id, so the provider counts an event once however often it is sent: retries, crashed
workers and replays never double-count.

Accepted rows become ``sent``; failed rows are retried with exponential backoff (the
provider's ``Retry-After`` when it gives one) and, after ``USAGE_PUSH_MAX_ATTEMPTS``, become
``dead``: the dead-letter queue finance inspects and replays on the connection's page.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection as db
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from apps.accounts.models import AccountExternalId
from apps.audit.services import Actor, audit_record
from apps.billing.models import ProviderConnection, UsagePush, UsagePushSettings
from apps.catalog.models import Meter
from apps.providers import base
from apps.providers.registry import provider_for
from apps.tenancy.context import current_tenant_id, tenant_context, unscoped_context

log = logging.getLogger(__name__)

BATCH_SIZE = {"stripe": 100, "chargebee": 25}
# Records per second: Stripe's v1 meter events allow ~1,000/s, Chargebee's API far fewer calls.
RATE = {"stripe": 500.0, "chargebee": 5.0}
MAX_ATTEMPTS = 8
BACKOFF_BASE, BACKOFF_CAP = 30.0, 3600.0  # seconds
LEASE = dt.timedelta(minutes=5)  # a taken row is due again after this if its worker died
MAX_BATCHES_PER_RUN = 50
_IN_CHUNK = 500


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def max_attempts() -> int:
    return int(_setting("USAGE_PUSH_MAX_ATTEMPTS", MAX_ATTEMPTS))


def backoff(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failure: 30 s doubling, at most an hour."""
    base_delay = float(_setting("USAGE_PUSH_BACKOFF_BASE", BACKOFF_BASE))
    return min(float(_setting("USAGE_PUSH_BACKOFF_CAP", BACKOFF_CAP)), base_delay * 2 ** max(0, attempts - 1))


# --- taking events in ---------------------------------------------------------------------------
def enabled_connection_ids() -> list[int]:
    return list(UsagePushSettings.objects.filter(enabled=True).values_list("connection_id", flat=True))


_OUTBOX_INSERT = """
INSERT INTO billing_usagepush (
    tenant_id, connection_id, event_key, account_id, meter_id, quantity, occurred_at,
    status, attempts, next_attempt_at, last_error, created_at
)
SELECT e.tenant_id, c.id, e.event_id, e.account_id, e.meter_id, e.quantity, e.occurred_at,
       'pending', 0, %s, '', %s
FROM usage_usageevent e, billing_providerconnection c
WHERE e.tenant_id = %s AND e.batch_id = %s AND {events} AND c.tenant_id = %s AND c.id IN ({connections})
ON CONFLICT DO NOTHING
"""


def events_stored(*, batch_id: int, event_ids: Sequence[str], accepted: int) -> int:
    """Queue the events a batch just stored for every push-enabled connection (caller's transaction).

    Only the batch's new events are taken (``batch_id``: duplicates keep their first batch);
    they are found through the unique (tenant, event_id) index. The push runs on commit.
    """
    if not accepted or not event_ids:
        return 0
    connections = enabled_connection_ids()
    if not connections:
        return 0
    tenant_id = current_tenant_id()
    now = timezone.now()
    unique = sorted(set(event_ids))
    created = 0
    marks = ", ".join(["%s"] * len(connections))
    with db.cursor() as cursor:
        if db.vendor == "postgresql":
            sql = _OUTBOX_INSERT.format(events="e.event_id = ANY(%s)", connections=marks)
            cursor.execute(sql, [now, now, tenant_id, batch_id, unique, tenant_id, *connections])
            created += cursor.rowcount
        else:
            for i in range(0, len(unique), _IN_CHUNK):
                chunk = unique[i : i + _IN_CHUNK]
                events = f"e.event_id IN ({', '.join(['%s'] * len(chunk))})"
                sql = _OUTBOX_INSERT.format(events=events, connections=marks)
                cursor.execute(sql, [now, now, tenant_id, batch_id, *chunk, tenant_id, *connections])
                created += cursor.rowcount
    if created:
        _enqueue_on_commit(tenant_id, connections)
    return created


def _enqueue_on_commit(tenant_id: int, connection_ids: Sequence[int]) -> None:
    from apps.billing.tasks import push_usage_task

    for connection_id in connection_ids:
        transaction.on_commit(
            lambda cid=connection_id: push_usage_task.delay(tenant_id, cid)  # type: ignore[misc]
        )


# --- pushing -----------------------------------------------------------------------------------
class RateLimiter:
    """At most ``rate`` records a second, on average, for the calls made through this limiter."""

    def __init__(self, rate: float, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = rate
        self.sleep = sleep
        self.next_at = 0.0

    def wait(self, records: int) -> None:
        now = time.monotonic()
        if self.next_at > now:
            self.sleep(self.next_at - now)
            now = self.next_at
        self.next_at = now + records / self.rate


@dataclass
class PushReport:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    batches: int = 0
    more: bool = False  # stopped at the batch limit with rows still due
    next_retry_at: dt.datetime | None = None


def _claim(connection: ProviderConnection, size: int, now: dt.datetime) -> list[UsagePush]:
    """Take up to ``size`` due rows (inside the tenant's transaction), leasing them to this worker."""
    due = UsagePush.objects.filter(
        connection=connection, status=UsagePush.Status.PENDING, next_attempt_at__lte=now
    ).order_by("next_attempt_at", "id")
    if db.vendor == "postgresql":
        due = due.select_for_update(skip_locked=True)
    rows = list(due[:size])
    if rows:
        for row in rows:
            row.attempts += 1
            row.next_attempt_at = now + LEASE
        UsagePush.objects.bulk_update(rows, ["attempts", "next_attempt_at"])
    return rows


def _records(
    connection: ProviderConnection, rows: Sequence[UsagePush]
) -> tuple[list[base.UsageRecord], dict[str, str]]:
    """The records to send, and the rows that cannot be sent (identifier → reason)."""
    customers = dict(
        AccountExternalId.objects.filter(
            provider=connection.provider, account_id__in={r.account_id for r in rows}
        ).values_list("account_id", "external_id")
    )
    meters = dict(Meter.objects.filter(id__in={r.meter_id for r in rows}).values_list("id", "key"))
    records, unsendable = [], {}
    for row in rows:
        customer = customers.get(row.account_id)
        if not customer:
            unsendable[row.event_key] = (
                f"account {row.account_id} has no {connection.get_provider_display()} customer id"
            )
            continue
        records.append(
            base.UsageRecord(
                identifier=row.event_key,
                customer=customer,
                meter=meters[row.meter_id],
                quantity=_quantity(row.quantity),
                timestamp=row.occurred_at,
            )
        )
    return records, unsendable


def idempotency_key(connection: ProviderConnection, rows: Sequence[UsagePush]) -> str:
    """Derived from the rows and their attempt: a retry is a new request (a provider may have stored
    the failed answer under the old key); the identifiers keep it from counting anything twice."""
    digest = hashlib.sha256(",".join(f"{r.pk}.{r.attempts}" for r in rows).encode()).hexdigest()
    return f"trueup-push-{connection.public_id}-{digest[:32]}"


def _send(
    provider: base.BillingProvider, key: str, records: Sequence[base.UsageRecord]
) -> tuple[set[str], dict[str, str], float | None]:
    """(accepted identifiers, failed identifier → reason, the provider's Retry-After if it gave one)."""
    if not records:
        return set(), {}, None
    try:
        result = provider.push_usage(records, idempotency_key=key)
    except base.ProviderError as exc:
        reason = f"{exc.__class__.__name__}: {exc}"
        return set(), {r.identifier: reason for r in records}, exc.retry_after
    except Exception as exc:  # a network or SDK failure: retry it like a 5xx
        log.warning("usage push failed: %s", exc.__class__.__name__, exc_info=True)
        return set(), {r.identifier: f"{exc.__class__.__name__}: {exc}" for r in records}, None
    accepted = set(result.accepted)
    failed = dict(result.failed)
    for record in records:
        if record.identifier not in accepted and record.identifier not in failed:
            failed[record.identifier] = "the provider did not answer for this event"
    return accepted, failed, None


def _settle(
    rows: Sequence[UsagePush],
    accepted: set[str],
    failed: dict[str, str],
    retry_after: float | None,
    now: dt.datetime,
    report: PushReport,
) -> None:
    sent = [r.pk for r in rows if r.event_key in accepted]
    if sent:
        UsagePush.objects.filter(pk__in=sent).update(
            status=UsagePush.Status.SENT, sent_at=now, last_error="", next_attempt_at=now
        )
        report.sent += len(sent)
    limit = max_attempts()
    for row in rows:
        if row.event_key in accepted:
            continue
        reason = failed.get(row.event_key, "not sent")[:2000]
        if row.attempts >= limit:
            UsagePush.objects.filter(pk=row.pk).update(status=UsagePush.Status.DEAD, last_error=reason)
            report.dead += 1
            continue
        delay = retry_after if retry_after is not None else backoff(row.attempts)
        when = now + dt.timedelta(seconds=delay)
        UsagePush.objects.filter(pk=row.pk).update(last_error=reason, next_attempt_at=when)
        report.retried += 1
        if report.next_retry_at is None or when < report.next_retry_at:
            report.next_retry_at = when


def _provider(connection: ProviderConnection, push_settings: UsagePushSettings) -> base.BillingProvider:
    return provider_for(
        connection, item_prices={str(k): str(v) for k, v in push_settings.item_prices.items()}
    )


def _quantity(value: Decimal) -> Decimal:
    """The stored 12 decimal places without trailing zeros (``10``, not ``10.000000000000``)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def push_due(
    tenant_id: int,
    connection_id: int,
    *,
    now: dt.datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_batches: int = MAX_BATCHES_PER_RUN,
) -> PushReport:
    """Push the connection's due rows, batch by batch; each batch is taken and settled in its own
    transaction, the provider is called outside any."""
    report = PushReport()
    with tenant_context(tenant_id):
        connection = ProviderConnection.objects.get(pk=connection_id)
        push_settings = UsagePushSettings.objects.filter(connection=connection, enabled=True).first()
    if push_settings is None:
        return report
    provider = _provider(connection, push_settings)
    size = int(_setting("USAGE_PUSH_BATCH_SIZE", BATCH_SIZE).get(connection.provider, 25))
    limiter = RateLimiter(float(_setting("USAGE_PUSH_RATE", RATE).get(connection.provider, 5.0)), sleep=sleep)
    for _ in range(max_batches):
        at = now or timezone.now()
        with tenant_context(tenant_id):
            rows = _claim(connection, size, at)
            records, unsendable = _records(connection, rows) if rows else ([], {})
        if not rows:
            return report
        report.batches += 1
        limiter.wait(len(records))
        accepted, failed, retry_after = _send(provider, idempotency_key(connection, rows), records)
        failed.update(unsendable)
        with tenant_context(tenant_id):
            _settle(rows, accepted, failed, retry_after, now or timezone.now(), report)
    with tenant_context(tenant_id):
        report.more = UsagePush.objects.filter(
            connection_id=connection_id,
            status=UsagePush.Status.PENDING,
            next_attempt_at__lte=now or timezone.now(),
        ).exists()
    return report


def due_connections(now: dt.datetime | None = None) -> list[tuple[int, int]]:
    """(tenant id, connection id) of every connection with rows due: what the periodic sweep pushes."""
    with unscoped_context(reason="usage push sweep: find connections with due rows"):
        return list(
            UsagePush.unscoped_objects.filter(
                status=UsagePush.Status.PENDING,
                next_attempt_at__lte=now or timezone.now(),
                connection__usage_push_settings__enabled=True,
            )
            .values_list("tenant_id", "connection_id")
            .distinct()
            .order_by()
        )


# --- what people do -----------------------------------------------------------------------------
def push_settings_get(connection: ProviderConnection) -> UsagePushSettings:
    return UsagePushSettings.objects.filter(connection=connection).first() or UsagePushSettings(
        connection=connection
    )


@transaction.atomic
def push_settings_update(*, connection: ProviderConnection, enabled: bool, actor: Actor) -> UsagePushSettings:
    current = push_settings_get(connection)
    before = {"enabled": current.enabled}
    current.enabled = enabled
    current.save()
    audit_record(
        actor=actor,
        action="usage_push.settings.update",
        target=connection,
        before=before,
        after={"enabled": enabled},
    )
    return current


def parse_item_prices(text: str) -> tuple[dict[str, str], int | None]:
    """``meter_key = item_price_id``, one a line → the mapping, or the number of the first bad line."""
    mapping: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        meter, sep, item_price = line.partition("=")
        if not sep or not meter.strip() or not item_price.strip():
            return {}, number
        mapping[meter.strip()] = item_price.strip()
    return mapping, None


@transaction.atomic
def push_item_prices_update(
    *, connection: ProviderConnection, item_prices: dict[str, str], actor: Actor
) -> UsagePushSettings:
    """Chargebee: which item price each meter's usages are recorded against (audited)."""
    current = push_settings_get(connection)
    before = {"item_prices": dict(current.item_prices)}
    current.item_prices = item_prices
    current.save()
    audit_record(
        actor=actor,
        action="usage_push.settings.update",
        target=connection,
        before=before,
        after={"item_prices": item_prices},
    )
    return current


def dead_letters(connection: ProviderConnection) -> Any:
    return (
        UsagePush.objects.filter(connection=connection, status=UsagePush.Status.DEAD)
        .select_related("account", "meter")
        .order_by("id")
    )


class ReplayNotFound(Exception):
    """Some of the rows named are not dead letters of this connection (or of this tenant)."""


@transaction.atomic
def dead_letters_replay(
    *, connection: ProviderConnection, ids: Sequence[int] | None, actor: Actor, reason: str = ""
) -> int:
    """Put dead letters (``ids``, or all of them) back to pending, due now, with fresh attempts.

    Audited; the push runs on commit. Sending them again is safe: identifiers are event ids.
    """
    rows = UsagePush.objects.select_for_update().filter(connection=connection, status=UsagePush.Status.DEAD)
    if ids is not None:
        wanted = set(ids)
        rows = rows.filter(pk__in=wanted)
        if len(wanted) != rows.count():
            raise ReplayNotFound("some of these rows are not dead letters of this connection")
    picked = list(rows.values_list("pk", flat=True))
    if not picked:
        return 0
    UsagePush.objects.filter(pk__in=picked).update(
        status=UsagePush.Status.PENDING, attempts=0, next_attempt_at=timezone.now()
    )
    audit_record(
        actor=actor,
        action="usage_push.replay",
        target=connection,
        after={"replayed": len(picked), "ids": picked if len(picked) <= 1000 else picked[:1000]},
        reason=reason,
    )
    _enqueue_on_commit(connection.tenant_id, [connection.pk])
    return len(picked)


def push_counts(connection: ProviderConnection) -> dict[str, int]:
    counts = dict.fromkeys(UsagePush.Status.values, 0)
    for status, n in (
        UsagePush.objects.filter(connection=connection)
        .values_list("status")
        .annotate(n=Count("id"))
        .order_by()
    ):
        counts[status] = n
    return counts
