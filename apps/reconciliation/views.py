"""Runs: start one, watch its progress, read its lines; and reconcile an uploaded export bundle."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST
from django.views.decorators.vary import vary_on_headers

from apps.reconciliation import core
from apps.reconciliation.bundle import BundleError
from apps.reconciliation.bundle_import import bundle_import, infer_period
from apps.reconciliation.forms import BulkForm, BundleUploadForm, QueueFilterForm, RunForm, recent_periods
from apps.reconciliation.models import Classification, Discrepancy, ReconciliationRun
from apps.reconciliation.selectors import (
    discrepancy_get,
    discrepancy_queue,
    discrepancy_queue_page,
    run_get,
    run_lines,
    run_list,
    run_totals,
)
from apps.reconciliation.services import (
    discrepancies_bulk,
    discrepancy_assign,
    discrepancy_change_status,
    discrepancy_comment,
    run_create,
)
from apps.tenancy.permissions import request_actor, request_role, request_tenant, requires
from apps.tenancy.roles import Action, Role
from apps.tenancy.selectors import tenant_members

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


QUEUE_PAGE = 50


@requires(Action.VIEW, write_action=Action.DISCREPANCY_WORK)
@vary_on_headers("HX-Request")
def queue(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """The discrepancy queue: filtered and sorted in the database, paginated, with bulk assign/dismiss.

    With HTMX, filters, paging and bulk actions answer with the rows alone, swapped in place.
    """
    if request.method == "POST":
        return _queue_bulk(request, tenant_slug)
    template = (
        "reconciliation/queue.html#rows" if getattr(request, "htmx", False) else "reconciliation/queue.html"
    )
    return render(request, template, _queue_context(request, request.GET))


def _queue_context(request: HttpRequest, params: QueryDict) -> dict[str, object]:
    tenant = request_tenant(request)
    members = list(tenant_members(tenant))
    form = QueueFilterForm(params or None, members=members)
    filters = form.filters()
    sort = params.get("sort") or "recent"
    findings = discrepancy_queue(
        tenant, filters=filters, user_id=request.user.pk, role=request_role(request), sort=sort
    )
    query = params.copy()
    query.pop("page", None)
    page = discrepancy_queue_page(tenant, findings, params.get("page"), QUEUE_PAGE)
    return {
        "form": form,
        "page": page,
        "rows": _queue_rows(page.object_list, tenant.slug),
        "sort": sort,
        "status": filters["status"],
        "query": query.urlencode(),
        "members": members,
        "owner_options": _options(form.fields["owner"].choices, str(params.get("owner", ""))),  # type: ignore[attr-defined]
    }


def _options(choices: Iterable[tuple[str, object]], selected: str) -> str:
    """A <select>'s options (and optgroups) as one safe string: the widget renders each option
    through a template, which for a member list costs more than the rest of the filter bar."""

    def option(value: str, label: object) -> str:
        return format_html(
            '<option value="{}"{}>{}</option>',
            value,
            mark_safe(" selected") if value == selected else "",
            label,
        )

    parts: list[str] = []
    for value, label in choices:
        if isinstance(label, (list, tuple)):
            inner = mark_safe("".join(option(v, text) for v, text in label))  # noqa: S308 - escaped by format_html
            parts.append(format_html('<optgroup label="{}">{}</optgroup>', value, inner))
        else:
            parts.append(option(value, label))
    return mark_safe("".join(parts))  # noqa: S308 - each part escaped by format_html


CLASS_LABELS = dict(Classification.choices)
STATUS_LABELS = dict(Discrepancy.Status.choices)
INLINE_STATUSES = (
    Discrepancy.Status.OPEN,
    Discrepancy.Status.ASSIGNED,
    Discrepancy.Status.ESCALATED,
    Discrepancy.Status.RESOLVED,
)
# A row's status <option>s, one string per current status, built once: 50 rows x 4 options
# through the template engine were a tenth of the queue page's time.
STATUS_OPTIONS = {
    current.value: format_html_join(
        "",
        '<option value="{}"{}>{}</option>',
        ((s.value, mark_safe(" selected") if s == current else "", s.label) for s in INLINE_STATUSES),
    )
    for current in INLINE_STATUSES
}
ROLE_LABELS = dict(Role.choices)
CENT = Decimal("0.01")


def _queue_rows(findings: Iterable[Discrepancy], tenant_slug: str) -> list[dict[str, object]]:
    """A page's rows as the strings the table shows.

    Resolved in Python once, not by the template engine per cell: for 50 rows, model lookups,
    display methods, |date, |floatformat and {% url %} were half of the page's CPU time.
    """
    rows = []
    for d in findings:
        updated = timezone.localtime(d.updated_at)
        owner = str(d.owner) if d.owner else ROLE_LABELS.get(d.owner_role, "watch-list")
        rows.append(
            {
                "pk": str(d.pk),  # strings: the engine would localize numbers, cell by cell
                "url": reverse("discrepancy", args=[tenant_slug, d.pk]),
                "account": d.account.name,
                "line": d.meter.name if d.meter else "base fee",
                "period": d.period,
                "classification": d.classification,
                "class_label": CLASS_LABELS.get(d.classification, d.classification),
                "source": d.source,
                "direction": d.direction,
                "amount": f"{d.amount.quantize(CENT, rounding=ROUND_HALF_UP):f}",  # as |floatformat:2
                "currency": d.currency,
                "owner": owner,
                "owner_is_role": d.owner is None,
                "status": STATUS_LABELS.get(d.status, d.status),
                "status_value": d.status,
                # Changed in place from the row; dismissing needs a reason (bulk, or the finding's page).
                "status_options": STATUS_OPTIONS.get(d.status, ""),
                "updated": f"{updated:%b} {updated.day} {updated:%H:%M}",  # as |date:"M j H:i"
            }
        )
    return rows


@requires(Action.DISCREPANCY_WORK)
@require_POST
def queue_row_status(request: HttpRequest, tenant_slug: str, discrepancy_id: int) -> HttpResponse:
    """One row's status, changed from the queue in place: answers with the row."""
    tenant = request_tenant(request)
    finding = discrepancy_get(tenant, discrepancy_id)
    status = request.POST.get(f"status_{finding.pk}", "")
    error = ""
    if status not in STATUS_OPTIONS or finding.status not in STATUS_OPTIONS:
        error = "Not from here: dismiss with a reason (select it, then Dismiss) or open the finding."
    elif status != finding.status:
        discrepancy_change_status(discrepancy=finding, actor=request_actor(request), status=status)
        finding = discrepancy_get(tenant, discrepancy_id)
    row = _queue_rows([finding], tenant.slug)[0]
    row["error"] = error
    return render(request, "reconciliation/queue.html#row", {"r": row}, status=422 if error else 200)


