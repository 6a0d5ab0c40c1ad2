"""python manage.py import_events PATH --tenant SLUG [--errors REPORT.csv]"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.tenancy.context import tenant_context
from apps.tenancy.models import Tenant
from apps.usage.imports import import_job_create, import_job_run
from apps.usage.models import ImportJob, ImportStatus
from apps.usage.reports import write_error_report
from apps.usage.selectors import import_errors


class Command(BaseCommand):
    help = (
        "Import usage events from a CSV file (event_id,account_id,meter,quantity,occurred_at[,properties]), "
        "streamed in chunks; prints progress and a summary and writes the error report (line, field, reason)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--tenant", required=True, help="The tenant's slug.")
        parser.add_argument(
            "--errors", type=Path, help="Where to write the error report (default: PATH.errors.csv)."
        )
        parser.add_argument("--quiet", action="store_true", help="No progress lines, only the summary.")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["path"].resolve()
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant with slug {options['tenant']!r}.")
        report_path: Path = options["errors"] or path.with_name(path.name + ".errors.csv")
        with tenant_context(tenant):
            job = import_job_create(
                tenant=tenant,
                actor=None,
                source="command",
                filename=path.name,
                path=path,
                total_bytes=path.stat().st_size,
            )
        started = time.monotonic()

        def progress(job: ImportJob) -> None:
            if options["quiet"]:
                return
            elapsed = max(time.monotonic() - started, 1e-6)
            self.stdout.write(
                f"{job.percent:3d}%  {job.rows_read:>12,} rows  {job.bytes_read / 1024**2:,.1f}"
                f"/{job.total_bytes / 1024**2:,.1f} MiB  {job.rows_read / elapsed:,.0f} rows/s"
                f"  accepted {job.accepted:,}  duplicates {job.duplicates:,}"
                f"  conflicts {job.conflicts:,}  rejected {job.rejected:,}"
            )

        job = import_job_run(tenant.pk, job.pk, on_progress=progress)
        elapsed = time.monotonic() - started
        with tenant_context(tenant), report_path.open("w", newline="", encoding="utf-8") as out:
            reported = write_error_report(import_errors(tenant, job), out)
        summary = (
            f"{job.get_status_display()}: {job.rows_read:,} rows in {elapsed:.1f} s; "
            f"accepted {job.accepted:,}, duplicates {job.duplicates:,}, "
            f"conflicts {job.conflicts:,}, rejected {job.rejected:,}."
        )
        if reported:
            summary += f" Error report ({reported:,} lines): {report_path}"
        else:
            report_path.unlink()
        if job.status == ImportStatus.FAILED:
            raise CommandError(f"{summary} {job.error}")
        self.stdout.write(summary)
