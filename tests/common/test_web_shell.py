from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def test_sign_in_lands_on_the_users_tenant(client, tenant_a, admin_a):
    response = client.post(
        reverse("login"), {"username": "admin@alpha.test", "password": "pw-for-tests"}, follow=True
    )
    assert response.redirect_chain[-1][0] == f"/t/{tenant_a.slug}/"
    assert b"Alpha Inc" in response.content


def test_tenant_pages_need_a_signed_in_member(client, tenant_a, tenant_b, admin_a):
    assert client.get(f"/t/{tenant_a.slug}/").status_code == 302  # to the login page
    client.force_login(admin_a)
    assert client.get(f"/t/{tenant_a.slug}/").status_code == 200
    # a tenant the user does not belong to looks exactly like one that does not exist
    assert client.get(f"/t/{tenant_b.slug}/").status_code == 404
    assert client.get("/t/no-such-tenant/").status_code == 404


def test_failed_sign_ins_are_rate_limited(client, admin_a, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = client.post(reverse("login"), {"username": "admin@alpha.test", "password": "wrong"})
        assert response.status_code == 200
        assert b"enter a correct email and password" in response.content.lower()
    last_try = client.post(reverse("login"), {"username": "admin@alpha.test", "password": "wrong"})
    assert last_try.status_code == 429
    # now even the right password is refused until the cool-off ends
    locked = client.post(reverse("login"), {"username": "admin@alpha.test", "password": "pw-for-tests"})
    assert locked.status_code == 429
    assert b"Too many failed sign-ins" in locked.content
    assert "_auth_user_id" not in client.session


def test_sign_out_is_a_post(client, admin_a):
    client.force_login(admin_a)
    assert client.post(reverse("logout")).status_code == 302
    assert "_auth_user_id" not in client.session


def test_the_tenant_switcher_lists_only_the_users_tenants(client, tenant_a, tenant_b):
    user = member(tenant_a, Role.ADMIN)
    other = TenantFactory(name="Charlie Ltd")
    from tests.factories import MembershipFactory

    MembershipFactory(tenant=other, user=user, role=Role.VIEWER)
    client.force_login(user)
    page = client.get(f"/t/{tenant_a.slug}/").content.decode()
    switcher = page[page.index('class="switcher"') : page.index("</details>")]
    assert "Alpha Inc" in switcher and "Charlie Ltd" in switcher and "Bravo GmbH" not in switcher
    assert client.get(f"/t/{other.slug}/").status_code == 200


def test_pages_carry_security_headers_and_no_inline_script(client, tenant_a, admin_a):
    client.force_login(admin_a)
    response = client.get(f"/t/{tenant_a.slug}/accounts/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    html = response.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script would be blocked by the CSP"
    assert re.search(r'<script src="/static/vendor/htmx\.min\.js"', html)
    assert re.search(r"<body hx-headers='\{\"X-CSRFToken\": \"[^\"]+\"\}'>", html)


def test_htmx_is_served_from_static_not_a_cdn(client):
    response = client.get("/static/vendor/htmx.min.js")
    assert response.status_code == 200
    assert b"htmx" in b"".join(response.streaming_content)


def test_friendly_error_pages(client, tenant_a, settings):
    settings.DEBUG = False
    missing = client.get("/nothing-here/")
    assert missing.status_code == 404 and b"Nothing here" in missing.content
    client.force_login(member(tenant_a, Role.VIEWER))
    denied = client.get(f"/t/{tenant_a.slug}/accounts/1/edit/")
    assert denied.status_code == 403 and b"can't do that here" in denied.content.replace(b"&#x27;", b"'")


def test_a_server_error_shows_the_friendly_page_with_a_reference(tenant_a, admin_a, monkeypatch):
    from django.test import Client

    from apps.reports import views  # the tenant's first page, the dashboard

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(views, "render", broken)
    client = Client(raise_request_exception=False)
    client.force_login(admin_a)
    response = client.get(f"/t/{tenant_a.slug}/", HTTP_X_REQUEST_ID="ref-12345678")
    assert response.status_code == 500
    assert b"Something went wrong" in response.content and b"ref-12345678" in response.content


def test_api_schema_and_docs_are_served_locally(client):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    body = schema.content.decode()
    assert "/api/v1/accounts/" in body and "Trueup API" in body
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html and "cdn" not in html.lower() and "unpkg" not in html
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)


def test_api_without_a_key_or_with_a_bad_one_is_refused(client):
    assert client.get("/api/v1/accounts/").status_code in (401, 403)
    bad = client.get("/api/v1/accounts/", HTTP_AUTHORIZATION="Bearer tu_nope_nope")
    assert bad.status_code == 401
    assert bad.json() == {
        "errors": [
            {"code": "invalid_api_key", "message": "The API key is invalid or revoked.", "field": None}
        ]
    }


def test_a_revoked_key_is_refused(client, tenant_a):
    from apps.tenancy.context import tenant_context
    from apps.tenancy.services import apikey_revoke
    from tests.factories import api_key_for

    key, raw = api_key_for(tenant_a)
    assert client.get("/api/v1/accounts/", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    with tenant_context(tenant_a):
        apikey_revoke(key=key, actor=None)
    assert client.get("/api/v1/accounts/", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401


def _import_settings(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SECRET_KEY", "DEBUG", "TRUEUP_ENV", "ENCRYPTION_KEYS")
    }
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.SECURE_HSTS_SECONDS, settings.SESSION_COOKIE_SECURE, settings.DEBUG)",
        ],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "apps.config.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_production_refuses_a_default_secret_or_debug():
    no_secret = _import_settings({"TRUEUP_ENV": "production", "ALLOWED_HOSTS": "x"})
    assert no_secret.returncode != 0 and "SECRET_KEY" in no_secret.stderr
    secret = "s" * 50
    debug = _import_settings({"TRUEUP_ENV": "production", "SECRET_KEY": secret, "DEBUG": "true"})
    assert debug.returncode != 0 and "DEBUG" in debug.stderr
    no_keys = _import_settings({"TRUEUP_ENV": "production", "SECRET_KEY": secret})
    assert no_keys.returncode != 0 and "ENCRYPTION_KEYS" in no_keys.stderr
    fernet_key = "3Q6nJv6QpMBmCJq7bCk2ZQ0Ak8xhYV0cjX0pXg0s5Vw="
    ok = _import_settings({"TRUEUP_ENV": "production", "SECRET_KEY": secret, "ENCRYPTION_KEYS": fernet_key})
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split() == ["31536000", "True", "False"]


def test_home_returns_to_the_tenant_used_last(client, tenant_a, tenant_b):
    from tests.factories import MembershipFactory

    user = member(tenant_a, Role.ADMIN)
    MembershipFactory(tenant=tenant_b, user=user, role=Role.VIEWER)
    client.force_login(user)
    assert client.get("/")["Location"] == f"/t/{tenant_a.slug}/"  # Alpha before Bravo, by name
    client.get(f"/t/{tenant_b.slug}/")
    assert client.get("/")["Location"] == f"/t/{tenant_b.slug}/"
