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
