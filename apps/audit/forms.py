"""The audit log's filter form."""

from __future__ import annotations

from typing import Any

from django import forms

from apps.audit.selectors import AuditFilters, actor_choices, object_type_choices
from apps.tenancy.models import Tenant


class AuditFilterForm(forms.Form):
    actor = forms.ChoiceField(required=False)
    action = forms.CharField(
        required=False, max_length=100, help_text="A prefix: proposal. or threshold.create"
    )
    object_type = forms.ChoiceField(required=False, label="Object")
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    text = forms.CharField(required=False, max_length=200, label="Search")

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["actor"].choices = [("", "Anyone"), *actor_choices(tenant)]  # type: ignore[attr-defined]
        self.fields["object_type"].choices = [("", "Any object"), *object_type_choices()]  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "The end date is before the start date.")
        return data

    def filters(self) -> AuditFilters:
        """The valid filters (an invalid field filters nothing, and the form shows its error)."""
        if not self.is_bound:
            return AuditFilters()
        self.is_valid()
        data = {name: value for name, value in self.cleaned_data.items() if name not in self.errors}
        return AuditFilters(
            actor=data.get("actor") or "",
            action=data.get("action") or "",
            object_type=data.get("object_type") or "",
            since=data.get("since"),
            until=data.get("until"),
            text=data.get("text") or "",
        )
