from __future__ import annotations

from typing import Any

from django import forms

from apps.billing.models import ProviderConnection


class ConnectionForm(forms.Form):
    provider = forms.ChoiceField(choices=ProviderConnection.Provider.choices)
    name = forms.CharField(max_length=100)
    api_key = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text="Stored encrypted; never shown again. Blank keeps the stored key.",
    )
    site = forms.CharField(max_length=100, required=False, help_text="Chargebee only: your site name.")
    base_url = forms.URLField(
        required=False,
        assume_scheme="https",
        help_text="Blank for the provider itself; a URL for a sandbox server.",
    )
    webhook_secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text="Stripe: the endpoint's signing secret (whsec_...).",
    )
    webhook_username = forms.CharField(required=False, help_text="Chargebee: the webhook's HTTP Basic user.")
    webhook_password = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text="Chargebee: the webhook's HTTP Basic password.",
    )
    allow_writes = forms.BooleanField(
        required=False, label="Allow Trueup to write (credit notes, charges, holds)"
    )

    def __init__(self, *args: Any, creating: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.creating = creating
        if not creating:
            self.fields["provider"].disabled = True

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.creating and not data.get("api_key"):
            self.add_error("api_key", "An API key is needed to connect.")
        if data.get("provider") == ProviderConnection.Provider.CHARGEBEE and not data.get("site"):
            self.add_error("site", "Chargebee needs the site name.")
        return data
