"""With a broker, a CSV import runs as Celery tasks, one chunk per task, in a real worker over Redis."""

from __future__ import annotations

import socket
import time

import pytest

from apps.tenancy.context import tenant_context
from apps.usage import imports
from apps.usage.imports import import_job_create
from apps.usage.models import ImportJob, ImportStatus, UsageEvent
from apps.usage.tasks import import_job_step_task
from tests.usage.conftest import make_catalog


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not _redis_up(), reason="Redis is not reachable on 127.0.0.1:6379")
def test_a_worker_imports_the_file_chunk_by_chunk(tenant_a, tmp_path, monkeypatch):
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    monkeypatch.setattr(imports, "BATCH_ROWS", 50)
    monkeypatch.setattr(imports, "CHUNK_BATCHES", 2)
    make_catalog(tenant_a)
    path = tmp_path / "worker.csv"
    path.write_text(
        "event_id,account_id,meter,quantity,occurred_at\n"
        + "".join(f"w{n},acme,api_calls,{n},2026-10-01T00:00:00Z\n" for n in range(450))
    )
    with tenant_context(tenant_a):
        job = import_job_create(
            tenant=tenant_a,
            actor=None,
            source="command",
            filename="worker.csv",
            path=path,
            total_bytes=path.stat().st_size,
        )
    redis_app = Celery("trueup-test", set_as_current=False)
    redis_app.config_from_object("django.conf:settings", namespace="CELERY")
    redis_app.conf.update(
        broker_url="redis://127.0.0.1:6379/14",
        result_backend="redis://127.0.0.1:6379/14",
        task_always_eager=False,
    )
    with start_worker(redis_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        redis_app.send_task(import_job_step_task.name, args=[tenant_a.pk, job.pk]).get(timeout=60)
        # the first chunk queued the next one, and so on: wait for the last
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with tenant_context(tenant_a):
                if ImportJob.objects.get(pk=job.pk).finished:
                    break
            time.sleep(0.2)
    with tenant_context(tenant_a):
        job = ImportJob.objects.get(pk=job.pk)
        assert (job.status, job.rows_read, job.accepted) == (ImportStatus.DONE, 450, 450)
        assert job.batches.count() == 9, "one batch of 50 rows at a time"
        assert UsageEvent.objects.count() == 450
