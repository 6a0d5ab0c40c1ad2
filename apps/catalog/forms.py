"""Forms for the RevOps catalogue screens, including the inline tier editor."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.http import QueryDict

from apps import pricing
from apps.accounts.models import Account
from apps.catalog.models import ChargeModel, Meter, Plan, PlanVersion
from apps.catalog.services import ChargeSpec

MAX_TIERS = 50


class MeterForm(forms.ModelForm):
    class Meta:
        model = Meter
        fields = ["key", "name", "aggregation", "unique_property", "unit_size", "rounding"]


class PlanForm(forms.ModelForm):
    class Meta:
        model = Plan
        fields = ["key", "name", "currency"]


class PlanVersionForm(forms.ModelForm):
    # Querysets of choice fields are placeholders (.none() runs no query); __init__ sets the tenant's own.
    copy_from = forms.ModelChoiceField(
        queryset=PlanVersion.unscoped_objects.none(),
        required=False,
        help_text="Start from this version's charges and tiers.",
    )

    class Meta:
        model = PlanVersion
        fields = ["effective_from", "base_fee", "note"]
        widgets = {"effective_from": forms.DateTimeInput(attrs={"type": "datetime-local"})}
        help_texts = {"effective_from": "In UTC."}

    def __init__(self, *args: Any, plan: Plan, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["copy_from"].queryset = PlanVersion.objects.filter(plan=plan)  # type: ignore[attr-defined]
        latest = PlanVersion.objects.filter(plan=plan).order_by("-number").first()
        if latest and not self.is_bound:
            self.initial.update(copy_from=latest.pk, base_fee=latest.base_fee)


class OverrideForm(forms.Form):
    """Who an override is for, when, and why; the price itself comes from the charge editor."""

    account = forms.ModelChoiceField(queryset=Account.unscoped_objects.none(), required=False)
    segment = forms.CharField(max_length=50, required=False)
    meter = forms.ModelChoiceField(queryset=Meter.unscoped_objects.none())
    plan = forms.ModelChoiceField(
        queryset=Plan.unscoped_objects.none(), required=False, help_text="Only while on this plan."
    )
    effective_from = forms.DateTimeField(widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    effective_to = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    reason = forms.CharField(max_length=200)

    def __init__(self, *args: Any, tenant: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["account"].queryset = Account.objects.filter(tenant=tenant)  # type: ignore[attr-defined]
        self.fields["meter"].queryset = Meter.objects.filter(tenant=tenant)  # type: ignore[attr-defined]
        self.fields["plan"].queryset = Plan.objects.filter(tenant=tenant)  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if bool(data.get("account")) == bool(data.get("segment")):
            raise ValidationError("Choose an account or type a segment (one of the two).")
        return data


class PhaseForm(forms.Form):
    plan = forms.ModelChoiceField(queryset=Plan.unscoped_objects.none())
    starts_at = forms.DateTimeField(widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    ends_at = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )

    def __init__(self, *args: Any, tenant: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["plan"].queryset = Plan.objects.filter(tenant=tenant)  # type: ignore[attr-defined]


@dataclass
class TierRow:
    up_to: str = ""
    unit_amount: str = ""
    flat_amount: str = ""
    errors: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class ChargeEditor:
    """The state of the inline charge editor: what the user typed, row by row, and the errors per field.

    The editor is server-driven: adding, removing and moving tier rows posts the form and
    re-renders it (no client-side script), and saving validates with the engine's rules.
    """

    model: str = ChargeModel.GRADUATED
    unit_amount: str = ""
    package_size: str = ""
    package_amount: str = ""
    tiers: list[TierRow] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def blank(cls) -> ChargeEditor:
        return cls(tiers=[TierRow(), TierRow()])

    @classmethod
    def from_engine(cls, charge: pricing.Charge) -> ChargeEditor:
        def text(value: Decimal | None) -> str:
            return "" if value is None else pricing.decimal_str(value)

        return cls(
            model=charge.model,
            unit_amount=text(charge.unit_amount),
            package_size=text(charge.package_size),
            package_amount=text(charge.package_amount),
            tiers=[
                TierRow(text(t.up_to), text(t.unit_amount), text(t.flat_amount) if t.flat_amount else "")
                for t in charge.tiers
            ],
        )

    @classmethod
    def from_post(cls, data: QueryDict) -> ChargeEditor:
        try:
            count = min(int(data.get("tier_count", "0")), MAX_TIERS)
        except ValueError:
            count = 0
        return cls(
            model=data.get("model", ""),
            unit_amount=data.get("unit_amount", "").strip(),
            package_size=data.get("package_size", "").strip(),
            package_amount=data.get("package_amount", "").strip(),
            tiers=[
                TierRow(
                    data.get(f"tier-{i}-up_to", "").strip(),
                    data.get(f"tier-{i}-unit_amount", "").strip(),
                    data.get(f"tier-{i}-flat_amount", "").strip(),
                )
                for i in range(count)
            ],
        )

    @property
    def general_errors(self) -> list[str]:
        """Errors that belong to no single input (shown above the form)."""
        shown_at_fields = {"model", "unit_amount", "package_size", "package_amount"}
        return [
            reason if key == "__all__" else f"{key}: {reason}"
            for key, reasons in self.errors.items()
            if key not in shown_at_fields
            for reason in reasons
        ]

    @property
    def uses_tiers(self) -> bool:
        return self.model in (ChargeModel.GRADUATED, ChargeModel.VOLUME)

    def apply(self, op: str) -> None:
        """Add, remove or move a tier row (``add``, ``remove-2``, ``up-2``, ``down-2``)."""
        if op == "add" and len(self.tiers) < MAX_TIERS:
            self.tiers.append(TierRow())
            return
        if op == "refresh":  # the model changed: give a tier model rows to fill in
            if self.uses_tiers and not self.tiers:
                self.tiers = [TierRow(), TierRow()]
            return
        verb, _, index_text = op.partition("-")
        if not index_text.isdigit() or int(index_text) >= len(self.tiers):
            return
        index = int(index_text)
        if verb == "remove":
            del self.tiers[index]
        elif verb == "up" and index > 0:
            self.tiers[index - 1], self.tiers[index] = self.tiers[index], self.tiers[index - 1]
        elif verb == "down" and index < len(self.tiers) - 1:
            self.tiers[index + 1], self.tiers[index] = self.tiers[index], self.tiers[index + 1]

    def _number(self, text: str, errors: dict[str, list[str]], key: str) -> Decimal | None:
        if not text:
            return None
        try:
            value = Decimal(text.replace(",", "").replace("_", ""))
        except InvalidOperation:
            errors.setdefault(key, []).append(f"{text!r} is not a number")
            return None
        if not value.is_finite():
            errors.setdefault(key, []).append(f"{text!r} is not a number")
            return None
        return value

    def spec(self, currency: str | None) -> ChargeSpec | None:
        """The charge as typed, checked by the engine's rules; None (and ``errors`` set) when it is wrong."""
        self.errors = {}
        for row in self.tiers:
            row.errors = {}
        numbers: dict[str, Decimal | None] = {
            name: self._number(getattr(self, name), self.errors, name)
            for name in ("unit_amount", "package_size", "package_amount")
        }
        tiers = []
        if self.uses_tiers:
            for row in self.tiers:
                up_to = self._number(row.up_to, row.errors, "up_to")
                unit = self._number(row.unit_amount, row.errors, "unit_amount")
                flat = self._number(row.flat_amount, row.errors, "flat_amount")
                if unit is None and "unit_amount" not in row.errors:
                    row.errors["unit_amount"] = ["is required"]
                tiers.append(
                    pricing.Tier(
                        up_to=up_to,
                        unit_amount=unit if unit is not None else Decimal(0),
                        flat_amount=flat or Decimal(0),
                    )
                )
        spec = ChargeSpec(
            model=self.model,
            unit_amount=numbers["unit_amount"] if self.model == ChargeModel.PER_UNIT else None,
            package_size=numbers["package_size"] if self.model == ChargeModel.PACKAGE else None,
            package_amount=numbers["package_amount"] if self.model == ChargeModel.PACKAGE else None,
            tiers=tuple(tiers),
        )
        for issue in pricing.validate_charge(spec.as_engine(), currency):
            self._place(issue)
        if self.errors or any(row.errors for row in self.tiers):
            return None
        return spec

    def _place(self, issue: pricing.ValidationIssue) -> None:
        """Put an engine issue next to its field (``tiers[2].up_to`` goes to row 2's up_to)."""
        path = issue.field
        if path.startswith("tiers[") and "]." in path:
            index_text, _, name = path[len("tiers[") :].partition("].")
            if index_text.isdigit() and int(index_text) < len(self.tiers):
                self.tiers[int(index_text)].errors.setdefault(name, []).append(issue.reason)
                return
        self.errors.setdefault(path or "__all__", []).append(issue.reason)


def parse_preview_quantity(text: str) -> Decimal | None:
    try:
        value = Decimal(text.replace(",", "").replace("_", "").strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() and value >= 0 else None
