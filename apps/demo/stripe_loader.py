"""Play the Stripe demo world through the real paths: the Stripe sandbox over HTTP with the official
SDK (as the tenant's billing does), Trueup's events API (as the tenant's pipeline does), then
Trueup's own sync and reconciliation.

Time is replayed: the sandbox's test clock and Trueup's replay clock move together, three hours
at a time, so events arrive, invoices are cut and finalized, and late usage is late, as it was.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests
import stripe
from django.test import Client

from apps.accounts.models import Account, Provider
from apps.accounts.services import account_create, account_external_id_set
from apps.billing.models import ProviderConnection
from apps.billing.services import connection_create, connection_update
from apps.catalog.models import Plan
from apps.catalog.services import catalog_import, phase_create
from apps.common import clock
from apps.demo.scenario import FIRST, Event, World
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Tenant
from apps.tenancy.roles import Role
from apps.tenancy.services import apikey_create

PRICING = Path(__file__).resolve().parent / "pricing.json"
CATALOG_SINCE = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
REPLAY_START = dt.datetime(2026, 7, 31, tzinfo=dt.UTC)  # before any account's local August begins
REPLAY_END = dt.datetime(2026, 11, 4, 12, tzinfo=dt.UTC)  # October's invoices finalized, late usage in
BATCH = 2000
Say = Callable[[str], None]


def catalogue_and_accounts(world: World, provider: str, users: dict[str, Any]) -> dict[str, Account]:
    """In the tenant in context: the price list, the customers and their subscriptions as the contract
    records them (RevOps entered the mid-month plan changes in Trueup)."""
    if not Plan.objects.exists():
        catalog_import(actor=None, data=json.loads(PRICING.read_text()), effective_from=CATALOG_SINCE)
    plans = {plan.key: plan for plan in Plan.objects.all()}
    existing = {a.key: a for a in Account.objects.all()}
    accounts: dict[str, Account] = {}
    for customer in world.customers:
        account = existing.get(customer.key)
        if account is None:
            account = account_create(
                actor=None,
                key=customer.key,
                name=customer.name,
                segment=customer.segment,
                timezone=customer.timezone,
                csm_owner=users.get("csm") if customer.segment != "self-serve" else None,
            )
            start = customer.local(FIRST)
            change = world.plan_change.get(customer.key)
            if change:
                at = customer.local(change[1])
                phase_create(
                    actor=None, account=account, plan=plans[customer.plan], starts_at=start, ends_at=at
                )
                phase_create(actor=None, account=account, plan=plans[change[0]], starts_at=at)
            else:
                phase_create(actor=None, account=account, plan=plans[customer.plan], starts_at=start)
        accounts[customer.key] = account
    return accounts


def send_events(token: str, events: list[Event], at: dt.datetime) -> None:
    """Post the events to Trueup's events API, in-process, with the server's clock at ``at``."""
    client = Client()
    for i in range(0, len(events), BATCH):
        body = [
            {
                "event_id": e.event_id,
                "account_id": e.account,
                "meter": e.meter,
                "quantity": str(e.quantity),
                "occurred_at": e.occurred_at.isoformat(),
            }
            for e in events[i : i + BATCH]
        ]
        with clock.replaying(at):
            response = client.post(
                "/api/v1/events",
                data=json.dumps(body),
                content_type="application/json",
                headers={"authorization": f"Bearer {token}"},
            )
        summary = response.json().get("summary", {}) if response.status_code == 200 else {}
        if response.status_code != 200 or summary.get("rejected"):
            raise RuntimeError(
                f"the events API refused the demo's usage: {response.status_code} {response.content[:500]!r}"
            )


def play(
    world: World,
    token: str,
    actions: dict[dt.datetime, list[Callable[[], None]]],
    *,
    clock: Callable[[dt.datetime], None],
    forward: Callable[[Event], None],
) -> None:
    """Walk the timeline: at each moment move the provider's clock, do what is due there, and ship
    that moment's usage to Trueup's events API and (``forward``, in parallel) to the provider."""
    moments: dict[dt.datetime, list[Event]] = defaultdict(list)
    for event in world.events:
        moments[world.send_time(event)].append(event)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for at in sorted(set(moments) | set(actions)):
            clock(at)
            for action in actions.get(at, []):
                action()
            batch = moments.get(at, [])
            if batch:
                send_events(token, batch, at)
                list(pool.map(forward, batch))
    clock(REPLAY_END)


class StripeWorld:
    """The tenant's Stripe account: prices mirroring the catalogue (one of them wrong), customers,
    subscriptions, meter events from the pipeline, a plan change, a negotiated credit."""

    def __init__(self, world: World, url: str, api_key: str) -> None:
        self.world, self.url = world, url
        self.client = stripe.StripeClient(api_key, base_addresses={"api": url, "meter_events": url})
        self.customers: dict[str, str] = {}
        self.subs: dict[str, str] = {}
        self.prices: dict[tuple[str, str], str] = {}  # (plan, meter or "base") -> price id

    def clock(self, at: dt.datetime) -> None:
        response = requests.post(
            f"{self.url}/_sandbox/clock", json={"frozen_time": int(at.timestamp())}, timeout=30
        )
        response.raise_for_status()

    def setup(self, catalogue: dict[str, Any]) -> None:
        c = self.client.v1
        for meter in catalogue["meters"]:
            c.billing.meters.create(
                params={
                    "display_name": meter["name"],
                    "event_name": meter["key"],
                    "default_aggregation": {"formula": "sum"},
                }
            )
        product = c.products.create(params={"name": "Northwind Cloud"})
        for plan in catalogue["plans"]:
            fee = int(Decimal(plan["base_fee"]) * 100)
            self.prices[plan["key"], "base"] = c.prices.create(
                params={
                    "currency": "usd",
                    "product": product.id,
                    "unit_amount": fee,
                    "recurring": {"interval": "month"},
                    "nickname": f"{plan['name']} base fee",
                }
            ).id
            for charge in plan["charges"]:
                self.prices[plan["key"], charge["meter"]] = self._price(product.id, plan, charge).id
        plans = {plan["key"]: plan for plan in catalogue["plans"]}
        for key, meter in self.world.wrong_tier.items():  # one customer on an old price nobody updated
            plan = plans[self.world.customer(key).plan]
            charge = next(ch for ch in plan["charges"] if ch["meter"] == meter)
            wrong = dict(charge, tiers=[dict(t) for t in charge["tiers"]])
            wrong["tiers"][1]["unit_amount"] = str(
                Decimal(wrong["tiers"][1]["unit_amount"]) * Decimal("1.125")
            )
            self.prices[f"{plan['key']}:{key}", meter] = self._price(product.id, plan, wrong, legacy=True).id

    def _price(self, product: str, plan: dict[str, Any], charge: dict[str, Any], legacy: bool = False) -> Any:
        meter = next(m for m in self.client.v1.billing.meters.list().data if m.event_name == charge["meter"])
        params: Any = {
            "currency": "usd",
            "product": product,
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
            "nickname": f"{plan['name']} {charge['meter']}" + (" (2025 list, not updated)" if legacy else ""),
        }
        cents = lambda v: str(Decimal(v) * 100).rstrip("0").rstrip(".")  # noqa: E731
        if charge["model"] == "per_unit":
            params["unit_amount_decimal"] = cents(charge["unit_amount"])
        elif charge["model"] == "package":
            params["unit_amount"] = int(Decimal(charge["package_amount"]) * 100)
            params["transform_quantity"] = {"divide_by": int(charge["package_size"]), "round": "up"}
        else:
            params["billing_scheme"] = "tiered"
            params["tiers_mode"] = charge["model"]
            params["tiers"] = [
                {
                    "up_to": int(t["up_to"]) if t["up_to"] else "inf",
                    "unit_amount_decimal": cents(t["unit_amount"]),
                    **({"flat_amount": int(Decimal(t["flat_amount"]) * 100)} if t.get("flat_amount") else {}),
                }
                for t in charge["tiers"]
            ]
        return self.client.v1.prices.create(params=params)

    def subscribe(self, accounts: dict[str, Account], catalogue: dict[str, Any]) -> None:
        meters = {p["key"]: [ch["meter"] for ch in p["charges"]] for p in catalogue["plans"]}
        for customer in self.world.customers:
            cus = self.client.v1.customers.create(
                params={
                    "name": customer.name,
                    "email": f"billing@{customer.key}.test",
                    "metadata": {"segment": customer.segment},
                }
            )
            self.customers[customer.key] = cus.id
            account_external_id_set(
                account=accounts[customer.key], provider=Provider.STRIPE, external_id=cus.id, actor=None
            )
            items: Any = [{"price": self.prices[customer.plan, "base"]}]
            for meter in meters[customer.plan]:
                legacy = self.prices.get((f"{customer.plan}:{customer.key}", meter))
                items.append({"price": legacy or self.prices[customer.plan, meter]})
            sub = self.client.v1.subscriptions.create(
                params={
                    "customer": cus.id,
                    "items": items,
                    "backdate_start_date": int(customer.local(FIRST).timestamp()),
                }
            )
            self.subs[customer.key] = sub.id

    def meter(self, event: Event) -> None:
        for copy in range(self.world.to_provider(event)):
            self.client.v1.billing.meter_events.create(
                params={
                    "event_name": event.meter,
                    "identifier": event.event_id if copy == 0 else f"{event.event_id}-retry{copy}",
                    "timestamp": int(event.occurred_at.timestamp()),
                    "payload": {
                        "stripe_customer_id": self.customers[event.account],
                        "value": str(event.quantity),
                    },
                }
            )

    def change_plan(self, key: str, plan: str) -> None:
        sub = self.client.v1.subscriptions.retrieve(self.subs[key])
        by_price = {v: k for k, v in self.prices.items()}
        items: Any = [
            {"id": it.id, "price": self.prices[plan, by_price[it.price.id][1]]} for it in sub["items"].data
        ]
        self.client.v1.subscriptions.update(sub.id, params={"items": items, "proration_behavior": "none"})

    def credit(self, key: str) -> None:
        period, meter, amount, why = self.world.credits[key]
        customer = self.world.customer(key)
        year, month = map(int, period.split("-"))
        start = int(customer.local(dt.date(year, month, 1)).timestamp())
        invoice = next(
            i
            for i in self.client.v1.invoices.list(params={"customer": self.customers[key], "limit": 100}).data
            if i.period_start == start
        )
        line = next(
            ln
            for ln in self.client.v1.invoices.line_items.list(invoice.id, params={"limit": 100}).data
            if ln.pricing is not None
            and ln.pricing.price_details is not None
            and ln.pricing.price_details.price == self.prices[customer.plan, meter]
        )
        self.client.v1.credit_notes.create(
            params={
                "invoice": invoice.id,
                "reason": "order_change",
                "memo": why,
                "lines": [
                    {"type": "invoice_line_item", "invoice_line_item": line.id, "amount": int(amount * 100)}
                ],
            }
        )


def replay_stripe(
    tenant: Tenant, world: World, *, url: str, api_key: str, users: dict[str, Any], say: Say
) -> ProviderConnection:
    """Load the world into ``tenant`` and its Stripe sandbox; returns the (writable) connection."""
    catalogue = json.loads(PRICING.read_text())
    with tenant_context(tenant):
        accounts = catalogue_and_accounts(world, Provider.STRIPE, users)
        _, token = apikey_create(name="Usage pipeline (demo)", role=Role.REVOPS, actor=None)
        connection = connection_create(
            actor=None,
            provider="stripe",
            name="Stripe (sandbox)",
            base_url=url,
            credentials={"api_key": api_key, "webhook_secret": "whsec_trueup_sandbox"},
        )
        connection = connection_update(actor=None, connection=connection, data={"allow_writes": True})
    stripe_side = StripeWorld(world, url, api_key)
    stripe_side.clock(REPLAY_START)
    with tenant_context(tenant):
        stripe_side.setup(catalogue)
        stripe_side.subscribe(accounts, catalogue)

    actions: dict[dt.datetime, list[Callable[[], None]]] = defaultdict(list)
    for key, (plan, day) in world.plan_change.items():
        actions[world.customer(key).local(day)].append(functools.partial(stripe_side.change_plan, key, plan))
    for key, (period, *_rest) in world.credits.items():
        year, month = map(int, period.split("-"))
        when = dt.datetime(year, month + 1, 5, 15, tzinfo=dt.UTC)
        actions[when].append(functools.partial(stripe_side.credit, key))
    logging.getLogger("stripe").setLevel(logging.WARNING)
    say(f"  replaying {len(world.events)} usage events over three months through the events API and Stripe…")
    play(world, token, actions, clock=stripe_side.clock, forward=stripe_side.meter)
    return connection
