"""Every URL that takes an object id answers 404 for another tenant's object, for every method.

URLs are found from the URLconf, so a new view is covered as soon as it is routed; its
id parameter only needs a factory in OBJECT_FACTORIES (the test fails until it has one).
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import (
    AccountFactory,
    ApiKeyFactory,
    DiscrepancyFactory,
    ImportJobFactory,
    MeterFactory,
    PlanFactory,
    PlanVersionFactory,
    ProposalFactory,
    ProviderConnectionFactory,
    ReconciliationLineFactory,
    ReconciliationRunFactory,
    RoutingRuleFactory,
    ThresholdFactory,
    api_key_for,
)
from tests.urlwalk import app_routes

pytestmark = pytest.mark.django_db

OBJECT_FACTORIES = {
    "account_id": AccountFactory,
    "meter_id": MeterFactory,
    "plan_id": PlanFactory,
    "version_id": PlanVersionFactory,
    "key_id": ApiKeyFactory,
    "run_id": ReconciliationRunFactory,
    "line_id": ReconciliationLineFactory,
    "connection_id": ProviderConnectionFactory,
    "discrepancy_id": DiscrepancyFactory,
    "proposal_id": ProposalFactory,
    "import_id": ImportJobFactory,
    "threshold_id": ThresholdFactory,
    "routing_rule_id": RoutingRuleFactory,
}
METHODS = ["get", "post", "put", "patch", "delete"]
# Provider webhooks name a connection, not a user's object: they are authenticated by the
# provider's signature or credentials, which tests/billing/test_connections_and_webhooks.py covers.
SIGNED_BY_THE_PROVIDER = {"webhook-stripe", "webhook-chargebee"}
ID_ROUTES = [
    r for r in app_routes() if set(r.kwargs) - {"tenant_slug"} and r.name not in SIGNED_BY_THE_PROVIDER
]


def test_routes_with_ids_were_found():
    assert any(r.name == "account-detail" for r in ID_ROUTES)
    assert any(r.name == "api-account-detail" for r in ID_ROUTES)


@pytest.mark.parametrize("route", ID_ROUTES, ids=lambda r: r.name)
def test_another_tenants_object_is_not_found(route, client, tenant_a, tenant_b):
    ids = set(route.kwargs) - {"tenant_slug"}
    missing = ids - set(OBJECT_FACTORIES)
    assert not missing, f"{route.name}: add a factory for {missing} to OBJECT_FACTORIES"
    own = {name: OBJECT_FACTORIES[name](tenant=tenant_a).pk for name in ids}
    theirs = {name: OBJECT_FACTORIES[name](tenant=tenant_b).pk for name in ids}
    is_api = "tenant_slug" not in route.kwargs

    def call(method, kwargs, role):
        if is_api:
            _, raw = api_key_for(tenant_a, role)
            extra = {} if method == "get" else {"data": "{}", "content_type": "application/json"}
            return getattr(client, method)(
                reverse(route.name, kwargs=kwargs), HTTP_AUTHORIZATION=f"Bearer {raw}", **extra
            )
        client.force_login(users[role])
        return getattr(client, method)(reverse(route.name, kwargs={"tenant_slug": tenant_a.slug, **kwargs}))

    users = {role: member(tenant_a, role) for role in Role.values} if not is_api else {}
    not_found = 0
    for role in Role.values:
        for method in METHODS:
            response = call(method, theirs, role)
            if response.status_code == 405:
                continue
            if response.status_code == 403:
                # allowed only when the role may not do this to its own tenant's object either
                assert call(method, own, role).status_code == 403, (
                    f"{method} {route.name} as {role}: 403 leaks"
                )
                continue
            assert response.status_code == 404, (
                f"{method.upper()} {route.name} as {role}: {response.status_code}"
            )
            not_found += 1
    assert not_found, f"{route.name}: no role/method reached the object lookup"
