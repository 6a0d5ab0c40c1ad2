"""Proposals to fix a discrepancy, their approvals (maker-checker), and the outbox that acts."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.billing.models import Invoice, ProviderConnection
from apps.reconciliation.models import Discrepancy
from apps.tenancy.models import TenantModel

LIVE = ~Q(status__in=["rejected", "cancelled"])


class Proposal(TenantModel):
    """A change to make at the provider. The draft-invoice kinds (hold, fix, release) name the invoice.

    Holding a draft only stops it from finalizing, so it needs no approval: it is born approved
    and goes straight to the outbox. Fixing the draft moves money and needs maker-checker like
    a credit note. Releasing finalizes the invoice for good and needs one checker too.
    """

    class Kind(models.TextChoices):
        CREDIT_NOTE = "credit_note", "Credit note"
        CATCH_UP_CHARGE = "catch_up_charge", "Catch-up charge"
        WRITE_OFF = "write_off", "Write-off"
        INVOICE_HOLD = "invoice_hold", "Hold of the draft invoice"
        INVOICE_FIX = "invoice_fix", "Correcting line on the draft invoice"
        INVOICE_RELEASE = "invoice_release", "Release of the invoice"

    class Status(models.TextChoices):
        PROPOSED = "proposed", "Waiting for approval"
        APPROVED = "approved", "Approved: being sent"
        REJECTED = "rejected", "Rejected"
        EXECUTED = "executed", "Done"
        FAILED = "failed", "Failed: retrying"
        CANCELLED = "cancelled", "Cancelled"

    discrepancy = models.ForeignKey(Discrepancy, on_delete=models.PROTECT, related_name="proposals")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    amount = models.DecimalField(max_digits=30, decimal_places=12)
    currency = models.CharField(max_length=3)
    reason = models.TextField(blank=True)
    customer_note = models.TextField(blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PROPOSED)
    approvals_needed = models.PositiveSmallIntegerField(default=1)
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    connection = models.ForeignKey(
        ProviderConnection, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    invoice = models.ForeignKey(
        Invoice,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The draft invoice a hold, fix or release acts on.",
    )
    provider_reference = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One hold and one release per invoice (a rejected or cancelled one can be asked again),
            # one correcting line per finding: the database has the last word on double clicks.
            models.UniqueConstraint(
                fields=["tenant", "invoice"],
                condition=Q(kind="invoice_hold") & LIVE,
                name="one_hold_per_invoice",
            ),
            models.UniqueConstraint(
                fields=["tenant", "invoice"],
                condition=Q(kind="invoice_release") & LIVE,
                name="one_release_per_invoice",
            ),
            models.UniqueConstraint(
                fields=["tenant", "discrepancy"],
                condition=Q(kind="invoice_fix") & LIVE,
                name="one_invoice_fix_per_finding",
            ),
            # One credit note, catch-up charge or write-off under way per finding: two people
            # proposing the same fix must not credit the customer twice (done ones may be followed
            # by another for what is left; the service checks the amount).
            models.UniqueConstraint(
                fields=["tenant", "discrepancy"],
                condition=Q(kind__in=["credit_note", "catch_up_charge", "write_off"])
                & Q(status__in=["proposed", "approved", "failed"]),
                name="one_money_fix_under_way_per_finding",
            ),
        ]

    def __str__(self) -> str:
        if self.kind in (self.Kind.INVOICE_HOLD, self.Kind.INVOICE_RELEASE):
            return f"{self.get_kind_display()} {self.invoice_id}"
        return f"{self.get_kind_display()} {self.amount} {self.currency}"


class Approval(TenantModel):
    """One finance approver's decision on a proposal (a person decides once)."""

    proposal = models.ForeignKey(Proposal, on_delete=models.CASCADE, related_name="approvals")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    approved = models.BooleanField()
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "proposal", "approver"], name="one_decision_each")
        ]

    def __str__(self) -> str:
        return f"{'approved' if self.approved else 'rejected'} by {self.approver}"


class OutboxMessage(TenantModel):
    """An approved action waiting for the provider, with the idempotency key that makes it happen once."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        CANCELLED = "cancelled", "Cancelled"

    proposal = models.OneToOneField(Proposal, on_delete=models.CASCADE, related_name="outbox")
    idempotency_key = models.CharField(max_length=100, unique=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "status", "next_attempt_at"], name="outbox_due_idx")]

    def __str__(self) -> str:
        return f"{self.idempotency_key} ({self.status})"
