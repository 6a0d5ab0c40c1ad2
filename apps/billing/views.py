"""Provider connections: create, edit (writes off by default), test, sync; webhook addresses."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.billing.forms import ConnectionForm
from apps.billing.models import ProviderConnection, WebhookEvent
from apps.billing.services import SECRET_FIELDS, connection_check, connection_create, connection_update
from apps.tenancy.permissions import request_actor, request_tenant, requires
from apps.tenancy.roles import Action


@requires(Action.VIEW, write_action=Action.CONNECTION_MANAGE)
def connections(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request_tenant(request)
    form = ConnectionForm(request.POST or None, creating=True)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        connection = connection_create(
            actor=request_actor(request),
            provider=data["provider"],
            name=data["name"],
            base_url=data["base_url"],
            site=data["site"],
            credentials={k: data[k] for k in SECRET_FIELDS},
        )
        if data["allow_writes"]:
            connection_update(
                actor=request_actor(request), connection=connection, data={"allow_writes": True}
            )
        messages.success(request, f"{connection} connected. Test it, then sync.")
        return redirect("connection-detail", tenant_slug=tenant_slug, connection_id=connection.pk)
    rows = ProviderConnection.objects.filter(tenant=tenant)
    return render(
        request,
        "billing/connections.html",
        {"connections": rows, "form": form},
        status=422 if form.errors else 200,
    )


@requires(Action.VIEW, write_action=Action.CONNECTION_MANAGE)
def connection_detail(request: HttpRequest, tenant_slug: str, connection_id: int) -> HttpResponse:
    tenant = request_tenant(request)
    connection = get_object_or_404(ProviderConnection.objects.filter(tenant=tenant), pk=connection_id)
    initial = {
        "provider": connection.provider,
        "name": connection.name,
        "base_url": connection.base_url,
        "site": connection.site,
        "allow_writes": connection.allow_writes,
    }
    form = ConnectionForm(request.POST or None, initial=initial, creating=False)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        connection_update(
            actor=request_actor(request),
            connection=connection,
            data={k: data[k] for k in ("name", "base_url", "site", "allow_writes")},
            credentials={k: data[k] for k in SECRET_FIELDS},
        )
        messages.success(request, "Saved.")
        return redirect("connection-detail", tenant_slug=tenant_slug, connection_id=connection.pk)
    hook = "webhook-stripe" if connection.provider == "stripe" else "webhook-chargebee"
    return render(
        request,
        "billing/connection_detail.html",
        {
            "connection": connection,
            "form": form,
            "webhook_url": request.build_absolute_uri(reverse(hook, args=[connection.public_id])),
            "events": WebhookEvent.objects.filter(connection=connection)[:20],
        },
        status=422 if form.errors else 200,
    )


@requires(Action.CONNECTION_MANAGE)
@require_POST
def connection_test(request: HttpRequest, tenant_slug: str, connection_id: int) -> HttpResponse:
    connection = get_object_or_404(
        ProviderConnection.objects.filter(tenant=request_tenant(request)), pk=connection_id
    )
    worked, said = connection_check(connection=connection)
    (messages.success if worked else messages.error)(
        request, f"Connected: {said}" if worked else f"The provider refused: {said}"
    )
    return redirect("connection-detail", tenant_slug=tenant_slug, connection_id=connection.pk)


@requires(Action.CONNECTION_MANAGE)
@require_POST
def connection_sync(request: HttpRequest, tenant_slug: str, connection_id: int) -> HttpResponse:
    from django.db import transaction

    from apps.billing.tasks import sync_connection_task

    tenant = request_tenant(request)
    connection = get_object_or_404(ProviderConnection.objects.filter(tenant=tenant), pk=connection_id)
    full = request.POST.get("full") == "1"
    transaction.on_commit(lambda: sync_connection_task.delay(tenant.pk, connection.pk, full))
    messages.success(request, "Sync started." if not full else "Full sync started.")
    return redirect("connection-detail", tenant_slug=tenant_slug, connection_id=connection.pk)
