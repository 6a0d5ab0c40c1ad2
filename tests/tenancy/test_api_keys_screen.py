from __future__ import annotations

import re

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.tenancy.context import tenant_context
from apps.tenancy.models import ApiKey
from apps.tenancy.roles import Role

pytestmark = pytest.mark.django_db


def test_an_admin_creates_a_key_sees_it_once_and_revokes_it(client, tenant_a, admin_a):
    client.force_login(admin_a)
    url = reverse("api-keys", args=[tenant_a.slug])
    page = client.post(url, {"name": "usage pipeline", "role": Role.REVOPS}).content.decode()
    raw = re.search(r'<code class="secret">(tu_[^<]+)</code>', page).group(1)
    assert client.get("/api/v1/accounts/", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    listing = client.get(url).content.decode()
    assert raw not in listing, "the key is shown once, never again"
    with tenant_context(tenant_a):
        key = ApiKey.objects.get(name="usage pipeline")
        assert key.key_hash != raw and raw not in key.key_hash
    client.post(reverse("api-key-revoke", args=[tenant_a.slug, key.pk]))
    assert client.get("/api/v1/accounts/", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401
    with tenant_context(tenant_a):
        assert list(
            AuditEvent.objects.filter(action__startswith="apikey.")
            .values_list("action", flat=True)
            .order_by("id")
        ) == ["apikey.create", "apikey.revoke"]
