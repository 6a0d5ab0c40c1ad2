"""Create (or reuse) the demo tenants, one user per role, and their customers.

With the provider sandboxes running (``make run`` starts them and sets TRUEUP_STRIPE_SANDBOX_URL and
TRUEUP_CHARGEBEE_SANDBOX_URL), Northwind bills through Stripe and Globex through Chargebee: three
months of their usage, billing and faults are replayed through the real paths, synced and
reconciled (``apps.demo``). Without them, both get a static catalogue and customers.

Safe to run again: existing tenants, users, accounts and loaded worlds are kept, never duplicated.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.accounts.models import Account, Provider
from apps.accounts.services import account_create, account_external_id_set
from apps.catalog.models import Plan, SubscriptionPhase
from apps.catalog.services import catalog_import, phase_create
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Membership, Tenant
from apps.tenancy.roles import Role
from apps.tenancy.services import membership_add, tenant_create

DEMO_PRICING = Path(__file__).resolve().parents[2] / "demo" / "pricing.json"
CATALOG_SINCE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CHARGEBEE_SANDBOX_KEY, CHARGEBEE_SANDBOX_SITE = "test_chargebee_key", "trueup-test"  # the sandbox's defaults
DEMO_PASSWORD = "trueup-demo"  # noqa: S105 - printed for the local demo only

TENANTS = [
    ("northwind", "Northwind Cloud", "America/New_York"),
    ("globex", "Globex Analytics", "Europe/Berlin"),
]
# A third tenant loaded from an export bundle and reconciled: findings to explore on the first run.
BUNDLE_TENANT = ("initrode", "Initrode Data (export bundle)", "UTC")
DEMO_BUNDLE = Path(__file__).resolve().parents[2] / "demo" / "bundle-2026-10"

PEOPLE = [
    # email, name, role in northwind, role in globex (None = not a member)
    ("admin@northwind.test", "Ada Admin", Role.ADMIN, Role.ADMIN),
    ("approver@northwind.test", "Frank Approver", Role.FINANCE_APPROVER, Role.FINANCE_APPROVER),
    ("analyst@northwind.test", "Fiona Analyst", Role.FINANCE_ANALYST, Role.FINANCE_ANALYST),
    ("revops@northwind.test", "Rex RevOps", Role.REVOPS, Role.REVOPS),
    ("csm@northwind.test", "Cora CSM", Role.CSM, Role.CSM),
    ("viewer@northwind.test", "Vic Viewer", Role.VIEWER, Role.VIEWER),
    ("finance@globex.test", "Gina Globex", None, Role.FINANCE_APPROVER),
]

ACCOUNTS = {
    "northwind": [
        ("acme", "Acme Robotics", "enterprise", "America/New_York"),
        ("initech", "Initech", "enterprise", "America/Chicago"),
        ("umbrella", "Umbrella Health", "enterprise", "Europe/London"),
        ("hooli", "Hooli", "enterprise", "America/Los_Angeles"),
        ("stark", "Stark Logistics", "mid-market", "America/New_York"),
        ("wayne", "Wayne Analytics", "mid-market", "America/New_York"),
        ("tyrell", "Tyrell Genomics", "mid-market", "Asia/Tokyo"),
        ("soylent", "Soylent Foods", "mid-market", "Europe/Paris"),
        ("cyberdyne", "Cyberdyne Systems", "self-serve", "America/Denver"),
        ("gringotts", "Gringotts Payments", "self-serve", "Europe/London"),
        ("oscorp", "Oscorp Labs", "self-serve", "America/New_York"),
        ("wonka", "Wonka Media", "self-serve", "Europe/Zurich"),
    ],
    "globex": [
        ("massive", "Massive Dynamic", "enterprise", "America/New_York"),
        ("vandelay", "Vandelay Industries", "mid-market", "America/New_York"),
        ("pied-piper", "Pied Piper", "self-serve", "America/Los_Angeles"),
    ],
}


class Command(BaseCommand):
    help = "Create the demo tenants, one user per role and their customers (idempotent)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000/", help="Where the app is served (printed)."
        )
        parser.add_argument("--stripe-url", default=settings.STRIPE_SANDBOX_URL, help="Stripe sandbox URL")
        parser.add_argument(
            "--chargebee-url", default=settings.CHARGEBEE_SANDBOX_URL, help="Chargebee sandbox URL"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        users = {}
        for email, name, *_ in PEOPLE:
            user = User.objects.filter(email=email).first()
            if user is None:
                user = User.objects.create_user(email, DEMO_PASSWORD, full_name=name)
            users[email] = user
        worlds = {"northwind": options["stripe_url"], "globex": options["chargebee_url"]}
        for index, (slug, name, tz) in enumerate(TENANTS):
            with transaction.atomic():
                tenant = Tenant.objects.filter(slug=slug).first() or tenant_create(
                    slug=slug, name=name, default_timezone=tz
                )
                with tenant_context(tenant):
                    self._members(users, index)
                    if not worlds[slug]:
                        self._accounts(slug, users)
                        self._catalog()
            if worlds[slug]:
                self._provider_world(tenant, worlds[slug], users)
        self._bundle_tenant(users)
        self.stdout.write(self.style.SUCCESS(f"Demo ready. Sign in at {options['url']} with:"))
        for email, _name, role_a, role_b in PEOPLE:
            roles = " / ".join(sorted({str(r.label) for r in (role_a, role_b) if r}))
            self.stdout.write(f"  {email:28} password {DEMO_PASSWORD}   ({roles})")

    def _provider_world(self, tenant: Tenant, url: str, users: dict[str, Any]) -> None:
        """Replay the tenant's three months at its provider's sandbox, sync and reconcile them, once."""
        from apps.demo import loader, scenario
        from apps.providers.sandbox.stripe import DEFAULT_API_KEY

        people = {"csm": users["csm@northwind.test"]}
        self.stdout.write(f"{tenant.name}:")
        if tenant.slug == "northwind":
            loaded = loader.load_stripe_demo(
                tenant,
                scenario.stripe_world(),
                url=url,
                api_key=DEFAULT_API_KEY,
                users=people,
                say=self.stdout.write,
            )
        else:
            loaded = loader.load_chargebee_demo(
                tenant,
                scenario.chargebee_world(),
                url=url,
                api_key=CHARGEBEE_SANDBOX_KEY,
                site=CHARGEBEE_SANDBOX_SITE,
                users=people,
                say=self.stdout.write,
            )
        if not loaded:
            self.stdout.write("  already loaded: kept as it is (make reset starts over)")

    def _bundle_tenant(self, users: dict[str, Any]) -> None:
        """Load the example export bundle into its own tenant and reconcile October, once."""
        from apps.reconciliation import core
        from apps.reconciliation.bundle_import import bundle_import
        from apps.reconciliation.models import ReconciliationRun
        from apps.reconciliation.services import run_create

        slug, name, tz = BUNDLE_TENANT
        tenant = Tenant.objects.filter(slug=slug).first() or tenant_create(
            slug=slug, name=name, default_timezone=tz
        )
        with tenant_context(tenant):
            existing = set(Membership.objects.values_list("user_id", flat=True))
            for email, _name, role, _other in PEOPLE:
                if role and users[email].pk not in existing:
                    membership_add(user=users[email], role=role, actor=None)
            if ReconciliationRun.objects.exists():
                return
            bundle_import(path=DEMO_BUNDLE, month=core.Month.parse("2026-10"), actor=None)
            run_create(actor=None, period="2026-10", trigger=ReconciliationRun.Trigger.BUNDLE)

    def _catalog(self) -> None:
        """The demo price list, and each account on a plan by segment (enterprise on Scale, ...)."""
        if not Plan.objects.exists():
            catalog_import(
                actor=None, data=json.loads(DEMO_PRICING.read_text()), effective_from=CATALOG_SINCE
            )
        plans = {plan.key: plan for plan in Plan.objects.all()}
        subscribed = set(SubscriptionPhase.objects.values_list("account_id", flat=True))
        by_segment = {"enterprise": "scale", "mid-market": "growth", "self-serve": "starter"}
        for account in Account.objects.exclude(pk__in=subscribed):
            phase_create(
                actor=None,
                account=account,
                plan=plans[by_segment.get(account.segment, "growth")],
                starts_at=CATALOG_SINCE,
            )

    def _members(self, users: dict[str, Any], index: int) -> None:
        existing = set(Membership.objects.values_list("user_id", flat=True))
        for email, _name, *roles in PEOPLE:
            role = roles[index]
            if role and users[email].pk not in existing:
                membership_add(user=users[email], role=role, actor=None)

    def _accounts(self, slug: str, users: dict[str, Any]) -> None:
        existing = set(Account.objects.values_list("key", flat=True))
        csm = users["csm@northwind.test"] if slug == "northwind" else None
        for n, (key, name, segment, tz) in enumerate(ACCOUNTS[slug]):
            if key in existing:
                continue
            account = account_create(
                actor=None,
                key=key,
                name=name,
                segment=segment,
                timezone=tz,
                csm_owner=csm if segment != "self-serve" else None,
            )
            account_external_id_set(
                account=account,
                provider=Provider.STRIPE if slug == "northwind" else Provider.CHARGEBEE,
                external_id=f"cus_{slug[:2]}{n:04d}{key[:6]}",
                actor=None,
            )
