"""The accuracy report as files: CSV (one figure a row) and XLSX (the same, plus every mismatched line).

Amounts stay exact: the CSV writes them as the currency writes them, and the workbook gets the
Decimal itself (XlsxWriter writes its decimal text), formatted to the currency's minor unit.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any

import xlsxwriter

from apps.pricing import trimmed
from apps.pricing.money import is_known_currency, minor_units
from apps.reconciliation.models import Direction, Discrepancy, ReconciliationLine
from apps.reports.charts import plain
from apps.reports.selectors import AccuracyReport

COLUMNS = ("section", "item", "code", "currency", "count", "amount", "share")
SHARE = Decimal("0.0001")


@dataclass(frozen=True)
class Row:
    section: str
    item: str
    code: str
    currency: str = ""
    count: int | None = None
    amount: Decimal | None = None
    share: Decimal | None = None


def accuracy_rows(report: AccuracyReport) -> Iterator[Row]:
    """Every figure of the report, in the order the page shows them."""
    yield Row("report", f"Billing accuracy {report.period}", "period", count=None)
    yield Row("summary", "Lines reconciled", "lines", count=report.lines)
    yield Row("summary", "Accounts checked", "accounts", count=report.accounts)
    yield Row("summary", "Invoices checked", "invoices_checked", count=report.invoices_checked)
    yield Row(
        "summary", "Invoices with a billing error", "invoices_with_errors", count=report.invoices_with_errors
    )
    yield Row(
        "summary",
        "Accurate invoices",
        "accurate_invoices",
        count=report.accurate_invoices,
        share=report.accuracy_rate,
    )
    yield Row(
        "summary",
        "Over-billed invoices (dispute rate)",
        "invoices_over_billed",
        count=report.invoices_over_billed,
        share=report.dispute_rate,
    )
    yield Row(
        "summary",
        "Accounts with usage but no invoice",
        "accounts_without_invoice",
        count=report.accounts_without_invoice,
    )
    for cur in report.currencies:
        c = cur.currency
        yield Row("money", "Expected", "expected", c, cur.lines, cur.expected)
        yield Row("money", "Billed", "billed", c, amount=cur.billed)
        yield Row("money", "Leaked (under-billed)", "leaked", c, amount=cur.leaked, share=cur.leakage_rate)
        yield Row("money", "Over-billed", "over_billed", c, amount=cur.over_billed)
        yield Row("money", "Late usage on the watch-list", "late", c, amount=cur.late)
        yield Row(
            "money", "Credits on the invoices", "credits_on_invoices", c, amount=cur.credits_on_invoices
        )
        yield Row("money", "Corrections applied", "corrections", c, count=cur.corrections)
        yield Row("money", "Revenue recovered", "recovered", c, amount=cur.recovered)
        yield Row("money", "Credits issued (credit notes)", "credits_issued", c, amount=cur.credits_issued)
        yield Row(
            "money", "Over-billing taken off draft invoices", "drafts_reduced", c, amount=cur.drafts_reduced
        )
        yield Row("money", "Written off", "written_off", c, amount=cur.written_off)
        yield Row(
            "money", "Corrections in progress", "in_progress", c, cur.in_progress_count, cur.in_progress
        )
    for section, breakdown in (("mismatches", report.mismatches), ("sources", report.by_source)):
        for m in breakdown:
            yield Row(
                section,
                f"{m.label} · {Direction(m.direction).label.lower()}",
                f"{m.source or m.classification}/{m.direction}",
                m.currency,
                m.lines,
                m.amount,
            )
    for fix in report.corrections:
        yield Row(
            "corrections",
            f"{fix['kind_label']} · {fix['status_label'].lower()}",
            f"{fix['kind']}/{fix['status']}",
            fix["currency"],
            fix["n"],
            fix["amount"],
        )
    for status, label, n in report.finding_statuses:
        yield Row("findings", label, status, count=n)


def _cells(row: Row) -> list[str]:
    return [
        row.section,
        row.item,
        row.code,
        row.currency,
        "" if row.count is None else str(row.count),
        "" if row.amount is None else plain(row.amount, row.currency or None),
        "" if row.share is None else str(row.share.quantize(SHARE)),
    ]


class _Echo:
    def write(self, value: str) -> str:
        return value


def accuracy_csv(report: AccuracyReport) -> Iterable[str]:
    """The report's rows as CSV text, a line at a time (for a streaming response)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(COLUMNS)
    for row in accuracy_rows(report):
        yield writer.writerow(_cells(row))


