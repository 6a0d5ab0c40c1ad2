"""A stateful, in-memory, Chargebee-compatible HTTP server for the demo and the tests.

The official ``chargebee`` SDK talks to it over real HTTP (see ``ChargebeeProvider(base_url=...)``).
It follows Chargebee's v2 shapes: form-encoded parameters (``tiers[price][0]=...``), Basic auth
with the API key as user, ``{"list": [...], "next_offset": ...}`` listings, single objects wrapped
by their type, errors as ``{"message", "type", "api_error_code", "http_status_code"}``, integer
minor units, ``chargebee-idempotency-key`` replays. Standard library only; one lock serialises
every request, which is plenty for a sandbox.

Test helpers live under ``/_sandbox/`` (JSON bodies, same Basic auth): ``seed``, ``invoices``
(generate a pending or closed invoice from the subscription's state), ``faults`` (the next N
matching requests, after ``skip`` of them, answer 500 / 429 + Retry-After / are delayed), ``clock``,
``webhooks`` (where to deliver),
``events`` (deliver given events and, with ``pending``, the ones the state changes recorded;
optionally duplicated and reordered), GET ``/api/v2/events``, ``requests`` (what was called),
``usage_totals`` and ``reset``. Sandbox liberties: ``package`` item prices take a top-level
``package_size``; reusing an idempotency key with other parameters answers 409.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from apps.providers.sandbox.persistence import StateFile, wait_for_stop_signal

JSON = dict[str, Any]
API_PREFIX = "/api/v2"
PRICING_MODELS = {"flat_fee", "per_unit", "tiered", "volume", "stairstep", "package"}
ZERO_DECIMAL = {"JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF", "PYG", "RWF"}
IDEMPOTENCY_HEADER = "chargebee-idempotency-key"
_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")


class SandboxError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request",
        code: str = "invalid_request",
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: JSON = {
            "message": message,
            "type": type_,
            "api_error_code": code,
            "error_code": code,
            "http_status_code": status,
        }
        if param:
            self.body["param"] = param
        self.headers = headers or {}


def parse_params(pairs: list[tuple[str, str]]) -> JSON:
    """Chargebee's form encoding to a tree: ``a[f][0]=x`` → ``{"a": [{"f": "x"}]}``, ``d[after]`` → dict."""
    out: JSON = {}
    rows: dict[str, dict[int, JSON]] = {}
    for key, value in pairs:
        match = _KEY.fullmatch(key)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))] if match else [key]
        if len(parts) == 3 and parts[2].isdigit():
            rows.setdefault(parts[0], {}).setdefault(int(parts[2]), {})[parts[1]] = value
        elif len(parts) == 2 and parts[1].isdigit():
            rows.setdefault(parts[0], {})[int(parts[1])] = value  # type: ignore[assignment]
        elif len(parts) == 2:
            out.setdefault(parts[0], {})[parts[1]] = value
        else:
            out[key] = value
    for name, by_index in rows.items():
        out[name] = [by_index[i] for i in sorted(by_index)]
    return out


