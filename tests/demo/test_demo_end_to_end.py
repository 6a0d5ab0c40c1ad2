"""The first-run demo, end to end: the Stripe world is replayed through the sandbox and the events
API, synced by the real adapter, reconciled for three months, and every injected fault is found,
classified as intended, and shown in the queue. Nothing else is flagged."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.demo.loader import load_stripe_demo
from apps.demo.scenario import stripe_world
from apps.reconciliation.models import Discrepancy
from apps.tenancy.context import tenant_context
from apps.tenancy.roles import Role
from apps.tenancy.services import tenant_create
from tests.conftest import member
from tests.providers.conftest import stripe_sandbox  # noqa: F401 - the sandbox fixture

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_injected_fault_is_found_classified_and_in_the_queue(stripe_sandbox: Any) -> None:  # noqa: F811
    tenant = tenant_create(slug="northwind", name="Northwind Cloud", default_timezone="America/New_York")
    world = stripe_world()
    said: list[str] = []
    assert load_stripe_demo(
        tenant, world, url=stripe_sandbox.url, api_key=stripe_sandbox.api_key, users={}, say=said.append
    )

    with tenant_context(tenant):
        found = {
            (d.account.key, d.meter.key if d.meter else None, d.period): d
            for d in Discrepancy.objects.select_related("account", "meter")
        }
    for fault in world.expected:
        finding = found.pop((fault.account, fault.meter, fault.period), None)
        assert finding is not None, f"{fault.fault} not found: {fault}"
        assert finding.classification == fault.classification, (fault, finding.classification)
        assert finding.source == fault.source, (fault, finding.source)
    assert found == {}, f"flagged without a fault: {sorted(found)}"

    # Running it again reuses what is there.
    assert not load_stripe_demo(
        tenant, world, url=stripe_sandbox.url, api_key=stripe_sandbox.api_key, users={}, say=said.append
    )

    analyst = member(tenant, Role.FINANCE_ANALYST)
    client = Client()
    client.force_login(analyst)
    queue = client.get(f"/t/{tenant.slug}/reconciliation/discrepancies/").content.decode()
    for fault in world.expected:
        assert world.customer(fault.account).name in queue, fault