LINE_COLUMNS = (
    ("Account key", 16),
    ("Account", 28),
    ("Line", 18),
    ("Class", 16),
    ("Direction", 14),
    ("Source", 10),
    ("Currency", 9),
    ("Raw units", 14),
    ("On-time units", 14),
    ("Metered units", 14),
    ("Invoiced units", 14),
    ("Expected", 14),
    ("Billed", 14),
    ("Difference", 14),
    ("Finding status", 18),
)


def _exact(amount: Decimal, currency: str) -> Decimal:
    """The amount as the currency writes it: every line was rounded once already, so this drops zeros."""
    return Decimal(plain(amount, currency or None))


class _Formats:
    def __init__(self, workbook: Any) -> None:
        self.workbook = workbook
        self.bold = workbook.add_format({"bold": True})
        self.share = workbook.add_format({"num_format": "0.0%"})
        self._money: dict[int, Any] = {}

    def money(self, currency: str) -> Any:
        places = minor_units(currency) if currency and is_known_currency(currency) else 2
        if places not in self._money:
            pattern = "#,##0" + ("." + "0" * places if places else "")
            self._money[places] = self.workbook.add_format({"num_format": pattern})
        return self._money[places]


def accuracy_xlsx(report: AccuracyReport, lines: Iterable[ReconciliationLine], target: IO[bytes]) -> None:
    """Write the workbook: a "Report" sheet of every figure and a "Mismatched lines" sheet."""
    workbook = xlsxwriter.Workbook(target, {"constant_memory": True})
    formats = _Formats(workbook)
    sheet = workbook.add_worksheet("Report")
    for col, (title, width) in enumerate(
        (
            ("Section", 12),
            ("Item", 40),
            ("Code", 26),
            ("Currency", 9),
            ("Count", 9),
            ("Amount", 16),
            ("Share", 9),
        )
    ):
        sheet.set_column(col, col, width)
        sheet.write_string(0, col, title, formats.bold)
    for r, row in enumerate(accuracy_rows(report), start=1):
        for col, text in enumerate((row.section, row.item, row.code, row.currency)):
            sheet.write_string(r, col, text)
        if row.count is not None:
            sheet.write_number(r, 4, row.count)
        if row.amount is not None:
            sheet.write_number(r, 5, _exact(row.amount, row.currency), formats.money(row.currency))
        if row.share is not None:
            sheet.write_number(r, 6, row.share, formats.share)
    detail = workbook.add_worksheet("Mismatched lines")
    for col, (title, width) in enumerate(LINE_COLUMNS):
        detail.set_column(col, col, width)
        detail.write_string(0, col, title, formats.bold)
    detail.freeze_panes(1, 0)
    for r, line in enumerate(lines, start=1):
        texts = (
            line.account.key,
            line.account.name,
            line.meter.name if line.meter else "Base fee",
            line.get_classification_display(),
            line.get_direction_display(),
            line.get_source_display() if line.source else "",
            line.currency,
        )
        for col, text in enumerate(texts):
            detail.write_string(r, col, str(text))
        for col, units in enumerate(
            (line.raw_units, line.on_time_units, line.metered_units, line.invoiced_units), start=7
        ):
            if units is not None:
                detail.write_number(r, col, trimmed(units))
        money = formats.money(line.currency)
        for col, amount in enumerate((line.expected_amount, line.billed_amount, line.difference), start=11):
            detail.write_number(r, col, _exact(amount, line.currency), money)
        status = getattr(line, "finding_status", None)
        detail.write_string(r, 14, str(Discrepancy.Status(status).label) if status else "")
    workbook.close()