def _int(value: Any, param: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SandboxError(400, f"{param} must be an integer", param=param) from None


def _dec(value: Any, param: str) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise SandboxError(400, f"{param} must be a decimal", param=param) from None


def _exp(currency: str) -> int:
    return 0 if currency.upper() in ZERO_DECIMAL else 2


def _round(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _unit_minor(obj: JSON, currency: str) -> Decimal:
    if obj.get("price_in_decimal") not in (None, ""):
        return _dec(obj["price_in_decimal"], "price_in_decimal").scaleb(_exp(currency))
    return Decimal(int(obj.get("price") or 0))


def price_amount(item_price: JSON, quantity: Decimal) -> int:
    """The amount in minor units that ``item_price`` charges for ``quantity`` units."""
    model, currency = item_price["pricing_model"], item_price["currency_code"]
    if model == "flat_fee":
        return _round(_unit_minor(item_price, currency))
    if model == "per_unit":
        return _round(_unit_minor(item_price, currency) * quantity)
    if model == "package":
        size = Decimal(item_price.get("package_size") or 1)
        packages = (quantity / size).to_integral_value(rounding=ROUND_CEILING)
        return _round(_unit_minor(item_price, currency) * packages)
    tiers = item_price.get("tiers") or []
    if model == "tiered":
        total = Decimal(0)
        for tier in tiers:
            start = Decimal(tier["starting_unit"]) - 1
            end = Decimal(tier["ending_unit"]) if tier.get("ending_unit") is not None else quantity
            units = max(Decimal(0), min(quantity, end) - start)
            total += units * _unit_minor(tier, currency)
        return _round(total)
    for tier in tiers:  # volume / stairstep: the tier that holds the whole quantity
        start = Decimal(tier["starting_unit"]) - 1
        end = tier.get("ending_unit")
        if quantity > start and (end is None or quantity <= Decimal(end)):
            unit = _unit_minor(tier, currency)
            return _round(unit * quantity if model == "volume" else unit)
    return 0


class ChargebeeState:
    """Everything the sandbox knows. Callers hold ``lock``."""

    def __init__(self, api_key: str, site: str) -> None:
        self.api_key, self.site = api_key, site
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        self.customers: dict[str, JSON] = {}
        self.item_prices: dict[str, JSON] = {}
        self.subscriptions: dict[str, JSON] = {}
        self.usages: dict[str, JSON] = {}
        self.invoices: dict[str, JSON] = {}
        self.unbilled_charges: dict[str, JSON] = {}
        self.credit_notes: dict[str, JSON] = {}
        self.idempotency: dict[str, tuple[str, int, JSON]] = {}
        self.faults: list[JSON] = []
        self.requests: list[JSON] = []
        self.webhook: JSON = {}
        self.events: dict[str, JSON] = {}
        self.delivered: set[str] = set()
        self.frozen_now: int | None = None
        self._seq = itertools.count(1)

    def now(self) -> int:
        return self.frozen_now if self.frozen_now is not None else int(time.time())

    def emit(self, event_type: str, content: JSON) -> JSON:
        """Record an event in Chargebee's shape (delivered by ``/_sandbox/events`` with ``pending``)."""
        event = {
            "id": self.next_id("ev_"),
            "occurred_at": self.now(),
            "source": "api",
            "object": "event",
            "api_version": "v2",
            "event_type": event_type,
            "webhook_status": "scheduled",
            "content": json.loads(json.dumps(content)),
        }
        self.events[event["id"]] = event
        return event

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._seq):06d}"

    # --- customers, catalogue, subscriptions ---------------------------------------------------
    def create_customer(self, p: JSON) -> JSON:
        cid = p.get("id") or self.next_id("cust_")
        if cid in self.customers:
            raise SandboxError(400, f"customer {cid} already exists", code="duplicate_entry", param="id")
        meta = p.get("meta_data")
        now = self.now()
        customer = {
            "id": cid,
            "first_name": p.get("first_name"),
            "last_name": p.get("last_name"),
            "email": p.get("email"),
            "company": p.get("company"),
            "preferred_currency_code": p.get("preferred_currency_code"),
            "meta_data": json.loads(meta) if isinstance(meta, str) and meta else meta,
            "auto_collection": "on",
            "created_at": _int(p.get("created_at", now), "created_at"),
            "updated_at": now,
            "deleted": False,
            "object": "customer",
        }
        self.customers[cid] = {k: v for k, v in customer.items() if v is not None}
        self.emit("customer_created", {"customer": self.customers[cid]})
        return {"customer": self.customers[cid]}

    def create_item_price(self, p: JSON) -> JSON:
        ipid = p.get("id")
        if not ipid:
            raise SandboxError(400, "id : cannot be blank", param="id")
        if ipid in self.item_prices:
            raise SandboxError(400, f"item price {ipid} already exists", code="duplicate_entry", param="id")
        model = p.get("pricing_model", "per_unit")
        if model not in PRICING_MODELS:
            raise SandboxError(400, f"pricing_model : invalid value {model}", param="pricing_model")
        tiers = []
        for i, t in enumerate(p.get("tiers") or []):
            tier: JSON = {"starting_unit": _int(t.get("starting_unit", 1), f"tiers[starting_unit][{i}]")}
            if t.get("ending_unit") not in (None, ""):
                tier["ending_unit"] = _int(t["ending_unit"], f"tiers[ending_unit][{i}]")
            if t.get("price_in_decimal") not in (None, ""):
                tier["price_in_decimal"] = str(t["price_in_decimal"])
            else:
                tier["price"] = _int(t.get("price", 0), f"tiers[price][{i}]")
            tiers.append(tier)
        if model in {"tiered", "volume", "stairstep"} and not tiers:
            raise SandboxError(400, f"tiers : required for {model} pricing", param="tiers")
        now = self.now()
        item_price: JSON = {
            "id": ipid,
            "name": p.get("name", ipid),
            "item_id": p.get("item_id", ipid),
            "item_type": p.get("item_type", "plan" if model == "flat_fee" else "addon"),
            "status": "active",
            "pricing_model": model,
            "currency_code": p.get("currency_code", "USD"),
            "period": _int(p.get("period", 1), "period"),
            "period_unit": p.get("period_unit", "month"),
            "created_at": now,
            "updated_at": now,
            "object": "item_price",
        }
        if tiers:
            item_price["tiers"] = tiers
        if p.get("price_in_decimal") not in (None, ""):
            item_price["price_in_decimal"] = str(p["price_in_decimal"])
        elif not tiers:
            item_price["price"] = _int(p.get("price", 0), "price")
        if model == "package":
            item_price["package_size"] = _int(p.get("package_size", 1), "package_size")
        self.item_prices[ipid] = item_price
        return {"item_price": item_price}

    def create_subscription(self, customer_id: str, p: JSON) -> JSON:
        customer = self._get(self.customers, customer_id, "customer")
        sid = p.get("id") or self.next_id("sub_")
        if sid in self.subscriptions:
            raise SandboxError(400, f"subscription {sid} already exists", code="duplicate_entry", param="id")
        items = []
        for i, row in enumerate(p.get("subscription_items") or []):
            ip = self._get(self.item_prices, row.get("item_price_id", ""), "item_price")
            items.append(
                {
                    "item_price_id": ip["id"],
                    "item_type": ip["item_type"],
                    "quantity": _int(row.get("quantity", 1), f"subscription_items[quantity][{i}]"),
                }
            )
        if not items:
            raise SandboxError(400, "subscription_items : cannot be blank", param="subscription_items")
        now = self.now()
        start = _int(p.get("start_date", now), "start_date")
        sub = {
            "id": sid,
            "customer_id": customer_id,
            "status": "active",
            "currency_code": self.item_prices[items[0]["item_price_id"]]["currency_code"],
            "subscription_items": items,
            "billing_period": 1,
            "billing_period_unit": "month",
            "started_at": start,
            "activated_at": start,
            "created_at": now,
            "updated_at": now,
            "deleted": False,
            "object": "subscription",
        }
        self.subscriptions[sid] = sub
        self.emit("subscription_created", {"subscription": sub, "customer": customer})
        return {"subscription": sub, "customer": customer}

    # --- usages ----------------------------------------------------------------------------
    def create_usage(self, subscription_id: str, p: JSON) -> JSON:
        sub = self._get(self.subscriptions, subscription_id, "subscription")
        ipid = p.get("item_price_id", "")
        if ipid not in {i["item_price_id"] for i in sub["subscription_items"]}:
            raise SandboxError(
                400, f"item_price_id : {ipid} is not in the subscription", param="item_price_id"
            )
        quantity = _dec(p.get("quantity"), "quantity")
        if quantity < 0:
            raise SandboxError(400, "quantity : cannot be negative", param="quantity")
        usage_date = _int(p.get("usage_date"), "usage_date")
        uid = p.get("id")
        if uid and uid in self.usages:
            raise SandboxError(400, f"usage {uid} already exists", code="duplicate_entry", param="id")
        dedupe = p.get("dedupe_option")
        if dedupe:
            for existing in self.usages.values():
                same = (existing["subscription_id"], existing["item_price_id"], existing["usage_date"])
                if same == (subscription_id, ipid, usage_date):
                    if dedupe == "update_existing":
                        existing["quantity"] = str(quantity)
                        existing["updated_at"] = self.now()
                    return {"usage": existing}
        now = self.now()
        usage = {
            "id": uid or self.next_id("usage_"),
            "usage_date": usage_date,
            "subscription_id": subscription_id,
            "customer_id": sub["customer_id"],
            "item_price_id": ipid,
            "quantity": str(quantity),
            "source": "api",
            "note": p.get("note"),
            "created_at": now,
            "updated_at": now,
            "object": "usage",
        }
        self.usages[usage["id"]] = usage
        return {"usage": usage}

    def usage_total(self, subscription_id: str, item_price_id: str, start: int, end: int) -> Decimal:
        return sum(
            (
                Decimal(u["quantity"])
                for u in self.usages.values()
                if u["subscription_id"] == subscription_id
                and u["item_price_id"] == item_price_id
                and start <= u["usage_date"] < end
            ),
            Decimal(0),
        )

    # --- invoices --------------------------------------------------------------------------
    def generate_invoice(self, p: JSON) -> JSON:
        """Bill a subscription for [period_start, period_end): base fees, usage, then unbilled charges."""
        sub = self._get(self.subscriptions, p.get("subscription_id", ""), "subscription")
        start, end = _int(p.get("period_start"), "period_start"), _int(p.get("period_end"), "period_end")
        iid = p.get("id") or self.next_id("inv_")
        invoice: JSON = {
            "id": iid,
            "customer_id": sub["customer_id"],
            "subscription_id": sub["id"],
            "recurring": True,
            "status": "pending",
            "price_type": "tax_exclusive",
            "currency_code": sub["currency_code"],
            "date": end,
            "amount_paid": 0,
            "amount_adjusted": 0,
            "credits_applied": 0,
            "round_off_amount": 0,
            "line_items": [],
            "deleted": False,
            "object": "invoice",
            "_period": [start, end],
        }
        for item in sub["subscription_items"]:
            ip = self.item_prices[item["item_price_id"]]
            line = {
                "id": self.next_id("li_"),
                "subscription_id": sub["id"],
                "customer_id": sub["customer_id"],
                "date_from": start,
                "date_to": end,
                "pricing_model": ip["pricing_model"],
                "entity_type": f"{ip['item_type']}_item_price",
                "entity_id": ip["id"],
                "description": ip["name"],
                "metered": ip["pricing_model"] != "flat_fee",
                "is_taxed": False,
                "tax_amount": 0,
                "discount_amount": 0,
                "item_level_discount_amount": 0,
            }
            invoice["line_items"].append(line)
        for charge in self.unbilled_charges.values():
            if charge["subscription_id"] == sub["id"] and not charge.get("invoice_id"):
                charge["invoice_id"] = iid
                invoice["line_items"].append(self._charge_line(charge["amount"], charge["description"], sub))
                invoice["line_items"][-1]["id"] = self.next_id("li_")
        self.invoices[iid] = invoice
        self._price_lines(invoice)
        self.emit("pending_invoice_created", {"invoice": self.view_invoice(invoice)})
        if p.get("close"):
            self.close_invoice(iid)
        if p.get("status") in {"paid", "posted", "not_paid", "voided"}:
            invoice["status"] = p["status"]
        return {"invoice": self.view_invoice(invoice)}

    def _charge_line(self, amount: int, description: str, sub: JSON) -> JSON:
        now = self.now()
        return {
            "id": "",
            "subscription_id": sub["id"],
            "customer_id": sub["customer_id"],
            "date_from": now,
            "date_to": now,
            "unit_amount": amount,
            "quantity": 1,
            "amount": amount,
            "pricing_model": "flat_fee",
            "entity_type": "adhoc",
            "description": description,
            "metered": False,
            "is_taxed": False,
            "tax_amount": 0,
            "discount_amount": 0,
            "item_level_discount_amount": 0,
        }

    def _price_lines(self, invoice: JSON) -> None:
        """Recompute usage lines from the usages (a pending invoice follows the usage until it closes)."""
        if invoice["status"] == "pending":
            start, end = invoice["_period"]
            for line in invoice["line_items"]:
                ip = self.item_prices.get(line.get("entity_id") or "")
                if ip is None:
                    continue
                if line["metered"]:
                    qty = self.usage_total(invoice["subscription_id"], ip["id"], start, end)
                else:
                    qty = Decimal(1)
                line["quantity"] = int(qty) if qty == qty.to_integral_value() else None
                line["quantity_in_decimal"] = str(qty)
                line["amount"] = price_amount(ip, qty)
                line["unit_amount"] = line["amount"] if ip["pricing_model"] == "flat_fee" else None
        total = sum(int(line["amount"]) for line in invoice["line_items"])
        invoice["sub_total"] = invoice["total"] = total
        invoice["amount_due"] = max(0, total - invoice["amount_adjusted"] - invoice["amount_paid"])
        invoice["updated_at"] = self.now()

    def view_invoice(self, invoice: JSON) -> JSON:
        if invoice["status"] == "pending":
            self._price_lines(invoice)
        return {k: v for k, v in invoice.items() if not k.startswith("_")}

    def close_invoice(self, iid: str) -> JSON:
        invoice = self._get(self.invoices, iid, "invoice")
        if invoice["status"] != "pending":
            raise SandboxError(
                400,
                f"invoice {iid} is not pending",
                type_="invalid_request",
                code="invalid_state_for_request",
            )
        self._price_lines(invoice)
        invoice["status"] = "payment_due" if invoice["amount_due"] else "paid"
        invoice["generated_at"] = self.now()
        invoice["due_date"] = self.now()
        self.emit("invoice_generated", {"invoice": self.view_invoice(invoice)})
        return {"invoice": self.view_invoice(invoice)}

    def add_charge(self, iid: str, p: JSON) -> JSON:
        invoice = self._get(self.invoices, iid, "invoice")
        if invoice["status"] != "pending":
            raise SandboxError(400, f"invoice {iid} is not pending", code="invalid_state_for_request")
        amount = _int(p.get("amount"), "amount")
        if amount < 1:  # Chargebee's add_charge takes a positive amount (min 1): no negative lines
            raise SandboxError(
                400, "amount : cannot be less than 1", code="param_wrong_value", param="amount"
            )
        sub = self.subscriptions[invoice["subscription_id"]]
        line = self._charge_line(amount, p.get("description", ""), sub)
        line["id"] = self.next_id("li_")
        invoice["line_items"].append(line)
        self._price_lines(invoice)
        return {"invoice": self.view_invoice(invoice)}

    def create_unbilled_charges(self, p: JSON) -> JSON:
        sub = self._get(self.subscriptions, p.get("subscription_id", ""), "subscription")
        created = []
        for i, charge in enumerate(p.get("charges") or []):
            amount = _int(charge.get("amount"), f"charges[amount][{i}]")
            row = self._charge_line(amount, charge.get("description", ""), sub)
            row.update(
                id=self.next_id("li_"),
                currency_code=p.get("currency_code", sub["currency_code"]),
                is_voided=False,
                deleted=False,
                updated_at=self.now(),
                object="unbilled_charge",
            )
            self.unbilled_charges[row["id"]] = row
            created.append(row)
        if not created:
            raise SandboxError(400, "charges : cannot be blank", param="charges")
        return {"unbilled_charges": created}

    # --- credit notes ----------------------------------------------------------------------
    def create_credit_note(self, p: JSON) -> JSON:
        invoice = self._get(self.invoices, p.get("reference_invoice_id", ""), "invoice")
        if invoice["status"] in {"pending", "voided"}:
            raise SandboxError(
                400, "cannot credit a pending or voided invoice", code="invalid_state_for_request"
            )
        cn_type = p.get("type")
        if cn_type not in {"adjustment", "refundable", "store"}:
            raise SandboxError(400, "type : invalid value", param="type")
        lines_by_id = {line["id"]: line for line in invoice["line_items"]}
        credited = sum(
            cn["total"] for cn in self.credit_notes.values() if cn["reference_invoice_id"] == invoice["id"]
        )
        lines = []
        for i, row in enumerate(p.get("line_items") or []):
            ref = lines_by_id.get(row.get("reference_line_item_id", ""))
            if ref is None:
                raise SandboxError(400, "reference_line_item_id : unknown", param=f"line_items[{i}]")
            amount = _int(row.get("amount"), f"line_items[amount][{i}]")
            if amount <= 0 or amount > int(ref["amount"]):
                raise SandboxError(400, "line_items[amount] : exceeds the line amount", param="amount")
            lines.append(
                {
                    **{k: ref.get(k) for k in ("entity_type", "entity_id", "date_from", "date_to")},
                    "id": self.next_id("cnli_"),
                    "reference_line_item_id": ref["id"],
                    "amount": amount,
                    "quantity": 1,
                    "description": row.get("description") or ref.get("description", ""),
                }
            )
        total = sum(line["amount"] for line in lines) if lines else _int(p.get("total"), "total")
        if total <= 0 or credited + total > invoice["total"]:
            raise SandboxError(400, "total : exceeds the amount that can be credited", param="total")
        if not lines:
            lines.append(
                {
                    "id": self.next_id("cnli_"),
                    "entity_type": "adhoc",
                    "amount": total,
                    "quantity": 1,
                    "description": p.get("customer_notes") or "Credit",
                }
            )
        now = self.now()
        cnid = p.get("id") or self.next_id("CN-")
        note = {
            "id": cnid,
            "customer_id": invoice["customer_id"],
            "subscription_id": invoice["subscription_id"],
            "reference_invoice_id": invoice["id"],
            "type": cn_type,
            "reason_code": p.get("reason_code") or "other",
            "create_reason_code": p.get("create_reason_code"),
            "status": "adjusted" if cn_type == "adjustment" else "refund_due",
            "date": _int(p.get("date", now), "date"),
            "price_type": "tax_exclusive",
            "currency_code": invoice["currency_code"],
            "total": total,
            "sub_total": total,
            "amount_allocated": total if cn_type == "adjustment" else 0,
            "amount_refunded": 0,
            "amount_available": 0 if cn_type == "adjustment" else total,
            "round_off_amount": 0,
            "fractional_correction": 0,
            "customer_notes": p.get("customer_notes"),
            "line_items": lines,
            "created_at": now,
            "updated_at": now,
            "deleted": False,
            "object": "credit_note",
        }
        self.credit_notes[cnid] = {k: v for k, v in note.items() if v is not None}
        self.emit("credit_note_created", {"credit_note": self.credit_notes[cnid]})
        if cn_type == "adjustment":
            invoice["amount_adjusted"] += total
            self._price_lines(invoice)
        return {"credit_note": self.credit_notes[cnid], "invoice": self.view_invoice(invoice)}

    # --- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _get(table: dict[str, JSON], key: str, kind: str) -> JSON:
        if key not in table:
            raise SandboxError(404, f"{key} not found", code="resource_not_found", type_="invalid_request")
        return table[key]


