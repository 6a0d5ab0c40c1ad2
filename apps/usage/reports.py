"""The error report of a CSV import: one line per row that was not stored (line, field, code, reason)."""

from __future__ import annotations

import csv
import io
import tempfile
from typing import IO

from django.db.models import QuerySet

from apps.usage.models import ImportRowError

HEADER = ("line", "field", "code", "reason")


def write_error_report(errors: QuerySet[ImportRowError], out: IO[str]) -> int:
    """Write the report to a text file; returns the number of lines reported."""
    writer = csv.writer(out)
    writer.writerow(HEADER)
    count = 0
    for row in errors.values_list(*HEADER).iterator(chunk_size=5_000):
        writer.writerow(row)
        count += 1
    return count


def error_report_file(errors: QuerySet[ImportRowError]) -> IO[bytes]:
    """The report in a temporary file (in memory while small, on disk beyond), rewound for reading.

    Written while the request is still inside its tenant context: a lazily streamed response
    would read the rows after the context (and on PostgreSQL, its row-level security setting) ended.
    """
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115 - handed to the response
    text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
    write_error_report(errors, text)
    text.flush()
    text.detach()
    spool.seek(0)
    return spool
