"""POST /api/v1/events: idempotent bulk ingestion with per-event errors, and reading events back."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction

from apps.accounts.models import Account
from apps.audit.models import AuditEvent
from apps.tenancy.context import tenant_context
from apps.tenancy.roles import Role
from apps.tenancy.services import apikey_revoke
from apps.usage.models import IngestBatch, UsageEvent
from tests.factories import AccountFactory, UsageSettingsFactory, api_key_for
from tests.usage.conftest import EVENTS_URL, event, make_catalog, post_events

pytestmark = pytest.mark.django_db


def stored(tenant):
    with tenant_context(tenant):
        return {
            e.event_id: e for e in UsageEvent.objects.select_related("account", "meter").order_by("event_id")
        }


def test_a_batch_is_stored_with_the_servers_receipt_time(client, cat_a):
    before = dt.datetime.now(dt.UTC)
    body = [
        event(1, quantity=12.5),
        event(2, account_id="globex", meter="storage_gb", quantity="0.000000000001", properties={}),
        event(3, occurred_at="2026-10-15T14:00:00+02:00", received_at="2020-01-01T00:00:00Z"),
    ]
    response = post_events(client, cat_a.raw_key, body)
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["summary"] == {"accepted": 3, "duplicates": 0, "conflicts": 0, "rejected": 0}
    assert data["errors"] == []
    events = stored(cat_a.tenant)
    assert set(events) == {"evt-1", "evt-2", "evt-3"}
    one, two, three = events["evt-1"], events["evt-2"], events["evt-3"]
    assert one.quantity == Decimal("12.5") and one.account.key == "acme" and one.meter.key == "api_calls"
    assert two.quantity == Decimal("0.000000000001") and two.account.key == "globex"
    assert one.properties == {"region": "eu"} and two.properties == {}
    assert three.occurred_at == dt.datetime(2026, 10, 15, 12, tzinfo=dt.UTC)
    # received_at is the server's clock, whatever the client says
    assert all(before <= e.received_at <= dt.datetime.now(dt.UTC) for e in events.values())
    assert {e.source for e in events.values()} == {"api"}
    with tenant_context(cat_a.tenant):
        batch = IngestBatch.objects.select_related("api_key").get(pk=data["batch_id"])
    assert (batch.events, batch.accepted, batch.api_key.name) == (3, 3, "admin key")
    assert {e.batch_id for e in events.values()} == {batch.pk}


def test_ndjson_is_accepted_one_event_per_line(client, cat_a):
    lines = [event(1), event(2), {"event_id": "evt-3"}, event(4)]

    body = (
        "\n".join(json.dumps(line) for line in lines[:2])
        + "\n\n"
        + "\n".join(json.dumps(line) for line in lines[2:])
    )
    response = post_events(client, cat_a.raw_key, body, content_type="application/x-ndjson")
    assert response.status_code == 200
    data = response.json()
    assert data["summary"] == {"accepted": 3, "duplicates": 0, "conflicts": 0, "rejected": 1}
    assert [(e["index"], e["event_id"], e["field"], e["code"]) for e in data["errors"]] == [
        (2, "evt-3", "account_id", "required")
    ]
    assert set(stored(cat_a.tenant)) == {"evt-1", "evt-2", "evt-4"}


def test_a_resent_event_is_acknowledged_once_and_a_changed_one_is_a_conflict(client, cat_a):
    first = post_events(client, cat_a.raw_key, [event(1), event(2), event(3)])
    assert first.json()["summary"]["accepted"] == 3
    original = stored(cat_a.tenant)["evt-2"]
    again = post_events(
        client,
        cat_a.raw_key,
        [
            event(1),  # the same event: acknowledged, not stored again
            event(2, quantity="11"),  # same id, different content: a conflict, the stored one stays
            event(3, quantity="10.000", properties={"region": "eu"}),  # the same value, written differently
            event(4),
        ],
    )
    data = again.json()
    assert data["summary"] == {"accepted": 1, "duplicates": 2, "conflicts": 1, "rejected": 0}
    assert len(data["errors"]) == 1
    error = data["errors"][0]
    assert (error["index"], error["event_id"], error["field"], error["code"]) == (
        1,
        "evt-2",
        "event_id",
        "conflict",
    )
    assert "different content" in error["message"]
    events = stored(cat_a.tenant)
    assert len(events) == 4
    assert events["evt-2"].quantity == Decimal("10") and events["evt-2"].received_at == original.received_at


def test_repeats_of_a_conflicting_event_are_conflicts_too(client, cat_a):
    post_events(client, cat_a.raw_key, [event(1)])
    data = post_events(
        client, cat_a.raw_key, [event(1, quantity="2"), event(2), event(1, quantity="2")]
    ).json()
    assert data["summary"] == {"accepted": 1, "duplicates": 0, "conflicts": 2, "rejected": 0}
    assert [(e["index"], e["code"]) for e in data["errors"]] == [(0, "conflict"), (2, "conflict")]


def test_duplicates_inside_one_batch_count_once(client, cat_a):
    response = post_events(
        client, cat_a.raw_key, [event(1), event(1), event(1, quantity="99"), event(2), event(2)]
    )
    data = response.json()
    assert data["summary"] == {"accepted": 2, "duplicates": 2, "conflicts": 1, "rejected": 0}
    assert [(e["index"], e["code"]) for e in data["errors"]] == [(2, "conflict")]
    assert stored(cat_a.tenant)["evt-1"].quantity == Decimal("10")


def test_good_events_are_stored_and_each_bad_one_is_reported(client, cat_a):
    body = [
        event(0),
        event(1, account_id="nobody"),
        event(2, meter="no_such_meter"),
        event(3, quantity="-1"),
        event(4, quantity="1.0000000000001"),
        event(5, quantity="NaN"),
        event(6, quantity=True),
        event(7, occurred_at="2026-10-15T12:00:00"),
        event(8, occurred_at="yesterday"),
        event(9, properties=["not", "an", "object"]),
        event(10, event_id=""),
        event(11, event_id="x" * 256),
        event(12, event_id="tab\there"),
        event(13, occurred_at=(dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat()),
        event(14, properties={"bad": "\u0000"}),
        {"account_id": "acme"},
        "not an object",
        event(17, quantity="1e25"),
        event(18),
        event(19, quantity="1.500000000000000"),  # trailing zeros: exact at 12 places
    ]
    response = post_events(client, cat_a.raw_key, body)
    assert response.status_code == 200
    data = response.json()
    expected = {
        1: ("account_id", "unknown_account"),
        2: ("meter", "unknown_meter"),
        3: ("quantity", "invalid"),
        4: ("quantity", "invalid"),
        5: ("quantity", "invalid"),
        6: ("quantity", "invalid"),
        7: ("occurred_at", "invalid"),
        8: ("occurred_at", "invalid"),
        9: ("properties", "invalid"),
        10: ("event_id", "required"),
        11: ("event_id", "invalid"),
        12: ("event_id", "invalid"),
        13: ("occurred_at", "in_future"),
        14: ("properties", "invalid"),
        15: ("event_id", "required"),
        16: (None, "invalid"),
        17: ("quantity", "invalid"),
    }
    assert {e["index"]: (e["field"], e["code"]) for e in data["errors"]} == expected
    assert all(e["message"] for e in data["errors"])
    assert data["summary"] == {"accepted": 3, "duplicates": 0, "conflicts": 0, "rejected": len(expected)}
    # nothing else is lost: every event is accounted for, and the good ones are stored
    assert sum(data["summary"].values()) == len(body)
    assert set(stored(cat_a.tenant)) == {"evt-0", "evt-18", "evt-19"}


def test_unknown_accounts_are_created_when_the_tenant_asks_for_it(client, cat_a):
    UsageSettingsFactory(tenant=cat_a.tenant, auto_create_accounts=True)
    response = post_events(
        client, cat_a.raw_key, [event(1, account_id="newco"), event(2, account_id="newco"), event(3)]
    )
    assert response.json()["summary"]["accepted"] == 3
    with tenant_context(cat_a.tenant):
        account = Account.objects.get(key="newco")
        audit = AuditEvent.objects.get(action="account.create", object_id=str(account.pk))
    assert account.timezone == cat_a.tenant.default_timezone
    assert audit.actor_label.startswith("api-key:")
    assert stored(cat_a.tenant)["evt-1"].account == account


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"[1, 2", "application/json", 400, "invalid_json"),
        (b'{"event_id": "x"}', "application/json", 400, "invalid_json"),
        (b"   ", "application/json", 400, "empty"),
        (b"event_id,account_id\n", "text/csv", 415, "unsupported_media_type"),
    ],
)
def test_unreadable_bodies_are_refused_whole(client, cat_a, body, content_type, status, code):
    response = post_events(client, cat_a.raw_key, body, content_type=content_type)
    assert response.status_code == status
    assert response.json()["errors"][0]["code"] == code
    assert stored(cat_a.tenant) == {}


def test_oversized_requests_get_a_clear_413(client, cat_a, monkeypatch):
    too_many = [event(n) for n in range(10_001)]
    response = post_events(client, cat_a.raw_key, too_many)
    assert response.status_code == 413
    error = response.json()["errors"][0]
    assert error["code"] == "too_large" and "10001 events" in error["message"] and "10000" in error["message"]
    monkeypatch.setattr("apps.usage.apis.MAX_BODY_BYTES", 1024)
    big = post_events(client, cat_a.raw_key, [event(n) for n in range(20)])
    assert big.status_code == 413 and "MiB" in big.json()["errors"][0]["message"]
    assert stored(cat_a.tenant) == {}


def test_10000_events_in_one_request_are_taken(client, cat_a):
    response = post_events(client, cat_a.raw_key, [event(n) for n in range(10_000)])
    assert response.status_code == 200
    assert response.json()["summary"]["accepted"] == 10_000
    assert len(stored(cat_a.tenant)) == 10_000


@pytest.mark.parametrize("role", [Role.ADMIN, Role.REVOPS])
def test_roles_that_send_events(client, tenant_a, role):
    catalog = make_catalog(tenant_a, role)
    assert post_events(client, catalog.raw_key, [event(1)]).status_code == 200


@pytest.mark.parametrize("role", [Role.VIEWER, Role.CSM, Role.FINANCE_ANALYST, Role.FINANCE_APPROVER])
def test_roles_that_may_not_send_events_are_refused(client, tenant_a, role):
    catalog = make_catalog(tenant_a, role)
    assert post_events(client, catalog.raw_key, [event(1)]).status_code == 403
    assert client.get(EVENTS_URL, HTTP_AUTHORIZATION=f"Bearer {catalog.raw_key}").status_code == 200
    assert stored(tenant_a) == {}


def test_a_revoked_key_is_refused(client, cat_a):
    key, raw = api_key_for(cat_a.tenant)
    assert post_events(client, raw, [event(1)]).status_code == 200
    with tenant_context(cat_a.tenant):
        apikey_revoke(key=key, actor=None)
    refused = post_events(client, raw, [event(2)])
    assert refused.status_code == 401 and refused.json()["errors"][0]["code"] == "invalid_api_key"
    assert client.get(EVENTS_URL, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401
    assert set(stored(cat_a.tenant)) == {"evt-1"}


def test_no_key_no_events(client, cat_a):
    assert client.post(EVENTS_URL, data="[]", content_type="application/json").status_code in (401, 403)


def test_tenant_a_key_can_neither_write_nor_read_tenant_b_events(client, cat_a, cat_b):
    post_events(client, cat_b.raw_key, [event(1, quantity="5"), event(2)])
    # A names B's event ids: they are A's own ids, stored in A, and B's events do not change
    response = post_events(client, cat_a.raw_key, [event(1, quantity="7")])
    assert response.json()["summary"]["accepted"] == 1
    # A cannot reach B's accounts either: B's account keys are just unknown in A
    AccountFactory(tenant=cat_b.tenant, key="only-in-b")
    rejected = post_events(client, cat_a.raw_key, [event(3, account_id="only-in-b")]).json()
    assert rejected["errors"][0]["code"] == "unknown_account"
    b_events = stored(cat_b.tenant)
    assert set(b_events) == {"evt-1", "evt-2"} and b_events["evt-1"].quantity == Decimal("5")
    assert stored(cat_a.tenant)["evt-1"].quantity == Decimal("7")
    # reading: A's key sees only A's events, even asking for B's ids or accounts
    auth = {"HTTP_AUTHORIZATION": f"Bearer {cat_a.raw_key}"}
    listed = client.get(EVENTS_URL, {"event_id": ["evt-1", "evt-2"]}, **auth).json()["results"]
    assert [(e["event_id"], e["quantity"]) for e in listed] == [("evt-1", "7.000000000000")]
    assert (
        client.get(
            EVENTS_URL, {"account_id": "only-in-b", "occurred_from": "2026-01-01T00:00:00Z"}, **auth
        ).json()["results"]
        == []
    )


def test_events_can_be_read_back_by_id_account_and_time(client, cat_a):
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    post_events(
        client,
        cat_a.raw_key,
        [
            event("old", occurred_at="2026-01-01T00:00:00Z"),
            event("recent", occurred_at=now.isoformat()),
            event("other", account_id="globex", occurred_at=now.isoformat()),
        ],
    )
    auth = {"HTTP_AUTHORIZATION": f"Bearer {cat_a.raw_key}"}
    recent = client.get(EVENTS_URL, **auth).json()["results"]
    assert {e["event_id"] for e in recent} == {"evt-recent", "evt-other"}, "default: the last 7 days"
    by_account = client.get(EVENTS_URL, {"account_id": "globex"}, **auth).json()["results"]
    assert [e["event_id"] for e in by_account] == ["evt-other"]
    by_id = client.get(EVENTS_URL, {"event_id": "evt-old"}, **auth).json()["results"]
    assert by_id[0]["account_id"] == "acme" and by_id[0]["meter"] == "api_calls"
    assert by_id[0]["properties"] == {"region": "eu"}
    ranged = client.get(
        EVENTS_URL, {"occurred_from": "2025-12-01T00:00:00Z", "occurred_to": "2026-02-01T00:00:00Z"}, **auth
    ).json()["results"]
    assert [e["event_id"] for e in ranged] == ["evt-old"]
    bad = client.get(EVENTS_URL, {"occurred_from": "last week"}, **auth)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "occurred_from"


def test_events_are_immutable(cat_a, client):
    post_events(client, cat_a.raw_key, [event(1)])
    event_row = stored(cat_a.tenant)["evt-1"]
    with tenant_context(cat_a.tenant):
        with pytest.raises(TypeError):
            event_row.save()
        with pytest.raises(TypeError):
            UsageEvent.objects.filter(event_id="evt-1").update(quantity=2)
    with (
        tenant_context(cat_a.tenant),
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE usage_usageevent SET quantity = 2")
