from __future__ import annotations

import zoneinfo
from functools import cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone as dj_timezone

from apps.tenancy.models import TenantModel


@cache
def _known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(value: str) -> None:
    if value not in _known_timezones():
        raise ValidationError(
            f"{value!r} is not an IANA time zone (for example Europe/Paris).", code="timezone"
        )


class Provider(models.TextChoices):
    STRIPE = "stripe", "Stripe"
    CHARGEBEE = "chargebee", "Chargebee"


class Account(TenantModel):
    """A customer of the tenant. Its periods are calendar months in its own time zone."""

    key = models.CharField(
        max_length=100, help_text="The tenant's own id for this customer (account_id in usage and exports)."
    )
    name = models.CharField(max_length=200)
    segment = models.CharField(max_length=50, blank=True, help_text="e.g. enterprise, mid-market, self-serve")
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    csm_owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=dj_timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="account_key_unique_per_tenant")
        ]
        indexes = [
            models.Index(fields=["tenant", "name"], name="account_tenant_name_idx"),
            models.Index(fields=["tenant", "segment"], name="account_tenant_segment_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from apps.tenancy.models import Membership

        if self.csm_owner_id and not Membership.objects.filter(user_id=self.csm_owner_id).exists():
            raise ValidationError({"csm_owner": "The CSM owner must be a member of this tenant."})


class AccountExternalId(TenantModel):
    """The account's id at a billing provider (a Stripe customer, a Chargebee customer)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="external_ids")
    provider = models.CharField(max_length=20, choices=Provider.choices)
    external_id = models.CharField(max_length=255)

    class Meta:
        ordering = ["provider"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "provider", "external_id"], name="external_id_unique"),
            models.UniqueConstraint(
                fields=["tenant", "account", "provider"], name="one_external_id_per_provider"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_provider_display()}: {self.external_id}"


class AccountNote(TenantModel):
    """A customer note on the account page: append-only, like a log (never edited, never deleted)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    author_label = models.CharField(
        max_length=200, help_text="Who wrote it, as shown then (kept if the user is deleted)."
    )
    body = models.TextField(max_length=5000)
    created_at = models.DateTimeField(default=dj_timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "account", "-created_at"], name="account_note_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"Note on {self.account_id} by {self.author_label}"
