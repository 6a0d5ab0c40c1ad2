from __future__ import annotations

from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def quantity(value: Decimal | None) -> str:
    """A quantity exactly, without trailing zeros or an exponent: 1000, 12.5, 0.000001."""
    if value is None:
        return ""
    return format(value.normalize(), "f")
