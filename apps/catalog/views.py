"""RevOps screens: meters, plans and versions, the inline charge editor with a live preview, overrides."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django.views.decorators.vary import vary_on_headers

from apps import pricing
from apps.accounts.selectors import account_get
from apps.catalog.forms import (
    ChargeEditor,
    MeterForm,
    OverrideForm,
    PhaseForm,
    PlanForm,
    PlanVersionForm,
    parse_preview_quantity,
)
from apps.catalog.models import Charge, ChargeModel, Meter, Plan, PriceOverride, SubscriptionPhase
from apps.catalog.selectors import (
    engine_charge,
    engine_unit_rule,
    meter_list,
    plan_list,
    plan_version_detail,
)
from apps.catalog.services import (
    charge_delete,
    charge_save,
    meter_create,
    meter_update,
    override_create,
    phase_create,
    plan_create,
    plan_version_create,
)
from apps.tenancy.permissions import request_actor, request_tenant, requires
from apps.tenancy.roles import Action


def _htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


@requires(Action.VIEW)
def catalog_home(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request_tenant(request)
    overrides = PriceOverride.objects.filter(tenant=tenant).select_related(
        "account", "meter", "plan", "charge"
    )
    return render(
        request,
        "catalog/catalog.html",
        {
            "meters": meter_list(tenant),
            "plans": plan_list(tenant),
            "overrides": overrides[:50],
        },
    )


@requires(Action.VIEW, write_action=Action.CATALOG_EDIT)
def meter_new(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    form = MeterForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            meter_create(actor=request_actor(request), **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Meter {form.cleaned_data['key']} created.")
            return redirect("catalog", tenant_slug=tenant_slug)
    return render(
        request,
        "catalog/form_page.html",
        {"form": form, "title": "New meter"},
        status=422 if form.errors else 200,
    )


@requires(Action.VIEW, write_action=Action.CATALOG_EDIT)
def meter_edit(request: HttpRequest, tenant_slug: str, meter_id: int) -> HttpResponse:
    meter = get_object_or_404(Meter.objects.filter(tenant=request_tenant(request)), pk=meter_id)
    form = MeterForm(request.POST or None, instance=meter)
    if request.method == "POST" and form.is_valid():
        meter.refresh_from_db()
        try:
            meter_update(meter=meter, actor=request_actor(request), data=form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Meter {meter.key} saved.")
            return redirect("catalog", tenant_slug=tenant_slug)
    return render(
        request,
        "catalog/form_page.html",
        {"form": form, "title": f"Edit meter {meter.key}"},
        status=422 if form.errors else 200,
    )


@requires(Action.VIEW, write_action=Action.CATALOG_EDIT)
def plan_new(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    form = PlanForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            plan = plan_create(actor=request_actor(request), **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return redirect("plan-detail", tenant_slug=tenant_slug, plan_id=plan.pk)
    return render(
        request,
        "catalog/form_page.html",
        {"form": form, "title": "New plan"},
        status=422 if form.errors else 200,
    )


@requires(Action.VIEW, write_action=Action.CATALOG_EDIT)
def plan_detail(request: HttpRequest, tenant_slug: str, plan_id: int) -> HttpResponse:
    """The plan's versions, and a form for the next one (starting as a copy of the latest)."""
    plan = get_object_or_404(Plan.objects.filter(tenant=request_tenant(request)), pk=plan_id)
    form = PlanVersionForm(request.POST or None, plan=plan)
    if request.method == "POST" and form.is_valid():
        try:
            version = plan_version_create(
                actor=request_actor(request),
                plan=plan,
                effective_from=form.cleaned_data["effective_from"],
                base_fee=form.cleaned_data["base_fee"],
                note=form.cleaned_data["note"],
                copy_from=form.cleaned_data["copy_from"],
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return redirect("plan-version", tenant_slug=tenant_slug, version_id=version.pk)
    versions = plan.versions.order_by("-effective_from")
    return render(
        request,
        "catalog/plan_detail.html",
        {"plan": plan, "versions": versions, "form": form},
        status=422 if form.errors else 200,
    )


@requires(Action.VIEW)
def plan_version(request: HttpRequest, tenant_slug: str, version_id: int) -> HttpResponse:
    tenant = request_tenant(request)
    version = plan_version_detail(tenant, version_id)
    priced = {charge.meter_id for charge in version.charges.all()}
    return render(
        request,
        "catalog/plan_version.html",
        {
            "version": version,
            "charges": [(charge, engine_charge(charge)) for charge in version.charges.all()],
            "unpriced_meters": meter_list(tenant).exclude(pk__in=priced),
        },
    )


@requires(Action.VIEW, write_action=Action.CATALOG_EDIT)
@vary_on_headers("HX-Request")
def charge_edit(request: HttpRequest, tenant_slug: str, version_id: int, meter_id: int) -> HttpResponse:
    """The inline charge editor: rows are added, removed and moved by posting the form back (op=...)."""
    tenant = request_tenant(request)
    version = plan_version_detail(tenant, version_id)
    meter = get_object_or_404(Meter.objects.filter(tenant=tenant), pk=meter_id)
    charge = Charge.objects.filter(plan_version=version, meter=meter).prefetch_related("tiers").first()
    status = 200
    if request.method == "POST":
        editor = ChargeEditor.from_post(request.POST)
        op = request.POST.get("op", "save")
        if op != "save":
            editor.apply(op)
        else:
            spec = editor.spec(version.plan.currency)
            if spec is not None:
                try:
                    charge_save(actor=request_actor(request), version=version, meter=meter, spec=spec)
                except ValidationError as exc:
                    editor.errors.setdefault("__all__", []).extend(exc.messages)
                else:
                    messages.success(request, f"{meter.name} on {version} saved.")
                    if _htmx(request):
                        response = HttpResponse(status=204)
                        response["HX-Redirect"] = reverse("plan-version", args=[tenant.slug, version.pk])
                        return response
                    return redirect("plan-version", tenant_slug=tenant_slug, version_id=version.pk)
            status = 422
    else:
        editor = ChargeEditor.from_engine(engine_charge(charge)) if charge else ChargeEditor.blank()
    context = {
        "version": version,
        "meter": meter,
        "editor": editor,
        "charge": charge,
        "currency": version.plan.currency,
        "charge_models": ChargeModel.choices,
        "preview_quantity": request.POST.get("preview_quantity", ""),
    }
    template = "catalog/charge_edit.html#editor" if _htmx(request) else "catalog/charge_edit.html"
    return render(request, template, context, status=status)


@requires(Action.VIEW)
@require_POST
def charge_preview(request: HttpRequest, tenant_slug: str, version_id: int, meter_id: int) -> HttpResponse:
    """Price a quantity with the charge as currently typed in the editor (saved or not), tier by tier."""
    tenant = request_tenant(request)
    version = plan_version_detail(tenant, version_id)
    meter = get_object_or_404(Meter.objects.filter(tenant=tenant), pk=meter_id)
    editor = ChargeEditor.from_post(request.POST)
    quantity = parse_preview_quantity(request.POST.get("preview_quantity", ""))
    context: dict[str, object] = {
        "meter": meter,
        "currency": version.plan.currency,
        "quantity_text": request.POST.get("preview_quantity", ""),
    }
    spec = editor.spec(version.plan.currency)
    if quantity is None:
        context["problem"] = "Type a quantity of 0 or more to see its price."
    elif spec is None:
        context["problem"] = "Fix the highlighted fields to see a price."
    else:
        units = pricing.to_billing_units(quantity, meter.unit_size, meter.rounding)
        breakdown = pricing.price_units(spec.as_engine(), units)
        as_dict = breakdown.as_dict(version.plan.currency, tenant.rounding_mode)
        context.update(
            units=units,
            breakdown=as_dict,
            rounding_label=as_dict["rounding"].removeprefix("ROUND_").replace("_", "-").lower(),
            total=breakdown.total(version.plan.currency, tenant.rounding_mode),
            raw=quantity,
            unit_rule=engine_unit_rule(meter),
        )
    return render(request, "catalog/charge_edit.html#preview", context)


@requires(Action.VIEW, write_action=Action.CATALOG_EDIT)
@require_POST
def charge_remove(request: HttpRequest, tenant_slug: str, version_id: int, meter_id: int) -> HttpResponse:
    tenant = request_tenant(request)
    version = plan_version_detail(tenant, version_id)
    charge = get_object_or_404(Charge.objects.filter(plan_version=version), meter_id=meter_id)
    try:
        charge_delete(actor=request_actor(request), charge=charge)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("plan-version", tenant_slug=tenant_slug, version_id=version.pk)


@requires(Action.VIEW, write_action=Action.CATALOG_EDIT)
@vary_on_headers("HX-Request")
def override_new(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request_tenant(request)
    form = OverrideForm(request.POST or None, tenant=tenant)
    editor = (
        ChargeEditor.from_post(request.POST)
        if request.method == "POST"
        else ChargeEditor(model="per_unit", tiers=[])
    )
    status = 200
    if request.method == "POST":
        op = request.POST.get("op", "save")
        if op != "save":
            editor.apply(op)
            # only rearranging rows: show what was typed, without judging it yet
            form = OverrideForm(initial=request.POST.dict(), tenant=tenant)
        else:
            plan = form.cleaned_data.get("plan") if form.is_valid() else None
            spec = editor.spec(plan.currency if plan else None)
            if form.is_valid() and spec is not None:
                try:
                    override_create(actor=request_actor(request), spec=spec, **form.cleaned_data)
                except ValidationError as exc:
                    form.add_error(None, exc)
                else:
                    messages.success(request, "Override saved.")
                    return redirect("catalog", tenant_slug=tenant_slug)
            status = 422
    template = "catalog/override_new.html#editor" if _htmx(request) else "catalog/override_new.html"
    return render(
        request,
        template,
        {"form": form, "editor": editor, "charge_models": ChargeModel.choices},
        status=status,
    )


@requires(Action.VIEW, write_action=Action.CATALOG_EDIT)
def account_phases(request: HttpRequest, tenant_slug: str, account_id: int) -> HttpResponse:
    """An account's subscription phases (its plan over time), and adding one."""
    tenant = request_tenant(request)
    account = account_get(tenant, account_id)
    form = PhaseForm(request.POST or None, tenant=tenant)
    if request.method == "POST" and form.is_valid():
        try:
            phase_create(actor=request_actor(request), account=account, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return redirect("account-phases", tenant_slug=tenant_slug, account_id=account.pk)
    phases = SubscriptionPhase.objects.filter(account=account).select_related("plan").order_by("-starts_at")
    return render(
        request,
        "catalog/account_phases.html",
        {"account": account, "phases": phases, "form": form},
        status=422 if form.errors else 200,
    )
