from __future__ import annotations

from celery import shared_task

from apps.common.request_id import reset_request_id, set_request_id


@shared_task(acks_late=True, max_retries=0)
def reconcile_run(tenant_id: int, run_id: int) -> str:
    """Reconcile one queued run. Each step commits on its own, so progress shows while it works."""
    from apps.reconciliation.services import execute_run

    token = set_request_id(f"run-{run_id}-{tenant_id}")
    try:
        return execute_run(tenant_id, run_id).status
    finally:
        reset_request_id(token)


@shared_task(acks_late=True, max_retries=0)
def reconcile_run_chunk(tenant_id: int, run_id: int, account_ids: list[int]) -> None:
    """Reconcile one chunk of a large run's accounts; the last chunk to finish merges the run."""
    from apps.reconciliation.services import reconcile_chunk

    token = set_request_id(f"run-{run_id}-{tenant_id}")
    try:
        reconcile_chunk(tenant_id, run_id, account_ids)
    finally:
        reset_request_id(token)


@shared_task
def reconcile_last_month(period: str | None = None) -> int:
    """For every tenant, reconcile last month (or ``period``): the run a django-celery-beat schedule starts.

    Tenants are listed without a tenant context (the tenant table is not tenant data);
    each run is created inside its own tenant's context.
    """
    from django.utils import timezone

    from apps.reconciliation.core import Month
    from apps.reconciliation.services import run_create
    from apps.tenancy.context import tenant_context
    from apps.tenancy.models import Tenant

    if period is None:
        today = timezone.now().date()
        period = str(Month(today.year, today.month).previous())
    started = 0
    for tenant_id in Tenant.objects.values_list("pk", flat=True):
        with tenant_context(tenant_id):
            run_create(actor=None, period=period, trigger="schedule")
        started += 1
    return started


@shared_task
def run_due_schedules(now: str | None = None) -> int:
    """The hourly beat: start every tenant's scheduled runs that are due (each at most once per period).

    ``now`` (ISO 8601, aware) replays a given moment; the default is the current time.
    """
    import datetime as dt

    from django.utils import timezone

    from apps.reconciliation.settings_services import schedules_run_due

    moment = dt.datetime.fromisoformat(now) if now else timezone.now()
    if timezone.is_naive(moment):
        raise ValueError(f"run_due_schedules needs an aware time, not {now!r}")
    token = set_request_id(f"schedule-{moment:%Y%m%d%H}")
    try:
        return schedules_run_due(now=moment)
    finally:
        reset_request_id(token)
