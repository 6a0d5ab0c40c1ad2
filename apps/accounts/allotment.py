"""A plan's allotment for one meter: how many billing units an account can use before it pays more.

The catalogue has no "allotment" field, so it is read off the charge (pure, like the pricing engine):

- graduated or volume tiers whose first tier is free (``unit_amount`` 0): the included allowance,
  that tier's ``up_to`` (a flat fee on it is the price of the bundle, the units are still included);
- other tiered charges: the boundary of the tier the usage is in now, i.e. the units until the next
  (dearer or cheaper) tier starts; past the last finite boundary there is none;
- package: the units the packages bought so far cover (at least one package);
- per unit: none (every unit is paid for), or unlimited when the unit price is 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from apps import pricing
from apps.pricing.money import round_to_exponent

AllotmentKind = Literal["included", "next_tier", "top_tier", "package", "unlimited", "per_unit"]

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Allotment:
    kind: AllotmentKind
    units: Decimal | None  # None: nothing to measure against (per unit, unlimited, top tier)

    @property
    def explanation(self) -> str:
        return {
            "included": "units included free in the plan (its first tier is priced at 0)",
            "next_tier": "units until the next price tier starts",
            "top_tier": "already in the last price tier: no further boundary",
            "package": "units covered by the packages bought so far",
            "unlimited": "free: the unit price is 0",
            "per_unit": "pay as you go: every unit is billed, no allowance",
        }[self.kind]


def allotment_for(charge: pricing.Charge, used: Decimal) -> Allotment:
    """The allotment of ``charge`` for an account that has used ``used`` billing units so far."""
    if charge.model in ("graduated", "volume") and charge.tiers:
        first = charge.tiers[0]
        if first.unit_amount == 0:
            if first.up_to is None:
                return Allotment("unlimited", None)
            return Allotment("included", first.up_to)
        # up_to is inclusive: at exactly the boundary the usage is still in that tier.
        for tier in charge.tiers:
            if tier.up_to is None:
                break
            if used <= tier.up_to:
                return Allotment("next_tier", tier.up_to)
        return Allotment("top_tier", None)
    if charge.model == "package" and charge.package_size:
        packages = max(1, math.ceil(Fraction(used) / Fraction(charge.package_size)))
        return Allotment("package", pricing.trimmed(charge.package_size * packages))
    if charge.model == "per_unit" and charge.unit_amount == 0:
        return Allotment("unlimited", None)
    return Allotment("per_unit", None)


def share_of(used: Decimal, allotment: Allotment) -> Decimal | None:
    """``used`` as a percentage of the allotment, to one decimal place (None when there is none)."""
    if allotment.units is None or allotment.units <= 0:
        return None
    return round_to_exponent(Fraction(used) * 100 / Fraction(allotment.units), 1)
