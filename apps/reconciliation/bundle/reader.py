"""Reconciling an export bundle: read every file, report unreadable rows, reconcile the rest.

Files are read in dependency order (pricing, accounts, subscriptions, invoices, credits,
metered counts) so that events.csv, by far the largest, is streamed last straight into
per-(account, meter, phase, on-time) totals: no event is kept, only the set of seen ids
needed to de-duplicate them.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from apps.pricing import Catalog, PricingValidationError, parse_catalog
from apps.reconciliation.core import (
    Materiality,
    Month,
    Pricing,
    Reconciliation,
    ReconciliationInputError,
    UsageAccumulator,
    UsageEvent,
    invoice_headers,
    reconcile,
    resolve_periods,
)

from .rows import ImportIssue, ImportLog, Progress, read_rows
from .source import BundleError, BundleSource
from .tables import read_accounts, read_credits, read_invoices, read_metered, read_subscriptions

PRICING: Final = "pricing.json"
EVENTS: Final = "events.csv"
EVENT_COLUMNS: Final = ("event_id", "account_id", "meter", "quantity", "occurred_at", "received_at")


@dataclass(frozen=True, slots=True)
class BundleResult:
    """A reconciled bundle: the lines, the rows that could not be read, and what was counted."""

    month: Month
    reconciliation: Reconciliation
    import_errors: tuple[ImportIssue, ...]
    import_error_count: int
    stats: dict[str, int] = field(default_factory=dict)

    def as_dict(self, *, working: bool = False) -> dict[str, Any]:
        """PRODUCT.md's bundle JSON: period, currency_totals, import_errors, lines (+ warnings)."""
        reconciliation = self.reconciliation
        return {
            "period": str(self.month),
            "currency_totals": {code: totals.as_dict() for code, totals in reconciliation.totals().items()},
            "import_errors": [issue.as_dict() for issue in self.import_errors],
            "lines": [line.as_dict(working=working) for line in reconciliation.lines],
            "warnings": list(reconciliation.warnings),
        }


def read_bundle(
    path: str | Path,
    *,
    month: Month,
    run_time: datetime,
    materiality: Materiality = Materiality(),  # noqa: B008 - immutable
    pricing: Pricing = Pricing(),  # noqa: B008 - immutable
    progress: Progress | None = None,
) -> BundleResult:
    """Reconcile the bundle at `path` (a folder or a .zip) for `month`.

    `run_time` is the cut-off for draft invoices and for accounts without an invoice.
    Raises BundleError when nothing can be reconciled (missing path or file, a broken
    pricing.json, a CSV header without a required column).
    """
    log = ImportLog()
    with BundleSource(path) as source:
        catalog = _read_pricing(source)
        accounts = read_accounts(source, log)
        phases = read_subscriptions(source, log, accounts, catalog)
        invoices = read_invoices(source, log, month, accounts, catalog, phases)
        credits = read_credits(source, log, accounts, catalog, invoices)
        metered = read_metered(source, log, accounts, catalog)
        try:
            periods = resolve_periods(
                month=month,
                accounts=accounts.values(),
                phases=phases,
                invoices=invoice_headers(invoices.lines),
                run_time=run_time,
            )
            accumulator = UsageAccumulator(periods)
            accumulator.add_all(read_events(source, log, accounts, {m.key for m in catalog.meters}, progress))
            reconciliation = reconcile(
                periods=periods,
                meters={meter.key: meter for meter in catalog.meters},
                usage=accumulator.usage,
                metered=metered,
                invoice_lines=invoices.lines,
                credits=credits,
                materiality=materiality,
                pricing=pricing,
            )
        except ReconciliationInputError as exc:  # pragma: no cover - the readers refuse such rows first
            raise BundleError(f"the bundle cannot be reconciled: {exc}") from exc
    stats = {
        "events_counted": accumulator.counted,
        "events_duplicate": accumulator.duplicates,
        "events_outside_period": accumulator.outside_period,
        "invoices_in_period": len({line.invoice_id for line in invoices.lines}),
    }
    return BundleResult(month, reconciliation, log.listed(), log.count, stats)


def _read_pricing(source: BundleSource) -> Catalog:
    try:
        with source.open_text(PRICING) as stream:
            data = json.load(stream)
    except json.JSONDecodeError as exc:
        raise BundleError(
            f"{PRICING}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    try:
        return parse_catalog(data)
    except PricingValidationError as exc:
        problems = "\n".join(f"  {PRICING}: {issue}" for issue in exc.errors)
        raise BundleError(f"{PRICING} is not a valid pricing catalogue:\n{problems}") from exc


def read_events(
    source: BundleSource,
    log: ImportLog,
    accounts: Collection[str],
    meters: Collection[str],
    progress: Progress | None = None,
) -> Iterator[UsageEvent]:
    """Stream events.csv: each readable event, for a known account and meter; the rest go to ``log``."""
    for row in read_rows(source, EVENTS, EVENT_COLUMNS, log, progress):
        event_id = row.text("event_id")
        account_id = row.text("account_id")
        if account_id and account_id not in accounts:
            row.problem("account_id", f"unknown account {account_id!r} (not in accounts.csv)")
        meter = row.text("meter")
        if meter and meter not in meters:
            row.problem("meter", f"unknown meter {meter!r} ({PRICING} defines {', '.join(sorted(meters))})")
        quantity = row.decimal("quantity")
        occurred_at = row.timestamp("occurred_at")
        received_at = row.timestamp("received_at")
        if row.problems or quantity is None or occurred_at is None or received_at is None:
            log.add(EVENTS, row.line, "; ".join(row.problems))
            continue
        yield UsageEvent(event_id, account_id, meter, quantity, occurred_at, received_at)
