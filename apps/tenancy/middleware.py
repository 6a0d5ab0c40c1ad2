"""Decides, for every request, which tenant it acts for, and serves it inside that tenant's context.

- ``/t/<tenant_slug>/...``: the signed-in user's membership in that tenant (none: 404, as if
  the tenant did not exist).
- ``/api/...`` with ``Authorization: Bearer <key>``: the key's tenant (bad or revoked key: 401).
- ``/admin/`` for superusers: unscoped (platform operators).
- anything else: no tenant; tenant models refuse to be queried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve

from apps.common.api import error_response
from apps.tenancy.context import tenant_context, unscoped_context
from apps.tenancy.models import Membership, Tenant
from apps.tenancy.services import apikey_authenticate

security_log = logging.getLogger("trueup.security")
LAST_TENANT_SESSION_KEY = "trueup_last_tenant"


class TenantMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.tenant = None  # type: ignore[attr-defined]
        request.membership = None  # type: ignore[attr-defined]
        request.api_key = None  # type: ignore[attr-defined]
        try:
            kwargs = resolve(request.path_info).kwargs
        except Resolver404:
            kwargs = {}
        if "tenant_slug" in kwargs:
            return self._serve_tenant_page(request, kwargs["tenant_slug"])
        if request.path_info.startswith("/api/") and request.headers.get("Authorization", "").startswith(
            "Bearer "
        ):
            return self._serve_api(request)
        if request.path_info.startswith("/admin/") and request.user.is_active and request.user.is_superuser:
            with unscoped_context(reason="platform operator in the Django admin"):
                return self._serve(request)
        return self.get_response(request)

    def _serve(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code >= 500:
            # The view failed after writing: undo it, as ATOMIC_REQUESTS would.
            transaction.set_rollback(True)
        return response

    def _serve_tenant_page(self, request: HttpRequest, slug: str) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise Http404("No such tenant")
        with tenant_context(tenant, user_id=request.user.pk):
            membership = Membership.objects.filter(user_id=request.user.pk).first()
            if membership is None:
                raise Http404("No such tenant")
            request.tenant = tenant  # type: ignore[attr-defined]
            request.membership = membership  # type: ignore[attr-defined]
            if request.session.get(LAST_TENANT_SESSION_KEY) != slug:
                request.session[LAST_TENANT_SESSION_KEY] = slug
            return self._serve(request)

    def _serve_api(self, request: HttpRequest) -> HttpResponse:
        raw = request.headers["Authorization"].removeprefix("Bearer ").strip()
        key = apikey_authenticate(raw)
        if key is None:
            security_log.warning(
                "API request with an invalid or revoked key from %s", request.META.get("REMOTE_ADDR")
            )
            response = JsonResponse(
                error_response(401, "invalid_api_key", "The API key is invalid or revoked."), status=401
            )
            response["WWW-Authenticate"] = 'Bearer realm="api"'
            return response
        with tenant_context(key.tenant_id):
            request.tenant = key.tenant  # type: ignore[attr-defined]
            request.api_key = key  # type: ignore[attr-defined]
            return self._serve(request)
