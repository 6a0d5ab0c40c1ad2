from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from apps import pricing
from apps.audit.models import AuditEvent
from apps.catalog.models import Charge, Meter, Plan, PlanVersion, Tier
from apps.catalog.selectors import engine_charge, override_for, version_in_effect
from apps.catalog.services import (
    ChargeSpec,
    catalog_import,
    charge_save,
    override_create,
    phase_create,
    plan_version_create,
)
from apps.tenancy.context import tenant_context
from tests.factories import (
    AccountFactory,
    MeterFactory,
    PlanFactory,
    PlanVersionFactory,
    SubscriptionPhaseFactory,
)

pytestmark = pytest.mark.django_db
D = Decimal
BUNDLE = Path(__file__).resolve().parents[1] / "data" / "bundle-2026-10"
OCT_1 = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
SEED = ChargeSpec(
    model="graduated", tiers=(pricing.Tier(D(1), D(10)), pricing.Tier(D(10), D(8)), pricing.Tier(None, D(5)))
)


def test_a_charge_is_saved_with_its_tiers_and_prices_the_seed_example(tenant_a, admin_a):
    meter = MeterFactory(tenant=tenant_a, key="api_calls", unit_size=D(1000), rounding="up")
    version = PlanVersionFactory(tenant=tenant_a)
    with tenant_context(tenant_a):
        charge = charge_save(actor=admin_a, version=version, meter=meter, spec=SEED)
        units = pricing.to_billing_units(D(25_000), meter.unit_size, meter.rounding)
        assert pricing.price_units(engine_charge(charge), units).total("USD") == D("157.00")
        assert list(Tier.objects.filter(charge=charge).values_list("position", "up_to")) == [
            (0, D(1)),
            (1, D(10)),
            (2, None),
        ]
        event = AuditEvent.objects.get(action="charge.save")
    assert [t["up_to"] for t in event.after["tiers"]] == ["1.000000000000", "10.000000000000", None]


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        (
            ChargeSpec(
                model="graduated",
                tiers=(pricing.Tier(D(10), D(1)), pricing.Tier(D(5), D(1)), pricing.Tier(None, D(1))),
            ),
            "tiers[1].up_to",
            "strictly increases",
        ),
        (
            ChargeSpec(model="graduated", tiers=(pricing.Tier(D(10), D(1)),)),
            "tiers[0].up_to",
            "last tier must be open",
        ),
        (ChargeSpec(model="volume", tiers=(pricing.Tier(None, D(-1)),)), "tiers[0].unit_amount", "negative"),
        (
            ChargeSpec(model="package", package_size=D(0), package_amount=D(40)),
            "package_size",
            "greater than 0",
        ),
        (ChargeSpec(model="per_unit"), "unit_amount", "required"),
    ],
)
def test_a_bad_charge_is_refused_with_its_field_and_reason_and_nothing_is_saved(
    tenant_a, admin_a, spec, field, reason
):
    version = PlanVersionFactory(tenant=tenant_a)
    meter = MeterFactory(tenant=tenant_a)
    with tenant_context(tenant_a):
        charge_save(actor=admin_a, version=version, meter=meter, spec=SEED)
        with pytest.raises(ValidationError) as raised:
            charge_save(actor=admin_a, version=version, meter=meter, spec=spec)
        assert field in raised.value.message_dict
        assert any(reason in message for message in raised.value.message_dict[field])
        # the previous, valid charge is untouched: never half-saved
        charge = Charge.objects.get(plan_version=version, meter=meter)
        assert charge.model == "graduated" and charge.tiers.count() == 3


def test_a_locked_version_cannot_change(tenant_a, admin_a):
    version = PlanVersionFactory(tenant=tenant_a)
    meter = MeterFactory(tenant=tenant_a)
    with tenant_context(tenant_a):
        PlanVersion.objects.filter(pk=version.pk).update(locked_at=OCT_1)
        version.refresh_from_db()
        with pytest.raises(ValidationError, match="can no longer change"):
            charge_save(actor=admin_a, version=version, meter=meter, spec=SEED)


