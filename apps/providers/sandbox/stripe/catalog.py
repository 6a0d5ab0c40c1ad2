"""Customers, products, prices (per unit, tiered, packaged), billing meters and events, subscriptions."""

from __future__ import annotations

import copy
import uuid
from decimal import Decimal

from .core import (
    Obj,
    Params,
    StripeApiError,
    StripeCore,
    _dec,
    _int,
    _missing,
    _num,
    add_interval,
)
from .shapes import SHAPES


class StripeCatalog(StripeCore):
    # --- customers, products, prices -------------------------------------------
    def customer_create(self, params: Params) -> Obj:
        cus = self.new(
            "customer",
            "cus",
            name=params.get("name"),
            email=params.get("email"),
            description=params.get("description"),
            metadata=dict(params.get("metadata") or {}),
            currency=None,
            discount=None,
            invoice_prefix=uuid.uuid4().hex[:8].upper(),
            next_invoice_sequence=1,
        )
        return self.public(self.store(cus, "customer.created"))

    def customer_update(self, params: Params, oid: str) -> Obj:
        cus = self.get("customer", oid)
        for field in ("name", "email", "description"):
            if field in params:
                cus[field] = params[field]
        cus["metadata"].update(params.get("metadata") or {})
        self.emit("customer.updated", cus)
        return self.public(cus)

    def product_create(self, params: Params) -> Obj:
        if not params.get("name"):
            raise _missing("name")
        prod = self.new(
            "product",
            "prod",
            name=params["name"],
            description=params.get("description"),
            active=True,
            updated=self.now(),
            default_price=None,
            metadata=dict(params.get("metadata") or {}),
        )
        if "id" in params:
            prod["id"] = params["id"]
        return self.public(self.store(prod, "product.created"))

    def price_create(self, params: Params) -> Obj:
        if not params.get("currency"):
            raise _missing("currency")
        product = params.get("product")
        if not product:
            if not params.get("product_data"):
                raise _missing("product")
            product = self.product_create(params["product_data"])["id"]
        self.get("product", product)
        scheme = params.get("billing_scheme", "per_unit")
        price = self.new(
            "price",
            "price",
            currency=str(params["currency"]).lower(),
            product=product,
            billing_scheme=scheme,
            nickname=params.get("nickname"),
            lookup_key=params.get("lookup_key"),
            tiers_mode=None,
            metadata=dict(params.get("metadata") or {}),
            type="one_time",
            recurring=None,
            custom_unit_amount=None,
            unit_amount=None,
            unit_amount_decimal=None,
            transform_quantity=None,
        )
        if rec := params.get("recurring"):
            usage_type = rec.get("usage_type", "licensed")
            meter = rec.get("meter")
            if usage_type == "metered" and not meter:
                raise StripeApiError("Metered prices require `recurring[meter]`.", param="recurring[meter]")
            if meter:
                self.get("billing.meter", meter)
            price["type"] = "recurring"
            price["recurring"] = {
                "interval": rec.get("interval", "month"),
                "interval_count": _int(rec.get("interval_count", 1), "interval_count"),
                "meter": meter,
                "usage_type": usage_type,
                "trial_period_days": None,
            }
        if scheme == "tiered":
            if params.get("tiers_mode") not in ("graduated", "volume"):
                raise StripeApiError("`tiers_mode` must be graduated or volume.", param="tiers_mode")
            tiers = []
            for i, t in enumerate(params.get("tiers") or []):
                up_to = t.get("up_to")
                unit = t.get("unit_amount_decimal", t.get("unit_amount", 0))
                flat = t.get("flat_amount_decimal", t.get("flat_amount"))
                tiers.append(
                    {
                        "up_to": None if up_to == "inf" else _int(up_to, f"tiers[{i}][up_to]"),
                        "unit_amount": _int(unit, "unit_amount")
                        if _dec(unit, "u") == int(_dec(unit, "u"))
                        else None,
                        "unit_amount_decimal": str(_dec(unit, f"tiers[{i}][unit_amount_decimal]")),
                        "flat_amount": None if flat is None else _int(flat, "flat_amount"),
                        "flat_amount_decimal": None
                        if flat is None
                        else str(_dec(flat, "flat_amount_decimal")),
                    }
                )
            if not tiers or tiers[-1]["up_to"] is not None:
                raise StripeApiError("The last tier must have `up_to=inf`.", param="tiers")
            price["tiers_mode"], price["tiers"] = params["tiers_mode"], tiers
        else:
            unit = params.get("unit_amount_decimal", params.get("unit_amount"))
            if unit is None:
                raise _missing("unit_amount")
            d = _dec(unit, "unit_amount")
            price["unit_amount"] = int(d) if d == int(d) else None
            price["unit_amount_decimal"] = str(d)
            if tq := params.get("transform_quantity"):
                price["transform_quantity"] = {
                    "divide_by": _int(tq["divide_by"], "divide_by"),
                    "round": tq.get("round", "up"),
                }
        return self._price_out(self.store(price, "price.created"), params)

    def _price_out(self, price: Obj, params: Params) -> Obj:
        """``tiers`` is an includable field at Stripe: only there when expanded."""
        out = self.public(price)
        expand = params.get("expand") or []
        if not ({"tiers", "data.tiers"} & set(expand)):
            out.pop("tiers", None)
        return out

    def price_list(self, params: Params) -> Obj:
        page = self.lister("price", filters=("product", "currency", "active", "type"))(params)
        page["data"] = [self._price_out(self.get("price", p["id"]), params) for p in page["data"]]
        return page

    def price_get(self, params: Params, oid: str) -> Obj:
        return self._price_out(self.get("price", oid), params)

    # --- meters ----------------------------------------------------------------
    def meter_create(self, params: Params) -> Obj:
        for name in ("display_name", "event_name"):
            if not params.get(name):
                raise _missing(name)
        if any(
            m["event_name"] == params["event_name"] for m in self.objects.get("billing.meter", {}).values()
        ):
            raise StripeApiError("A meter with this event_name already exists.", param="event_name")
        cm = params.get("customer_mapping") or {}
        vs = params.get("value_settings") or {}
        meter = self.new(
            "billing.meter",
            "mtr",
            display_name=params["display_name"],
            event_name=params["event_name"],
            default_aggregation={"formula": (params.get("default_aggregation") or {}).get("formula", "sum")},
            customer_mapping={
                "event_payload_key": cm.get("event_payload_key", "stripe_customer_id"),
                "type": "by_id",
            },
            value_settings={"event_payload_key": vs.get("event_payload_key", "value")},
            updated=self.now(),
        )
        return self.public(self.store(meter, "billing.meter.created"))

    def meter_event_create(self, params: Params) -> Obj:
        if not params.get("event_name"):
            raise _missing("event_name")
        meters = [
            m
            for m in self.objects.get("billing.meter", {}).values()
            if m["event_name"] == params["event_name"]
        ]
        if not meters:
            raise StripeApiError(
                f"No active meter found for event_name '{params['event_name']}'.", param="event_name"
            )
        meter, payload = meters[0], dict(params.get("payload") or {})
        customer = payload.get(meter["customer_mapping"]["event_payload_key"])
        if not customer:
            raise _missing(f"payload[{meter['customer_mapping']['event_payload_key']}]")
        self.get("customer", customer)
        value = _dec(payload.get(meter["value_settings"]["event_payload_key"], "0"), "payload[value]")
        identifier = params.get("identifier") or uuid.uuid4().hex
        if identifier in self.meter_event_ids:  # counted once: the first event stands
            return self.public(self.meter_event_ids[identifier])
        event = copy.deepcopy(SHAPES["billing.meter_event"])
        timestamp = _int(params.get("timestamp", self.now()), "timestamp")
        event.update(
            created=self.now(),
            event_name=params["event_name"],
            identifier=identifier,
            payload=payload,
            timestamp=timestamp,
            _meter=meter["id"],
            _customer=customer,
            _value=value,
        )
        self.meter_events.append(event)
        self.meter_event_ids[identifier] = event
        return self.public(event)

    def meter_total(self, meter_id: str, customer: str, start: int, end: int) -> Decimal:
        meter = self.get("billing.meter", meter_id)
        values = [
            e["_value"]
            for e in sorted(self.meter_events, key=lambda e: e["timestamp"])
            if e["_meter"] == meter_id and e["_customer"] == customer and start <= e["timestamp"] < end
        ]
        formula = meter["default_aggregation"]["formula"]
        if formula == "count":
            return Decimal(len(values))
        if formula == "last":
            return values[-1] if values else Decimal(0)
        return sum(values, Decimal(0))

    def meter_event_summaries(self, params: Params, meter_id: str) -> Obj:
        self.get("billing.meter", meter_id)
        for name in ("customer", "start_time", "end_time"):
            if name not in params:
                raise _missing(name)
        start, end = _int(params["start_time"], "start_time"), _int(params["end_time"], "end_time")
        if start % 60 or end % 60:
            raise StripeApiError("start_time and end_time must be aligned to the minute.", param="start_time")
        summary = copy.deepcopy(SHAPES["billing.meter_event_summary"])
        summary.update(
            id=f"mtrusg_{uuid.uuid4().hex[:24]}",
            meter=meter_id,
            start_time=start,
            end_time=end,
            aggregated_value=_num(self.meter_total(meter_id, params["customer"], start, end)),
        )
        return {
            "object": "list",
            "url": f"/v1/billing/meters/{meter_id}/event_summaries",
            "has_more": False,
            "data": [summary],
        }

    # --- subscriptions -----------------------------------------------------------
    def subscription_create(self, params: Params) -> Obj:
        customer = self.get("customer", params.get("customer") or "")
        items_in = params.get("items") or []
        if not items_in:
            raise _missing("items")
        now = self.now()
        start = _int(params.get("backdate_start_date", now), "backdate_start_date")
        sub = self.new(
            "subscription",
            "sub",
            customer=customer["id"],
            status="active",
            start_date=start,
            billing_cycle_anchor=start,
            current_period_start=None,
            current_period_end=None,
            cancel_at=None,
            canceled_at=None,
            ended_at=None,
            trial_end=None,
            trial_start=None,
            latest_invoice=None,
            metadata=dict(params.get("metadata") or {}),
            pending_update=None,
            transfer_data=None,
        )
        items = []
        for i, item in enumerate(items_in):
            price = self.get("price", item.get("price") or "")
            if price["type"] != "recurring":
                raise StripeApiError("Subscription items need recurring prices.", param=f"items[{i}][price]")
            rec = price["recurring"]
            period_start = start
            while add_interval(period_start, rec["interval"], rec["interval_count"]) <= now:
                period_start = add_interval(period_start, rec["interval"], rec["interval_count"])
            si = self.new(
                "subscription_item",
                "si",
                subscription=sub["id"],
                price=self._price_out(price, {}),
                plan=None,
                quantity=None
                if rec["usage_type"] == "metered"
                else _int(item.get("quantity", 1), "quantity"),
                current_period_start=period_start,
                current_period_end=add_interval(period_start, rec["interval"], rec["interval_count"]),
                billing_thresholds=None,
            )
            items.append(self.store(si))
        sub["currency"] = items[0]["price"]["currency"]
        customer["currency"] = customer["currency"] or sub["currency"]
        sub["items"] = {
            "object": "list",
            "data": [self.public(si) for si in items],
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={sub['id']}",
        }
        return self.public(self.store(sub, "customer.subscription.created"))
