from __future__ import annotations

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from apps.accounts.services import account_create, account_update
from apps.audit.models import AuditEvent, AuditLogIsAppendOnly
from apps.audit.services import audit_record
from apps.common.request_id import reset_request_id, set_request_id
from apps.tenancy.context import tenant_context
from tests.factories import AccountFactory, AuditEventFactory, api_key_for

pytestmark = pytest.mark.django_db


def test_the_model_refuses_updates_and_deletes(tenant_a):
    event = AuditEventFactory(tenant=tenant_a)
    with tenant_context(tenant_a):
        event.action = "changed"
        with pytest.raises(AuditLogIsAppendOnly):
            event.save()
        with pytest.raises(AuditLogIsAppendOnly):
            event.delete()
        with pytest.raises(AuditLogIsAppendOnly):
            AuditEvent.objects.filter(pk=event.pk).update(action="changed")
        with pytest.raises(AuditLogIsAppendOnly):
            AuditEvent.objects.all().delete()
        assert AuditEvent.objects.get(pk=event.pk).action == "test.event"


def test_the_database_rejects_updates_and_deletes_too(tenant_a):
    """Raw SQL bypasses the model; the trigger still stops it (PostgreSQL and SQLite)."""
    event = AuditEventFactory(tenant=tenant_a)
    errors = (DatabaseError, IntegrityError)
    with tenant_context(tenant_a), connection.cursor() as cursor:
        with pytest.raises(errors, match="append-only"), transaction.atomic():
            cursor.execute("UPDATE audit_auditevent SET action = 'x' WHERE id = %s", [event.pk])
        with pytest.raises(errors, match="append-only"), transaction.atomic():
            cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [event.pk])
        cursor.execute("SELECT action FROM audit_auditevent WHERE id = %s", [event.pk])
        assert cursor.fetchone()[0] == "test.event"


def test_a_service_write_records_who_what_before_after_and_the_request(tenant_a, admin_a):
    token = set_request_id("req-1234567890")
    try:
        with tenant_context(tenant_a):
            account = account_create(actor=admin_a, key="acme", name="Acme", segment="smb")
            account_update(account=account, actor=admin_a, data={"segment": "enterprise", "name": "Acme"})
            events = list(AuditEvent.objects.order_by("id"))
    finally:
        reset_request_id(token)
    assert [e.action for e in events] == ["account.create", "account.update"]
    update = events[1]
    assert update.tenant_id == tenant_a.pk
    assert update.actor == admin_a and update.actor_label == "admin@alpha.test"
    assert (update.object_type, update.object_id, update.object_repr) == (
        "accounts.account",
        str(account.pk),
        "Acme",
    )
    assert update.before == {"segment": "smb"} and update.after == {"segment": "enterprise"}
    assert update.request_id == "req-1234567890"
    assert update.created_at is not None


def test_an_unchanged_update_records_nothing(tenant_a, admin_a):
    account = AccountFactory(tenant=tenant_a, segment="smb")
    with tenant_context(tenant_a):
        account_update(account=account, actor=admin_a, data={"segment": "smb"})
        assert not AuditEvent.objects.exists()


def test_api_key_actors_are_named(tenant_a):
    key, _ = api_key_for(tenant_a)
    with tenant_context(tenant_a):
        event = audit_record(actor=key, action="x.y")
    assert event.actor is None and event.actor_label.startswith("api-key:")


def test_web_requests_stamp_their_request_id(client, tenant_a, admin_a):
    account = AccountFactory(tenant=tenant_a)
    client.force_login(admin_a)
    response = client.post(
        f"/t/{tenant_a.slug}/accounts/{account.pk}/edit/",
        {"name": "Renamed", "segment": "smb", "timezone": "UTC", "csm_owner": ""},
        HTTP_X_REQUEST_ID="trace-abcdef123",
    )
    assert response.status_code == 302
    assert response["X-Request-ID"] == "trace-abcdef123"
    with tenant_context(tenant_a):
        event = AuditEvent.objects.get(action="account.update")
    assert event.request_id == "trace-abcdef123" and event.after["name"] == "Renamed"
