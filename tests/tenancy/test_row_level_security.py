"""The database wall: row-level security on every tenant table (PostgreSQL).

Tables are found from the models, so a new tenant model is covered as soon as it
exists; it only needs a factory below (the test fails until it has one).
"""

from __future__ import annotations

import pytest
from django.apps import apps
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from apps.tenancy.context import tenant_context, unscoped_context
from apps.tenancy.models import TenantModel
from tests import factories

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

FACTORIES = {
    "tenancy.Membership": factories.MembershipFactory,
    "tenancy.ApiKey": factories.ApiKeyFactory,
    "accounts.Account": factories.AccountFactory,
    "accounts.AccountExternalId": factories.AccountExternalIdFactory,
    "accounts.AccountNote": factories.AccountNoteFactory,
    "audit.AuditEvent": factories.AuditEventFactory,
    "catalog.Meter": factories.MeterFactory,
    "catalog.Plan": factories.PlanFactory,
    "catalog.PlanVersion": factories.PlanVersionFactory,
    "catalog.Charge": factories.ChargeFactory,
    "catalog.Tier": factories.TierFactory,
    "catalog.PriceOverride": factories.PriceOverrideFactory,
    "catalog.SubscriptionPhase": factories.SubscriptionPhaseFactory,
    "billing.Invoice": factories.InvoiceFactory,
    "billing.InvoiceLine": factories.InvoiceLineFactory,
    "billing.CreditNote": factories.CreditNoteFactory,
    "billing.CreditNoteLine": factories.CreditNoteLineFactory,
    "billing.MeteredUsage": factories.MeteredUsageFactory,
    "billing.ProviderConnection": factories.ProviderConnectionFactory,
    "approvals.Proposal": factories.ProposalFactory,
    "approvals.Approval": factories.ApprovalFactory,
    "approvals.OutboxMessage": factories.OutboxMessageFactory,
    "billing.WebhookEvent": factories.WebhookEventFactory,
    "billing.UsagePushSettings": factories.UsagePushSettingsFactory,
    "billing.UsagePush": factories.UsagePushFactory,
    "reconciliation.ReconciliationRun": factories.ReconciliationRunFactory,
    "reconciliation.ReconciliationLine": factories.ReconciliationLineFactory,
    "reconciliation.Discrepancy": factories.DiscrepancyFactory,
    "reconciliation.DiscrepancyEvent": factories.DiscrepancyEventFactory,
    "reconciliation.Threshold": factories.ThresholdFactory,
    "reconciliation.RoutingRule": factories.RoutingRuleFactory,
    "reconciliation.ReconciliationSchedule": factories.ReconciliationScheduleFactory,
    "usage.UsageSettings": factories.UsageSettingsFactory,
    "usage.IngestBatch": factories.IngestBatchFactory,
    "usage.UsageEvent": factories.UsageEventFactory,
    "usage.ImportJob": factories.ImportJobFactory,
    "usage.ImportRowError": factories.ImportRowErrorFactory,
}


def tenant_models():
    return sorted((m for m in apps.get_models() if issubclass(m, TenantModel)), key=lambda m: m._meta.label)


def test_every_tenant_model_has_a_factory_here():
    missing = [m._meta.label for m in tenant_models() if m._meta.label not in FACTORIES]
    assert not missing, f"add factories for {missing} so the RLS tests cover their tables"


def _seed(model, tenant_a, tenant_b):
    factory = FACTORIES[model._meta.label]
    factory(tenant=tenant_a)
    factory(tenant=tenant_b)
    table = model._meta.db_table
    with unscoped_context(reason="read a row of tenant B to copy"), connection.cursor() as cursor:
        cursor.execute(f'SELECT * FROM "{table}" WHERE tenant_id = %s LIMIT 1', [tenant_b.pk])
        columns = [c.name for c in cursor.description]
        row = dict(zip(columns, cursor.fetchone(), strict=True))
    row.pop(model._meta.pk.column)
    return table, row


