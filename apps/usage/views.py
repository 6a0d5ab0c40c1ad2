"""Usage screens: what came in, CSV imports with a live progress bar, late arrivals, settings."""

from __future__ import annotations

import datetime as dt

from django.db.models import Sum
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from apps.accounts.models import Account
from apps.catalog.models import Meter
from apps.tenancy.models import Tenant
from apps.tenancy.permissions import request_actor, request_tenant, requires
from apps.tenancy.roles import Action
from apps.usage.forms import ImportUploadForm, LateFilterForm, UsageSettingsForm
from apps.usage.imports import import_upload
from apps.usage.reports import error_report_file
from apps.usage.selectors import (
    batch_list,
    default_cutoff,
    import_errors,
    import_job_get,
    import_job_list,
    invoice_windows,
    late_events,
    late_summary_for_month,
    month_bounds,
)
from apps.usage.services import usage_settings_get, usage_settings_update

ERROR_PREVIEW = 20
LATE_EVENTS_SHOWN = 200


def _htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


@requires(Action.VIEW)
def usage_overview(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request_tenant(request)
    since = timezone.now() - dt.timedelta(hours=24)
    batches = batch_list(tenant)
    totals = batches.filter(received_at__gte=since).aggregate(
        events=Sum("events"),
        accepted=Sum("accepted"),
        duplicates=Sum("duplicates"),
        conflicts=Sum("conflicts"),
        rejected=Sum("rejected"),
    )
    return render(
        request,
        "usage/overview.html",
        {
            "batches": batches.select_related("import_job")[:20],
            "totals": totals,
            "imports": import_job_list(tenant)[:5],
            "settings": usage_settings_get(tenant),
        },
    )


@requires(Action.VIEW, write_action=Action.EVENTS_INGEST)
def import_list(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """Upload a CSV file (it is imported in the background), and the latest imports."""
    tenant = request_tenant(request)
    posted = request.method == "POST"
    form = ImportUploadForm(request.POST if posted else None, request.FILES if posted else None)
    if request.method == "POST" and form.is_valid():
        job = import_upload(tenant=tenant, actor=request_actor(request), upload=form.cleaned_data["file"])
        return redirect("usage-import-detail", tenant_slug=tenant.slug, import_id=job.pk)
    return render(
        request,
        "usage/import_list.html",
        {"form": form, "imports": import_job_list(tenant)[:50]},
        status=422 if form.errors else 200,
    )


@require_GET
@requires(Action.VIEW)
@vary_on_headers("HX-Request")
def import_detail(request: HttpRequest, tenant_slug: str, import_id: int) -> HttpResponse:
    """The import's progress; the card polls itself (htmx, every second) until the import ends."""
    tenant = request_tenant(request)
    job = import_job_get(tenant, import_id)
    context = {"job": job, "errors": import_errors(tenant, job)[:ERROR_PREVIEW] if job.finished else []}
    template = "usage/import_detail.html#job" if _htmx(request) else "usage/import_detail.html"
    return render(request, template, context)


@require_GET
@requires(Action.EXPORT)
def import_errors_download(request: HttpRequest, tenant_slug: str, import_id: int) -> FileResponse:
    """The error report: line, field, code, reason for every row that was not stored."""
    tenant = request_tenant(request)
    job = import_job_get(tenant, import_id)
    return FileResponse(
        error_report_file(import_errors(tenant, job)),
        as_attachment=True,
        filename=f"{job.filename.rsplit('.', 1)[0]}-errors.csv",
        content_type="text/csv",
    )


@requires(Action.VIEW)
@vary_on_headers("HX-Request")
def late_arrivals(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """Per account and meter: the month's events that arrived after the cut-off.

    Where the month is invoiced the cut-off is the invoice's finalized_at (as reconciliation
    uses); elsewhere each period's end plus the tenant's grace days; or one the user picks.
    """
    tenant = request_tenant(request)
    settings = usage_settings_get(tenant)
    form = LateFilterForm(request.GET or None, time_zone=tenant.default_timezone, today=timezone.now().date())
    month, cutoff = form.default_month, None
    if form.is_bound and form.is_valid():
        month, cutoff = form.cleaned_data["month"], form.cleaned_data["cutoff"]
    account_id = request.GET.get("account", "")
    if account_id:
        return _late_events_of_account(request, tenant, account_id, month, cutoff, settings.late_grace_days)
    lines = late_summary_for_month(tenant, month=month, grace_days=settings.late_grace_days, cutoff=cutoff)
    context = {
        "form": form,
        "month": month,
        "cutoff": cutoff,
        "settings": settings,
        "lines": lines,
        "account_count": len({line.account.pk for line in lines}),
        "query": request.GET.urlencode(),
    }
    template = "usage/late.html#rows" if _htmx(request) else "usage/late.html"
    return render(request, template, context, status=422 if form.errors else 200)


def _late_events_of_account(
    request: HttpRequest,
    tenant: Tenant,
    account_id: str,
    month: dt.date,
    cutoff: dt.datetime | None,
    grace_days: int,
) -> HttpResponse:
    account = get_object_or_404(
        Account.objects.filter(tenant=tenant), pk=account_id if account_id.isdigit() else 0
    )
    invoiced = invoice_windows(tenant, month).get(account.pk)
    if invoiced is not None:
        start, end, cut = invoiced.start, invoiced.end, cutoff or invoiced.cutoff
    else:
        start, end = month_bounds(month, account.timezone)
        cut = cutoff or default_cutoff(end, grace_days)
    events = late_events(tenant, account=account, period_start=start, period_end=end, cutoff=cut)
    meter_id = request.GET.get("meter", "")
    meter = None
    if meter_id:
        meter = get_object_or_404(
            Meter.objects.filter(tenant=tenant), pk=meter_id if meter_id.isdigit() else 0
        )
        events = events.filter(meter=meter)
    shown = list(events[: LATE_EVENTS_SHOWN + 1])
    context = {
        "account": account,
        "meter": meter,
        "events": shown[:LATE_EVENTS_SHOWN],
        "more": len(shown) > LATE_EVENTS_SHOWN,
        "period_start": start,
        "period_end": end,
        "cutoff": cut,
        "month": month,
    }
    template = "usage/late_events.html#events" if _htmx(request) else "usage/late_events.html"
    return render(request, template, context)


@requires(Action.VIEW, write_action=Action.SETTINGS_EDIT)
@vary_on_headers("HX-Request")
def usage_settings(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request_tenant(request)
    current = usage_settings_get(tenant)
    form = UsageSettingsForm(request.POST if request.method == "POST" else None, instance=current)
    if request.method == "POST" and form.is_valid():
        usage_settings_update(
            tenant=tenant,
            actor=request_actor(request),
            auto_create_accounts=form.cleaned_data["auto_create_accounts"],
            late_grace_days=form.cleaned_data["late_grace_days"],
        )
        return redirect("usage-overview", tenant_slug=tenant.slug)
    return render(request, "usage/settings.html", {"form": form}, status=422 if form.errors else 200)
