"""Shared fixtures-as-values and hypothesis strategies for the pricing tests."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

from apps.pricing import Charge, Tier

D = Decimal

# The seed tier table, per 1,000 calls: $10, then $8 up to 10 units, then $5.
SEED_TIERS = (Tier(D(1), D("10.00")), Tier(D(10), D("8.00")), Tier(None, D("5.00")))
SEED_GRADUATED = Charge("graduated", tiers=SEED_TIERS)
SEED_VOLUME = Charge("volume", tiers=SEED_TIERS)

prices = st.decimals(min_value=0, max_value=1000, places=4)
flats = st.one_of(st.just(D(0)), st.decimals(min_value=0, max_value=500, places=2))
units = st.decimals(min_value=0, max_value=200_000, places=3)


@st.composite
def tier_tables(draw: st.DrawFn, *, with_flats: bool = True, max_tiers: int = 5) -> tuple[Tier, ...]:
    """Valid tier tables: strictly increasing bounds, an open last tier, non-negative prices."""
    count = draw(st.integers(min_value=1, max_value=max_tiers))
    bounds = sorted(
        draw(
            st.sets(
                st.decimals(min_value=D("0.5"), max_value=100_000, places=2),
                min_size=count - 1,
                max_size=count - 1,
            )
        )
    )
    fee = flats if with_flats else st.just(D(0))
    tiers = [Tier(bound, draw(prices), draw(fee)) for bound in bounds]
    tiers.append(Tier(None, draw(prices), draw(fee)))
    return tuple(tiers)


@st.composite
def discount_tables(draw: st.DrawFn) -> tuple[Tier, ...]:
    """Tier tables whose unit price never rises from one tier to the next, without flat fees."""
    tiers = draw(tier_tables(with_flats=False))
    ordered = sorted((tier.unit_amount for tier in tiers), reverse=True)
    return tuple(Tier(tier.up_to, price) for tier, price in zip(tiers, ordered, strict=True))
