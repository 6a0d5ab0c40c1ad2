"""Reading RevOps settings, and trying them out with the very functions a reconciliation runs."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from apps.accounts.models import Account
from apps.catalog.models import Meter
from apps.reconciliation import core
from apps.reconciliation.models import Classification, ReconciliationSchedule, RoutingRule, Threshold
from apps.reconciliation.services import DEFAULT_ROUTES, _route, materiality_for
from apps.tenancy.models import Tenant
from apps.tenancy.roles import Role
from apps.users.models import User

# --- materiality thresholds ------------------------------------------------------------------------


def threshold_scope(threshold: Threshold) -> tuple[int, str]:
    """(precedence, label): lower precedence wins, as in ``services.materiality_for``."""
    meter = threshold.meter.name if threshold.meter else ""
    if threshold.segment and meter:
        return 0, f"Segment “{threshold.segment}” and meter {meter}"
    if meter:
        return 1, f"Meter {meter}, any segment"
    if threshold.segment:
        return 2, f"Segment “{threshold.segment}”, any meter"
    return 3, "Tenant default"


def threshold_list(tenant: Tenant) -> list[Threshold]:
    """The tenant's thresholds, most specific first (the order in which they win)."""
    rows = list(Threshold.objects.filter(tenant=tenant).select_related("meter"))
    return sorted(
        rows,
        key=lambda t: (threshold_scope(t)[0], t.segment, t.meter.name if t.meter else ""),
    )


def threshold_get(tenant: Tenant, threshold_id: int) -> Threshold:
    return get_object_or_404(Threshold.objects.filter(tenant=tenant).select_related("meter"), pk=threshold_id)


@dataclass(frozen=True)
class MaterialityTrial:
    """What the reconciliation would decide for one difference, and which threshold decided it."""

    rule: Threshold | None  # None: no rule applies, the built-in 0 and 0
    materiality: core.Materiality
    verdict: core.Verdict
    expected: Decimal
    difference: Decimal

    @property
    def size(self) -> Decimal:
        return abs(self.difference)

    @property
    def relative_floor(self) -> Decimal:
        return self.materiality.relative * abs(self.expected)


def _winning_threshold(
    thresholds: list[Threshold], account: core.Account, meter: str | None
) -> Threshold | None:
    """The threshold ``materiality_for`` picks, found by asking it: each rule stands in as its index."""
    stand_ins = [
        Threshold(segment=t.segment, meter=t.meter, absolute=Decimal(i + 1), relative=Decimal(0))
        for i, t in enumerate(thresholds)
    ]
    picked = materiality_for(stand_ins)(account, meter).absolute
    return thresholds[int(picked) - 1] if picked else None


def threshold_try(
    tenant: Tenant, *, segment: str, meter: Meter | None, expected: Decimal, difference: Decimal
) -> MaterialityTrial:
    """Classify a difference as reconciliation does: the rule that wins, then ``core.classify``."""
    thresholds = threshold_list(tenant)
    account = core.Account(id="try-it", segment=segment.strip())
    meter_key = meter.key if meter else None
    materiality = materiality_for(thresholds)(account, meter_key)
    facts = core.LineFacts(expected=expected, invoiced=expected - difference)
    return MaterialityTrial(
        rule=_winning_threshold(thresholds, account, meter_key),
        materiality=materiality,
        verdict=core.classify(facts, materiality),
        expected=expected,
        difference=difference,
    )


# --- routing rules --------------------------------------------------------------------------------

ROUTED = [c for c in Classification if c.value in DEFAULT_ROUTES]


def routing_rule_list(tenant: Tenant) -> QuerySet[RoutingRule]:
    return (
        RoutingRule.objects.filter(tenant=tenant)
        .select_related("meter", "owner")
        .order_by("classification", "segment", "meter__name", "pk")
    )


def routing_rule_get(tenant: Tenant, rule_id: int) -> RoutingRule:
    return get_object_or_404(
        RoutingRule.objects.filter(tenant=tenant).select_related("meter", "owner"), pk=rule_id
    )


def default_routes() -> list[tuple[str, str]]:
    """PRODUCT.md's routes when no rule applies, as ``services._route`` falls back to them."""
    rows = []
    for classification in ROUTED:
        role = DEFAULT_ROUTES[classification.value]
        if classification == Classification.OVER_BILL:
            owner = "The account's CSM (else the Customer success role)"
        elif not role:
            owner = "The watch-list: no owner until it escalates to an under-bill"
        else:
            owner = Role(role).label
        rows.append((classification.label, owner))
    return rows


@dataclass(frozen=True)
class RoutingTrial:
    rule: RoutingRule | None  # None: the default route
    owner_role: str
    owner: User | None
    account: Account | None

    @property
    def owner_label(self) -> str:
        if self.owner is not None:
            name = self.owner.full_name
            return f"{name} <{self.owner.email}>" if name else self.owner.email
        if self.owner_role:
            return Role(self.owner_role).label
        return "the watch-list (no owner)"


def routing_try(
    tenant: Tenant, *, classification: str, account: Account | None, segment: str, meter: Meter | None
) -> RoutingTrial:
    """Route a would-be finding with ``services._route``, the function a reconciliation calls."""
    rules = list(routing_rule_list(tenant))
    subject = account if account is not None else Account(segment=segment.strip())
    meter_id = meter.pk if meter else None
    role, owner = _route(classification, subject, meter_id, rules)
    # Which rule won: ask _route again with each rule standing in as its index.
    stand_ins = [
        RoutingRule(
            classification=r.classification, segment=r.segment, meter_id=r.meter_id, owner_role=f"#{i}"
        )
        for i, r in enumerate(rules)
    ]
    picked, _ = _route(classification, subject, meter_id, stand_ins)
    rule = rules[int(picked[1:])] if picked.startswith("#") else None
    return RoutingTrial(rule=rule, owner_role=role, owner=owner, account=account)


# --- schedule and the rest ------------------------------------------------------------------------


def schedule_get(tenant: Tenant) -> ReconciliationSchedule | None:
    return ReconciliationSchedule.objects.filter(tenant=tenant).first()


def segment_names(tenant: Tenant) -> list[str]:
    """The segments the tenant's accounts use (for suggestions; one indexed DISTINCT)."""
    return list(
        Account.objects.filter(tenant=tenant)
        .exclude(segment="")
        .order_by("segment")
        .values_list("segment", flat=True)
        .distinct()
    )
