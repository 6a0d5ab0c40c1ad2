"""Walk the URLconf: every pattern, its full route, its name and its kwargs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver


@dataclass
class Route:
    name: str
    route: str
    kwargs: tuple[str, ...]
    callback: Any


def iter_routes(patterns: Any = None, prefix: str = "", namespace: str = "") -> list[Route]:
    routes: list[Route] = []
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            routes += iter_routes(entry.url_patterns, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            converters = {**getattr(entry.pattern, "converters", {})}
            route = prefix + str(entry.pattern)
            import re

            names = tuple(re.findall(r"<(?:\w+:)?(\w+)>", route)) + tuple(converters.keys() - set())
            routes.append(
                Route(
                    f"{namespace}{entry.name}" if entry.name else "",
                    route,
                    tuple(dict.fromkeys(names)),
                    entry.callback,
                )
            )
    return routes


def app_routes() -> list[Route]:
    """Routes of Trueup itself (not the Django admin, which is for platform operators)."""
    return [r for r in iter_routes() if r.name and not r.name.startswith("admin:")]
