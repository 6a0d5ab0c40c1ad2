from __future__ import annotations

import pytest
from django.urls import reverse

from apps.accounts.models import Account
from apps.accounts.services import account_external_id_set
from apps.audit.models import AuditEvent
from apps.tenancy.context import tenant_context
from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import AccountFactory, api_key_for

pytestmark = pytest.mark.django_db


def test_list_shows_only_this_tenants_accounts_and_filters(client, tenant_a, tenant_b, admin_a):
    AccountFactory(tenant=tenant_a, name="Acme Robotics", segment="enterprise")
    AccountFactory(tenant=tenant_a, name="Tiny Shop", segment="self-serve")
    AccountFactory(tenant=tenant_b, name="Acme Bravo", segment="enterprise")
    client.force_login(admin_a)
    url = reverse("account-list", kwargs={"tenant_slug": tenant_a.slug})
    page = client.get(url).content.decode()
    assert "Acme Robotics" in page and "Tiny Shop" in page and "Acme Bravo" not in page
    filtered = client.get(url, {"q": "acme"}, HTTP_HX_REQUEST="true")
    html = filtered.content.decode()
    assert filtered["Vary"].count("HX-Request") == 1
    assert html.lstrip().startswith('<div id="account-rows">'), "HTMX gets the rows partial only"
    assert "Acme Robotics" in html and "Tiny Shop" not in html and "Acme Bravo" not in html
    by_segment = client.get(url, {"segment": "self-serve"}).content.decode()
    assert "Tiny Shop" in by_segment and "Acme Robotics" not in by_segment


def test_search_finds_an_account_by_its_provider_id(client, tenant_a, admin_a):
    account = AccountFactory(tenant=tenant_a, name="Linked Co")
    with tenant_context(tenant_a):
        account_external_id_set(account=account, provider="stripe", external_id="cus_LINK42", actor=admin_a)
    client.force_login(admin_a)
    html = client.get(reverse("account-list", kwargs={"tenant_slug": tenant_a.slug}), {"q": "cus_LINK42"})
    assert "Linked Co" in html.content.decode()
    detail = client.get(
        reverse("account-detail", kwargs={"tenant_slug": tenant_a.slug, "account_id": account.pk})
    )
    assert "cus_LINK42" in detail.content.decode()


def test_list_paginates(client, tenant_a, admin_a):
    for n in range(55):
        AccountFactory(tenant=tenant_a, name=f"Customer {n:03d}")
    client.force_login(admin_a)
    url = reverse("account-list", kwargs={"tenant_slug": tenant_a.slug})
    first = client.get(url).content.decode()
    assert "Page 1 of 2 · 55 accounts" in first and "Customer 049" in first and "Customer 050" not in first
    assert "Customer 054" in client.get(url, {"page": 2}).content.decode()


def test_edit_in_place_saves_audits_and_returns_the_card(client, tenant_a, admin_a):
    csm = member(tenant_a, Role.CSM, email="cora@alpha.test", full_name="Cora CSM")
    account = AccountFactory(tenant=tenant_a, name="Acme", segment="smb")
    client.force_login(admin_a)
    url = reverse("account-edit", kwargs={"tenant_slug": tenant_a.slug, "account_id": account.pk})
    form = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert form.lstrip().startswith('<section class="card" id="account-info">') and "<form" in form
    saved = client.post(
        url,
        {"name": "Acme Corp", "segment": "enterprise", "timezone": "Asia/Tokyo", "csm_owner": csm.pk},
        HTTP_HX_REQUEST="true",
    )
    assert saved.status_code == 200
    html = saved.content.decode()
    assert "Asia/Tokyo" in html and "Cora CSM" in html and "<form" not in html
    with tenant_context(tenant_a):
        account.refresh_from_db()
        event = AuditEvent.objects.get(action="account.update")
    assert (account.name, account.segment, account.timezone, account.csm_owner) == (
        "Acme Corp",
        "enterprise",
        "Asia/Tokyo",
        csm,
    )
    assert event.before["timezone"] == "America/New_York" and event.after["csm_owner"] == csm.pk


def test_invalid_edit_shows_the_error_next_to_the_field_and_saves_nothing(client, tenant_a, admin_a):
    account = AccountFactory(tenant=tenant_a, name="Acme")
    client.force_login(admin_a)
    url = reverse("account-edit", kwargs={"tenant_slug": tenant_a.slug, "account_id": account.pk})
    response = client.post(
        url, {"name": "", "segment": "x", "timezone": "Mars/Olympus", "csm_owner": ""}, HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert response.status_code == 422
    assert 'id="id_timezone-error"' in html and "Mars/Olympus" in html and "is not an IANA time zone" in html
    assert 'id="id_name-error"' in html
    with tenant_context(tenant_a):
        account.refresh_from_db()
        assert account.segment == "enterprise" and not AuditEvent.objects.exists()


def test_csm_owner_must_be_a_member_of_the_tenant(client, tenant_a, tenant_b, admin_a):
    outsider = member(tenant_b, Role.CSM)
    account = AccountFactory(tenant=tenant_a)
    client.force_login(admin_a)
    url = reverse("account-edit", kwargs={"tenant_slug": tenant_a.slug, "account_id": account.pk})
    response = client.post(url, {"name": "A", "segment": "", "timezone": "UTC", "csm_owner": outsider.pk})
    assert response.status_code == 422 and "Select a valid choice" in response.content.decode()


def test_api_lists_creates_and_updates_accounts(client, tenant_a, tenant_b):
    AccountFactory(tenant=tenant_b, name="Not mine")
    _, raw = api_key_for(tenant_a, Role.REVOPS)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    created = client.post(
        "/api/v1/accounts/",
        {"key": "acme", "name": "Acme", "timezone": "Europe/Paris"},
        content_type="application/json",
        **auth,
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["key"] == "acme" and body["timezone"] == "Europe/Paris" and body["external_ids"] == {}
    listed = client.get("/api/v1/accounts/", **auth).json()
    assert [a["name"] for a in listed["results"]] == ["Acme"]
    patched = client.patch(
        f"/api/v1/accounts/{body['id']}/", {"segment": "enterprise"}, content_type="application/json", **auth
    )
    assert patched.status_code == 200 and patched.json()["segment"] == "enterprise"
    with tenant_context(tenant_a):
        actors = dict(
            AuditEvent.objects.filter(action__startswith="account.").values_list("action", "actor_label")
        )
    assert actors == {"account.create": actors["account.create"], "account.update": actors["account.update"]}
    assert all(label.startswith("api-key:revops key") for label in actors.values())


def test_api_errors_name_the_field(client, tenant_a):
    _, raw = api_key_for(tenant_a, Role.ADMIN)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    response = client.post(
        "/api/v1/accounts/",
        {"key": "a", "name": "A", "timezone": "Nowhere/Land"},
        content_type="application/json",
        **auth,
    )
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "code": "invalid",
                "field": "timezone",
                "message": "'Nowhere/Land' is not an IANA time zone (for example Europe/Paris).",
            }
        ]
    }
    missing = client.post("/api/v1/accounts/", {}, content_type="application/json", **auth).json()["errors"]
    assert {e["field"] for e in missing} == {"key", "name"} and {e["code"] for e in missing} == {"required"}
    duplicate = client.post(
        "/api/v1/accounts/", {"key": "a", "name": "A"}, content_type="application/json", **auth
    )
    assert (
        client.post(
            "/api/v1/accounts/", {"key": "a", "name": "B"}, content_type="application/json", **auth
        ).status_code
        == 400
    )
    assert duplicate.status_code == 201
    with tenant_context(tenant_a):
        assert Account.objects.count() == 1
