"""The pure reconciliation core: PRODUCT.md's "Reconciliation rules (exact)" over plain records.

No Django, no database, no I/O (standard library and `apps.pricing` only), so the export
bundle command, the database-backed engine and the tests run the very same rules.

Typical use, from plain records::

    result = reconcile_period(month=Month.parse("2026-10"), run_time=now, accounts=...,
                              phases=..., meters=..., events=..., metered=...,
                              invoice_lines=..., credits=...)

or, streaming events (or from a SQL GROUP BY into `MeterUsage`)::

    periods = resolve_periods(month=..., accounts=..., phases=...,
                              invoices=invoice_headers(lines), run_time=now)
    accumulator = UsageAccumulator(periods)
    for event in events:
        accumulator.add(event)
    result = reconcile(periods=periods, meters=..., usage=accumulator.usage, ...)

and to re-classify a stored line: `classify(LineFacts(...), materiality)`.
"""

from .classify import (
    CLASSIFICATIONS,
    Classification,
    Direction,
    LineFacts,
    Source,
    Verdict,
    classify,
    direction_of,
)
from .errors import ReconciliationInputError
from .inputs import (
    INVOICE_STATUSES,
    Account,
    CreditNote,
    InvoiceLine,
    InvoiceStatus,
    Materiality,
    MeteredUsage,
    Month,
    SubscriptionPhase,
    UsageEvent,
)
from .periods import AccountPeriod, InvoiceHeader, invoice_headers, resolve_periods
from .reconcile import MaterialityFor, Pricing, Reconciliation, reconcile, reconcile_period
from .results import (
    AppliedCredit,
    CurrencyTotals,
    LineWorking,
    ReconciledLine,
    currency_totals,
    money_str,
    units_str,
)
from .usage import LATE_ID_LIMIT, MeterUsage, UsageAccumulator, exact_sum

__all__ = [
    "CLASSIFICATIONS",
    "INVOICE_STATUSES",
    "LATE_ID_LIMIT",
    "Account",
    "AccountPeriod",
    "AppliedCredit",
    "Classification",
    "CreditNote",
    "CurrencyTotals",
    "Direction",
    "InvoiceHeader",
    "InvoiceLine",
    "InvoiceStatus",
    "LineFacts",
    "LineWorking",
    "Materiality",
    "MaterialityFor",
    "MeterUsage",
    "MeteredUsage",
    "Month",
    "Pricing",
    "ReconciledLine",
    "Reconciliation",
    "ReconciliationInputError",
    "Source",
    "SubscriptionPhase",
    "UsageAccumulator",
    "UsageEvent",
    "Verdict",
    "classify",
    "currency_totals",
    "direction_of",
    "exact_sum",
    "invoice_headers",
    "money_str",
    "reconcile",
    "reconcile_period",
    "resolve_periods",
    "units_str",
]
