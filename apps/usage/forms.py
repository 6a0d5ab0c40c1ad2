from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.utils import timezone

from apps.usage.models import UsageSettings


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="Columns: event_id, account_id, meter, quantity, occurred_at (ISO 8601 with an offset), "
        "and optionally properties (a JSON object). A header line first.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )


class UsageSettingsForm(forms.ModelForm):
    class Meta:
        model = UsageSettings
        fields = ["auto_create_accounts", "late_grace_days"]
        labels = {"auto_create_accounts": "Create unknown accounts", "late_grace_days": "Grace (days)"}


def previous_month(today: dt.date) -> dt.date:
    return (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)


class LateFilterForm(forms.Form):
    """A month, and optionally one cut-off for every account (in the tenant's time zone)."""

    month = forms.CharField(
        required=False, widget=forms.DateInput(attrs={"type": "month"}), help_text="YYYY-MM"
    )
    cutoff = forms.DateTimeField(
        required=False,
        label="Cut-off",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )

    def __init__(self, *args: Any, time_zone: str, today: dt.date, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.zone = ZoneInfo(time_zone)
        self.default_month = previous_month(today)

    def clean_month(self) -> dt.date:
        value = (self.cleaned_data.get("month") or "").strip()
        if not value:
            return self.default_month
        try:
            return dt.datetime.strptime(value, "%Y-%m").date()  # noqa: DTZ007 - a calendar month, no time
        except ValueError:
            raise forms.ValidationError("Expected a month as YYYY-MM.") from None

    def clean_cutoff(self) -> dt.datetime | None:
        value = self.cleaned_data.get("cutoff")
        if value is None:
            return None
        # The browser sends a wall-clock time (Django made it aware in the server's zone): the tenant's.
        wall = timezone.make_naive(value) if value.tzinfo is not None else value
        return wall.replace(tzinfo=self.zone)
