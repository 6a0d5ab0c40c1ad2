"""CSV imports of usage events: streamed, chunked, resumable, with a downloadable error report.

A file is read a chunk at a time from where the previous chunk stopped (``bytes_read``),
so a file of millions of rows never sits in memory, and each chunk commits its events,
its errors and the job's progress together: a page polling the job sees it advance, and a
crashed worker resumes at the last committed chunk (the events are idempotent anyway).

How the chunks run: with a Celery broker, each chunk is a task that queues the next one;
without one (the embedded start) a background thread runs them, so the upload returns at
once and the progress bar moves. The management command runs them in the foreground.
"""

from __future__ import annotations

import csv
import logging
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Final

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import close_old_connections, connection, connections, transaction
from django.utils import timezone

from apps.audit.services import Actor, audit_record
from apps.common.services import model_create
from apps.tenancy.context import tenant_context
from apps.tenancy.models import ApiKey, Tenant
from apps.usage.ingest import EventError, Row, csv_header, csv_rows
from apps.usage.models import EventSource, ImportJob, ImportRowError, ImportStatus
from apps.usage.services import rows_ingest
from apps.users.models import User

logger = logging.getLogger(__name__)

BATCH_ROWS: Final = 10_000
"""Rows stored per batch (one INSERT); a chunk is a few batches in one transaction."""
CHUNK_BATCHES: Final = 5
COPY_BUFFER: Final = 1 << 20
csv.field_size_limit(1 << 20)


