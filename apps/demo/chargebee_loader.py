"""Play the Chargebee demo world: item prices, customers, subscriptions and usages through the
official chargebee SDK over HTTP, the sandbox's billing run at each account's month end (a pending
invoice, closed an hour later), a contract credit, and Trueup's events API for the usage itself."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import requests

from apps import pricing
from apps.accounts.models import Account, Provider
from apps.accounts.services import account_external_id_set
from apps.billing.models import ProviderConnection, UsagePushSettings
from apps.billing.services import connection_create, connection_update
from apps.catalog.models import Meter
from apps.catalog.services import ChargeSpec, override_create
from apps.demo.scenario import FIRST, MONTHS, Event, World
from apps.demo.stripe_loader import (
    PRICING,
    REPLAY_START,
    Say,
    catalogue_and_accounts,
    play,
)
from apps.providers.chargebee import ChargebeeProvider
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Tenant
from apps.tenancy.roles import Role
from apps.tenancy.services import apikey_create

CLOSE_AFTER = dt.timedelta(hours=1)  # the billing run leaves the invoice pending an hour, then closes it


def _item_price_id(plan: str, meter: str) -> str:
    return f"{plan}-{meter.replace('_', '-')}-usd"


class ChargebeeWorld:
    def __init__(self, world: World, url: str, api_key: str, site: str) -> None:
        self.world, self.url, self.api_key = world, url, api_key
        self.provider = ChargebeeProvider(api_key=api_key, site=site, base_url=url, allow_writes=True)
        self.cb = self.provider.cb
        self.invoices: dict[tuple[str, str], str] = {}  # (account, period) -> invoice id

    def admin(self, path: str, body: dict[str, Any]) -> Any:
        response = requests.post(
            f"{self.url}/_sandbox/{path}", json=body, auth=(self.api_key, ""), timeout=30
        )
        response.raise_for_status()
        return response.json()

    def clock(self, at: dt.datetime) -> None:
        self.admin("clock", {"now": int(at.timestamp())})

    def setup(self, catalogue: dict[str, Any]) -> dict[str, str]:
        """Item prices for each plan used; returns meter -> item price (for Trueup's connection)."""
        used = {c.plan for c in self.world.customers}
        mapping: dict[str, str] = {}
        for plan in catalogue["plans"]:
            if plan["key"] not in used:
                continue
            self.cb.ItemPrice.create(
                {
                    "id": _item_price_id(plan["key"], "base"),
                    "name": f"{plan['name']} base fee",
                    "item_id": f"{plan['key']}-base",
                    "pricing_model": "flat_fee",
                    "price": int(Decimal(plan["base_fee"]) * 100),
                    "currency_code": plan["currency"],
                }
            )
            for charge in plan["charges"]:
                self.cb.ItemPrice.create(self._item_price(plan, charge))
                mapping[charge["meter"]] = _item_price_id(plan["key"], charge["meter"])
        return mapping

    @staticmethod
    def _item_price(plan: dict[str, Any], charge: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {
            "id": _item_price_id(plan["key"], charge["meter"]),
            "name": f"{plan['name']} {charge['meter']}",
            "item_id": f"{plan['key']}-{charge['meter']}",
            "item_type": "addon",
            "currency_code": plan["currency"],
        }
        if charge["model"] == "per_unit":
            params.update(pricing_model="per_unit", price_in_decimal=charge["unit_amount"])
        elif charge["model"] == "package":
            params.update(
                pricing_model="package",
                package_size=int(charge["package_size"]),
                price=int(Decimal(charge["package_amount"]) * 100),
            )
        else:
            tiers, start = [], 1
            for tier in charge["tiers"]:
                row: dict[str, Any] = {"starting_unit": start, "price_in_decimal": tier["unit_amount"]}
                if tier["up_to"]:
                    row["ending_unit"] = int(tier["up_to"])
                    start = int(tier["up_to"]) + 1
                tiers.append(row)
            params.update(pricing_model="tiered" if charge["model"] == "graduated" else "volume", tiers=tiers)
        return params

    def subscribe(self, accounts: dict[str, Account], catalogue: dict[str, Any]) -> None:
        meters = {p["key"]: [ch["meter"] for ch in p["charges"]] for p in catalogue["plans"]}
        for customer in self.world.customers:
            self.cb.Customer.create(
                {
                    "id": customer.key,
                    "company": customer.name,
                    "email": f"billing@{customer.key}.test",
                    "preferred_currency_code": "USD",
                    "meta_data": json.dumps({"segment": customer.segment}),
                }
            )
            account_external_id_set(
                account=accounts[customer.key],
                provider=Provider.CHARGEBEE,
                external_id=customer.key,
                actor=None,
            )
            items = [{"item_price_id": _item_price_id(customer.plan, "base")}] + [
                {"item_price_id": _item_price_id(customer.plan, meter)} for meter in meters[customer.plan]
            ]
            self.cb.Subscription.create_with_items(
                customer.key,
                {
                    "id": f"sub-{customer.key}",
                    "subscription_items": items,
                    "start_date": int(customer.local(FIRST).timestamp()),
                },
            )

    def usage(self, event: Event) -> None:
        plan = self.world.customer(event.account).plan
        for copy in range(self.world.to_provider(event)):
            self.cb.Usage.create(
                f"sub-{event.account}",
                {
                    "id": event.event_id if copy == 0 else f"{event.event_id}-again{copy}",
                    "item_price_id": _item_price_id(plan, event.meter),
                    "quantity": str(event.quantity),
                    "usage_date": int(event.occurred_at.timestamp()),
                },
            )

    def bill(self, key: str, period: str, start: dt.datetime, end: dt.datetime) -> None:
        invoice = self.admin(
            "invoices",
            {
                "subscription_id": f"sub-{key}",
                "period_start": int(start.timestamp()),
                "period_end": int(end.timestamp()),
                "close": False,
            },
        )
        self.invoices[key, period] = invoice["invoice"]["id"]

    def close(self, key: str, period: str) -> None:
        self.cb.Invoice.close(self.invoices[key, period])

    def credit(self, key: str) -> None:
        from apps.providers.base import CreditNoteLine, CreditNoteRequest

        period, meter, amount, why = self.world.credits[key]
        self.provider.meters = {_item_price_id(self.world.customer(key).plan, meter): meter}
        self.provider.create_credit_note(
            CreditNoteRequest(
                invoice=self.invoices[key, period],
                reason="order_change",
                memo=why,
                lines=(CreditNoteLine(invoice_line=None, meter=meter, amount=amount),),
            ),
            idempotency_key=f"demo-credit-{key}-{period}",
        )


def _negotiated(world: World, accounts: dict[str, Account], catalogue: dict[str, Any]) -> None:
    """The contracts' negotiated prices, as RevOps records them in Trueup."""
    plans = {p["key"]: p for p in catalogue["plans"]}
    meters = {m.key: m for m in Meter.objects.all()}
    for key, (meter, index, price) in world.negotiated.items():
        customer = world.customer(key)
        charge = next(c for c in plans[customer.plan]["charges"] if c["meter"] == meter)
        tiers = [
            pricing.Tier(
                up_to=Decimal(t["up_to"]) if t["up_to"] else None,
                unit_amount=price if i == index else Decimal(t["unit_amount"]),
                flat_amount=Decimal(t.get("flat_amount") or 0),
            )
            for i, t in enumerate(charge["tiers"])
        ]
        override_create(
            actor=None,
            meter=meters[meter],
            account=accounts[key],
            spec=ChargeSpec(model=charge["model"], tiers=tuple(tiers)),
            effective_from=customer.local(FIRST),
            reason="Enterprise agreement: second tier at the committed rate",
            currency="USD",
        )


def replay_chargebee(
    tenant: Tenant, world: World, *, url: str, api_key: str, site: str, users: dict[str, Any], say: Say
) -> ProviderConnection:
    catalogue = json.loads(PRICING.read_text())
    side = ChargebeeWorld(world, url, api_key, site)
    side.clock(REPLAY_START)
    with tenant_context(tenant):
        accounts = catalogue_and_accounts(world, Provider.CHARGEBEE, users)
        _negotiated(world, accounts, catalogue)
        _, token = apikey_create(name="Usage pipeline (demo)", role=Role.REVOPS, actor=None)
        mapping = side.setup(catalogue)
        connection = connection_create(
            actor=None,
            provider="chargebee",
            name="Chargebee (sandbox)",
            base_url=url,
            site=site,
            credentials={"api_key": api_key},
        )
        connection = connection_update(actor=None, connection=connection, data={"allow_writes": True})
        UsagePushSettings.objects.create(connection=connection, item_prices=mapping)
        side.subscribe(accounts, catalogue)

    actions: dict[dt.datetime, list[Callable[[], None]]] = defaultdict(list)
    for customer in world.customers:
        for period in MONTHS:
            year, month = map(int, period.split("-"))
            start = customer.local(dt.date(year, month, 1))
            end = customer.local(dt.date(year + month // 12, month % 12 + 1, 1))
            actions[end].append(functools.partial(side.bill, customer.key, period, start, end))
            actions[end + CLOSE_AFTER].append(functools.partial(side.close, customer.key, period))
    for key, (period, *_rest) in world.credits.items():
        year, month = map(int, period.split("-"))
        actions[dt.datetime(year, month + 1, 6, 15, tzinfo=dt.UTC)].append(
            functools.partial(side.credit, key)
        )

    say(f"  replaying {len(world.events)} usage events over three months (events API and Chargebee)…")
    play(world, token, actions, clock=side.clock, forward=side.usage)
    return connection
