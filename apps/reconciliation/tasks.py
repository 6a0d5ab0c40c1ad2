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
