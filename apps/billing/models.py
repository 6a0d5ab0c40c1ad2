"""What the billing provider metered, invoiced and credited: the second and third legs of the match."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.accounts.models import Account
from apps.catalog.models import Meter
from apps.tenancy.models import TenantModel


class Source(models.TextChoices):
    STRIPE = "stripe", "Stripe"
    CHARGEBEE = "chargebee", "Chargebee"
    BUNDLE = "bundle", "Export bundle"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    OPEN = "open", "Open"
    FINALIZED = "finalized", "Finalized"
    PAID = "paid", "Paid"
    VOID = "void", "Void"


class Invoice(TenantModel):
    """An invoice for one account and period. ``finalized_at`` is the cut-off for late usage."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="invoices")
    source = models.CharField(max_length=20, choices=Source.choices)
    external_id = models.CharField(max_length=255)
    status = models.CharField(max_length=12, choices=InvoiceStatus.choices)
    currency = models.CharField(max_length=3)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    finalized_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-period_start", "account_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "source", "external_id"], name="invoice_unique_per_source"
            ),
            models.CheckConstraint(
                condition=Q(period_end__gt=models.F("period_start")), name="invoice_period_valid"
            ),
        ]
        indexes = [models.Index(fields=["tenant", "period_start", "account"], name="invoice_period_idx")]

    def __str__(self) -> str:
        return f"{self.external_id} ({self.get_status_display()})"


class InvoiceLine(TenantModel):
    """One line of an invoice: a meter's usage in billing units, or the base fee (no meter)."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    meter = models.ForeignKey(Meter, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    external_id = models.CharField(max_length=255, blank=True)
    description = models.CharField(max_length=300, blank=True)
    quantity = models.DecimalField(max_digits=30, decimal_places=12)
    amount = models.DecimalField(max_digits=30, decimal_places=12)

    class Meta:
        ordering = ["invoice", "meter_id"]
        constraints = [
            # COALESCE: the base-fee line (no meter) is unique too, on every database.
            models.UniqueConstraint(
                F("tenant"), F("invoice"), Coalesce("meter", 0), name="one_line_per_meter"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.invoice}: {self.meter or 'base fee'}"


class CreditNote(TenantModel):
    """A credit note already issued against an invoice."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    source = models.CharField(max_length=20, choices=Source.choices)
    external_id = models.CharField(max_length=255)
    reason = models.CharField(max_length=300, blank=True)
    issued_at = models.DateTimeField()

    class Meta:
        ordering = ["-issued_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "source", "external_id"], name="credit_note_unique"),
        ]

    def __str__(self) -> str:
        return self.external_id


class CreditNoteLine(TenantModel):
    """How much of a credit note went to one invoice line (a meter, or the base fee)."""

    credit_note = models.ForeignKey(CreditNote, on_delete=models.CASCADE, related_name="lines")
    meter = models.ForeignKey(Meter, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    amount = models.DecimalField(max_digits=30, decimal_places=12)

    class Meta:
        ordering = ["credit_note", "meter_id"]

    def __str__(self) -> str:
        return f"{self.credit_note}: {self.amount}"


class MeteredUsage(TenantModel):
    """What the provider's metering counted for an account, meter and period (raw units)."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="+")
    source = models.CharField(max_length=20, choices=Source.choices)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    quantity = models.DecimalField(max_digits=30, decimal_places=12)
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-period_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "source", "account", "meter", "period_start", "period_end"],
                name="metered_usage_unique",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "period_start"], name="metered_period_idx")]

    def __str__(self) -> str:
        return f"{self.account} {self.meter} {self.period_start:%Y-%m}: {self.quantity}"


class ProviderConnection(TenantModel):
    """A tenant's link to its billing provider. Credentials are encrypted at rest and never shown again.

    Read-only until a tenant admin enables writes: only then may Trueup create credit notes,
    invoice items and hold or release invoices there.
    """

    class Provider(models.TextChoices):
        STRIPE = "stripe", "Stripe"
        CHARGEBEE = "chargebee", "Chargebee"

    provider = models.CharField(max_length=20, choices=Provider.choices)
    name = models.CharField(max_length=100)
    public_id = models.CharField(
        max_length=32, unique=True, editable=False, help_text="Names the connection in its webhook URL."
    )
    base_url = models.URLField(blank=True, help_text="Blank: the provider itself. A URL: a sandbox server.")
    site = models.CharField(max_length=100, blank=True, help_text="Chargebee site name.")
    credentials = models.TextField(editable=False, help_text="Encrypted JSON: API key and webhook secrets.")
    allow_writes = models.BooleanField(default=False)
    last_sync_at = models.DateTimeField(null=True, blank=True)
    last_sync_status = models.CharField(max_length=20, blank=True)
    last_error = models.TextField(blank=True)
    cursors = models.JSONField(default=dict, blank=True, help_text="Where the incremental sync resumes.")
    drift = models.JSONField(
        default=list,
        blank=True,
        help_text="Where the provider's prices differ from the catalogue (last sync).",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.get_provider_display()}: {self.name}"

    def __repr__(self) -> str:  # never the credentials, even in a traceback
        return f"<ProviderConnection {self.pk} {self.provider} {self.name!r}>"

    def set_credentials(self, values: dict[str, str]) -> None:
        import json

        from apps.common.crypto import encrypt

        self.credentials = encrypt(json.dumps(values, sort_keys=True))

    def get_credentials(self) -> dict[str, str]:
        import json

        from apps.common.crypto import decrypt

        return json.loads(decrypt(self.credentials)) if self.credentials else {}


class WebhookEvent(TenantModel):
    """A provider event as received: stored once per provider event id, processed asynchronously."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"
        FAILED = "failed", "Failed"

    connection = models.ForeignKey(ProviderConnection, on_delete=models.CASCADE, related_name="events")
    event_id = models.CharField(max_length=255)
    event_type = models.CharField(max_length=100)
    payload = models.JSONField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RECEIVED)
    error = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "connection", "event_id"], name="webhook_event_once"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class UsagePushSettings(TenantModel):
    """Whether the events Trueup ingests are forwarded to this connection (one row per connection)."""

    connection = models.OneToOneField(
        ProviderConnection, on_delete=models.CASCADE, related_name="usage_push_settings"
    )
    enabled = models.BooleanField(default=False)
    item_prices = models.JSONField(
        default=dict,
        blank=True,
        help_text="Chargebee: Trueup meter key → the item price its usages are recorded against.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "usage push settings"

    def __str__(self) -> str:
        return f"Usage push to {self.connection_id}: {'on' if self.enabled else 'off'}"


class UsagePush(TenantModel):
    """The outbox of usage push: one usage event to forward to one connection.

    The event's fields are copied here (events are immutable), so pushing never reads the
    partitioned event table. ``pending`` rows are due at ``next_attempt_at``; a worker that
    takes a row moves that time forward by a lease, so a crashed worker's rows come back.
    ``dead`` rows are the dead-letter queue: finance inspects and replays them.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        DEAD = "dead", "Dead letter"

    connection = models.ForeignKey(ProviderConnection, on_delete=models.CASCADE, related_name="usage_pushes")
    event_key = models.CharField(max_length=255, help_text="The usage event's event_id (the identifier).")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="+")
    quantity = models.DecimalField(max_digits=30, decimal_places=12)
    occurred_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "connection", "event_key"], name="usage_push_once"),
        ]
        indexes = [
            models.Index(
                fields=["tenant", "connection", "status", "next_attempt_at"], name="usage_push_due_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"push {self.event_key} ({self.get_status_display()})"
