from __future__ import annotations

from celery import Task, shared_task

from apps.billing.models import WebhookEvent
from apps.tenancy.tasks import tenant_task


@tenant_task(autoretry_for=(ConnectionError, TimeoutError))
def process_webhook_event(tenant_id: int, event_pk: int) -> str:
    """Handle one stored provider event (re-fetching what it names); safe to run twice."""
    from apps.billing.sync import handle_webhook_event

    event = WebhookEvent.objects.select_related("connection").get(pk=event_pk)
    if event.status == WebhookEvent.Status.PROCESSED:
        return event.status
    return handle_webhook_event(event)


@shared_task(bind=True, acks_late=True, max_retries=30)
def sync_connection_task(
    self: Task, tenant_id: int, connection_id: int, full: bool = False
) -> dict[str, int]:
    """Sync a connection; when the tenant is already syncing, try again in a minute.

    Not a tenant_task: each page commits on its own (its checkpoint with it), so a crash
    resumes from the last stored page instead of redoing the whole sync.
    """
    from apps.billing.sync import SyncBusy, sync_connection

    try:
        return dict(sync_connection(tenant_id, connection_id, full=full).counts)
    except SyncBusy as exc:
        raise self.retry(countdown=60, exc=exc) from exc


@shared_task(acks_late=True)
def push_usage_task(tenant_id: int, connection_id: int) -> dict[str, int]:
    """Push a connection's due usage rows; go on while more are due, come back for the retries.

    Not a tenant_task: each batch is taken and settled in its own transaction, and the
    provider is called outside any, so a crash loses at most one batch's lease (its rows
    come back; the provider de-duplicates them by event id).
    """
    from apps.billing.push import push_due

    report = push_due(tenant_id, connection_id)
    if report.more:
        push_usage_task.delay(tenant_id, connection_id)
    elif report.next_retry_at is not None and not push_usage_task.app.conf.task_always_eager:
        # Eagerly (no broker) a countdown would run at once; the sweep picks retries up instead.
        from django.utils import timezone

        wait = max(1.0, (report.next_retry_at - timezone.now()).total_seconds())
        push_usage_task.apply_async((tenant_id, connection_id), countdown=wait)
    return {"sent": report.sent, "retried": report.retried, "dead": report.dead}


@shared_task
def push_usage_sweep() -> int:
    """Periodic (beat): push every connection with rows due (retries whose time has come, lost tasks)."""
    from apps.billing.push import due_connections

    due = due_connections()
    for tenant_id, connection_id in due:
        push_usage_task.delay(tenant_id, connection_id)
    return len(due)
