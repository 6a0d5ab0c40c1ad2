"""Reconciliation runs, every line they reconciled, and the discrepancies people act on."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Abs, Coalesce
from django.utils import timezone

from apps.accounts.models import Account
from apps.billing.models import InvoiceLine
from apps.catalog.models import Meter
from apps.tenancy.models import TenantModel
from apps.tenancy.roles import Role


class Classification(models.TextChoices):
    MATCHED = "matched", "Matched"
    WITHIN_TOLERANCE = "within_tolerance", "Within tolerance"
    CREDIT = "credit", "Credit"
    TIMING = "timing", "Timing"
    PRORATION = "proration", "Proration"
    UNDER_BILL = "under_bill", "Under-bill"
    OVER_BILL = "over_bill", "Over-bill"


NEEDS_ACTION = (
    Classification.CREDIT,
    Classification.TIMING,
    Classification.PRORATION,
    Classification.UNDER_BILL,
    Classification.OVER_BILL,
)


class Direction(models.TextChoices):
    UNDER = "under", "Under-billed"
    OVER = "over", "Over-billed"
    NONE = "none", "None"


class FindingSource(models.TextChoices):
    METERING = "metering", "Metering"
    BILLING = "billing", "Billing"


class ReconciliationRun(TenantModel):
    """One reconciliation of a period (for all accounts, or some), with its evidence."""

    class Trigger(models.TextChoices):
        MANUAL = "manual", "By hand"
        SCHEDULE = "schedule", "Schedule"
        WEBHOOK = "webhook", "Draft invoice webhook"
        BUNDLE = "bundle", "Export bundle"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    period = models.CharField(
        max_length=7, help_text="YYYY-MM, a calendar month in each account's time zone."
    )
    trigger = models.CharField(max_length=12, choices=Trigger.choices, default=Trigger.MANUAL)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    pre_invoice = models.BooleanField(
        default=False, help_text="Before the invoice: the cut-off is the run time."
    )
    account_ids = models.JSONField(null=True, blank=True, help_text="Only these accounts (blank: all).")
    progress = models.PositiveSmallIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(default=0, help_text="Account chunks the run was split into.")
    chunks_done = models.PositiveIntegerField(default=0)
    progress_note = models.CharField(max_length=200, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    input_checksums = models.JSONField(default=dict, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    superseded_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "period", "-created_at"], name="run_period_idx")]

    def __str__(self) -> str:
        return f"Run {self.pk} of {self.period}"


class ReconciliationLine(TenantModel):
    """One reconciled line (account x meter x period, or the base fee), matched ones included."""

    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="lines")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    meter = models.ForeignKey(Meter, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    invoice_line = models.ForeignKey(
        InvoiceLine, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    currency = models.CharField(max_length=3)
    raw_units = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    on_time_units = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    metered_units = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    invoiced_units = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    expected_amount = models.DecimalField(max_digits=30, decimal_places=12)
    invoiced_amount = models.DecimalField(max_digits=30, decimal_places=12)
    credited_amount = models.DecimalField(max_digits=30, decimal_places=12)
    billed_amount = models.DecimalField(max_digits=30, decimal_places=12)
    difference = models.DecimalField(max_digits=30, decimal_places=12)
    classification = models.CharField(max_length=20, choices=Classification.choices)
    direction = models.CharField(max_length=8, choices=Direction.choices)
    source = models.CharField(max_length=10, choices=FindingSource.choices, blank=True)
    material = models.BooleanField(default=False)
    working = models.JSONField(
        default=dict, blank=True, help_text="Events, tiers, credits: how the line was priced."
    )

    class Meta:
        ordering = ["account_id", "meter_id"]
        indexes = [
            models.Index(fields=["tenant", "run", "classification"], name="line_run_class_idx"),
            models.Index(fields=["tenant", "account"], name="line_account_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.account} {self.meter or 'base fee'}: {self.classification}"


# The statuses of findings that still need a person: the queue's default view.
QUEUE_ACTIVE = ("open", "assigned", "escalated")


class Discrepancy(TenantModel):
    """A line that needs a person: one per account, meter and period, kept across re-runs."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ASSIGNED = "assigned", "Assigned"
        RESOLVED = "resolved", "Resolved"
        DISMISSED = "dismissed", "Dismissed"
        AUTO_CLEARED = "auto_cleared", "Cleared automatically"
        ESCALATED = "escalated", "Escalated"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="discrepancies")
    meter = models.ForeignKey(Meter, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    period = models.CharField(max_length=7)
    line = models.ForeignKey(
        ReconciliationLine,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The latest run's line for this finding.",
    )
    classification = models.CharField(max_length=20, choices=Classification.choices)
    direction = models.CharField(max_length=8, choices=Direction.choices)
    source = models.CharField(max_length=10, choices=FindingSource.choices, blank=True)
    currency = models.CharField(max_length=3)
    amount = models.DecimalField(
        max_digits=30, decimal_places=12, help_text="The difference: expected minus billed."
    )
    status = models.CharField(max_length=14, choices=Status.choices, default=Status.OPEN)
    owner_role = models.CharField(max_length=32, choices=Role.choices, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    first_seen_run = models.ForeignKey(ReconciliationRun, on_delete=models.PROTECT, related_name="+")
    last_seen_run = models.ForeignKey(ReconciliationRun, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                F("tenant"), F("account"), Coalesce("meter", 0), F("period"), name="one_finding_per_line"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "status", "-updated_at"], name="discrepancy_queue_idx"),
            models.Index(fields=["tenant", "period", "classification"], name="discrepancy_period_idx"),
            # The queue's sorts and filters, so a page reads 50 index entries, not every finding;
            # the partial ones cover the findings needing action (QUEUE_ACTIVE), the default view.
            models.Index(fields=["tenant", "-updated_at", "-id", "status"], name="discrepancy_recent_idx"),
            models.Index(
                fields=["tenant", "classification", "-updated_at", "-id"],
                condition=Q(status__in=QUEUE_ACTIVE),
                name="discrepancy_active_class_idx",
            ),
            models.Index(
                F("tenant"),
                Abs("amount").desc(),
                F("id").desc(),
                condition=Q(status__in=QUEUE_ACTIVE),
                name="discrepancy_active_amount_idx",
            ),
            models.Index(
                fields=["tenant", "owner_role"],
                condition=Q(status__in=QUEUE_ACTIVE, owner__isnull=True),
                name="discrepancy_unassigned_idx",
            ),
        ]
        verbose_name_plural = "discrepancies"

    def __str__(self) -> str:
        return f"{self.get_classification_display()} {self.account} {self.meter or 'base fee'} {self.period}"

    @property
    def is_closed(self) -> bool:
        return self.status in (self.Status.RESOLVED, self.Status.DISMISSED, self.Status.AUTO_CLEARED)


