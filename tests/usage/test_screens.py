"""The usage overview and the usage settings screen."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.tenancy.context import tenant_context
from apps.tenancy.roles import Role
from apps.usage.models import UsageSettings
from tests.conftest import member
from tests.usage.conftest import event, post_events

pytestmark = pytest.mark.django_db


def test_the_overview_shows_the_latest_deliveries_of_this_tenant_only(client, cat_a, cat_b):
    post_events(client, cat_a.raw_key, [event(1), event(2), event(2), event(3, account_id="nobody")])
    post_events(client, cat_b.raw_key, [event(n) for n in range(7)])
    client.force_login(member(cat_a.tenant, Role.VIEWER))
    html = client.get(reverse("usage-overview", kwargs={"tenant_slug": cat_a.tenant.slug})).content.decode()
    assert "API key <code>admin key</code>" in html
    assert '<p class="figure">2</p>' in html, "two events stored in the last 24 hours"
    assert "of 4 received" in html and "1 duplicates" in html and "1 rejected" in html
    assert ">7<" not in html, "tenant B's delivery is not shown"


def test_revops_changes_the_usage_settings_and_it_is_audited(client, cat_a):
    client.force_login(member(cat_a.tenant, Role.REVOPS))
    url = reverse("usage-settings", kwargs={"tenant_slug": cat_a.tenant.slug})
    assert b"Create unknown accounts" in client.get(url).content
    response = client.post(url, {"auto_create_accounts": "on", "late_grace_days": "5"})
    assert response.status_code == 302
    with tenant_context(cat_a.tenant):
        saved = UsageSettings.objects.get()
        assert AuditEvent.objects.filter(action="usage.settings.create").exists()
    assert (saved.auto_create_accounts, saved.late_grace_days) == (True, 5)
    client.post(url, {"late_grace_days": "2"})
    with tenant_context(cat_a.tenant):
        saved.refresh_from_db()
        change = AuditEvent.objects.get(action="usage.settings.update")
    assert (saved.auto_create_accounts, saved.late_grace_days) == (False, 2)
    assert change.before == {"auto_create_accounts": True, "late_grace_days": 5}
    invalid = client.post(url, {"late_grace_days": "365"})
    assert invalid.status_code == 422 and b"less than or equal to 90" in invalid.content
    # the setting is what ingestion follows
    assert (
        post_events(client, cat_a.raw_key, [event(1, account_id="brand-new")]).json()["summary"]["rejected"]
        == 1
    )


@pytest.mark.parametrize("role", [Role.ADMIN, Role.CSM, Role.VIEWER])
def test_other_roles_read_the_settings_but_cannot_change_them(client, cat_a, role):
    client.force_login(member(cat_a.tenant, role))
    url = reverse("usage-settings", kwargs={"tenant_slug": cat_a.tenant.slug})
    page = client.get(url)
    assert page.status_code == 200 and b"Only RevOps can change" in page.content
    assert client.post(url, {"auto_create_accounts": "on", "late_grace_days": "5"}).status_code == 403
