"""Bring a demo tenant up to date: replay its provider world, sync through the real adapter,
then reconcile each month in order (the watch-list of one month clears or escalates in the next)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from apps.billing.models import ProviderConnection
from apps.billing.sync import sync_connection
from apps.demo.chargebee_loader import replay_chargebee
from apps.demo.scenario import MONTHS, World
from apps.demo.stripe_loader import Say, replay_stripe
from apps.reconciliation.models import Discrepancy, ReconciliationRun, ReconciliationSchedule
from apps.reconciliation.services import run_create
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Tenant

RUN_TIMEOUT = 300


def load_stripe_demo(
    tenant: Tenant, world: World, *, url: str, api_key: str, users: dict[str, Any], say: Say
) -> bool:
    """Load once: a tenant that already has its connection is left as it is (returns False)."""
    return _load(
        tenant, lambda: replay_stripe(tenant, world, url=url, api_key=api_key, users=users, say=say), say
    )


def load_chargebee_demo(
    tenant: Tenant, world: World, *, url: str, api_key: str, site: str, users: dict[str, Any], say: Say
) -> bool:
    return _load(
        tenant,
        lambda: replay_chargebee(tenant, world, url=url, api_key=api_key, site=site, users=users, say=say),
        say,
    )


def _load(tenant: Tenant, replay: Callable[[], ProviderConnection], say: Say) -> bool:
    with tenant_context(tenant):
        if ProviderConnection.objects.exists():
            return False
    started = time.monotonic()
    connection = replay()
    say(f"  synced from {connection.get_provider_display()}: {_sync(tenant, connection)}")
    reconcile_months(tenant, say)
    say(f"  {tenant.name} ready in {time.monotonic() - started:.0f} s")
    return True


def _sync(tenant: Tenant, connection: ProviderConnection) -> str:
    report = sync_connection(tenant.pk, connection.pk, full=True)
    counts = {k: v for k, v in report.counts.items() if v}
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))


def reconcile_months(tenant: Tenant, say: Say) -> None:
    for month in MONTHS:
        with tenant_context(tenant):
            run = run_create(actor=None, period=month, trigger=ReconciliationRun.Trigger.SCHEDULE)
        run = _wait(tenant, run.pk)
        with tenant_context(tenant):
            findings = Discrepancy.objects.filter(period=month).count()
        say(f"  reconciled {month}: {findings} findings")
    with tenant_context(tenant):  # the schedule has done October: beat starts November's run in December
        ReconciliationSchedule.objects.update_or_create(defaults={"last_monthly_period": MONTHS[-1]})


def _wait(tenant: Tenant, run_id: int) -> ReconciliationRun:
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        with tenant_context(tenant):
            run = ReconciliationRun.objects.get(pk=run_id)
        if run.status in (ReconciliationRun.Status.SUCCEEDED, ReconciliationRun.Status.FAILED):
            if run.status == ReconciliationRun.Status.FAILED:
                raise RuntimeError(f"reconciling {run.period} failed: {run.error}")
            return run
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"reconciling {run.period} did not finish in {RUN_TIMEOUT} s (is the worker up?)"
            )
        time.sleep(0.3)
