from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.utils import timezone

from apps.reconciliation.core import Month


def recent_periods(count: int = 12) -> list[str]:
    today = timezone.now().date()
    month = Month(today.year, today.month)
    periods = []
    for _ in range(count):
        periods.append(str(month))
        month = month.previous()
    return periods


class RunForm(forms.Form):
    period = forms.RegexField(
        regex=r"^\d{4}-(0[1-9]|1[0-2])$",
        help_text="YYYY-MM",
        error_messages={"invalid": "Use the form YYYY-MM, e.g. 2026-10."},
    )
    pre_invoice = forms.BooleanField(required=False, label="Before the invoice (cut-off: now)")


class BundleUploadForm(forms.Form):
    bundle = forms.FileField(
        help_text="A .zip of pricing.json, accounts.csv, subscriptions.csv, events.csv, "
        "metered.csv, invoices.csv and credits.csv."
    )
    period = forms.RegexField(
        regex=r"^\d{4}-(0[1-9]|1[0-2])$",
        required=False,
        help_text="YYYY-MM; blank: the month most invoices start in.",
        error_messages={"invalid": "Use the form YYYY-MM, e.g. 2026-10."},
    )

    def clean_bundle(self) -> object:
        upload = self.cleaned_data["bundle"]
        if not upload.name.lower().endswith(".zip"):
            raise forms.ValidationError("Upload the bundle as a .zip file.")
        return upload


class QueueFilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False,
        choices=[
            ("active", "Needing action"),
            ("", "Any status"),
            ("open", "Open"),
            ("assigned", "Assigned"),
            ("escalated", "Escalated"),
            ("resolved", "Resolved"),
            ("dismissed", "Dismissed"),
            ("auto_cleared", "Cleared automatically"),
        ],
    )
    mine = forms.BooleanField(required=False, label="My queue")
    owner = forms.ChoiceField(required=False, label="Owner")
    classification = forms.ChoiceField(required=False, label="Class")
    period = forms.RegexField(
        regex=r"^\d{4}-(0[1-9]|1[0-2])$", required=False, error_messages={"invalid": "Use YYYY-MM."}
    )
    account = forms.CharField(required=False, max_length=200)
    segment = forms.CharField(required=False, max_length=50)
    meter = forms.CharField(required=False, max_length=64)
    min_amount = forms.DecimalField(required=False, min_value=0, label="At least")
    sort = forms.ChoiceField(
        required=False,
        choices=[
            ("recent", "Recently changed"),
            ("amount", "Largest amount"),
            ("account", "Account"),
            ("period", "Period"),
        ],
    )

    def __init__(self, *args: object, members: Iterable[Any] = (), **kwargs: object) -> None:
        from apps.reconciliation.models import NEEDS_ACTION, Classification
        from apps.tenancy.roles import Role

        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        owner = self.fields["owner"]
        assert isinstance(owner, forms.ChoiceField)  # noqa: S101 - declared just above
        owner.choices = [
            ("", "Any owner"),
            ("nobody", "Nobody (the watch-list)"),
            ("Routed to a role, nobody assigned", [(f"role:{r.value}", str(r.label)) for r in Role]),
            ("Assigned to", [(f"user:{m.user_id}", str(m.user)) for m in members]),
        ]
        owner.widget.attrs["id"] = "f-owner"
        field = self.fields["classification"]
        assert isinstance(field, forms.ChoiceField)  # noqa: S101 - declared just above
        field.choices = [
            ("", "Any class"),
            *[(c.value, c.label) for c in Classification if c in NEEDS_ACTION],
        ]

    def filters(self) -> dict[str, object]:
        data = self.cleaned_data if self.is_valid() else {}
        # No status in the query (a bare ?page=2 or ?sort=amount) is the default queue, needing
        # action; an empty one is "Any status", chosen on purpose.
        chosen = self.is_bound and "status" in self.data
        return {
            "status": data.get("status", "active") if chosen else "active",
            "mine": data.get("mine"),
            "class": data.get("classification"),
            "period": data.get("period"),
            "account": data.get("account"),
            "segment": data.get("segment"),
            "meter": data.get("meter"),
            "min_amount": data.get("min_amount"),
            "owner": data.get("owner"),
        }


class BulkForm(forms.Form):
    ids = forms.TypedMultipleChoiceField(coerce=int, choices=())
    action = forms.ChoiceField(choices=[("assign", "Assign"), ("dismiss", "Dismiss")])
    owner = forms.IntegerField(required=False)
    reason = forms.CharField(required=False, max_length=500)

    def __init__(self, *args: object, ids: list[int], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["ids"].choices = [(i, i) for i in ids]  # type: ignore[attr-defined]

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if data.get("action") == "dismiss" and not (data.get("reason") or "").strip():
            self.add_error("reason", "Dismissing needs a reason.")
        return data
