from __future__ import annotations

from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.accounts.models import Account
from apps.audit.models import AuditEvent
from apps.tenancy.permissions import request_role, request_tenant, requires
from apps.tenancy.roles import Action, role_can


@requires(Action.VIEW)
def dashboard(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request_tenant(request)
    segments = (
        Account.objects.filter(tenant=tenant)
        .values("segment")
        .annotate(n=Count("id"))
        .order_by("-n", "segment")
    )
    recent = None
    if role_can(request_role(request) or "", Action.AUDIT_VIEW):
        recent = AuditEvent.objects.filter(tenant=tenant).select_related("actor")[:10]
    return render(
        request,
        "tenancy/dashboard.html",
        {
            "account_count": sum(row["n"] for row in segments),
            "segments": segments,
            "recent": recent,
        },
    )
