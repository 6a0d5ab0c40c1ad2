"""Load an export bundle into a tenant: ``python manage.py import_bundle PATH --tenant SLUG``."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.reconciliation import core
from apps.reconciliation.bundle import BundleError
from apps.reconciliation.bundle_import import bundle_import, infer_period
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Tenant


class Command(BaseCommand):
    help = "Load an export bundle (folder or .zip) into a tenant; --reconcile also reconciles its period."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path")
        parser.add_argument("--tenant", required=True, help="The tenant's slug.")
        parser.add_argument("--period", help="YYYY-MM (default: the month most invoices start in).")
        parser.add_argument("--reconcile", action="store_true", help="Reconcile the period once loaded.")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant {options['tenant']!r}.")
        try:
            month = (
                core.Month.parse(options["period"]) if options["period"] else infer_period(options["path"])
            )
            with tenant_context(tenant):
                summary = bundle_import(
                    path=options["path"],
                    month=month,
                    actor=None,
                    progress=lambda message: print(f"  … {message}", file=sys.stderr),
                )
        except (BundleError, core.ReconciliationInputError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Imported {options['path']} into {tenant.slug} for {summary.period}:")
        for name, count in sorted(summary.created.items()):
            if count:
                self.stdout.write(f"  {count:>8,} {name} created")
        for name, count in sorted(summary.unchanged.items()):
            if count:
                self.stdout.write(f"  {count:>8,} {name} already there")
        if summary.import_error_count:
            self.stdout.write(f"  {summary.import_error_count} unreadable rows skipped:")
            for issue in summary.import_errors:
                self.stdout.write(f"    {issue.file} line {issue.line}: {issue.error}")
        if options["reconcile"]:
            from apps.reconciliation.services import run_create

            with tenant_context(tenant):
                run = run_create(actor=None, period=summary.period, trigger="bundle")
            with tenant_context(tenant):
                run.refresh_from_db()
            self.stdout.write(f"Reconciled {summary.period}: run {run.pk} {run.status}, {run.counts}")
