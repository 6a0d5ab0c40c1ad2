from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.tenancy.models import ApiKey
from apps.tenancy.permissions import request_actor, request_tenant, requires
from apps.tenancy.roles import Action, Role
from apps.tenancy.services import apikey_create, apikey_revoke


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Where it is used, e.g. “usage pipeline (prod)”.")
    role = forms.ChoiceField(
        choices=Role.choices,
        initial=Role.VIEWER,
        help_text="What the key may do, as that role. Ingesting usage needs Tenant admin or RevOps.",
    )


@requires(Action.APIKEY_MANAGE)
def api_keys(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """The tenant's API keys; a new key is shown once, right after it is created."""
    tenant = request_tenant(request)
    form = ApiKeyForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        key, raw = apikey_create(
            name=form.cleaned_data["name"], role=form.cleaned_data["role"], actor=request_actor(request)
        )
        created = {"key": key, "raw": raw}
        form = ApiKeyForm()
    keys = ApiKey.objects.filter(tenant=tenant).select_related("created_by").order_by("-created_at")
    return render(
        request,
        "tenancy/api_keys.html",
        {"keys": keys, "form": form, "created": created},
        status=422 if form.errors else 200,
    )


@requires(Action.APIKEY_MANAGE)
@require_POST
def api_key_revoke(request: HttpRequest, tenant_slug: str, key_id: int) -> HttpResponse:
    key = get_object_or_404(ApiKey.objects.filter(tenant=request_tenant(request)), pk=key_id)
    if key.is_active:
        apikey_revoke(key=key, actor=request_actor(request))
        messages.success(request, f"Key “{key.name}” revoked: requests with it are refused from now on.")
    return redirect("api-keys", tenant_slug=tenant_slug)
