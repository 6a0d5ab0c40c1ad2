"""The classification rules, in PRODUCT.md's order: the first rule that holds names the difference.

Pure and standalone on purpose: the bundle reconciliation and the database-backed engine
(which re-classifies stored lines) call the same function with the same facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal

from .inputs import Materiality

Classification = Literal[
    "matched", "within_tolerance", "credit", "timing", "proration", "under_bill", "over_bill"
]
Direction = Literal["under", "over", "none"]
Source = Literal["metering", "billing"]

CLASSIFICATIONS: Final[tuple[Classification, ...]] = (
    "matched",
    "within_tolerance",
    "credit",
    "timing",
    "proration",
    "under_bill",
    "over_bill",
)


@dataclass(frozen=True, slots=True)
class LineFacts:
    """Everything the rules look at for one line. Amounts are already rounded to the currency.

    `on_time_expected` is the amount re-priced from the events received by the cut-off
    (None when the line has no usage, e.g. the base fee); `metered_units` and
    `on_time_units` are billing units (None when unknown).
    """

    expected: Decimal
    invoiced: Decimal
    credited: Decimal = Decimal(0)
    has_credits: bool = False
    has_late_events: bool = False
    on_time_expected: Decimal | None = None
    plan_changed: bool = False
    metered_units: Decimal | None = None
    on_time_units: Decimal | None = None

    @property
    def billed(self) -> Decimal:
        return self.invoiced - self.credited

    @property
    def difference(self) -> Decimal:
        """expected - billed: positive = under-billed (leakage), negative = over-billed."""
        return self.expected - self.billed


@dataclass(frozen=True, slots=True)
class Verdict:
    classification: Classification
    direction: Direction
    source: Source | None
    material: bool


def direction_of(difference: Decimal) -> Direction:
    if difference > 0:
        return "under"
    if difference < 0:
        return "over"
    return "none"


def classify(facts: LineFacts, materiality: Materiality = Materiality()) -> Verdict:  # noqa: B008 - immutable
    """Apply the rules: matched/within_tolerance, credit, timing, proration, under_bill/over_bill."""
    difference = facts.difference
    direction = direction_of(difference)
    if difference == 0:
        return Verdict("matched", direction, None, material=False)
    if not materiality.is_material(difference, facts.expected):
        return Verdict("within_tolerance", direction, None, material=False)
    # The invoice was right and a credit note took something off it: a deliberate concession.
    if facts.has_credits and facts.expected == facts.invoiced:
        return Verdict("credit", direction, None, material=True)
    # The provider invoiced exactly what had arrived by the cut-off; the rest came late.
    if facts.has_late_events and facts.on_time_expected == facts.invoiced:
        return Verdict("timing", direction, None, material=True)
    if facts.plan_changed:
        return Verdict("proration", direction, None, material=True)
    classification: Classification = "under_bill" if difference > 0 else "over_bill"
    return Verdict(classification, direction, _source(facts), material=True)


def _source(facts: LineFacts) -> Source:
    # Metering is only blamed on evidence: a metered count that differs from the on-time
    # raw units. Without metered data (or for the base fee) the invoice is what is wrong.
    known = facts.metered_units is not None and facts.on_time_units is not None
    if known and facts.metered_units != facts.on_time_units:
        return "metering"
    return "billing"
