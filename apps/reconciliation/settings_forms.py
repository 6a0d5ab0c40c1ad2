"""Forms of the RevOps settings screens."""

from __future__ import annotations

from typing import Any

from django import forms

from apps.accounts.models import validate_timezone
from apps.catalog.models import Meter
from apps.reconciliation.models import ReconciliationSchedule, RoutingRule, Threshold
from apps.reconciliation.settings_selectors import ROUTED
from apps.tenancy.models import Tenant
from apps.tenancy.roles import Role
from apps.users.models import User


def _tenant_meters(field: forms.Field, tenant: Tenant) -> None:
    field.queryset = Meter.objects.filter(tenant=tenant).order_by("name")  # type: ignore[attr-defined]


class ThresholdForm(forms.ModelForm):
    # A placeholder queryset (.none() runs no query); __init__ sets the tenant's own meters.
    meter = forms.ModelChoiceField(
        queryset=Meter.unscoped_objects.none(),
        required=False,
        help_text="Blank: any meter (and the base fee).",
    )

    class Meta:
        model = Threshold
        fields = ["segment", "meter", "absolute", "relative"]
        help_texts = {
            "segment": "Blank: any segment.",
            "absolute": "A difference smaller than this (in the line's currency) is within tolerance.",
            "relative": "A share of the expected amount, e.g. 0.01 for 1%.",
        }

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _tenant_meters(self.fields["meter"], tenant)
        self.fields["meter"].empty_label = "Any meter"  # type: ignore[attr-defined]
        self.fields["segment"].widget.attrs["list"] = "segments"


class ThresholdTryForm(forms.Form):
    segment = forms.CharField(required=False, max_length=50)
    meter = forms.ModelChoiceField(
        queryset=Meter.unscoped_objects.none(), required=False, empty_label="Base fee"
    )
    expected = forms.DecimalField(max_digits=30, decimal_places=12, label="Expected amount")
    difference = forms.DecimalField(
        max_digits=30, decimal_places=12, help_text="Expected minus billed: negative for an over-bill."
    )

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _tenant_meters(self.fields["meter"], tenant)
        self.fields["segment"].widget.attrs["list"] = "segments"


def person_label(user: User) -> str:
    return f"{user.full_name} <{user.email}>" if user.full_name else user.email


OWNER_KINDS = [
    ("role", "A role"),
    ("person", "A person"),
    ("csm", "The account's CSM"),
]


class RoutingRuleForm(forms.Form):
    """Who owns a class of discrepancy: a role, a person (a member of this tenant), or the account's CSM."""

    classification = forms.ChoiceField(label="Class", choices=[(c.value, c.label) for c in ROUTED])
    segment = forms.CharField(required=False, max_length=50, help_text="Blank: any segment.")
    meter = forms.ModelChoiceField(
        queryset=Meter.unscoped_objects.none(), required=False, empty_label="Any meter"
    )
    owner_kind = forms.ChoiceField(
        label="Route to", choices=OWNER_KINDS, widget=forms.RadioSelect, initial="role"
    )
    owner_role = forms.ChoiceField(
        label="Role",
        required=False,
        choices=[("", "—"), *Role.choices],
        help_text="For the account's CSM: the role that gets it when the account has no CSM.",
    )
    owner = forms.ModelChoiceField(
        label="Person", queryset=User.objects.none(), required=False, help_text="Members of this tenant."
    )

    def __init__(self, *args: Any, tenant: Tenant, rule: RoutingRule | None = None, **kwargs: Any) -> None:
        if rule is not None and "initial" not in kwargs:
            kind = "csm" if rule.to_account_csm else "person" if rule.owner_id else "role"
            kwargs["initial"] = {
                "classification": rule.classification,
                "segment": rule.segment,
                "meter": rule.meter_id,
                "owner_kind": kind,
                "owner_role": rule.owner_role,
                "owner": rule.owner_id,
            }
        super().__init__(*args, **kwargs)
        _tenant_meters(self.fields["meter"], tenant)
        # Only this tenant's members can be chosen (the service checks it again).
        self.fields["owner"].queryset = (  # type: ignore[attr-defined]
            User.objects.filter(memberships__tenant=tenant).distinct().order_by("email")
        )
        self.fields["owner"].label_from_instance = person_label  # type: ignore[attr-defined]
        self.fields["segment"].widget.attrs["list"] = "segments"

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("owner_kind")
        if kind == "role" and not data.get("owner_role"):
            self.add_error("owner_role", "Choose the role that owns these discrepancies.")
        if kind == "person" and not data.get("owner"):
            self.add_error("owner", "Choose the person who owns these discrepancies.")
        return data

    def rule_data(self) -> dict[str, Any]:
        """The fields of the RoutingRule, as the services take them."""
        data = self.cleaned_data
        kind = data["owner_kind"]
        return {
            "classification": data["classification"],
            "segment": data.get("segment") or "",
            "meter": data.get("meter"),
            "owner_role": (data.get("owner_role") or "") if kind != "person" else "",
            "owner": data.get("owner") if kind == "person" else None,
            "to_account_csm": kind == "csm",
        }


class RoutingTryForm(forms.Form):
    classification = forms.ChoiceField(label="Class", choices=[(c.value, c.label) for c in ROUTED])
    account = forms.CharField(
        required=False, max_length=100, help_text="An account id (its segment and CSM), or blank."
    )
    segment = forms.CharField(required=False, max_length=50, help_text="Used when no account is given.")
    meter = forms.ModelChoiceField(
        queryset=Meter.unscoped_objects.none(), required=False, empty_label="Base fee"
    )

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _tenant_meters(self.fields["meter"], tenant)
        self.fields["segment"].widget.attrs["list"] = "segments"


class TenantSettingsForm(forms.ModelForm):
    single_approval_limit = forms.DecimalField(
        max_digits=30,
        decimal_places=2,
        min_value=0,
        label="Single-approval limit",
        help_text="Proposals above this amount need two distinct finance approvers.",
    )
    reason = forms.CharField(
        required=False, max_length=500, help_text="Why the change (kept in the audit log)."
    )

    class Meta:
        model = Tenant
        fields = ["default_timezone", "rounding_mode", "proration", "single_approval_limit"]
        labels = {"default_timezone": "Time zone"}
        help_texts = {
            "default_timezone": "The schedule's clock, and the time zone of accounts created without one.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["default_timezone"].validators.append(validate_timezone)


class ScheduleForm(forms.ModelForm):
    class Meta:
        model = ReconciliationSchedule
        fields = ["enabled", "day_of_month", "hour", "pre_invoice_days_before_month_end"]
        labels = {
            "enabled": "Reconcile on a schedule",
            "pre_invoice_days_before_month_end": "Pre-invoice run: days before the month ends",
        }
        widgets = {
            "day_of_month": forms.NumberInput(attrs={"min": 1, "max": 28}),
            "hour": forms.NumberInput(attrs={"min": 0, "max": 23}),
            "pre_invoice_days_before_month_end": forms.NumberInput(attrs={"min": 1, "max": 27}),
        }
