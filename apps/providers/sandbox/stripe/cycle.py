"""Time in the sandbox: a test clock that bills subscriptions as their periods end, and plan changes.

Like a Stripe test clock, advancing the clock walks through every moment on the way: each
subscription whose period ends is invoiced for that period (a draft with ``auto_advance`` on,
as Stripe's subscription cycle makes it) and moves on to the next period, and a draft with
``auto_advance`` finalizes an hour after it was created. The demo replays months this way.
"""

from __future__ import annotations

from .billing import StripeBilling
from .core import Obj, Params, StripeApiError, _int, _num, add_interval, price_amount

DRAFT_GRACE = 3600  # Stripe finalizes an auto-advancing draft about an hour after creating it


class StripeCycles(StripeBilling):
    def clock_advance(self, to: int) -> Obj:
        """Move the clock to ``to`` (never back), cycling subscriptions and finalizing drafts on the way.

        The first call creates the clock: it may start anywhere, in the past included."""
        if self.frozen_at is None:
            self.frozen_at = to
            return {"object": "test_helpers.test_clock", "frozen_time": to, "created": [], "finalized": []}
        if to < self.frozen_at:
            raise StripeApiError("A test clock only moves forward.", param="frozen_time")
        created: list[str] = []
        finalized: list[str] = []
        while True:
            moment, action = self._next_moment(to)
            if action is None:
                break
            self.frozen_at = moment
            if action[0] == "cycle":
                created.append(self._cycle(action[1]))
            else:
                self._refresh_usage(self.get("invoice", action[1]))
                self.invoice_finalize({}, action[1])
                finalized.append(action[1])
        self.frozen_at = to
        return {
            "object": "test_helpers.test_clock",
            "frozen_time": to,
            "created": created,
            "finalized": finalized,
        }

    def _next_moment(self, to: int) -> tuple[int, tuple[str, str] | None]:
        best: tuple[int, tuple[str, str] | None] = (to + 1, None)
        for sub in self.objects.get("subscription", {}).values():
            if sub["status"] != "active":
                continue
            end = min(
                self.get("subscription_item", si["id"])["current_period_end"] for si in sub["items"]["data"]
            )
            if end <= to and end < best[0]:
                best = (end, ("cycle", sub["id"]))
        for invoice in self.objects.get("invoice", {}).values():
            due = invoice["created"] + DRAFT_GRACE
            if invoice["status"] == "draft" and invoice["auto_advance"] and due <= to and due < best[0]:
                best = (due, ("finalize", invoice["id"]))
        return best

    def _cycle(self, sub_id: str) -> str:
        """Invoice the period that just ended, then roll every item to its next period."""
        sub = self.get("subscription", sub_id)
        invoice = self.invoice_create(
            {"customer": sub["customer"], "subscription": sub_id, "auto_advance": "true"}
        )
        for ref in sub["items"]["data"]:
            item = self.get("subscription_item", ref["id"])
            recurring = self.get("price", item["price"]["id"])["recurring"]
            item["current_period_start"] = item["current_period_end"]
            item["current_period_end"] = add_interval(
                item["current_period_start"], recurring["interval"], recurring["interval_count"]
            )
            ref.update(
                current_period_start=item["current_period_start"],
                current_period_end=item["current_period_end"],
            )
        sub["latest_invoice"] = invoice["id"]
        return str(invoice["id"])

    def _refresh_usage(self, invoice: Obj) -> None:
        """Usage that reached the meter before finalization counts, as it does at Stripe."""
        for line in invoice["_lines"]:
            details = line["parent"].get("subscription_item_details") or {}
            price_id = (line["pricing"].get("price_details") or {}).get("price")
            if not details or not price_id:
                continue
            price = self.get("price", price_id)
            meter = price["recurring"]["meter"] if price.get("recurring") else None
            if not meter:
                continue
            quantity = self.meter_total(
                meter, invoice["customer"], line["period"]["start"], line["period"]["end"]
            )
            line.update(quantity=_num(quantity), amount=price_amount(price, quantity))
            line["subtotal"] = line["amount"]
        self._totals(invoice)

    def subscription_update(self, params: Params, oid: str) -> Obj:
        """Change items' prices (a plan change). ``proration_behavior``: ``create_prorations`` (Stripe's
        default) adds proration invoice items for licensed prices; ``none`` bills the new price for the
        whole period, as Stripe does when told not to prorate."""
        sub = self.get("subscription", oid)
        behaviour = params.get("proration_behavior", "create_prorations")
        if behaviour not in ("create_prorations", "none", "always_invoice"):
            raise StripeApiError(f"Invalid proration_behavior: {behaviour}", param="proration_behavior")
        if behaviour == "always_invoice":
            raise StripeApiError("The sandbox does not support always_invoice.", param="proration_behavior")
        now = self.now()
        for i, change in enumerate(params.get("items") or []):
            item = self.get("subscription_item", change.get("id") or "")
            if item["subscription"] != oid:
                raise StripeApiError("That item belongs to another subscription.", param=f"items[{i}][id]")
            if not change.get("price"):
                continue
            old, new = self.get("price", item["price"]["id"]), self.get("price", change["price"])
            if new["type"] != "recurring" or new["currency"] != old["currency"]:
                raise StripeApiError(
                    "Swap to a recurring price in the same currency.", param=f"items[{i}][price]"
                )
            if behaviour == "create_prorations" and old["recurring"]["usage_type"] == "licensed":
                self._prorate(sub, item, old, new, now)
            item["price"] = self._price_out(new, {})
            for ref in sub["items"]["data"]:
                if ref["id"] == item["id"]:
                    ref["price"] = item["price"]
        sub["metadata"].update(params.get("metadata") or {})
        self.emit("customer.subscription.updated", sub)
        return self.public(sub)

    def _prorate(self, sub: Obj, item: Obj, old: Obj, new: Obj, now: int) -> None:
        start, end = item["current_period_start"], item["current_period_end"]
        quantity = int(item["quantity"] or 1)
        for price, sign, label in ((old, -1, "Unused time on"), (new, 1, "Remaining time on")):
            unit = int(price["unit_amount"] or 0)
            amount = round(sign * unit * quantity * (end - now) / (end - start))
            self.invoiceitem_create(
                {
                    "customer": sub["customer"],
                    "amount": str(amount),
                    "currency": price["currency"],
                    "description": f"{label} {price['id']} after {now}",
                    "subscription": sub["id"],
                    "period": {"start": str(now), "end": str(end)},
                }
            )


def clock_params(body: Obj) -> int:
    return _int(body.get("frozen_time"), "frozen_time")
