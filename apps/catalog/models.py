"""What the tenant sells: meters, plans and their versions, charges and tiers, overrides, subscriptions.

Amounts keep up to 12 decimal places (unit prices of fractions of a cent); the pricing
engine (apps.pricing) does the maths, these models only describe the catalogue.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.accounts.models import Account
from apps.pricing import CHARGE_MODELS, UNIT_ROUNDINGS
from apps.tenancy.models import TenantModel

NON_NEGATIVE = [MinValueValidator(0)]


class Aggregation(models.TextChoices):
    SUM = "sum", "Sum of quantities"
    COUNT = "count", "Count of events"
    MAX = "max", "Maximum quantity"
    UNIQUE_COUNT = "unique_count", "Count of distinct values"
    LAST = "last", "Last quantity in the period"


class Rounding(models.TextChoices):
    UP = "up", "round up"
    DOWN = "down", "round down"
    NONE = "none", "exact (no rounding)"


class ChargeModel(models.TextChoices):
    PER_UNIT = "per_unit", "Per unit"
    GRADUATED = "graduated", "Graduated tiers"
    VOLUME = "volume", "Volume tiers"
    PACKAGE = "package", "Package"


# The engine is the source of truth for the choices; keep the two in step.
assert {c.value for c in Rounding} == set(UNIT_ROUNDINGS)  # noqa: S101
assert {c.value for c in ChargeModel} == set(CHARGE_MODELS)  # noqa: S101


class Meter(TenantModel):
    """A billable dimension: how raw usage is aggregated and turned into billing units."""

    key = models.SlugField(max_length=64, help_text="Identifier used in usage events, e.g. api_calls.")
    name = models.CharField(max_length=200)
    aggregation = models.CharField(max_length=20, choices=Aggregation.choices, default=Aggregation.SUM)
    unique_property = models.CharField(
        max_length=100,
        blank=True,
        help_text="For unique count: the event property whose distinct values count.",
    )
    unit_size = models.DecimalField(
        max_digits=30,
        decimal_places=12,
        default=1,
        validators=[MinValueValidator(0)],
        help_text="Raw units per billing unit, e.g. 1000.",
    )
    rounding = models.CharField(max_length=8, choices=Rounding.choices, default="none")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="meter_key_unique_per_tenant"),
            models.CheckConstraint(condition=Q(unit_size__gt=0), name="meter_unit_size_positive"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.unit_size is not None and self.unit_size <= 0:
            raise ValidationError({"unit_size": "The unit size must be greater than 0."})
        if self.aggregation == Aggregation.UNIQUE_COUNT and not self.unique_property:
            raise ValidationError(
                {"unique_property": "A unique count needs the property whose values count."}
            )


class Plan(TenantModel):
    """A plan customers subscribe to. Its prices live in versions, by effective date."""

    key = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3, help_text="ISO 4217 code, e.g. USD, EUR, JPY.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "key"], name="plan_key_unique_per_tenant")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from apps.pricing import UnknownCurrencyError, normalize_currency

        try:
            self.currency = normalize_currency(self.currency or "")
        except UnknownCurrencyError:
            raise ValidationError(
                {"currency": f"{self.currency!r} is not an ISO 4217 currency code."}
            ) from None


class PlanVersion(TenantModel):
    """The prices of a plan from ``effective_from`` until the next version takes over.

    The monthly base fee is versioned with the charges: a price change is a new version.
    Once a reconciled period has used a version it is locked and can no longer change.
    """

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    effective_from = models.DateTimeField()
    base_fee = models.DecimalField(
        max_digits=30, decimal_places=12, default=0, validators=NON_NEGATIVE, help_text="Monthly base fee."
    )
    note = models.CharField(max_length=200, blank=True)
    locked_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["plan", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "plan", "number"], name="plan_version_number_unique"),
            models.UniqueConstraint(
                fields=["tenant", "plan", "effective_from"], name="plan_version_date_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan} v{self.number}"

    @property
    def is_locked(self) -> bool:
        return self.locked_at is not None


class PriceOverride(TenantModel):
    """A negotiated price for one meter, for one account or a whole segment, for a while.

    The override's charge (below, ``charge.override``) replaces the plan's charge for that
    meter while ``effective_from <= t < effective_to``; an account override beats a segment one.
    """

    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.CASCADE, related_name="overrides"
    )
    segment = models.CharField(max_length=50, blank=True)
    plan = models.ForeignKey(
        Plan,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        help_text="Only while on this plan (blank: any).",
    )
    meter = models.ForeignKey(Meter, on_delete=models.PROTECT)
    effective_from = models.DateTimeField()
    effective_to = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-effective_from"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(account__isnull=False) & Q(segment=""))
                | (Q(account__isnull=True) & ~Q(segment="")),
                name="override_for_an_account_or_a_segment",
            ),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True) | Q(effective_to__gt=models.F("effective_from")),
                name="override_ends_after_it_starts",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "meter", "effective_from"], name="override_meter_from_idx")]

    def __str__(self) -> str:
        return f"{self.account or self.segment}: {self.meter}"

    def clean(self) -> None:
        if bool(self.account_id) == bool(self.segment):
            raise ValidationError("An override is for one account or for one segment, not both or neither.")
        if self.effective_to and self.effective_from and self.effective_to <= self.effective_from:
            raise ValidationError({"effective_to": "The override must end after it starts."})


class Charge(TenantModel):
    """How a plan version (or an override) prices one meter's billing units."""

    plan_version = models.ForeignKey(
        PlanVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="charges"
    )
    override = models.OneToOneField(
        PriceOverride, null=True, blank=True, on_delete=models.CASCADE, related_name="charge"
    )
    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="charges")
    model = models.CharField(max_length=12, choices=ChargeModel.choices)
    unit_amount = models.DecimalField(
        max_digits=30, decimal_places=12, null=True, blank=True, validators=NON_NEGATIVE
    )
    package_size = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    package_amount = models.DecimalField(
        max_digits=30, decimal_places=12, null=True, blank=True, validators=NON_NEGATIVE
    )

    class Meta:
        ordering = ["meter__key"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "plan_version", "meter"], name="one_charge_per_meter"),
            models.CheckConstraint(
                condition=Q(plan_version__isnull=False, override__isnull=True)
                | Q(plan_version__isnull=True, override__isnull=False),
                name="charge_of_a_version_or_an_override",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.meter} ({self.get_model_display()})"


