"""Factories. Tenant-owned objects are created inside the tenant's context, as the app does."""

from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model

from apps.accounts.models import Account, AccountExternalId, Provider
from apps.audit.models import AuditEvent
from apps.tenancy.context import tenant_context
from apps.tenancy.models import ApiKey, Membership, Tenant, hash_api_key
from apps.tenancy.roles import Role


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.Sequence(lambda n: f"Tenant {n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    full_name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests")

    @factory.post_generation
    def _save(obj, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create:
            obj.save()


class InTenant(factory.django.DjangoModelFactory):
    """Base for tenant-owned models: ``tenant=`` picks the context the object is created in."""

    class Meta:
        abstract = True

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Any:
        tenant = kwargs.pop("tenant")
        with tenant_context(tenant):
            obj = model_class(*args, **kwargs)
            obj.save()
        return obj


class MembershipFactory(InTenant):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    role = Role.ADMIN


class AccountFactory(InTenant):
    class Meta:
        model = Account

    key = factory.Sequence(lambda n: f"acct-{n}")
    name = factory.Sequence(lambda n: f"Customer {n}")
    segment = "enterprise"
    timezone = "America/New_York"


class AccountExternalIdFactory(InTenant):
    class Meta:
        model = AccountExternalId

    provider = Provider.STRIPE
    external_id = factory.Sequence(lambda n: f"cus_{n:08d}")

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Any:
        if "account" not in kwargs:
            kwargs["account"] = AccountFactory(tenant=kwargs["tenant"])
        return super()._create(model_class, *args, **kwargs)


class ApiKeyFactory(InTenant):
    class Meta:
        model = ApiKey

    name = factory.Sequence(lambda n: f"key {n}")
    role = Role.ADMIN
    prefix = factory.Sequence(lambda n: f"{n:08x}")
    key_hash = factory.Sequence(lambda n: hash_api_key(f"tu_factory_{n}"))


class AuditEventFactory(InTenant):
    class Meta:
        model = AuditEvent

    actor_label = "system"
    action = "test.event"


def api_key_for(tenant: Tenant, role: str = Role.ADMIN) -> tuple[ApiKey, str]:
    """A real key (raw value and row) in ``tenant``."""
    from apps.tenancy.services import apikey_create

    with tenant_context(tenant):
        return apikey_create(name=f"{role} key", role=role, actor=None)


# --- catalog ---------------------------------------------------------------
import datetime as dt  # noqa: E402
from decimal import Decimal  # noqa: E402

from apps.catalog.models import (  # noqa: E402
    Charge,
    Meter,
    Plan,
    PlanVersion,
    PriceOverride,
    SubscriptionPhase,
    Tier,
)

JAN_1 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class MeterFactory(InTenant):
    class Meta:
        model = Meter

    key = factory.Sequence(lambda n: f"meter_{n}")
    name = factory.Sequence(lambda n: f"Meter {n}")
    unit_size = Decimal(1)
    rounding = "none"


class PlanFactory(InTenant):
    class Meta:
        model = Plan

    key = factory.Sequence(lambda n: f"plan-{n}")
    name = factory.Sequence(lambda n: f"Plan {n}")
    currency = "USD"


class _WithTenantParent(InTenant):
    """Creates the parent objects a row needs in the same tenant when they are not given."""

    class Meta:
        abstract = True

    _parents: dict[str, Any] = {}

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Any:
        for name, parent in cls._parents.items():
            if name not in kwargs:
                kwargs[name] = parent(tenant=kwargs["tenant"])
        return super()._create(model_class, *args, **kwargs)


class PlanVersionFactory(_WithTenantParent):
    class Meta:
        model = PlanVersion

    _parents = {"plan": PlanFactory}
    number = factory.Sequence(lambda n: n + 1)
    effective_from = JAN_1
    base_fee = Decimal("99.00")


class ChargeFactory(_WithTenantParent):
    class Meta:
        model = Charge

    _parents = {"plan_version": PlanVersionFactory, "meter": MeterFactory}
    model = "per_unit"
    unit_amount = Decimal("0.01")


class TierFactory(_WithTenantParent):
    class Meta:
        model = Tier

    _parents = {"charge": ChargeFactory}
    position = 0
    up_to = None
    unit_amount = Decimal("5")


class PriceOverrideFactory(_WithTenantParent):
    class Meta:
        model = PriceOverride

    _parents = {"account": AccountFactory, "meter": MeterFactory}
    effective_from = JAN_1


class SubscriptionPhaseFactory(_WithTenantParent):
    class Meta:
        model = SubscriptionPhase

    _parents = {"account": AccountFactory, "plan": PlanFactory}
    starts_at = JAN_1


# --- billing ---------------------------------------------------------------
from apps.billing.models import CreditNote, CreditNoteLine, Invoice, InvoiceLine, MeteredUsage  # noqa: E402

OCT_1 = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
NOV_1 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


class InvoiceFactory(_WithTenantParent):
    class Meta:
        model = Invoice

    _parents = {"account": AccountFactory}
    source = "bundle"
    external_id = factory.Sequence(lambda n: f"in_{n:06d}")
    status = "finalized"
    currency = "USD"
    period_start = OCT_1
    period_end = NOV_1
    finalized_at = NOV_1


class InvoiceLineFactory(_WithTenantParent):
    class Meta:
        model = InvoiceLine

    _parents = {"invoice": InvoiceFactory}
    quantity = Decimal(1)
    amount = Decimal("99.00")


class CreditNoteFactory(_WithTenantParent):
    class Meta:
        model = CreditNote

    _parents = {"invoice": InvoiceFactory}
    source = "bundle"
    external_id = factory.Sequence(lambda n: f"cn_{n:06d}")
    issued_at = NOV_1


class CreditNoteLineFactory(_WithTenantParent):
    class Meta:
        model = CreditNoteLine

    _parents = {"credit_note": CreditNoteFactory}
    amount = Decimal("10.00")


class MeteredUsageFactory(_WithTenantParent):
    class Meta:
        model = MeteredUsage

    _parents = {"account": AccountFactory, "meter": MeterFactory}
    source = "bundle"
    period_start = OCT_1
    period_end = NOV_1
    quantity = Decimal(1000)


# --- reconciliation --------------------------------------------------------
from apps.reconciliation.models import (  # noqa: E402
    Discrepancy,
    DiscrepancyEvent,
    ReconciliationLine,
    ReconciliationRun,
    RoutingRule,
    Threshold,
)


class ReconciliationRunFactory(InTenant):
    class Meta:
        model = ReconciliationRun

    period = "2026-10"


class ReconciliationLineFactory(_WithTenantParent):
    class Meta:
        model = ReconciliationLine

    _parents = {"run": ReconciliationRunFactory, "account": AccountFactory}
    currency = "USD"
    expected_amount = Decimal("100.00")
    invoiced_amount = Decimal("90.00")
    credited_amount = Decimal(0)
    billed_amount = Decimal("90.00")
    difference = Decimal("10.00")
    classification = "under_bill"
    direction = "under"
    source = "billing"
    material = True


class DiscrepancyFactory(_WithTenantParent):
    class Meta:
        model = Discrepancy

    _parents = {"line": ReconciliationLineFactory}
    period = "2026-10"
    classification = "under_bill"
    direction = "under"
    currency = "USD"
    amount = Decimal("10.00")

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Any:
        if "line" not in kwargs:
            kwargs["line"] = ReconciliationLineFactory(tenant=kwargs["tenant"])
        line = kwargs["line"]
        kwargs.setdefault("account", line.account)
        kwargs.setdefault("first_seen_run", line.run)
        kwargs.setdefault("last_seen_run", line.run)
        return super()._create(model_class, *args, **kwargs)


class DiscrepancyEventFactory(_WithTenantParent):
    class Meta:
        model = DiscrepancyEvent

    _parents = {"discrepancy": DiscrepancyFactory}
    kind = "comment"
    text = "checked with the customer"


class ThresholdFactory(InTenant):
    class Meta:
        model = Threshold

    segment = factory.Sequence(lambda n: f"segment-{n}")
    absolute = Decimal("1.00")


class RoutingRuleFactory(InTenant):
    class Meta:
        model = RoutingRule

    classification = "under_bill"
    owner_role = "revops"


def add_events(tenant: Any, rows: list[tuple[Any, ...]]) -> None:
    """Store usage events: (event_id, account, meter, quantity, occurred_at, received_at) tuples."""
    from apps.usage.models import IngestBatch, UsageEvent

    with tenant_context(tenant):
        batch = IngestBatch.objects.create(source="bundle", events=len(rows))
        UsageEvent.objects.bulk_create(
            UsageEvent(
                event_id=event_id,
                account=account,
                meter=meter,
                quantity=Decimal(quantity),
                occurred_at=occurred_at,
                received_at=received_at,
                source="bundle",
                batch=batch,
            )
            for event_id, account, meter, quantity, occurred_at, received_at in rows
        )


# --- usage -----------------------------------------------------------------
from apps.usage.models import (  # noqa: E402
    ImportJob,
    ImportRowError,
    IngestBatch,
    UsageEvent,
    UsageSettings,
)


class UsageSettingsFactory(InTenant):
    class Meta:
        model = UsageSettings


class IngestBatchFactory(InTenant):
    class Meta:
        model = IngestBatch

    source = "api"


class UsageEventFactory(_WithTenantParent):
    class Meta:
        model = UsageEvent

    _parents = {"account": AccountFactory, "meter": MeterFactory, "batch": IngestBatchFactory}
    event_id = factory.Sequence(lambda n: f"evt-{n:08d}")
    quantity = Decimal("1")
    occurred_at = dt.datetime(2026, 10, 15, 12, tzinfo=dt.UTC)
    source = "api"


class ImportJobFactory(InTenant):
    class Meta:
        model = ImportJob

    source = "ui"
    filename = factory.Sequence(lambda n: f"events-{n}.csv")
    path = "/nonexistent/events.csv"
    status = "done"


class ImportRowErrorFactory(_WithTenantParent):
    class Meta:
        model = ImportRowError

    _parents = {"job": ImportJobFactory}
    line = 2
    field = "quantity"
    code = "invalid"
    reason = "Not a number: 'x'."


# --- provider connections --------------------------------------------------
from apps.billing.models import ProviderConnection, WebhookEvent  # noqa: E402


class ProviderConnectionFactory(InTenant):
    class Meta:
        model = ProviderConnection

    provider = "stripe"
    name = factory.Sequence(lambda n: f"Stripe {n}")
    public_id = factory.Sequence(lambda n: f"conn{n:08d}")
    base_url = "http://127.0.0.1:9"  # nothing listens there: a test never reaches a real provider
    credentials = ""


class WebhookEventFactory(_WithTenantParent):
    class Meta:
        model = WebhookEvent

    _parents = {"connection": ProviderConnectionFactory}
    event_id = factory.Sequence(lambda n: f"evt_{n:08d}")
    event_type = "invoice.created"
    payload = factory.LazyFunction(dict)


from apps.billing.models import UsagePush, UsagePushSettings  # noqa: E402


class UsagePushSettingsFactory(_WithTenantParent):
    class Meta:
        model = UsagePushSettings

    _parents = {"connection": ProviderConnectionFactory}
    enabled = True


class UsagePushFactory(_WithTenantParent):
    class Meta:
        model = UsagePush

    _parents = {"connection": ProviderConnectionFactory, "account": AccountFactory, "meter": MeterFactory}
    event_key = factory.Sequence(lambda n: f"evt-{n:08d}")
    quantity = Decimal("1")
    occurred_at = dt.datetime(2026, 10, 15, 12, tzinfo=dt.UTC)
    status = "dead"
    attempts = 8
    last_error = "Stripe: No such customer"


# --- approvals -------------------------------------------------------------
from apps.approvals.models import Approval, OutboxMessage, Proposal  # noqa: E402


class ProposalFactory(_WithTenantParent):
    class Meta:
        model = Proposal

    _parents = {"discrepancy": DiscrepancyFactory}
    kind = "credit_note"
    amount = Decimal("10.00")
    currency = "USD"

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Any:
        if "proposed_by" not in kwargs:
            kwargs["proposed_by"] = UserFactory()
        return super()._create(model_class, *args, **kwargs)


class ApprovalFactory(_WithTenantParent):
    class Meta:
        model = Approval

    _parents = {"proposal": ProposalFactory}
    approved = True

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Any:
        if "approver" not in kwargs:
            kwargs["approver"] = UserFactory()
        return super()._create(model_class, *args, **kwargs)


class OutboxMessageFactory(_WithTenantParent):
    class Meta:
        model = OutboxMessage

    _parents = {"proposal": ProposalFactory}
    idempotency_key = factory.Sequence(lambda n: f"trueup-test-{n}")


# --- account notes ---------------------------------------------------------
from apps.accounts.models import AccountNote  # noqa: E402


class AccountNoteFactory(_WithTenantParent):
    class Meta:
        model = AccountNote

    _parents = {"account": AccountFactory}
    author_label = "Cora CSM"
    body = "Renewal call booked; they asked about the October invoice."


# --- reconciliation schedule -----------------------------------------------
from apps.reconciliation.models import ReconciliationSchedule  # noqa: E402


class ReconciliationScheduleFactory(InTenant):
    class Meta:
        model = ReconciliationSchedule

    day_of_month = 2
    hour = 6
