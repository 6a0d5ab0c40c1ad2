"""Background work of the usage app: CSV imports, one chunk per task."""

from __future__ import annotations

from django.db import transaction

from apps.tenancy.tasks import tenant_task
from apps.usage.imports import import_job_step
from apps.usage.models import ImportJob


@tenant_task()
def import_job_step_task(tenant_id: int, job_id: int) -> None:
    """Import the next chunk of a job, then queue the one after it (a worker that dies resumes here)."""
    job = ImportJob.objects.select_for_update().get(pk=job_id)
    if import_job_step(job=job):
        transaction.on_commit(lambda: import_job_step_task.delay(tenant_id, job_id))
