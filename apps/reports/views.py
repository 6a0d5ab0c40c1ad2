"""The tenant dashboard (what was leaked, what was over-billed, where, what next) and the monthly
billing accuracy report with its CSV and XLSX exports."""

from __future__ import annotations

import tempfile
from typing import Any

from django.contrib import messages
from django.db.models import Count
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from apps.accounts.models import Account
from apps.audit.models import AuditEvent
from apps.reconciliation.core import Month, ReconciliationInputError
from apps.reconciliation.forms import RunForm, recent_periods
from apps.reconciliation.models import Direction
from apps.reconciliation.services import run_create
from apps.reports import selectors
from apps.reports.charts import chart, series
from apps.reports.exports import accuracy_csv, accuracy_rows, accuracy_xlsx
from apps.reports.services import report_export_record
from apps.tenancy.models import Tenant
from apps.tenancy.permissions import request_actor, request_role, request_tenant, requires
from apps.tenancy.roles import Action, role_can

WINDOWS = (3, 6, 12)
DEFAULT_WINDOW = 6


def _htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


@requires(Action.VIEW, write_action=Action.RUN_START)
@vary_on_headers("HX-Request")
def dashboard(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """The first screen: leakage and over-billing by period, class and source; what to do next; runs."""
    tenant = request_tenant(request)
    form = RunForm(request.POST or None, initial={"period": recent_periods()[1]})
    if request.method == "POST":
        if form.is_valid():
            run = run_create(
                actor=request_actor(request),
                period=form.cleaned_data["period"],
                pre_invoice=form.cleaned_data["pre_invoice"],
            )
            messages.success(request, f"Reconciliation of {run.period} started.")  # shown once it is done
            if not _htmx(request):
                return redirect("tenant-dashboard", tenant_slug=tenant_slug)
            form = RunForm(initial={"period": run.period})
            return _runs_part(request, tenant, form, "reports/dashboard.html#runs")
        if _htmx(request):
            return render(request, "reports/dashboard.html#runs", _runs_context(tenant, form), status=422)
    elif _htmx(request) and request.GET.get("part") == "runs":
        return _runs_part(request, tenant, form, "reports/dashboard.html#runs_table")
    context = {**_dashboard_context(request, tenant), **_runs_context(tenant, form)}
    return render(request, "reports/dashboard.html", context, status=422 if form.errors else 200)


def _runs_context(tenant: Tenant, form: RunForm) -> dict[str, Any]:
    runs = selectors.recent_runs(tenant)
    return {
        "runs": runs,
        "run_form": form,
        "run_periods": recent_periods(),
        "runs_active": any(run.status in selectors.RUN_ACTIVE for run in runs),
    }


def _runs_part(request: HttpRequest, tenant: Tenant, form: RunForm, template: str) -> HttpResponse:
    """The runs card while runs go on; once they are done, reload the page so every figure is new."""
    context = _runs_context(tenant, form)
    if context["runs_active"]:
        return render(request, template, context)
    response = HttpResponse(status=204)
    response["HX-Refresh"] = "true"
    return response


def _window(request: HttpRequest) -> int:
    try:
        months = int(request.GET.get("months", DEFAULT_WINDOW))
    except ValueError:
        months = DEFAULT_WINDOW
    return months if months in WINDOWS else DEFAULT_WINDOW


def _dashboard_context(request: HttpRequest, tenant: Tenant) -> dict[str, Any]:
    months = _window(request)
    reconciled = selectors.reconciled_periods(tenant)
    periods = selectors.months_ending(reconciled[0] if reconciled else recent_periods()[1], months)
    groups = selectors.finding_groups(tenant, periods)
    currencies = selectors.currencies_in(groups)
    currency = request.GET.get("currency", "")
    if currency not in currencies:
        currency = currencies[0] if currencies else ""
    role = request_role(request)
    context: dict[str, Any] = {
        "months": months,
        "windows": WINDOWS,
        "periods": periods,
        "reconciled": reconciled,
        "currency": currency,
        "currencies": currencies,
        "steps": selectors.next_steps(tenant, user_id=request.user.pk, role=role, currency=currency or None),
        "account_count": Account.objects.filter(tenant=tenant).aggregate(n=Count("id"))["n"],
    }
    if currency:
        summary = selectors.overview(tenant, periods=periods, currency=currency, groups=groups)
        where = selectors.where(tenant, periods=periods, currency=currency)
        context.update(
            overview=summary,
            charts=_dashboard_charts(summary),
            where_tables=[
                {"caption": "By meter", "column": "Meter", "rows": where["meters"], "param": "meter"},
                {"caption": "By segment", "column": "Segment", "rows": where["segments"], "param": "segment"},
                {"caption": "By account", "column": "Account", "rows": where["accounts"], "param": "account"},
            ],
        )
    if role_can(role or "", Action.AUDIT_VIEW):
        context["recent"] = AuditEvent.objects.filter(tenant=tenant).select_related("actor")[:8]
    return context


def _dashboard_charts(summary: selectors.Overview) -> dict[str, Any]:
    cur = summary.currency
    by_period = summary.by_period
    classes = summary.by_class
    return {
        "trend": chart(
            "bar",
            summary.periods,
            [
                series("Leaked (under-billed)", [p.leaked for p in by_period], tone="under", currency=cur),
                series("Over-billed", [p.over_billed for p in by_period], tone="over", currency=cur),
                series("Recovered", [p.recovered for p in by_period], tone="recovered", currency=cur),
                series("Credited back", [p.credited_back for p in by_period], tone="credit", currency=cur),
            ],
            currency=cur,
        ),
        "classes": chart(
            "bar",
            [c.label for c in classes],
            [
                series("Under-billed", [c.under for c in classes], tone="under", currency=cur),
                series("Over-billed", [c.over for c in classes], tone="over", currency=cur),
            ],
            currency=cur,
            stacked=True,
            horizontal=True,
        ),
        "sources": chart(
            "bar",
            [s.label for s in summary.by_source],
            [
                series("Under-billed", [s.under for s in summary.by_source], tone="under", currency=cur),
                series("Over-billed", [s.over for s in summary.by_source], tone="over", currency=cur),
            ],
            currency=cur,
        ),
    }


def _period(request: HttpRequest, reconciled: list[str]) -> str | None:
    text = request.GET.get("period", "")
    if not text:
        return reconciled[0] if reconciled else None
    try:
        return str(Month.parse(text))
    except ReconciliationInputError as exc:
        raise Http404("No such period.") from exc


@requires(Action.VIEW)
@require_GET
def accuracy(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """The monthly billing accuracy report: invoices checked, mismatches, corrections, money back."""
    tenant = request_tenant(request)
    reconciled = selectors.reconciled_periods(tenant)
    period = _period(request, reconciled)
    context: dict[str, Any] = {"reconciled": reconciled, "period": period}
    if period is not None:
        report = selectors.accuracy_report(tenant, period)
        month = Month.parse(period)
        main = report.currencies[0].currency if report.currencies else None
        mismatches = [m for m in report.mismatches if m.currency == main]
        labels = list(dict.fromkeys(m.label for m in mismatches))

        def amounts(direction: str) -> list[Any]:
            found = {m.label: m.amount for m in mismatches if m.direction == direction}
            return [found.get(label, selectors.ZERO) for label in labels]

        context.update(
            report=report,
            money_table=_money_table(report),
            previous=str(month.previous()),
            next=str(month.next()),
            main_currency=main,
            mismatch_chart=chart(
                "bar",
                labels,
                [
                    series(str(Direction.UNDER.label), amounts("under"), tone="under", currency=main),
                    series(str(Direction.OVER.label), amounts("over"), tone="over", currency=main),
                ],
                currency=main,
                stacked=True,
                horizontal=True,
            ),
        )
    return render(request, "reports/accuracy.html", context)


def _money_table(report: selectors.AccuracyReport) -> list[dict[str, Any]]:
    """The export's money rows, one row per figure and a column per currency (the page shows the file)."""
    table: dict[str, dict[str, Any]] = {}
    for row in accuracy_rows(report):
        if row.section == "money":
            table.setdefault(row.code, {"code": row.code, "label": row.item, "cells": []})["cells"].append(
                row
            )
    return list(table.values())


@requires(Action.EXPORT)
@require_GET
def accuracy_export(request: HttpRequest, tenant_slug: str) -> HttpResponseBase:
    """The accuracy report of ?period= as ?format=csv (every figure) or xlsx (plus the mismatched lines)."""
    tenant = request_tenant(request)
    period = _period(request, selectors.reconciled_periods(tenant))
    file_format = request.GET.get("format", "csv")
    if period is None or file_format not in ("csv", "xlsx"):
        raise Http404("Nothing to export.")
    report = selectors.accuracy_report(tenant, period)
    report_export_record(
        actor=request_actor(request), report="accuracy", period=period, file_format=file_format
    )
    name = f"trueup-{tenant.slug}-billing-accuracy-{period}.{file_format}"
    if file_format == "csv":
        response = StreamingHttpResponse(accuracy_csv(report), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
    target = tempfile.TemporaryFile()  # noqa: SIM115 - FileResponse closes it once sent
    accuracy_xlsx(report, selectors.mismatched_lines(tenant, report.runs).iterator(), target)
    target.seek(0)
    return FileResponse(
        target,
        as_attachment=True,
        filename=name,
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )
