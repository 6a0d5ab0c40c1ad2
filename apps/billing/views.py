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


@requires(Action.VIEW, write_action=Action.CONNECTION_MANAGE)
def usage_push(request: HttpRequest, tenant_slug: str, connection_id: int) -> HttpResponse:
    """Usage push of a connection: on or off, counts, and the dead-letter queue (inspect, replay)."""
    from django.core.paginator import Paginator
    from django.http import Http404

    from apps.billing.push import (
        ReplayNotFound,
        dead_letters,
        dead_letters_replay,
        parse_item_prices,
        push_counts,
        push_item_prices_update,
        push_settings_get,
        push_settings_update,
    )

    tenant = request_tenant(request)
    connection = get_object_or_404(ProviderConnection.objects.filter(tenant=tenant), pk=connection_id)
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action in ("enable", "disable"):
            push_settings_update(
                connection=connection, enabled=action == "enable", actor=request_actor(request)
            )
            messages.success(request, f"Usage push {'enabled' if action == 'enable' else 'disabled'}.")
        elif action == "item_prices" and connection.provider == "chargebee":
            mapping, bad = parse_item_prices(request.POST.get("item_prices", ""))
            if bad:
                messages.error(request, f"Write one 'meter_key = item_price_id' a line (line {bad}).")
            else:
                push_item_prices_update(
                    connection=connection, item_prices=mapping, actor=request_actor(request)
                )
                messages.success(request, "Item prices saved.")
        elif action in ("replay", "replay_all"):
            ids: list[int] | None = None
            if action == "replay":
                try:
                    ids = [int(value) for value in request.POST.getlist("ids")]
                except ValueError as exc:
                    raise Http404("no such dead letter") from exc
                if not ids:
                    messages.error(request, "Select the dead letters to replay.")
                    return redirect(
                        "connection-usage-push", tenant_slug=tenant_slug, connection_id=connection.pk
                    )
            try:
                count = dead_letters_replay(connection=connection, ids=ids, actor=request_actor(request))
            except ReplayNotFound as exc:
                raise Http404("no such dead letter") from exc
            messages.success(request, f"{count} event{'s' if count != 1 else ''} queued to be pushed again.")
        else:
            return HttpResponse("Unknown action.", status=400)
        return redirect("connection-usage-push", tenant_slug=tenant_slug, connection_id=connection.pk)
    page = Paginator(dead_letters(connection), 100).get_page(request.GET.get("page"))
    return render(
        request,
        "billing/usage_push.html",
        {
            "connection": connection,
            "settings": push_settings_get(connection),
            "counts": push_counts(connection),
            "page": page,
        },
    )
