from __future__ import annotations

from decimal import Decimal

from django import template

from apps.pricing import quantize
from apps.pricing.money import is_known_currency

register = template.Library()


@register.filter
def money(value: Decimal | None, currency: str | None) -> str:
    """An amount in its currency's minor unit, with thousands separators: 1,234.50 (USD), 1,493 (JPY)."""
    if value is None:
        return "—"
    if not currency or not is_known_currency(currency):
        return f"{value:,.2f}"
    return f"{quantize(value, currency):,}"


@register.filter
def percent(value: Decimal | None) -> str:
    """A share (0.25) as a percentage with one decimal: 25.0%."""
    if value is None:
        return "—"
    return f"{(value * 100).quantize(Decimal('0.1'))}%"
