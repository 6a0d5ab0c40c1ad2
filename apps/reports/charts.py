"""Chart specs for static/js/charts.js: drawn from json_script data, so the CSP needs no inline script.

Figures go out as strings of exact decimals (charts.js reads them as numbers for display only);
every chart sits next to a table with the same figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from apps.pricing import quantize
from apps.pricing.money import is_known_currency


def plain(value: Decimal, currency: str | None) -> str:
    """The amount as the currency writes it (1493 JPY, 21.06 USD), exact."""
    return str(quantize(value, currency)) if currency and is_known_currency(currency) else str(value)


def series(label: str, values: Iterable[Decimal], *, tone: str, currency: str | None) -> dict[str, Any]:
    return {"label": label, "data": [plain(v, currency) for v in values], "tone": tone}


def chart(
    kind: str,
    labels: list[str],
    datasets: list[dict[str, Any]],
    *,
    currency: str | None = None,
    stacked: bool = False,
    horizontal: bool = False,
) -> dict[str, Any]:
    return {
        "type": kind,
        "labels": labels,
        "datasets": datasets,
        "stacked": stacked,
        "currency": currency,
        "horizontal": horizontal,
    }