class Tier(TenantModel):
    """One row of a graduated or volume tier table; ``up_to`` is inclusive, blank = no upper bound."""

    charge = models.ForeignKey(Charge, on_delete=models.CASCADE, related_name="tiers")
    position = models.PositiveSmallIntegerField()
    up_to = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    unit_amount = models.DecimalField(max_digits=30, decimal_places=12, validators=NON_NEGATIVE)
    flat_amount = models.DecimalField(
        max_digits=30, decimal_places=12, null=True, blank=True, validators=NON_NEGATIVE
    )

    class Meta:
        ordering = ["charge", "position"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "charge", "position"], name="tier_position_unique")
        ]

    def __str__(self) -> str:
        return f"up to {self.up_to if self.up_to is not None else '∞'} at {self.unit_amount}"


class SubscriptionPhase(TenantModel):
    """An account on a plan from ``starts_at`` until ``ends_at`` (blank: open); a plan change makes two."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="phases")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="phases")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True)
    external_id = models.CharField(max_length=255, blank=True, help_text="The subscription at the provider.")

    class Meta:
        ordering = ["account", "starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__isnull=True) | Q(ends_at__gt=models.F("starts_at")),
                name="phase_ends_after_it_starts",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "account", "starts_at"], name="phase_account_start_idx")]

    def __str__(self) -> str:
        return f"{self.account} on {self.plan} from {self.starts_at:%Y-%m-%d}"

    def clean(self) -> None:
        if self.ends_at and self.starts_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": "A phase must end after it starts."})
        if self.account_id and self.starts_at:
            overlapping = SubscriptionPhase.objects.filter(account_id=self.account_id).exclude(pk=self.pk)
            overlapping = overlapping.filter(Q(ends_at__isnull=True) | Q(ends_at__gt=self.starts_at))
            if self.ends_at:
                overlapping = overlapping.filter(starts_at__lt=self.ends_at)
            if overlapping.exists():
                raise ValidationError({"starts_at": "This phase overlaps another phase of the account."})