def _matches(obj: JSON, field: str, op: str, raw: str) -> bool:
    value = obj.get(field)
    if op in {"is", "is_not"}:
        hit = str(value).lower() == raw.lower() if isinstance(value, bool) else str(value) == raw
        return hit if op == "is" else not hit
    if op in {"in", "not_in"}:
        options = {s.strip().strip("'\"") for s in raw.strip("[]").split(",")}
        return (str(value) in options) == (op == "in")
    if value is None:
        return False
    if op == "between":
        low, high = (int(s.strip().strip("'\"")) for s in raw.strip("[]").split(","))
        return low <= int(value) <= high
    bound = int(raw)
    return {
        "after": int(value) > bound,
        "before": int(value) < bound,
        "on": int(value) == bound,
        "gt": int(value) > bound,
        "gte": int(value) >= bound,
        "lt": int(value) < bound,
        "lte": int(value) <= bound,
    }.get(op, False)


def paginate(rows: list[JSON], params: JSON, wrap: Callable[[JSON], JSON]) -> JSON:
    for field, cond in params.items():
        if isinstance(cond, dict) and field not in {"sort_by"}:
            for op, raw in cond.items():
                rows = [r for r in rows if _matches(r, field, op, str(raw))]
    if params.get("include_deleted") != "true":
        rows = [r for r in rows if not r.get("deleted")]
    limit = min(max(_int(params.get("limit", 10), "limit"), 1), 100)
    start = _int(params.get("offset") or 0, "offset")
    page = rows[start : start + limit]
    body: JSON = {"list": [wrap(r) for r in page]}
    if start + limit < len(rows):
        body["next_offset"] = str(start + limit)
    return body


