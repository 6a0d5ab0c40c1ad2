"""The RevOps settings area: thresholds, routing rules, pricing and approvals, the schedule."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST
from django.views.decorators.vary import vary_on_headers

from apps.accounts.models import Account
from apps.reconciliation import schedule
from apps.reconciliation.models import ReconciliationRun
from apps.reconciliation.settings_forms import (
    RoutingRuleForm,
    RoutingTryForm,
    ScheduleForm,
    TenantSettingsForm,
    ThresholdForm,
    ThresholdTryForm,
)
from apps.reconciliation.settings_selectors import (
    default_routes,
    routing_rule_get,
    routing_rule_list,
    routing_try,
    schedule_get,
    segment_names,
    threshold_get,
    threshold_list,
    threshold_scope,
    threshold_try,
)
from apps.reconciliation.settings_services import (
    TENANT_SETTINGS,
    routing_rule_create,
    routing_rule_delete,
    routing_rule_update,
    schedule_rule,
    schedule_update,
    tenant_settings_update,
    threshold_create,
    threshold_delete,
    threshold_update,
)
from apps.tenancy.models import Tenant
from apps.tenancy.permissions import request_actor, request_role, request_tenant, requires
from apps.tenancy.roles import Action, role_can


def _htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _can_edit(request: HttpRequest) -> bool:
    return role_can(request_role(request) or "", Action.SETTINGS_EDIT)


def _status(*forms: Any) -> int:
    return 422 if any(form is not None and form.is_bound and form.errors for form in forms) else 200


def _next_firings(tenant: Tenant) -> list[schedule.Firing]:
    row = schedule_get(tenant)
    return schedule.next_firings(
        schedule_rule(tenant, row),
        timezone.now(),
        last_monthly=row.last_monthly_period if row else "",
        last_pre_invoice=row.last_pre_invoice_period if row else "",
    )


@requires(Action.VIEW)
def settings_home(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request_tenant(request)
    thresholds = threshold_list(tenant)
    return render(
        request,
        "reconciliation/settings/home.html",
        {
            "thresholds": len(thresholds),
            "default_threshold": next((t for t in thresholds if threshold_scope(t)[0] == 3), None),
            "rules": routing_rule_list(tenant).count(),
            "firings": _next_firings(tenant),
            "schedule": schedule_get(tenant),
        },
    )


# --- thresholds -----------------------------------------------------------------------------------


def _thresholds_page(
    request: HttpRequest, *, form: ThresholdForm, trial_form: ThresholdTryForm
) -> HttpResponse:
    tenant = request_tenant(request)
    trial = None
    if trial_form.is_bound and trial_form.is_valid():
        trial = threshold_try(tenant, **trial_form.cleaned_data)
    return render(
        request,
        "reconciliation/settings/thresholds.html",
        {
            "thresholds": [(t, threshold_scope(t)[1]) for t in threshold_list(tenant)],
            "form": form,
            "trial_form": trial_form,
            "trial": trial,
            "segments": segment_names(tenant),
        },
        status=_status(form, trial_form),
    )


@requires(Action.VIEW, write_action=Action.SETTINGS_EDIT)
def thresholds(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """The thresholds, most specific first; a form for a new one; and a "try it"."""
    tenant = request_tenant(request)
    form = ThresholdForm(request.POST or None, tenant=tenant)
    if request.method == "POST" and form.is_valid():
        try:
            threshold = threshold_create(actor=request_actor(request), **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Threshold for {_lower_first(threshold_scope(threshold)[1])} saved.")
            return redirect("settings-thresholds", tenant_slug=tenant_slug)
    return _thresholds_page(request, form=form, trial_form=ThresholdTryForm(tenant=tenant))


@requires(Action.VIEW)
@vary_on_headers("HX-Request")
def threshold_trial(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """Would this difference be material? Decided by the reconciliation's own functions."""
    tenant = request_tenant(request)
    trial_form = ThresholdTryForm(request.GET, tenant=tenant)
    if not _htmx(request):
        return _thresholds_page(request, form=ThresholdForm(tenant=tenant), trial_form=trial_form)
    trial = threshold_try(tenant, **trial_form.cleaned_data) if trial_form.is_valid() else None
    return render(
        request,
        "reconciliation/settings/thresholds.html#trial",
        {"trial_form": trial_form, "trial": trial},
        status=_status(trial_form),
    )


