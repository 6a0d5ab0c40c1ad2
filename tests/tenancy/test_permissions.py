"""Each role can do exactly what the matrix says, and nothing more — in views, the API and services."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from apps.tenancy.permissions import authorize
from apps.tenancy.roles import MATRIX, Action, Role, role_can
from tests.conftest import member
from tests.factories import api_key_for
from tests.urlwalk import app_routes

# The product's role table (PRODUCT.md, "Who uses it"), written out: changing who may do
# what is a decision, so it must change here too.
EXPECTED = {
    Role.ADMIN: {
        "view",
        "audit.view",
        "export",
        "account.edit",
        "member.manage",
        "apikey.manage",
        "connection.manage",
        "events.ingest",
        "run.start",
    },
    Role.FINANCE_APPROVER: {
        "view",
        "audit.view",
        "export",
        "run.start",
        "discrepancy.work",
        "note.add",
        "credit.propose",
        "charge.propose",
        "proposal.approve",
        "period.signoff",
    },
    Role.FINANCE_ANALYST: {
        "view",
        "audit.view",
        "export",
        "run.start",
        "discrepancy.work",
        "note.add",
        "credit.propose",
        "charge.propose",
    },
    Role.REVOPS: {
        "view",
        "audit.view",
        "export",
        "account.edit",
        "catalog.edit",
        "settings.edit",
        "events.ingest",
        "run.start",
        "discrepancy.work",
        "note.add",
        "charge.propose",
    },
    Role.CSM: {"view", "export", "note.add", "credit.propose"},
    Role.VIEWER: {"view", "audit.view", "export"},
}


def test_the_matrix_is_the_products_role_table():
    assert {role: set(actions) for role, actions in MATRIX.items()} == EXPECTED


def test_only_finance_approvers_approve_and_csms_never_do():
    approvers = {role for role in Role.values if role_can(role, Action.PROPOSAL_APPROVE)}
    assert approvers == {Role.FINANCE_APPROVER}


@pytest.mark.parametrize("role", Role.values)
@pytest.mark.parametrize("action", Action.values)
def test_services_authorize_by_the_matrix(role, action):
    if action in EXPECTED[role]:
        authorize(role, action)
    else:
        with pytest.raises(PermissionDenied):
            authorize(role, action)


def test_unknown_roles_and_no_role_may_do_nothing():
    for action in Action.values:
        assert not role_can("owner", action)
        with pytest.raises(PermissionDenied):
            authorize(None, action)


TENANT_ROUTES = [r for r in app_routes() if "tenant_slug" in r.kwargs]


def _kwargs(route, tenant):
    from tests.tenancy.test_cross_tenant_urls import OBJECT_FACTORIES

    ids = {name: OBJECT_FACTORIES[name](tenant=tenant).pk for name in route.kwargs if name != "tenant_slug"}
    return {"tenant_slug": tenant.slug, **ids}


def test_every_tenant_view_declares_its_action():
    undeclared = [r.name for r in TENANT_ROUTES if not hasattr(r.callback, "required_action")]
    assert not undeclared, f"tenant views without @requires(...): {undeclared}"


@pytest.mark.django_db
@pytest.mark.parametrize("route", TENANT_ROUTES, ids=lambda r: r.name)
def test_views_enforce_the_matrix_for_every_role(route, client, tenant_a):
    for role in Role.values:
        client.force_login(member(tenant_a, role))
        url = reverse(route.name, kwargs=_kwargs(route, tenant_a))
        read = client.get(url)
        allowed = role_can(role, route.callback.required_action)
        assert (read.status_code != 403) == allowed, f"GET {route.name} as {role}: {read.status_code}"
        write = client.post(url, {})
        if write.status_code != 405:
            needed = route.callback.required_write_action
            allowed = any(role_can(role, a) for a in ((needed,) if isinstance(needed, str) else needed))
            assert (write.status_code != 403) == allowed, f"POST {route.name} as {role}: {write.status_code}"


@pytest.mark.django_db
@pytest.mark.parametrize("role", Role.values)
def test_api_keys_are_held_by_the_matrix(role, client, tenant_a):
    _, raw = api_key_for(tenant_a, role)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    assert client.get(reverse("api-account-list"), **auth).status_code == (
        200 if role_can(role, "view") else 403
    )
    created = client.post(
        reverse("api-account-list"),
        {"key": f"k-{role}", "name": "New"},
        content_type="application/json",
        **auth,
    )
    assert created.status_code == (201 if role_can(role, Action.ACCOUNT_EDIT) else 403), created.content