class ChargebeeSandbox:
    """Runs the sandbox on 127.0.0.1 in a background thread: ``with ChargebeeSandbox() as sb: ...``."""

    def __init__(
        self,
        *,
        api_key: str = "test_chargebee_key",
        site: str = "trueup-test",
        port: int = 0,
        state_file: str | os.PathLike[str] | None = None,
    ) -> None:
        """``state_file``: keep the state there across restarts (loaded now when it exists)."""
        self.state = ChargebeeState(api_key, site)
        self.api_key, self.site = api_key, site
        self.state_file: StateFile | None = None
        if state_file:
            self.state_file = StateFile(
                state_file,
                {"state": self.state},
                lock=self.state.lock,
                exclude={"state": ("api_key", "site")},
            )
            self.state_file.load()
        handler = type("Handler", (_Handler,), {"sandbox": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> ChargebeeSandbox:
        if self.state_file is not None:
            self.state_file.start()
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="chargebee-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.state_file is not None:
            self.state_file.close()

    def __enter__(self) -> ChargebeeSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def admin(self, path: str, payload: JSON | None = None) -> Any:
        """Call a ``/_sandbox/...`` helper over HTTP (POST with a JSON body, or GET without one)."""
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(  # noqa: S310 - our own http://127.0.0.1 URL
            f"{self.url}/_sandbox/{path.lstrip('/')}", data=data, method="POST" if data else "GET"
        )
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{self.api_key}:".encode()).decode())
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    # --- routing -----------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, params: JSON, body: JSON, key: str | None
    ) -> tuple[int, JSON, dict]:
        st = self.state
        with st.lock:
            if path.startswith("/_sandbox/"):
                return self._admin(method, path.removeprefix("/_sandbox/"), body)
            st.requests.append({"method": method, "path": path, "idempotency_key": key, "at": time.time()})
            fault = next(
                (f for f in st.faults if path.startswith(f["path"]) and f.get("method", method) == method),
                None,
            )
            if fault is not None and fault.get("skip", 0) > 0:
                fault["skip"] -= 1  # let the first ``skip`` matching requests through
                fault = None
            elif fault is not None:
                fault["count"] -= 1
                if fault["count"] <= 0:
                    st.faults.remove(fault)
        if fault is not None:
            time.sleep(float(fault.get("delay", 0)))
            status = int(fault.get("status", 0))
            if status == 429:
                raise SandboxError(
                    429,
                    "Sorry, access has been blocked temporarily: too many requests.",
                    type_="api_request_limit_exceeded",
                    code="api_request_limit_exceeded",
                    headers={"Retry-After": str(fault.get("retry_after", 1))},
                )
            if status:
                raise SandboxError(
                    status, "Sorry, something went wrong.", type_="internal_error", code="internal_error"
                )
        with st.lock:
            if method != "POST" or not key:
                return 200, self._api(method, path, params), {}
            fingerprint = hashlib.sha256(json.dumps([path, params], sort_keys=True).encode()).hexdigest()
            if key in st.idempotency:
                stored_fp, status, stored = st.idempotency[key]
                if stored_fp != fingerprint:
                    raise SandboxError(
                        409,
                        "The idempotency key was already used with different parameters.",
                        code="invalid_request",
                        param=IDEMPOTENCY_HEADER,
                    )
                return status, stored, {"chargebee-idempotency-replayed": "true"}
            try:
                result = self._api(method, path, params)
            except SandboxError as err:
                if err.status < 500:
                    st.idempotency[key] = (fingerprint, err.status, err.body)
                raise
            st.idempotency[key] = (fingerprint, 200, result)
            return 200, result, {}

    def _api(self, method: str, path: str, p: JSON) -> JSON:
        st = self.state
        parts = path.strip("/").split("/")
        route = (method, parts[0], len(parts), parts[-1] if len(parts) > 2 else "")
        if route == ("POST", "customers", 1, ""):
            return st.create_customer(p)
        if route == ("POST", "customers", 3, "subscription_for_items"):
            return st.create_subscription(parts[1], p)
        if route == ("POST", "item_prices", 1, ""):
            return st.create_item_price(p)
        if route == ("POST", "subscriptions", 3, "usages"):
            return st.create_usage(parts[1], p)
        if route == ("POST", "invoices", 3, "close"):
            return st.close_invoice(parts[1])
        if route == ("POST", "invoices", 3, "add_charge"):
            return st.add_charge(parts[1], p)
        if (
            method == "POST"
            and parts[0] == "unbilled_charges"
            and parts[-1] in {"unbilled_charges", "create"}
        ):
            return st.create_unbilled_charges(p)
        if route == ("POST", "credit_notes", 1, ""):
            return st.create_credit_note(p)
        tables: dict[str, tuple[dict[str, JSON], str]] = {
            "customers": (st.customers, "customer"),
            "item_prices": (st.item_prices, "item_price"),
            "subscriptions": (st.subscriptions, "subscription"),
            "usages": (st.usages, "usage"),
            "invoices": (st.invoices, "invoice"),
            "unbilled_charges": (st.unbilled_charges, "unbilled_charge"),
            "credit_notes": (st.credit_notes, "credit_note"),
            "events": (st.events, "event"),
        }
        if method == "GET" and parts[0] in tables:
            table, kind = tables[parts[0]]
            views = {"invoice": st.view_invoice}
            view = views.get(kind, lambda obj: obj)
            if len(parts) == 2:
                found = view(st._get(table, parts[1], kind))
                extra = {"customer": st.customers[found["customer_id"]]} if kind == "subscription" else {}
                return {kind: found, **extra}
            if len(parts) == 1:

                def wrap(obj: JSON) -> JSON:
                    extra = {"customer": st.customers[obj["customer_id"]]} if kind == "subscription" else {}
                    return {kind: view(obj), **extra}

                return paginate(list(table.values()), p, wrap)
        raise SandboxError(
            404, f"Sorry, we couldn't find that resource: {method} {path}", code="resource_not_found"
        )

    def _admin(self, method: str, path: str, body: JSON) -> tuple[int, JSON, dict]:
        st = self.state
        if path == "reset":
            st.reset()
            return 200, {"ok": True}, {}
        if path == "seed":
            for row in body.get("customers", []):
                st.create_customer(row)
            for row in body.get("item_prices", []):
                st.create_item_price(row)
            for row in body.get("subscriptions", []):
                st.create_subscription(row["customer_id"], row)
            for row in body.get("usages", []):
                st.create_usage(row["subscription_id"], row)
            return 200, {"ok": True}, {}
        if path == "invoices":
            return 200, st.generate_invoice(body), {}
        if path == "faults":
            st.faults.append({"path": body["path"], "count": int(body.get("count", 1)), **body})
            if "method" not in body:
                st.faults[-1].pop("method", None)
            return 200, {"faults": st.faults}, {}
        if path == "clock":
            st.frozen_now = body.get("now")
            return 200, {"now": st.now()}, {}
        if path == "webhooks":
            st.webhook = dict(body)
            return 200, {"ok": True}, {}
        if path == "requests":
            return 200, {"requests": list(st.requests)}, {}
        if path == "usage_totals":
            total = st.usage_total(body["subscription_id"], body["item_price_id"], body["from"], body["to"])
            return 200, {"quantity": str(total)}, {}
        if path == "events":
            return 200, {"deliveries": self._deliver(body)}, {}
        raise SandboxError(404, f"unknown sandbox helper {path}", code="resource_not_found")

    def _deliver(self, body: JSON) -> list[JSON]:
        """POST events to the configured URL with its Basic credentials; runs with the lock released."""
        st = self.state
        events = [
            {
                "id": e.get("id") or st.next_id("ev_"),
                "occurred_at": e.get("occurred_at", st.now()),
                "source": "api",
                "object": "event",
                "api_version": "v2",
                "event_type": e["event_type"],
                "webhook_status": "scheduled",
                "content": e.get("content", {}),
            }
            for e in body.get("events", [])
        ]
        if body.get("pending"):
            events = [e for e in st.events.values() if e["id"] not in st.delivered] + events
            st.delivered.update(e["id"] for e in events)
        if body.get("duplicate"):
            events = [e for e in events for _ in (0, 1)]
        if body.get("reorder"):
            events.reverse()
        target = dict(st.webhook)
        st.lock.release()  # the receiver may call the sandbox back
        try:
            return [self._post_event(target, event) for event in events]
        finally:
            st.lock.acquire()

    @staticmethod
    def _post_event(target: JSON, event: JSON) -> JSON:
        request = urllib.request.Request(  # noqa: S310 - a URL the tester configured
            target["url"], data=json.dumps(event).encode(), method="POST"
        )
        credentials = f"{target.get('username', '')}:{target.get('password', '')}"
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return {"event_id": event["id"], "status": response.status}
        except urllib.error.HTTPError as err:
            return {"event_id": event["id"], "status": err.code}


class _Handler(BaseHTTPRequestHandler):
    sandbox: ChargebeeSandbox
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and the demo read stdout
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        try:
            if not self._authorized():
                raise SandboxError(
                    401,
                    "Sorry, authentication failed. Invalid api key",
                    type_="invalid_request",
                    code="api_authentication_failed",
                )
            path = split.path
            if path.startswith(API_PREFIX):
                path = path.removeprefix(API_PREFIX)
            elif not path.startswith("/_sandbox/"):
                raise SandboxError(404, "Sorry, we couldn't find that resource", code="resource_not_found")
            pairs = parse_qsl(split.query, keep_blank_values=True)
            body: JSON = {}
            if raw and "json" in (self.headers.get("Content-Type") or ""):
                body = json.loads(raw)
            elif raw:
                pairs += parse_qsl(raw, keep_blank_values=True)
            status, result, headers = self.sandbox.handle(
                method, path, parse_params(pairs), body, self.headers.get(IDEMPOTENCY_HEADER)
            )
        except SandboxError as err:
            status, result, headers = err.status, err.body, err.headers
        except (ValueError, KeyError, TypeError) as err:
            status, result, headers = 400, SandboxError(400, f"bad request: {err}").body, {}
        if method != "GET" and self.sandbox.state_file is not None:
            self.sandbox.state_file.changed()  # before answering: a clean stop then never loses it
        payload = json.dumps(result).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization") or ""
        if not header.startswith("Basic "):
            return False
        try:
            user = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        except ValueError:
            return False
        return user == self.sandbox.api_key


def main(argv: list[str] | None = None) -> None:
    """``python -m apps.providers.sandbox.chargebee_server --port 12112``: serve until Ctrl-C or SIGTERM."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=12112)
    parser.add_argument("--api-key", default="test_chargebee_key")
    parser.add_argument("--site", default="trueup-test")
    parser.add_argument("--state-file", default="", help="keep the state in this file across restarts")
    args = parser.parse_args(argv)
    sandbox = ChargebeeSandbox(
        api_key=args.api_key, site=args.site, port=args.port, state_file=args.state_file or None
    )
    print(f"Chargebee sandbox on {sandbox.url} (API {sandbox.url}/api/v2)", flush=True)
    print(f"site: {sandbox.site}  api key: {sandbox.api_key}  (HTTP Basic, key as user)", flush=True)
    if args.state_file:
        print(f"state kept in {args.state_file}", flush=True)
    sandbox.start()
    try:
        wait_for_stop_signal()
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