@requires(Action.VIEW, write_action=Action.SETTINGS_EDIT)
def threshold_edit(request: HttpRequest, tenant_slug: str, threshold_id: int) -> HttpResponse:
    tenant = request_tenant(request)
    threshold = threshold_get(tenant, threshold_id)
    form = ThresholdForm(request.POST or None, instance=threshold_get(tenant, threshold_id), tenant=tenant)
    if request.method == "POST" and form.is_valid():
        try:
            threshold_update(threshold=threshold, actor=request_actor(request), data=form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, "Threshold saved.")
            return redirect("settings-thresholds", tenant_slug=tenant_slug)
    return render(
        request,
        "reconciliation/settings/edit.html",
        {
            "form": form,
            "title": f"Threshold: {threshold_scope(threshold)[1]}",
            "back": "settings-thresholds",
            "delete_url": "settings-threshold-delete",
            "object": threshold,
            "segments": segment_names(tenant),
        },
        status=_status(form),
    )


@requires(Action.SETTINGS_EDIT)
@require_POST
def threshold_remove(request: HttpRequest, tenant_slug: str, threshold_id: int) -> HttpResponse:
    threshold = threshold_get(request_tenant(request), threshold_id)
    label = threshold_scope(threshold)[1]
    threshold_delete(threshold=threshold, actor=request_actor(request))
    messages.success(request, f"Threshold for {_lower_first(label)} deleted.")
    return redirect("settings-thresholds", tenant_slug=tenant_slug)


# --- routing rules --------------------------------------------------------------------------------


def _routing_page(request: HttpRequest, *, form: RoutingRuleForm, trial_form: RoutingTryForm) -> HttpResponse:
    tenant = request_tenant(request)
    trial = _routing_trial(tenant, trial_form) if trial_form.is_bound else None
    return render(
        request,
        "reconciliation/settings/routing.html",
        {
            "rules": routing_rule_list(tenant),
            "defaults": default_routes(),
            "form": form,
            "trial_form": trial_form,
            "trial": trial,
            "segments": segment_names(tenant),
        },
        status=_status(form, trial_form),
    )


def _routing_trial(tenant: Tenant, form: RoutingTryForm) -> Any:
    if not form.is_valid():
        return None
    account = None
    if form.cleaned_data["account"]:
        account = (
            Account.objects.filter(tenant=tenant, key=form.cleaned_data["account"].strip())
            .select_related("csm_owner")
            .first()
        )
        if account is None:
            form.add_error("account", "No account of this tenant has this id.")
            return None
    return routing_try(
        tenant,
        classification=form.cleaned_data["classification"],
        account=account,
        segment=form.cleaned_data["segment"],
        meter=form.cleaned_data["meter"],
    )


@requires(Action.VIEW, write_action=Action.SETTINGS_EDIT)
def routing(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """Routing rules, the defaults that apply when none does, a form for a new rule, and a "try it"."""
    tenant = request_tenant(request)
    form = RoutingRuleForm(request.POST or None, tenant=tenant)
    if request.method == "POST" and form.is_valid():
        try:
            routing_rule_create(actor=request_actor(request), **form.rule_data())
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, "Routing rule saved: it applies to discrepancies found from now on.")
            return redirect("settings-routing", tenant_slug=tenant_slug)
    return _routing_page(request, form=form, trial_form=RoutingTryForm(tenant=tenant))