def imports_dir(tenant_id: int) -> Path:
    root = Path(getattr(settings, "USAGE_IMPORTS_DIR", Path(settings.MEDIA_ROOT) / "usage-imports"))
    path = root / str(tenant_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _new_path(tenant: Tenant) -> Path:
    return imports_dir(tenant.pk) / f"{timezone.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:12]}.csv"


def import_job_create(
    *, tenant: Tenant, actor: Actor, source: str, filename: str, path: Path, total_bytes: int
) -> ImportJob:
    job = ImportJob(
        source=source,
        filename=filename[:255],
        path=str(path),
        total_bytes=total_bytes,
        created_by=actor if isinstance(actor, User) else None,
        api_key=actor if isinstance(actor, ApiKey) else None,
    )
    return model_create(instance=job, actor=actor, action="usage.import.create")


@transaction.atomic
def import_upload(*, tenant: Tenant, actor: Actor, upload: UploadedFile, source: str = "ui") -> ImportJob:
    """Keep an uploaded file (Django already streamed it to disk when large) and queue its import."""
    path = _new_path(tenant)
    temporary = getattr(upload, "temporary_file_path", None)
    if temporary is not None:
        shutil.move(temporary(), path)
    else:
        with path.open("wb") as out:
            for chunk in upload.chunks(COPY_BUFFER):
                out.write(chunk)
    job = import_job_create(
        tenant=tenant,
        actor=actor,
        source=source,
        filename=upload.name or path.name,
        path=path,
        total_bytes=path.stat().st_size,
    )
    import_job_start(job)
    return job


@transaction.atomic
def import_stream(
    *, tenant: Tenant, actor: Actor, stream: IO[bytes], filename: str, source: str
) -> ImportJob:
    """Keep a request body (read a MiB at a time) and queue its import."""
    path = _new_path(tenant)
    with path.open("wb") as out:
        shutil.copyfileobj(stream, out, COPY_BUFFER)
    job = import_job_create(
        tenant=tenant,
        actor=actor,
        source=source,
        filename=filename,
        path=path,
        total_bytes=path.stat().st_size,
    )
    import_job_start(job)
    return job


def import_job_start(job: ImportJob) -> None:
    """Run the job once the transaction that created it has committed."""
    tenant_id, job_id = job.tenant_id, job.pk

    def start() -> None:
        from apps.config.celery import app
        from apps.usage.tasks import import_job_step_task

        if getattr(settings, "USAGE_IMPORTS_INLINE", False):
            import_job_run(tenant_id, job_id)
        elif app.conf.task_always_eager:
            threading.Thread(
                target=_run_in_thread, args=(tenant_id, job_id), name=f"usage-import-{job_id}", daemon=True
            ).start()
        else:
            import_job_step_task.delay(tenant_id, job_id)

    transaction.on_commit(start)


def _run_in_thread(tenant_id: int, job_id: int) -> None:
    try:
        import_job_run(tenant_id, job_id)
    except Exception:
        logger.exception("usage import %s stopped", job_id)
    finally:
        connections.close_all()  # this thread's connections only


def import_job_run(
    tenant_id: int, job_id: int, *, on_progress: Callable[[ImportJob], None] | None = None
) -> ImportJob:
    """Run a job's chunks until it is done or failed, each chunk in its own tenant transaction."""
    while True:
        if not connection.in_atomic_block:  # a long run in a thread or command: drop a stale connection
            close_old_connections()
        with tenant_context(tenant_id):
            job = ImportJob.objects.select_for_update().get(pk=job_id)
            more = import_job_step(job=job)
        if on_progress is not None:
            on_progress(job)
        if not more:
            return job


def import_job_step(*, job: ImportJob) -> bool:
    """Import the next chunk of ``job`` (inside the caller's tenant transaction); True while more remains.

    A failure rolls the chunk back and marks the job failed, with the reason.
    """
    if job.finished:
        return False
    if job.status == ImportStatus.PENDING:
        job.status = ImportStatus.RUNNING
        job.started_at = timezone.now()
    try:
        with transaction.atomic():
            more = _read_chunk(job)
    except Exception as exc:
        # The chunk was rolled back; what committed before it stays, and the job says why it stopped.
        started_at = job.started_at
        job.refresh_from_db()
        job.started_at = job.started_at or started_at
        job.status = ImportStatus.FAILED
        job.finished_at = timezone.now()
        if isinstance(exc, BadFile):
            job.error = str(exc)[:500]
            ImportRowError.objects.create(
                job=job, line=exc.line, field=exc.field, code="invalid", reason=job.error
            )
        else:
            logger.exception("usage import %s failed after line %s", job.pk, job.lines_read)
            reason = f"The import stopped after line {job.lines_read}: {exc.__class__.__name__}: {exc}"
            job.error = reason[:500]
        job.save(update_fields=["status", "error", "finished_at", "started_at"])
        return False
    if not more:
        job.status = ImportStatus.DONE
        job.finished_at = timezone.now()
    job.save()
    if not more:
        if job.source != "command":  # our copy of an upload; a command's file is the user's own
            path = Path(job.path)
            transaction.on_commit(lambda: path.unlink(missing_ok=True))
        audit_record(
            actor=job.created_by or job.api_key,
            action="usage.import.finish",
            target=job,
            after={
                name: getattr(job, name)
                for name in ("rows_read", "accepted", "duplicates", "conflicts", "rejected")
            },
        )
    return more


class BadFile(ValueError):
    """The file cannot be imported at all (its header), as opposed to some bad rows."""

    def __init__(self, line: int, field: str, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.field = field


class _Lines:
    """A binary file's lines as text, counting the bytes and lines taken (for resuming exactly there)."""

    def __init__(self, file: IO[bytes], first_line: int) -> None:
        self.file = file
        self.bytes = 0
        self.line = first_line
        self.undecodable: list[int] = []

    def __iter__(self) -> Iterator[str]:
        for raw in self.file:
            self.bytes += len(raw)
            self.line += 1
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                self.undecodable.append(self.line)
                yield "\n"


def _read_chunk(job: ImportJob) -> bool:
    with open(job.path, "rb") as file:
        file.seek(job.bytes_read)
        lines = _Lines(file, job.lines_read)
        reader = csv.reader(lines)
        if not job.columns:
            header = next(reader, None)
            columns, problem = csv_header(header or [])
            if problem:
                raise BadFile(lines.line, "header", problem)
            job.columns = columns
            job.bytes_read, job.lines_read = lines.bytes, lines.line
        tenant = job.tenant
        for _ in range(CHUNK_BATCHES):
            records: list[tuple[int, list[str]]] = []
            start_bytes, start_line = lines.bytes, lines.line
            for cells in reader:
                if cells:  # a blank line is no row
                    records.append((start_line + 1, cells))
                start_line = lines.line
                if len(records) == BATCH_ROWS:
                    break
            done = len(records) < BATCH_ROWS
            errors: list[EventError] = [
                EventError(line, None, "invalid", "The line is not UTF-8 text.") for line in lines.undecodable
            ]
            lines.undecodable.clear()
            _store_records(job, tenant, records, errors)
            job.bytes_read += lines.bytes - start_bytes
            job.lines_read = lines.line
            if done:
                return False
        return True


def _store_records(
    job: ImportJob, tenant: Tenant, records: list[tuple[int, list[str]]], errors: list[EventError]
) -> None:
    now = timezone.now()
    rows: list[Row] = list(csv_rows(iter(records), job.columns, errors, now=now))
    if not rows and not errors:
        return
    result = rows_ingest(
        tenant=tenant,
        rows=rows,
        errors=errors,
        count=len(records),
        actor=job.created_by or job.api_key,
        source=EventSource.CSV,
        now=now,
        import_job_id=job.pk,
    )
    job.rows_read += len(records)
    job.accepted += result.batch.accepted
    job.duplicates += result.batch.duplicates
    job.conflicts += result.batch.conflicts
    job.rejected += result.batch.rejected
    ImportRowError.objects.bulk_create(
        [
            ImportRowError(
                job=job,
                line=error.index,
                field=error.field or "",
                code=error.code,
                reason=error.message[:500],
            )
            for error in result.errors
        ],
        batch_size=5_000,
    )
