"""The sandbox's plumbing: object store, ids, events, lists, errors and the small conversions.

Every handler takes the request's parameters already decoded into nested dicts/lists of
strings (as Stripe's form encoding carries them) and returns a JSON-ready dict, or raises
``StripeApiError``. Amounts are integer minor units, exactly as Stripe keeps them.
"""

from __future__ import annotations

import calendar
import copy
import datetime as dt
import re
import threading
import time
import uuid
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from .shapes import SHAPES

API_VERSION = "2026-10-28.endive"

Obj = dict[str, Any]
Params = dict[str, Any]


class StripeApiError(Exception):
    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        code: str = "",
        param: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: Obj = {"error": {"type": type, "code": code or None, "message": message}}
        if param:
            self.body["error"]["param"] = param


def _missing(name: str) -> StripeApiError:
    return StripeApiError(f"Missing required param: {name}.", code="parameter_missing", param=name)


def _no_such(kind: str, oid: str) -> StripeApiError:
    return StripeApiError(f"No such {kind}: '{oid}'", status=404, code="resource_missing", param="id")


def _dec(value: Any, name: str) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise StripeApiError(
            f"Invalid decimal: {value}", code="parameter_invalid_decimal", param=name
        ) from None


def _int(value: Any, name: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise StripeApiError(
            f"Invalid integer: {value}", code="parameter_invalid_integer", param=name
        ) from None


def _bool(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _num(value: Decimal) -> int | float:
    """A JSON number for a count: integral values stay integers."""
    return int(value) if value == value.to_integral_value() else float(value)


def _round_minor(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def add_months(ts: int, months: int) -> int:
    d = dt.datetime.fromtimestamp(ts, tz=dt.UTC)
    month0 = d.month - 1 + months
    year, month = d.year + month0 // 12, month0 % 12 + 1
    day = min(d.day, calendar.monthrange(year, month)[1])
    return int(d.replace(year=year, month=month, day=day).timestamp())


def add_interval(ts: int, interval: str, count: int = 1) -> int:
    if interval == "year":
        return add_months(ts, 12 * count)
    if interval == "month":
        return add_months(ts, count)
    return ts + count * {"week": 7 * 86400, "day": 86400}.get(interval, 86400)


def price_amount(price: Obj, quantity: Decimal) -> int:
    """What ``quantity`` units cost under ``price``, in minor units (Stripe's tier maths)."""
    if price["billing_scheme"] == "tiered":
        tiers = price["tiers"]
        if price["tiers_mode"] == "volume":
            for tier in tiers:
                if tier["up_to"] is None or quantity <= tier["up_to"]:
                    flat = Decimal(tier["flat_amount_decimal"] or 0)
                    unit = Decimal(tier["unit_amount_decimal"] or 0)
                    return _round_minor(quantity * unit + (flat if quantity > 0 else Decimal(0)))
            return 0
        total, lower = Decimal(0), Decimal(0)
        for tier in tiers:
            if quantity <= lower:
                break
            upper = quantity if tier["up_to"] is None else min(quantity, Decimal(tier["up_to"]))
            units = upper - lower
            total += units * Decimal(tier["unit_amount_decimal"] or 0) + Decimal(
                tier["flat_amount_decimal"] or 0
            )
            lower = upper
        return _round_minor(total)
    transform = price.get("transform_quantity")
    if transform:
        rounding = ROUND_CEILING if transform["round"] == "up" else ROUND_FLOOR
        quantity = (quantity / Decimal(transform["divide_by"])).quantize(Decimal(1), rounding=rounding)
    return _round_minor(quantity * Decimal(price["unit_amount_decimal"] or 0))


class StripeCore:
    """Thread-safe: the HTTP layer holds ``lock`` around each call to ``handle``."""

    routes: list[tuple[str, re.Pattern[str], Callable[..., Obj]]]

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        self.objects: dict[str, dict[str, Obj]] = {}
        self.meter_events: list[Obj] = []
        self.meter_event_ids: dict[str, Obj] = {}
        self.events: list[Obj] = []
        self._seq = 0
        self._request: Obj = {"id": None, "idempotency_key": None}
        self.frozen_at: int | None = None  # a test clock's time; None = the wall clock

    # --- plumbing ------------------------------------------------------------
    def handle(self, method: str, path: str, params: Params, request: Obj | None = None) -> Obj:
        self._request = request or {"id": None, "idempotency_key": None}
        for route_method, pattern, func in self.routes:
            match = pattern.match(path)
            if match and route_method == method:
                return func(params, *match.groups())
        raise StripeApiError(f"Unrecognized request URL ({method}: {path}).", status=404)

    def now(self) -> int:
        return self.frozen_at if self.frozen_at is not None else int(self.clock())

    def new(self, kind: str, prefix: str, **fields: Any) -> Obj:
        obj = copy.deepcopy(SHAPES[kind])
        obj.update(id=f"{prefix}_{uuid.uuid4().hex[:24]}", created=self.now(), livemode=False, metadata={})
        obj.update(fields)
        return obj

    def store(self, obj: Obj, event: str | None = None) -> Obj:
        self._seq += 1
        obj["_seq"] = self._seq
        self.objects.setdefault(obj["object"], {})[obj["id"]] = obj
        if event:
            self.emit(event, obj)
        return obj

    def emit(self, type_: str, obj: Obj) -> None:
        event = self.new(
            "event",
            "evt",
            type=type_,
            api_version=API_VERSION,
            pending_webhooks=1,
            data={"object": self.public(obj)},
            request=dict(self._request),
        )
        self.store(event)

    def get(self, kind: str, oid: Any) -> Obj:
        obj = self.objects.get(kind, {}).get(str(oid))
        if obj is None:
            raise _no_such(kind.split(".")[-1], str(oid))
        return obj

    @staticmethod
    def public(obj: Obj) -> Obj:
        return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}

    def page(self, items: list[Obj], params: Params, url: str) -> Obj:
        """Stripe's list envelope: newest first, ``limit`` (1..100, default 10), ``starting_after``."""
        items = sorted(items, key=lambda o: o.get("_seq", 0), reverse=True)
        limit = min(max(_int(params.get("limit", 10), "limit"), 1), 100)
        if after := params.get("starting_after"):
            ids = [o["id"] for o in items]
            if after not in ids:
                raise _no_such("object", after)
            items = items[ids.index(after) + 1 :]
        if before := params.get("ending_before"):
            ids = [o["id"] for o in items]
            items = items[: ids.index(before)] if before in ids else items
            items = items[-limit:]
        return {
            "object": "list",
            "url": url,
            "has_more": len(items) > limit,
            "data": [self.public(o) for o in items[:limit]],
        }

    def _created_ok(self, obj: Obj, created: Any) -> bool:
        if not isinstance(created, dict):
            return created is None or obj["created"] == _int(created, "created")
        ops = {"gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__}
        return all(
            ops[op](obj["created"], _int(v, f"created[{op}]")) for op, v in created.items() if op in ops
        )

    def lister(self, kind: str, filters: tuple[str, ...] = ()) -> Callable[..., Obj]:
        def list_(params: Params) -> Obj:
            items = [
                o
                for o in self.objects.get(kind, {}).values()
                if self._created_ok(o, params.get("created"))
                and all(
                    str(o.get(f)).lower() == str(params[f]).lower()
                    for f in filters
                    if f in params and params[f] != "all"
                )
            ]
            return self.page(items, params, "/v1/" + kind.replace(".", "/") + "s")

        return list_

    def getter(self, kind: str) -> Callable[..., Obj]:
        return lambda params, oid: self.public(self.get(kind, oid))

    def account(self, params: Params) -> Obj:
        return {
            "id": "acct_sandbox",
            "object": "account",
            "business_profile": {"name": "Trueup Stripe sandbox"},
            "country": "US",
            "default_currency": "usd",
            "email": None,
            "settings": {"dashboard": {"display_name": "Trueup Stripe sandbox"}},
        }