@requires(Action.VIEW)
@vary_on_headers("HX-Request")
def routing_trial(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request_tenant(request)
    trial_form = RoutingTryForm(request.GET, tenant=tenant)
    if not _htmx(request):
        return _routing_page(request, form=RoutingRuleForm(tenant=tenant), trial_form=trial_form)
    trial = _routing_trial(tenant, trial_form)
    return render(
        request,
        "reconciliation/settings/routing.html#trial",
        {"trial_form": trial_form, "trial": trial},
        status=_status(trial_form),
    )


@requires(Action.VIEW, write_action=Action.SETTINGS_EDIT)
def routing_edit(request: HttpRequest, tenant_slug: str, routing_rule_id: int) -> HttpResponse:
    tenant = request_tenant(request)
    rule = routing_rule_get(tenant, routing_rule_id)
    form = RoutingRuleForm(request.POST or None, tenant=tenant, rule=rule)
    if request.method == "POST" and form.is_valid():
        try:
            routing_rule_update(rule=rule, actor=request_actor(request), data=form.rule_data())
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, "Routing rule saved.")
            return redirect("settings-routing", tenant_slug=tenant_slug)
    return render(
        request,
        "reconciliation/settings/edit.html",
        {
            "form": form,
            "title": f"Routing rule: {rule.get_classification_display()}",
            "back": "settings-routing",
            "delete_url": "settings-routing-delete",
            "object": rule,
            "segments": segment_names(tenant),
        },
        status=_status(form),
    )


@requires(Action.SETTINGS_EDIT)
@require_POST
def routing_remove(request: HttpRequest, tenant_slug: str, routing_rule_id: int) -> HttpResponse:
    rule = routing_rule_get(request_tenant(request), routing_rule_id)
    routing_rule_delete(rule=rule, actor=request_actor(request))
    messages.success(request, "Routing rule deleted.")
    return redirect("settings-routing", tenant_slug=tenant_slug)


# --- pricing and approvals, and the schedule ------------------------------------------------------


@requires(Action.VIEW, write_action=Action.SETTINGS_EDIT)
def general(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """Time zone, rounding, proration and the single-approval limit."""
    tenant = request_tenant(request)
    # The form gets its own copy: a form that fails validation must not change request.tenant.
    form = TenantSettingsForm(request.POST or None, instance=Tenant.objects.get(pk=tenant.pk))
    if request.method == "POST" and form.is_valid():
        data = {name: form.cleaned_data[name] for name in TENANT_SETTINGS}
        try:
            tenant_settings_update(
                tenant=tenant, actor=request_actor(request), data=data, reason=form.cleaned_data["reason"]
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, "Settings saved.")
            return redirect("settings-general", tenant_slug=tenant_slug)
    return render(
        request,
        "reconciliation/settings/general.html",
        {"form": form, "can_edit": _can_edit(request)},
        status=_status(form),
    )


@requires(Action.VIEW, write_action=Action.SETTINGS_EDIT)
def schedule_edit(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """When the tenant's periods are reconciled on their own, and when the next runs start."""
    tenant = request_tenant(request)
    row = schedule_get(tenant)
    form = ScheduleForm(request.POST or None, instance=schedule_get(tenant))
    if request.method == "POST" and form.is_valid():
        data = {name: form.cleaned_data[name] for name in ScheduleForm.Meta.fields}
        try:
            schedule_update(actor=request_actor(request), data=data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, "Schedule saved.")
            return redirect("settings-schedule", tenant_slug=tenant_slug)
    recent = ReconciliationRun.objects.filter(tenant=tenant, trigger=ReconciliationRun.Trigger.SCHEDULE)[:10]
    return render(
        request,
        "reconciliation/settings/schedule.html",
        {
            "form": form,
            "row": row,
            "can_edit": _can_edit(request),
            "firings": _next_firings(tenant),
            "now": timezone.now(),
            "recent": recent,
        },
        status=_status(form),
    )
