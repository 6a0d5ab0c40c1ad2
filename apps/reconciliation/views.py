"""Runs: start one, watch its progress, read its lines; and reconcile an uploaded export bundle."""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.vary import vary_on_headers

from apps.reconciliation import core
from apps.reconciliation.bundle import BundleError
from apps.reconciliation.bundle_import import bundle_import, infer_period
from apps.reconciliation.forms import BundleUploadForm, RunForm, recent_periods
from apps.reconciliation.models import Classification, ReconciliationRun
from apps.reconciliation.selectors import run_get, run_lines, run_list, run_totals
from apps.reconciliation.services import run_create
from apps.tenancy.permissions import request_actor, request_tenant, requires
from apps.tenancy.roles import Action

ACTIVE = (ReconciliationRun.Status.QUEUED, ReconciliationRun.Status.RUNNING)


@requires(Action.VIEW, write_action=Action.RUN_START)
@vary_on_headers("HX-Request")
def runs(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request_tenant(request)
    form = RunForm(request.POST or None, initial={"period": recent_periods()[1]})
    if request.method == "POST" and form.is_valid():
        run = run_create(
            actor=request_actor(request),
            period=form.cleaned_data["period"],
            pre_invoice=form.cleaned_data["pre_invoice"],
        )
        messages.success(request, f"Reconciliation of {run.period} started.")
        return redirect("run-detail", tenant_slug=tenant_slug, run_id=run.pk)
    page = Paginator(run_list(tenant), 25).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "form": form,
        "periods": recent_periods(),
        "polling": any(run.status in ACTIVE for run in page),
    }
    template = (
        "reconciliation/runs.html#table" if getattr(request, "htmx", False) else "reconciliation/runs.html"
    )
    return render(request, template, context, status=422 if form.errors else 200)


@requires(Action.VIEW)
@vary_on_headers("HX-Request")
def run_detail(request: HttpRequest, tenant_slug: str, run_id: int) -> HttpResponse:
    tenant = request_tenant(request)
    run = run_get(tenant, run_id)
    if getattr(request, "htmx", False) and request.GET.get("part") == "progress":
        if run.status in ACTIVE:
            return render(request, "reconciliation/run_detail.html#progress", {"run": run})
        response = HttpResponse(status=204)
        response["HX-Refresh"] = "true"  # done: show the results
        return response
    classification = request.GET.get("class", "")
    page = Paginator(run_lines(tenant, run, classification=classification), 100).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "reconciliation/run_detail.html",
        {
            "run": run,
            "page": page,
            "totals": run_totals(tenant, run),
            "classification": classification,
            "classes": Classification.choices,
            "active": run.status in ACTIVE,
        },
    )


@requires(Action.VIEW, write_action=Action.RUN_START)
def bundle_upload(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """Upload an export bundle: it is loaded into the tenant and its period reconciled."""
    form = BundleUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["bundle"]
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "bundle.zip"
            with path.open("wb") as target:
                for chunk in upload.chunks():
                    target.write(chunk)
            try:
                month = (
                    core.Month.parse(form.cleaned_data["period"])
                    if form.cleaned_data["period"]
                    else infer_period(path)
                )
                summary = bundle_import(path=path, month=month, actor=request_actor(request))
            except (BundleError, core.ReconciliationInputError) as exc:
                form.add_error("bundle", str(exc))
            else:
                run = run_create(
                    actor=request_actor(request),
                    period=summary.period,
                    trigger=ReconciliationRun.Trigger.BUNDLE,
                )
                request.session[f"bundle_errors_{run.pk}"] = [
                    i.as_dict() for i in summary.import_errors[:200]
                ]
                note = (
                    f" {summary.import_error_count} unreadable rows were skipped."
                    if summary.import_error_count
                    else ""
                )
                messages.success(request, f"Bundle loaded for {summary.period}.{note} Reconciling now.")
                return redirect("run-detail", tenant_slug=tenant_slug, run_id=run.pk)
    return render(
        request, "reconciliation/bundle_upload.html", {"form": form}, status=422 if form.errors else 200
    )


@requires(Action.VIEW)
def line_detail(request: HttpRequest, tenant_slug: str, run_id: int, line_id: int) -> HttpResponse:
    """How one line's numbers came about: units side by side, tier-by-tier pricing, late events, credits."""
    tenant = request_tenant(request)
    run = run_get(tenant, run_id)
    line = get_object_or_404(run_lines(tenant, run), pk=line_id)
    working = line.working or {}
    return render(
        request,
        "reconciliation/line_detail.html",
        {
            "run": run,
            "line": line,
            "working": working,
            "expected_phases": (working.get("expected") or {}).get("phases", []),
            "on_time_phases": (working.get("on_time") or {}).get("phases", []),
        },
    )