def _assert_isolated(table, row, tenant_a, tenant_b):
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT DISTINCT tenant_id FROM "{table}"')
        visible = {r[0] for r in cursor.fetchall()}
        assert visible == {tenant_a.pk}, f"{table}: tenant A's context sees tenants {visible}"
        cursor.execute(f'SELECT count(*) FROM "{table}" WHERE tenant_id = %s', [tenant_b.pk])
        assert cursor.fetchone()[0] == 0
        columns = ", ".join(f'"{c}"' for c in row)
        placeholders = ", ".join(["%s"] * len(row))
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            cursor.execute(
                f'INSERT INTO "{table}" ({columns}) VALUES ({placeholders})',
                [_adapt(v) for v in row.values()],
            )
        # moving A's rows to B is refused too (the audit trigger refuses any UPDATE first)
        with (
            pytest.raises(DatabaseError, match=r"row-level security|append-only|permission denied"),
            transaction.atomic(),
        ):
            cursor.execute(f'UPDATE "{table}" SET tenant_id = %s', [tenant_b.pk])


def _adapt(value):
    from psycopg.types.json import Jsonb

    return Jsonb(value) if isinstance(value, (dict, list)) else value


@pytest.mark.parametrize("model", tenant_models(), ids=lambda m: m._meta.label)
def test_tenant_a_cannot_read_or_write_tenant_b_rows(model, tenant_a, tenant_b):
    table, row = _seed(model, tenant_a, tenant_b)
    with tenant_context(tenant_a):
        _assert_isolated(table, row, tenant_a, tenant_b)


def _app_role_available():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_has_role(current_user, %s, 'MEMBER') FROM pg_roles WHERE rolname = %s",
            [settings.DATABASE_APP_ROLE, settings.DATABASE_APP_ROLE],
        )
        row = cursor.fetchone()
    return bool(row and row[0])


@pytest.mark.parametrize("model", tenant_models(), ids=lambda m: m._meta.label)
def test_the_app_role_is_held_by_the_same_policies(model, tenant_a, tenant_b):
    if not _app_role_available():
        pytest.skip(f"role {settings.DATABASE_APP_ROLE} does not exist or is not granted to the test role")
    table, row = _seed(model, tenant_a, tenant_b)
    with tenant_context(tenant_a), connection.cursor() as cursor:
        cursor.execute(f'SET LOCAL ROLE "{settings.DATABASE_APP_ROLE}"')
        _assert_isolated(table, row, tenant_a, tenant_b)


def test_without_a_context_the_database_shows_no_tenant_rows(tenant_a):
    factories.AccountFactory(tenant=tenant_a)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM accounts_account")
        assert cursor.fetchone()[0] == 0


def test_the_app_role_is_neither_superuser_nor_owner_and_cannot_lift_rls(db):
    if not _app_role_available():
        pytest.skip(f"role {settings.DATABASE_APP_ROLE} does not exist or is not granted to the test role")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", [settings.DATABASE_APP_ROLE]
        )
        assert cursor.fetchone() == (False, False)
        cursor.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = %s",
            [settings.DATABASE_APP_ROLE],
        )
        assert cursor.fetchone()[0] == 0
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone()[0] is False, "the tests must not run as a superuser: RLS would not apply"
        with pytest.raises(DatabaseError, match="must be owner"), transaction.atomic():
            cursor.execute(f'SET LOCAL ROLE "{settings.DATABASE_APP_ROLE}"')
            cursor.execute("ALTER TABLE accounts_account DISABLE ROW LEVEL SECURITY")


@pytest.mark.django_db(transaction=True)
def test_the_tenant_setting_does_not_outlive_its_transaction(tenant_a):
    with tenant_context(tenant_a), connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('app.tenant_id', true)")
        assert cursor.fetchone()[0] == str(tenant_a.pk)
    # the same (pooled) connection, next "request": nothing carried over
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(current_setting('app.tenant_id', true), '')")
        assert cursor.fetchone()[0] == ""