def test_a_new_version_copies_the_charges_and_takes_effect_by_date(tenant_a, admin_a):
    plan = PlanFactory(tenant=tenant_a)
    meter = MeterFactory(tenant=tenant_a)
    first = PlanVersionFactory(
        tenant=tenant_a, plan=plan, effective_from=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    )
    with tenant_context(tenant_a):
        charge_save(actor=admin_a, version=first, meter=meter, spec=SEED)
        second = plan_version_create(
            actor=admin_a, plan=plan, effective_from=OCT_1, base_fee=D("120"), copy_from=first
        )
        assert second.number == first.number + 1
        assert engine_charge(second.charges.get()) == engine_charge(first.charges.get())
        assert version_in_effect(plan, OCT_1 - dt.timedelta(seconds=1)) == first
        assert version_in_effect(plan, OCT_1) == second


def test_account_overrides_beat_segment_overrides(tenant_a, admin_a):
    account = AccountFactory(tenant=tenant_a, segment="enterprise")
    meter = MeterFactory(tenant=tenant_a)
    plan = PlanFactory(tenant=tenant_a)
    with tenant_context(tenant_a):
        assert override_for(account, meter, plan, OCT_1) is None
        segment = override_create(
            actor=admin_a,
            meter=meter,
            segment="enterprise",
            effective_from=OCT_1,
            spec=ChargeSpec(model="per_unit", unit_amount=D("0.5")),
            reason="deal",
        )
        assert override_for(account, meter, plan, OCT_1) == segment
        own = override_create(
            actor=admin_a,
            meter=meter,
            account=account,
            effective_from=OCT_1,
            effective_to=OCT_1 + dt.timedelta(days=31),
            spec=ChargeSpec(model="per_unit", unit_amount=D("0.4")),
            reason="contract",
        )
        assert override_for(account, meter, plan, OCT_1 + dt.timedelta(days=3)) == own
        assert override_for(account, meter, plan, OCT_1 + dt.timedelta(days=31)) == segment
        with pytest.raises(ValidationError):
            override_create(
                actor=admin_a,
                meter=meter,
                effective_from=OCT_1,
                reason="for nobody",
                spec=ChargeSpec(model="per_unit", unit_amount=D(1)),
            )


def test_phases_cannot_overlap(tenant_a, admin_a):
    account = AccountFactory(tenant=tenant_a)
    plan = PlanFactory(tenant=tenant_a)
    SubscriptionPhaseFactory(
        tenant=tenant_a, account=account, plan=plan, starts_at=OCT_1, ends_at=OCT_1 + dt.timedelta(days=14)
    )
    with tenant_context(tenant_a):
        phase_create(actor=admin_a, account=account, plan=plan, starts_at=OCT_1 + dt.timedelta(days=14))
        with pytest.raises(ValidationError, match="overlaps"):
            phase_create(actor=admin_a, account=account, plan=plan, starts_at=OCT_1 + dt.timedelta(days=20))


def test_the_example_catalogue_imports_and_a_bad_one_saves_nothing(tenant_a, admin_a):
    data = json.loads((BUNDLE / "pricing.json").read_text())
    with tenant_context(tenant_a):
        catalog_import(actor=admin_a, data=data, effective_from=OCT_1)
        assert set(Meter.objects.values_list("key", flat=True)) == {m["key"] for m in data["meters"]}
        assert Plan.objects.count() == len(data["plans"])
        growth = PlanVersion.objects.get(plan__key="growth")
        assert growth.base_fee == D("99.00") and growth.charges.count() == 2
        broken = json.loads(json.dumps(data))
        broken["plans"][0]["charges"][0]["tiers"][1]["up_to"] = "0.5"
        broken["meters"].append({"key": "new_meter", "name": "New", "unit_size": "1", "rounding": "none"})
        with pytest.raises(ValidationError) as raised:
            catalog_import(actor=admin_a, data=broken, effective_from=OCT_1 + dt.timedelta(days=31))
        assert "plans[0].charges[0].tiers[1].up_to" in raised.value.message_dict
        assert not Meter.objects.filter(key="new_meter").exists()
        assert PlanVersion.objects.filter(plan__key="growth").count() == 1
