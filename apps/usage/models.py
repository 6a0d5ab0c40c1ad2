"""Raw usage: immutable events, the batches that delivered them, CSV import jobs, the tenant's settings.

Events are the first leg of the three-way match, so the table is shaped for two jobs:
taking in tens of thousands of events a second with de-duplication by ``event_id``, and
aggregating one tenant's month. On PostgreSQL the table is created by hand (hash
partitions by tenant, a BRIN index on ``occurred_at``; see migrations/0001 and
apps/usage/README.md); the model below is how Django sees it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.utils import timezone

from apps.accounts.models import Account
from apps.catalog.models import Meter
from apps.tenancy.models import ApiKey, Tenant, TenantManager, TenantModel, TenantQuerySet

QUANTITY_DIGITS = 30
QUANTITY_PLACES = 12


class EventSource(models.TextChoices):
    API = "api", "API"
    CSV = "csv", "CSV import"
    BUNDLE = "bundle", "Export bundle"


class UsageSettings(TenantModel):
    """How the tenant's usage is taken in and when an event counts as late (one row per tenant)."""

    auto_create_accounts = models.BooleanField(
        default=False,
        help_text="Create an account for an unknown account id instead of rejecting its events.",
    )
    late_grace_days = models.PositiveSmallIntegerField(
        default=3,
        validators=[MaxValueValidator(90)],
        help_text="Default cut-off: days after the period ends until an event still counts as on time "
        "(used until the invoice's own cut-off is known).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "usage settings"
        constraints = [models.UniqueConstraint(fields=["tenant"], name="usage_settings_one_per_tenant")]

    def __str__(self) -> str:
        return "Usage settings"


class IngestBatch(TenantModel):
    """One delivery of events: an API request, or one chunk of a CSV import. Every event names its batch."""

    source = models.CharField(max_length=10, choices=EventSource.choices)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    import_job = models.ForeignKey(
        "ImportJob", null=True, blank=True, on_delete=models.CASCADE, related_name="batches"
    )
    request_id = models.CharField(max_length=64, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    events = models.PositiveIntegerField(default=0, help_text="Events in the delivery.")
    accepted = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    conflicts = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "ingest batches"
        indexes = [models.Index(fields=["tenant", "-received_at"], name="usage_batch_received_idx")]

    def __str__(self) -> str:
        return f"{self.get_source_display()} batch {self.pk}"


class UsageEventQuerySet(TenantQuerySet):
    def update(self, **kwargs: Any) -> int:
        raise TypeError("Usage events are immutable.")


class UsageEventManager(TenantManager.from_queryset(UsageEventQuerySet)):  # type: ignore[misc]
    pass


class UsageEvent(TenantModel):
    """One raw usage event: immutable once stored; ``event_id`` is its idempotency key within the tenant.

    ``received_at`` is always the server's clock when the event was stored, never the client's.
    The foreign keys carry no database constraint: events are inserted by the tens of
    thousands per statement and a per-row referential check would cost more than the insert
    itself. Accounts, meters and batches are never deleted while events name them (PROTECT in
    the ORM), and only ids resolved inside the tenant's context are ever written.
    """

    # No index of its own: the unique (tenant, event_id) leads with it.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    event_id = models.CharField(max_length=255)
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    meter = models.ForeignKey(
        Meter, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    quantity = models.DecimalField(max_digits=QUANTITY_DIGITS, decimal_places=QUANTITY_PLACES)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    properties = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=10, choices=EventSource.choices)
    batch = models.ForeignKey(
        IngestBatch, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )

    objects: ClassVar[UsageEventManager] = UsageEventManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "event_id"], name="usage_event_id_unique_per_tenant")
        ]
        # On PostgreSQL this index is a BRIN on occurred_at (see migrations/0001).
        indexes = [models.Index(fields=["tenant", "occurred_at"], name="usage_event_period_idx")]

    def __str__(self) -> str:
        return self.event_id

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise TypeError("Usage events are immutable.")
        super().save(*args, **kwargs)


class ImportStatus(models.TextChoices):
    PENDING = "pending", "Waiting"
    RUNNING = "running", "Importing"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ImportJob(TenantModel):
    """A CSV file of events being imported, chunk by chunk, so its progress can be watched and resumed."""

    source = models.CharField(
        max_length=10, choices=[("ui", "Upload"), ("api", "API"), ("command", "Command line")]
    )
    filename = models.CharField(max_length=255, help_text="The file's name as uploaded.")
    path = models.CharField(max_length=1000, editable=False, help_text="Where the file is on the server.")
    status = models.CharField(max_length=10, choices=ImportStatus.choices, default=ImportStatus.PENDING)
    total_bytes = models.BigIntegerField(default=0)
    bytes_read = models.BigIntegerField(default=0, help_text="Where the next chunk starts.")
    lines_read = models.BigIntegerField(default=0)
    columns = models.JSONField(default=list, blank=True, help_text="The header, read by the first chunk.")
    rows_read = models.BigIntegerField(default=0)
    accepted = models.BigIntegerField(default=0)
    duplicates = models.BigIntegerField(default=0)
    conflicts = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True, help_text="Why the import stopped, if it failed.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "-created_at"], name="usage_import_created_idx")]

    def __str__(self) -> str:
        return f"Import of {self.filename}"

    @property
    def finished(self) -> bool:
        return self.status in (ImportStatus.DONE, ImportStatus.FAILED)

    @property
    def percent(self) -> int:
        if self.status == ImportStatus.DONE:
            return 100
        return int(self.bytes_read * 100 / self.total_bytes) if self.total_bytes else 0

    @property
    def problems(self) -> int:
        return self.conflicts + self.rejected


class ImportRowError(TenantModel):
    """One line of an import that was not stored (rejected or conflicting): the downloadable error report."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="row_errors")
    line = models.BigIntegerField()
    field = models.CharField(max_length=50, blank=True)
    code = models.CharField(max_length=30)
    reason = models.CharField(max_length=500)

    class Meta:
        indexes = [models.Index(fields=["tenant", "job", "line"], name="usage_import_error_line_idx")]

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"
