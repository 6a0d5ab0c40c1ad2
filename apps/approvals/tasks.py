from __future__ import annotations

from celery import Task, shared_task

from apps.providers.base import ProviderError


@shared_task(bind=True, acks_late=True, max_retries=20)
def deliver_outbox_message(self: Task, tenant_id: int, message_id: int) -> str:
    """Send an approved action; provider failures retry with backoff (the same idempotency key each time)."""
    from apps.approvals.services import deliver

    try:
        return deliver(tenant_id, message_id).status
    except ProviderError as exc:
        if getattr(self.request, "is_eager", False):
            raise
        countdown = exc.retry_after or min(3600, 30 * 2**self.request.retries)
        raise self.retry(countdown=countdown, exc=exc) from exc


@shared_task
def sweep_outbox() -> int:
    """Periodic (beat): send every approved action that is due, so a failure is retried until it
    succeeds or a person cancels it, whatever happened to its first task."""
    from apps.approvals.services import due_messages

    due = due_messages()
    for tenant_id, message_id in due:
        deliver_outbox_message.delay(tenant_id, message_id)
    return len(due)