class DiscrepancyEvent(TenantModel):
    """The timeline of a discrepancy: every status change, assignment and comment, in order."""

    discrepancy = models.ForeignKey(Discrepancy, on_delete=models.CASCADE, related_name="events")
    run = models.ForeignKey(
        ReconciliationRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=20)  # found, updated, status, assigned, comment, cleared, escalated
    from_status = models.CharField(max_length=14, blank=True)
    to_status = models.CharField(max_length=14, blank=True)
    text = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.created_at:%Y-%m-%d %H:%M}"


class Threshold(TenantModel):
    """Materiality: a difference matters when |difference| >= absolute AND >= relative x |expected|.

    The most specific rule wins: segment and meter, then meter, then segment, then the tenant default.
    """

    segment = models.CharField(max_length=50, blank=True)
    meter = models.ForeignKey(Meter, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    absolute = models.DecimalField(
        max_digits=30, decimal_places=12, default=0, validators=[MinValueValidator(0)]
    )
    relative = models.DecimalField(
        max_digits=9,
        decimal_places=6,
        default=0,
        validators=[MinValueValidator(0)],
        help_text="A share of the expected amount, e.g. 0.01 for 1%.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                F("tenant"), F("segment"), Coalesce("meter", 0), name="one_threshold_per_scope"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.segment or 'any segment'} / {self.meter or 'any meter'}"


class RoutingRule(TenantModel):
    """Who owns a class of discrepancy (optionally only for a segment or meter): a role or a person."""

    classification = models.CharField(max_length=20, choices=Classification.choices)
    segment = models.CharField(max_length=50, blank=True)
    meter = models.ForeignKey(Meter, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    owner_role = models.CharField(max_length=32, choices=Role.choices, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    to_account_csm = models.BooleanField(default=False, help_text="Route to the account's CSM owner.")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(owner_role__gt="") | Q(owner__isnull=False) | Q(to_account_csm=True),
                name="routing_rule_has_an_owner",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.classification} → {self.owner or self.owner_role or 'account CSM'}"


class ReconciliationSchedule(TenantModel):
    """When a tenant's periods are reconciled on their own (one row per tenant; none = the defaults).

    Times are wall-clock times in the tenant's time zone. ``last_*_period`` record the period
    each kind of run was last started for, so the hourly beat starts at most one run per
    period and kind, however often it ticks.
    """

    DEFAULT_DAY = 2
    DEFAULT_HOUR = 6

    enabled = models.BooleanField(default=True)
    day_of_month = models.PositiveSmallIntegerField(
        default=DEFAULT_DAY,
        validators=[MinValueValidator(1), MaxValueValidator(28)],
        help_text="Reconcile the previous month on this day (1 to 28).",
    )
    hour = models.PositiveSmallIntegerField(
        default=DEFAULT_HOUR,
        validators=[MaxValueValidator(23)],
        help_text="At this hour (0 to 23), in the tenant's time zone.",
    )
    pre_invoice_days_before_month_end = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(27)],
        help_text="Also reconcile the current month this many days before it ends, before the invoice "
        "(blank: no pre-invoice run).",
    )
    last_monthly_period = models.CharField(max_length=7, blank=True, editable=False)
    last_pre_invoice_period = models.CharField(max_length=7, blank=True, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant"], name="one_schedule_per_tenant")]

    def __str__(self) -> str:
        if not self.enabled:
            return "Scheduled reconciliation off"
        return f"Day {self.day_of_month} at {self.hour:02d}:00"
