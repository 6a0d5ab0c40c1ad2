"""Usage push end to end: events ingested → outbox → the real SDKs over HTTP → the sandboxes.

No mocks: the Stripe and Chargebee sandboxes count what they were sent, and the test reads
their totals back through the adapters, as reconciliation does.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import AccountExternalId
from apps.audit.models import AuditEvent
from apps.billing.models import UsagePush, UsagePushSettings
from apps.billing.push import push_due, push_settings_update
from apps.billing.services import connection_create, connection_update
from apps.billing.tasks import push_usage_sweep, push_usage_task
from apps.tenancy.context import tenant_context
from apps.usage.ingest import EventIn
from apps.usage.services import events_ingest
from tests.conftest import member
from tests.factories import AccountFactory, MeterFactory, UsagePushFactory
from tests.providers.conftest import (
    CHARGEBEE_METERS,
    make_chargebee_provider,
    make_stripe_provider,
    stripe_sandbox_call,
)

pytestmark = pytest.mark.django_db
METER_EVENTS = r"^/v1/billing/meter_events$"


def _connect(tenant: Any, **kwargs: Any) -> Any:
    with tenant_context(tenant):
        connection = connection_create(actor=None, **kwargs)
        connection_update(actor=None, connection=connection, data={"allow_writes": True})
        push_settings_update(connection=connection, enabled=True, actor=None)
    cache.clear()
    return connection


@pytest.fixture
def stripe_push(tenant_a, stripe_sandbox, stripe_seeded) -> dict[str, Any]:
    """Tenant A: meters as in the sandbox, Acme and Globex linked to their Stripe customers, and
    Initech with no Stripe customer; a Stripe connection with writes and usage push on."""
    meters = {key: MeterFactory(tenant=tenant_a, key=key, name=key) for key in ("api_calls", "seats")}
    accounts = {key: AccountFactory(tenant=tenant_a, key=key) for key in ("acme", "globex", "initech")}
    with tenant_context(tenant_a):
        for key in ("acme", "globex"):
            AccountExternalId.objects.create(
                account=accounts[key], provider="stripe", external_id=stripe_seeded[key]
            )
    connection = _connect(
        tenant_a,
        provider="stripe",
        name="Sandbox",
        base_url=stripe_sandbox.url,
        credentials={"api_key": stripe_sandbox.api_key},
    )
    return {"connection": connection, "meters": meters, "accounts": accounts, "ids": stripe_seeded}


def _ingest(tenant: Any, events: list[tuple[str, str, str, str]], when: dt.datetime) -> Any:
    decoded: list[EventIn | None] = [
        EventIn(event_id=e, account_id=a, meter=m, quantity=Decimal(q), occurred_at=when)
        for e, a, m, q in events
    ]
    with tenant_context(tenant):
        result = events_ingest(tenant=tenant, events=decoded, errors=[], actor=None)
    assert result.batch.accepted == len({e[0] for e in events}), result.errors
    return result


def _window() -> tuple[dt.datetime, dt.datetime, dt.datetime]:
    """When our events occur (an hour ago, after all the seeded usage) and a window around them."""
    now = timezone.now().replace(microsecond=0)
    return now - dt.timedelta(hours=1), now - dt.timedelta(hours=2), now + dt.timedelta(minutes=2)


def _stripe_total(sandbox: Any, customer: str, meter: str, start: dt.datetime, end: dt.datetime) -> Decimal:
    provider = make_stripe_provider(sandbox)
    return provider.metered_totals(customer=customer, meter=meter, start=start, end=end).quantity


def _meter_event_posts(sandbox: Any) -> int:
    log = stripe_sandbox_call(sandbox, "GET", "requests")
    requests = log["data"]
    return sum(1 for r in requests if r["method"] == "POST" and r["path"] == "/v1/billing/meter_events")


def _statuses(tenant: Any) -> dict[str, str]:
    with tenant_context(tenant):
        return dict(UsagePush.objects.values_list("event_key", "status"))


def test_stored_events_are_pushed_once_and_the_stripe_total_is_their_sum(
    tenant_a, stripe_push, stripe_sandbox, django_capture_on_commit_callbacks
):
    when, start, end = _window()
    events = [(f"e-{i}", "acme", "api_calls", q) for i, q in enumerate(["100", "250", "12.5", "0.25"])]
    # storing the batch writes the outbox and, on commit, runs the push (eagerly: no broker here)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        _ingest(tenant_a, [*events, ("e-1", "acme", "api_calls", "250")], when)  # a repeat in the batch
    assert callbacks
    assert _statuses(tenant_a) == {f"e-{i}": "sent" for i in range(4)}
    acme = stripe_push["ids"]["acme"]
    assert _stripe_total(stripe_sandbox, acme, "api_calls", start, end) == Decimal("362.75")
    posts = _meter_event_posts(stripe_sandbox)

    # pushing again sends nothing: every row is sent
    report = push_due(tenant_a.pk, stripe_push["connection"].pk)
    assert (report.sent, report.batches) == (0, 0)
    push_usage_task.delay(tenant_a.pk, stripe_push["connection"].pk)
    assert _meter_event_posts(stripe_sandbox) == posts

    # the same events delivered again are duplicates: no new outbox rows, nothing sent
    with django_capture_on_commit_callbacks(execute=True):
        decoded: list[EventIn | None] = [
            EventIn(event_id=e, account_id=a, meter=m, quantity=Decimal(q), occurred_at=when)
            for e, a, m, q in events
        ]
        with tenant_context(tenant_a):
            again = events_ingest(tenant=tenant_a, events=decoded, errors=[], actor=None)
    assert again.batch.duplicates == 4
    with tenant_context(tenant_a):
        assert UsagePush.objects.count() == 4
    assert _meter_event_posts(stripe_sandbox) == posts
    assert _stripe_total(stripe_sandbox, acme, "api_calls", start, end) == Decimal("362.75")


def test_a_connection_without_usage_push_gets_no_outbox_rows(tenant_a, stripe_push):
    with tenant_context(tenant_a):
        push_settings_update(connection=stripe_push["connection"], enabled=False, actor=None)
    when, _, _ = _window()
    _ingest(tenant_a, [("off-1", "acme", "api_calls", "5")], when)
    with tenant_context(tenant_a):
        assert not UsagePush.objects.exists()


@pytest.mark.parametrize("fault", [{"status": 500}, {"status": 429, "retry_after": 7}])
def test_failed_calls_are_retried_with_backoff_and_end_up_sent(tenant_a, stripe_push, stripe_sandbox, fault):
    when, start, end = _window()
    _ingest(tenant_a, [(f"r-{i}", "acme", "api_calls", "10") for i in range(4)], when)
    stripe_sandbox_call(
        stripe_sandbox, "POST", "faults", {"path": METER_EVENTS, "method": "POST", "count": 2, **fault}
    )
    now = timezone.now()
    first = push_due(tenant_a.pk, stripe_push["connection"].pk, now=now, sleep=lambda _s: None)
    assert (first.sent, first.retried, first.dead) == (2, 2, 0)
    with tenant_context(tenant_a):
        waiting = list(UsagePush.objects.filter(status="pending"))
    assert len(waiting) == 2 and all(r.attempts == 1 and r.last_error for r in waiting)
    # backoff: 30 s after a first failure (the Stripe adapter reports per-record failures without
    # their Retry-After; a Retry-After on an error push_usage raises is used as given)
    assert {r.next_attempt_at for r in waiting} == {now + dt.timedelta(seconds=30)}
    # not due yet: nothing is sent
    assert push_due(tenant_a.pk, stripe_push["connection"].pk, now=now, sleep=lambda _s: None).batches == 0
    later = push_due(tenant_a.pk, stripe_push["connection"].pk, now=now + dt.timedelta(hours=1))
    assert (later.sent, later.dead) == (2, 0)
    assert set(_statuses(tenant_a).values()) == {"sent"}
    assert _stripe_total(stripe_sandbox, stripe_push["ids"]["acme"], "api_calls", start, end) == 40


def test_permanent_failures_become_dead_letters_listed_on_the_page_and_replay_sends_them(
    tenant_a, stripe_push, stripe_sandbox, client, settings, django_capture_on_commit_callbacks
):
    settings.USAGE_PUSH_MAX_ATTEMPTS = 3
    when, start, end = _window()
    connection = stripe_push["connection"]
    _ingest(
        tenant_a,
        [
            ("ok-1", "acme", "api_calls", "5"),
            ("orphan-1", "initech", "api_calls", "7"),  # Initech has no Stripe customer
            ("bad-1", "globex", "seats", "3"),  # refused with a 400 once (below)
        ],
        when,
    )
    stripe_sandbox_call(
        stripe_sandbox, "POST", "faults", {"path": METER_EVENTS, "method": "POST", "count": 2, "status": 400}
    )
    now = timezone.now()
    # batches go in id order: ok-1 takes the first 400, bad-1 the second; then ok-1 is sent on retry
    reports = [
        push_due(tenant_a.pk, connection.pk, now=now + dt.timedelta(days=i), sleep=lambda _s: None)
        for i in range(4)
    ]
    assert sum(r.dead for r in reports) == 1 and reports[-1].batches == 0
    statuses = _statuses(tenant_a)
    assert statuses["orphan-1"] == "dead" and statuses["ok-1"] == "sent"
    with tenant_context(tenant_a):
        orphan = UsagePush.objects.get(event_key="orphan-1")
    assert orphan.attempts == 3 and "no Stripe customer id" in orphan.last_error

    # a 400 twice, then accepted: bad-1 was sent on its third attempt
    assert statuses["bad-1"] == "sent"

    admin = member(tenant_a)
    client.force_login(admin)
    url = reverse("connection-usage-push", args=[tenant_a.slug, connection.pk])
    page = client.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert "orphan-1" in body and "initech" in body and "no Stripe customer id" in body and "ok-1" not in body

    # a viewer sees the page but may not replay
    viewer = member(tenant_a, "viewer")
    client.force_login(viewer)
    assert client.get(url).status_code == 200
    assert client.post(url, {"action": "replay_all"}).status_code == 403
    assert _statuses(tenant_a)["orphan-1"] == "dead"

    # fix the cause (link Initech to a Stripe customer), then replay it from the page
    with tenant_context(tenant_a):
        AccountExternalId.objects.create(
            account=stripe_push["accounts"]["initech"],
            provider="stripe",
            external_id=stripe_push["ids"]["tanaka"],
        )
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"action": "replay", "ids": [orphan.pk]})
    assert response.status_code == 302
    assert _statuses(tenant_a)["orphan-1"] == "sent"
    assert _stripe_total(stripe_sandbox, stripe_push["ids"]["tanaka"], "api_calls", start, end) == 7
    assert _stripe_total(stripe_sandbox, stripe_push["ids"]["acme"], "api_calls", start, end) == 5
    with tenant_context(tenant_a):
        audit = AuditEvent.objects.get(action="usage_push.replay")
    assert audit.actor == admin and audit.after["ids"] == [orphan.pk]

    # replaying what was already sent would not count it twice either (identifier = event id)
    with tenant_context(tenant_a):
        UsagePush.objects.filter(event_key="orphan-1").update(status="dead")
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"action": "replay_all"})
    assert _stripe_total(stripe_sandbox, stripe_push["ids"]["tanaka"], "api_calls", start, end) == 7


def test_another_tenants_dead_letters_are_neither_shown_nor_replayable(
    tenant_a, tenant_b, stripe_push, client
):
    theirs = UsagePushFactory(tenant=tenant_b, event_key="secret-event-of-b")
    mine = UsagePushFactory(
        tenant=tenant_a,
        connection=stripe_push["connection"],
        account=stripe_push["accounts"]["initech"],
        meter=stripe_push["meters"]["api_calls"],
        event_key="my-dead-one",
    )
    client.force_login(member(tenant_a))
    url = reverse("connection-usage-push", args=[tenant_a.slug, stripe_push["connection"].pk])
    body = client.get(url).content.decode()
    assert "my-dead-one" in body and "secret-event-of-b" not in body
    assert client.post(url, {"action": "replay", "ids": [theirs.pk]}).status_code == 404
    assert client.post(url, {"action": "replay", "ids": [mine.pk, theirs.pk]}).status_code == 404
    assert client.post(url, {"action": "replay", "ids": ["x"]}).status_code == 404
    with tenant_context(tenant_b):
        assert UsagePush.objects.get(pk=theirs.pk).status == "dead"
    with tenant_context(tenant_a):
        assert UsagePush.objects.get(pk=mine.pk).status == "dead"
    # B's connection page is not found from A
    theirs_url = reverse("connection-usage-push", args=[tenant_a.slug, theirs.connection_id])
    assert client.get(theirs_url).status_code == 404


def test_writes_disabled_rows_wait_and_die_then_replay_after_enabling(
    tenant_a, stripe_push, stripe_sandbox, settings
):
    settings.USAGE_PUSH_MAX_ATTEMPTS = 2
    connection = stripe_push["connection"]
    with tenant_context(tenant_a):
        connection_update(actor=None, connection=connection, data={"allow_writes": False})
    when, start, end = _window()
    _ingest(tenant_a, [("w-1", "acme", "api_calls", "9")], when)
    now = timezone.now()
    for i in range(2):
        push_due(tenant_a.pk, connection.pk, now=now + dt.timedelta(days=i))
    with tenant_context(tenant_a):
        row = UsagePush.objects.get()
        assert row.status == "dead" and "read-only" in row.last_error
        connection_update(actor=None, connection=connection, data={"allow_writes": True})
        from apps.billing.push import dead_letters_replay

        assert dead_letters_replay(connection=connection, ids=None, actor=None) == 1
    assert push_due(tenant_a.pk, connection.pk).sent == 1
    assert _stripe_total(stripe_sandbox, stripe_push["ids"]["acme"], "api_calls", start, end) == 9


def test_the_sweep_pushes_due_rows_of_every_tenant(tenant_a, stripe_push, stripe_sandbox):
    when, start, end = _window()
    _ingest(tenant_a, [("s-1", "acme", "api_calls", "4")], when)  # no commit here: nothing ran yet
    assert _statuses(tenant_a) == {"s-1": "pending"}
    assert push_usage_sweep.delay().get() == 1
    assert _statuses(tenant_a) == {"s-1": "sent"}
    assert _stripe_total(stripe_sandbox, stripe_push["ids"]["acme"], "api_calls", start, end) == 4


def test_chargebee_usages_are_pushed_per_item_price(tenant_a, chargebee_seeded, client):
    sandbox = chargebee_seeded
    meter = MeterFactory(tenant=tenant_a, key="api_calls", name="API calls")
    acme = AccountFactory(tenant=tenant_a, key="acme")
    with tenant_context(tenant_a):
        AccountExternalId.objects.create(account=acme, provider="chargebee", external_id="acme")
    connection = _connect(
        tenant_a,
        provider="chargebee",
        name="Chargebee sandbox",
        site=sandbox.site,
        base_url=sandbox.url,
        credentials={"api_key": sandbox.api_key},
    )
    # the tenant admin names the item price of each meter on the usage push page
    client.force_login(member(tenant_a))
    url = reverse("connection-usage-push", args=[tenant_a.slug, connection.pk])
    text = "\n".join(f"{meter} = {item_price}" for item_price, meter in CHARGEBEE_METERS.items())
    assert client.post(url, {"action": "item_prices", "item_prices": "nonsense"}).status_code == 302
    assert client.post(url, {"action": "item_prices", "item_prices": text}).status_code == 302
    with tenant_context(tenant_a):
        assert (
            UsagePushSettings.objects.get(connection=connection).item_prices["api_calls"] == "api-calls-usd"
        )
    assert "api-calls-usd" in client.get(url).content.decode()
    when, start, end = _window()
    provider = make_chargebee_provider(sandbox)
    before = provider.metered_totals(customer="acme", meter="api_calls", start=start, end=end).quantity
    _ingest(tenant_a, [("cb-1", "acme", "api_calls", "120"), ("cb-2", "acme", "api_calls", "30.5")], when)
    assert meter.key == "api_calls"
    report = push_due(tenant_a.pk, connection.pk, sleep=lambda _s: None)
    assert (report.sent, report.retried, report.dead) == (2, 0, 0)
    after = provider.metered_totals(customer="acme", meter="api_calls", start=start, end=end).quantity
    assert after - before == Decimal("150.5")
    # replayed or not, Chargebee counts each usage once (its id comes from the event id)
    with tenant_context(tenant_a):
        UsagePush.objects.update(status="pending", next_attempt_at=timezone.now())
    assert push_due(tenant_a.pk, connection.pk, sleep=lambda _s: None).sent == 2
    again = provider.metered_totals(customer="acme", meter="api_calls", start=start, end=end).quantity
    assert again == after
