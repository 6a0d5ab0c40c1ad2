"""An over-bill at a tenant connected to the Stripe sandbox (over real HTTP), and the people who act on it.

Shared by the approval tests here and the browser workflows (tests/browser/test_workflows.py);
test modules take the fixtures by importing them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
import requests

from apps.billing.services import connection_create
from apps.tenancy.context import tenant_context
from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import (
    AccountExternalIdFactory,
    AccountFactory,
    DiscrepancyFactory,
    InvoiceFactory,
    ReconciliationLineFactory,
)
from tests.providers.conftest import make_stripe_provider, stripe_sandbox, stripe_seeded
from tests.providers.test_stripe_read import _invoice

__all__ = [
    "World",
    "build_world",
    "credit_notes",
    "sandbox_requests",
    "stripe_sandbox",
    "stripe_seeded",
    "world",
]

OVER_BILLED = Decimal("40.00")


@dataclass
class World:
    tenant: Any
    finding: Any
    invoice: str  # the invoice's id at the sandbox
    people: dict[str, Any] = field(default_factory=dict)


def build_world(tenant: Any, sandbox: Any, seeded: dict[str, Any], *, domain: str = "alpha.test") -> World:
    """Acme was over-billed 40.00 USD on its finalized sandbox invoice; writes are enabled on the
    tenant's Stripe connection. People (password ``pw-for-tests``): analyst, approver, approver2, csm."""
    account = AccountFactory(tenant=tenant, name="Acme Ltd", key="acme")
    AccountExternalIdFactory(tenant=tenant, account=account, provider="stripe", external_id=seeded["acme"])
    invoice_id = _invoice(sandbox, seeded["acme"], seeded["sub"], finalize=True)
    InvoiceFactory(tenant=tenant, account=account, source="stripe", external_id=invoice_id)
    line = ReconciliationLineFactory(
        tenant=tenant,
        account=account,
        expected_amount=Decimal("60.00"),
        invoiced_amount=Decimal("100.00"),
        billed_amount=Decimal("100.00"),
        difference=-OVER_BILLED,
        direction="over",
        classification="over_bill",
    )
    finding = DiscrepancyFactory(
        tenant=tenant,
        line=line,
        account=account,
        amount=-OVER_BILLED,
        direction="over",
        classification="over_bill",
        owner_role=Role.CSM,
    )
    with tenant_context(tenant):
        connection = connection_create(
            actor=None,
            provider="stripe",
            name="Sandbox",
            base_url=sandbox.url,
            credentials={"api_key": sandbox.api_key},
        )
        connection.allow_writes = True
        connection.save(update_fields=["allow_writes"])
    people = {
        "analyst": member(tenant, Role.FINANCE_ANALYST, email=f"fiona@{domain}", full_name="Fiona Analyst"),
        "approver": member(
            tenant, Role.FINANCE_APPROVER, email=f"paula@{domain}", full_name="Paula Approver"
        ),
        "approver2": member(
            tenant, Role.FINANCE_APPROVER, email=f"quinn@{domain}", full_name="Quinn Approver"
        ),
        "csm": member(tenant, Role.CSM, email=f"cora@{domain}", full_name="Cora CSM"),
    }
    return World(tenant=tenant, finding=finding, invoice=invoice_id, people=people)


def credit_notes(sandbox: Any) -> list[Any]:
    """Every credit note the sandbox holds, read back through the official SDK."""
    return list(make_stripe_provider(sandbox).list_credit_notes().items)


def sandbox_requests(sandbox: Any, method: str, path: str) -> list[dict[str, Any]]:
    """The API requests the sandbox saw (its own log, over HTTP)."""
    response = requests.get(f"{sandbox.url}/_sandbox/requests", timeout=10)
    response.raise_for_status()
    return [r for r in response.json()["data"] if (r["method"], r["path"]) == (method, path)]


@pytest.fixture
def world(tenant_a: Any, stripe_sandbox: Any, stripe_seeded: dict[str, Any]) -> World:
    return build_world(tenant_a, stripe_sandbox, stripe_seeded)
