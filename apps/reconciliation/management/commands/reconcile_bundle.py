"""`manage.py reconcile_bundle PATH --period YYYY-MM --format json|csv|table`.

Reconciles an export bundle without a database or a provider: everything it needs is in
the bundle. stdout carries only the result (clean JSON or CSV); progress and notices go
to stderr.
"""

from __future__ import annotations

import io
from argparse import ArgumentParser
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.reconciliation.bundle import BundleError, read_bundle
from apps.reconciliation.core import Materiality, Month, Pricing, ReconciliationInputError
from apps.reconciliation.report import FORMATS, write_csv, write_json, write_table


def _decimal(text: str, option: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise CommandError(f"{option}: {text!r} is not a number") from None
    if not value.is_finite() or value < 0:
        raise CommandError(f"{option}: {text!r} must be a number >= 0")
    return value


def _run_time(text: str | None) -> datetime:
    if text is None:
        return datetime.now(tz=UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--as-of: {text!r} is not an ISO-8601 timestamp") from None
    if moment.tzinfo is None:
        raise CommandError(f"--as-of: {text!r} needs a UTC offset (e.g. 2026-11-01T02:00:00Z)")
    return moment


class Command(BaseCommand):
    help = (
        "Reconcile an export bundle (a folder or .zip: pricing.json, accounts.csv, subscriptions.csv, "
        "events.csv, metered.csv, invoices.csv, credits.csv) for one month and print the result."
    )
    # Reads files only: no system checks, so it runs even where the database is not migrated.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("path", help="The bundle: a folder or a .zip file.")
        parser.add_argument(
            "--period", required=True, help="The month to reconcile, as YYYY-MM (e.g. 2026-10)."
        )
        parser.add_argument("--format", choices=FORMATS, default="json", dest="output_format")
        parser.add_argument(
            "--as-of",
            help="Run time: the cut-off for draft invoices and accounts without one (ISO-8601; default now).",
        )
        parser.add_argument(
            "--materiality-absolute", default="0", help="Smallest difference that matters (default 0)."
        )
        parser.add_argument(
            "--materiality-relative",
            default="0",
            help="Smallest difference that matters as a share of the expected amount, e.g. 0.01 (default 0).",
        )
        parser.add_argument(
            "--proration", choices=("days", "seconds"), default="days", help="How base fees are prorated."
        )
        parser.add_argument("--working", action="store_true", help="JSON only: add each line's working.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            month = Month.parse(options["period"])
        except ReconciliationInputError as exc:
            raise CommandError(f"--period: {exc}") from None
        materiality = Materiality(
            absolute=_decimal(options["materiality_absolute"], "--materiality-absolute"),
            relative=_decimal(options["materiality_relative"], "--materiality-relative"),
        )
        try:
            result = read_bundle(
                options["path"],
                month=month,
                run_time=_run_time(options["as_of"]),
                materiality=materiality,
                pricing=Pricing(proration=options["proration"]),
                progress=self._progress if options["verbosity"] >= 1 else None,
            )
        except BundleError as exc:
            raise CommandError(str(exc)) from None
        output_format = options["output_format"]
        # Rendered whole, then written once: OutputWrapper would add a newline to every chunk.
        buffer = io.StringIO()
        if output_format == "json":
            write_json(result, buffer, working=options["working"])
        elif output_format == "csv":
            write_csv(result, buffer)
        else:
            write_table(result, buffer)
        self.stdout.write(buffer.getvalue(), ending="")
        skipped = result.import_error_count
        if output_format != "table" and skipped and options["verbosity"] >= 1:
            where = "import_errors" if output_format == "json" else "--format json or table"
            self.stderr.write(
                f"{skipped} unreadable row{'s were' if skipped != 1 else ' was'} skipped (see {where})"
            )

    def _progress(self, name: str, rows: int) -> None:
        self.stderr.write(f"{name}: {rows:,} rows read")