def _queue_bulk(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request_tenant(request)
    ids = [int(i) for i in request.POST.getlist("ids") if i.isdigit()]
    form = BulkForm(request.POST, ids=ids)
    if not ids:
        messages.error(request, "Select at least one discrepancy.")
    elif form.is_valid():
        owner = None
        if form.cleaned_data["owner"]:
            owner = next(
                (m.user for m in tenant_members(tenant) if m.user_id == form.cleaned_data["owner"]), None
            )
        done = discrepancies_bulk(
            ids=form.cleaned_data["ids"],
            actor=request_actor(request),
            action=form.cleaned_data["action"],
            owner=owner,
            reason=form.cleaned_data["reason"],
        )
        messages.success(request, f"{done} discrepanc{'y' if done == 1 else 'ies'} updated.")
    else:
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
    params = QueryDict(request.POST.get("query", ""), mutable=True)
    if request.POST.get("page", "").isdigit():
        params["page"] = request.POST["page"]
    if getattr(request, "htmx", False):  # the same page of the same queue, with what happened
        return render(request, "reconciliation/queue.html#rows", _queue_context(request, params))
    return redirect(f"{reverse('queue', args=[tenant_slug])}?{params.urlencode()}")


@requires(Action.VIEW, write_action=Action.DISCREPANCY_WORK)
def discrepancy_detail(request: HttpRequest, tenant_slug: str, discrepancy_id: int) -> HttpResponse:
    """One finding: the three unit counts, the working, the timeline, comments, and what to do next."""
    tenant = request_tenant(request)
    finding = discrepancy_get(tenant, discrepancy_id)
    if request.method == "POST":
        actor = request_actor(request)
        try:
            if request.POST.get("do") == "comment":
                discrepancy_comment(discrepancy=finding, actor=actor, text=request.POST.get("text", ""))
            elif request.POST.get("do") == "status":
                discrepancy_change_status(
                    discrepancy=finding,
                    actor=actor,
                    status=request.POST.get("status", ""),
                    reason=request.POST.get("reason", ""),
                )
            elif request.POST.get("do") == "assign":
                owner_id = request.POST.get("owner", "")
                owner = next((m.user for m in tenant_members(tenant) if str(m.user_id) == owner_id), None)
                discrepancy_assign(discrepancy=finding, actor=actor, owner=owner)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        if getattr(request, "htmx", False):
            finding = discrepancy_get(tenant, discrepancy_id)
            return render(
                request, "reconciliation/discrepancy.html#timeline", _detail_context(finding, tenant)
            )
        return redirect("discrepancy", tenant_slug=tenant_slug, discrepancy_id=finding.pk)
    return render(request, "reconciliation/discrepancy.html", _detail_context(finding, tenant))


def _detail_context(finding: Discrepancy, tenant: object) -> dict[str, object]:
    from apps.approvals.models import Proposal
    from apps.approvals.views import provider_preview

    line = finding.line
    working = line.working or {}
    return {
        "finding": finding,
        "line": line,
        "working": working,
        "expected_phases": (working.get("expected") or {}).get("phases", []),
        "events": finding.events.select_related("actor", "run"),
        "members": tenant_members(tenant),  # type: ignore[arg-type]
        "statuses": [(v, label) for v, label in Discrepancy.Status.choices if v != finding.status],
        "customer_note": customer_note(finding),
        "proposals": [
            (p, provider_preview(p) if p.status == "proposed" else "")
            for p in Proposal.objects.filter(discrepancy=finding)
            .select_related("proposed_by", "connection", "outbox")
            .prefetch_related("approvals__approver")
        ],
    }


def customer_note(finding: Discrepancy) -> str:
    """A draft a CSM can send the customer, in plain words and the customer's currency."""
    from apps.pricing import quantize

    line = finding.line
    what = f"{finding.meter.name} usage" if finding.meter else "the subscription fee"
    amount = f"{quantize(abs(line.difference), line.currency):,} {line.currency}"
    opening = f"Hello {finding.account.name} team, reviewing your {finding.period} invoice"
    if finding.classification == "credit":
        return (
            f"{opening} we confirm the credit of {quantize(line.credited_amount, line.currency):,} "
            f"{line.currency} on {what} was applied as agreed. No action is needed on your side."
        )
    if finding.classification == "timing":
        return (
            f"{opening} we noticed some {what} reached us after the invoice was issued. It will appear on "
            "your next invoice; nothing is lost or counted twice."
        )
    change = " after your plan change during the month" if finding.classification == "proration" else ""
    if finding.direction == "over":
        return (
            f"{opening} we found that {what} was billed {amount} more than your usage and contract{change}. "
            f"We will issue a credit note for {amount}. We apologise for the error."
        )
    return (
        f"{opening} we found that {what} was billed {amount} less than your usage{change}. We will add the "
        "difference to your next invoice. Please let us know if you have any questions."
    )
