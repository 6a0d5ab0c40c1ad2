from __future__ import annotations

from django import forms
from django.utils import timezone

from apps.reconciliation.core import Month


def recent_periods(count: int = 12) -> list[str]:
    today = timezone.now().date()
    month = Month(today.year, today.month)
    periods = []
    for _ in range(count):
        periods.append(str(month))
        month = Month(month.year - 1, 12) if month.month == 1 else Month(month.year, month.month - 1)
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
