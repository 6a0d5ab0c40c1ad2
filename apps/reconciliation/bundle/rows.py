"""Streaming a bundle CSV row by row, and reading each field with a reason when it cannot be read."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Final

from .source import BundleError, BundleSource

_NUMBER: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_MAX_DIGITS: Final = 40
_MAX_EXPONENT: Final = 40

MAX_LISTED_ERRORS: Final = 100_000
"""Import errors kept in full; a wholly broken file of millions of rows is summarized past this."""

PROGRESS_EVERY: Final = 100_000

Progress = Callable[[str, int], None]


@dataclass(frozen=True, slots=True)
class ImportIssue:
    """A row that could not be read: its file, physical line (header = 1) and why."""

    file: str
    line: int
    error: str

    def as_dict(self) -> dict[str, str | int]:
        return {"file": self.file, "line": self.line, "error": self.error}


class ImportLog:
    """Collects import issues in reading order, keeping at most MAX_LISTED_ERRORS of them."""

    def __init__(self, limit: int = MAX_LISTED_ERRORS) -> None:
        self.limit = limit
        self.issues: list[ImportIssue] = []
        self.count = 0

    def add(self, file: str, line: int, error: str) -> None:
        self.count += 1
        if len(self.issues) < self.limit:
            self.issues.append(ImportIssue(file, line, error))

    def listed(self) -> tuple[ImportIssue, ...]:
        if self.count <= len(self.issues):
            return tuple(self.issues)
        last = self.issues[-1]
        more = ImportIssue(
            last.file, last.line, f"... and {self.count - len(self.issues)} more unreadable rows"
        )
        return (*self.issues, more)


class Row:
    """One CSV record's fields by column name; each reader notes what is wrong instead of raising."""

    __slots__ = ("line", "problems", "values")

    def __init__(self, line: int, values: dict[str, str]) -> None:
        self.line = line
        self.values = values
        self.problems: list[str] = []

    def problem(self, field: str, reason: str) -> None:
        self.problems.append(f"{field}: {reason}")

    def text(self, field: str, *, required: bool = True) -> str:
        value = self.values[field].strip()
        if required and not value:
            self.problem(field, "is empty")
        return value

    def decimal(self, field: str, *, negative: bool = False) -> Decimal | None:
        raw = self.values[field].strip()
        if not raw:
            self.problem(field, "is empty")
            return None
        value = _parse_number(raw)
        if value is None:
            self.problem(field, f"{raw!r} is not a number")
        elif value < 0 and not negative:
            self.problem(field, f"{raw!r} must not be negative")
        else:
            return value
        return None

    def timestamp(self, field: str, *, required: bool = True) -> datetime | None:
        raw = self.values[field].strip()
        if not raw:
            if required:
                self.problem(field, "is empty")
            return None
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            self.problem(field, f"{raw!r} is not an ISO-8601 timestamp (e.g. 2026-10-03T10:00:00Z)")
            return None
        if moment.tzinfo is None or moment.utcoffset() is None:
            # A naive time could be UTC or the account's wall clock; guessing would move
            # events across a period boundary, so the row is refused instead.
            self.problem(field, f"{raw!r} has no UTC offset (write Z or +hh:mm)")
            return None
        return moment


def _parse_number(text: str) -> Decimal | None:
    if not _NUMBER.fullmatch(text):
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid literals
        return None
    _sign, digits, exponent = value.as_tuple()
    if len(digits) > _MAX_DIGITS or (isinstance(exponent, int) and abs(exponent) > _MAX_EXPONENT):
        return None
    return value


def read_rows(
    source: BundleSource,
    name: str,
    columns: Sequence[str],
    log: ImportLog,
    progress: Progress | None = None,
) -> Iterator[Row]:
    """Yield each readable record of `name` as a Row; unreadable records go to `log`.

    The header (line 1) must name every column in `columns` (extra columns are ignored).
    Line numbers are physical lines in the file, so a record with a quoted line break is
    reported at the line it starts on.
    """
    with source.open_text(name) as stream:
        reader = csv.reader(stream)
        header = _header(reader, name, columns)
        index = [header.index(column) for column in columns]
        width = len(header)
        rows = 0
        while True:
            start = reader.line_num + 1
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                log.add(name, start, f"not a readable CSV record ({exc})")
                continue
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # blank line
            rows += 1
            if progress is not None and rows % PROGRESS_EVERY == 0:
                progress(name, rows)
            if len(record) != width:
                log.add(name, start, f"has {len(record)} fields, the header has {width}")
                continue
            if any("\ufffd" in value for value in record):
                log.add(name, start, "is not valid UTF-8 text")
                continue
            yield Row(start, {column: record[i] for column, i in zip(columns, index, strict=True)})


def _header(reader: Iterator[list[str]], name: str, columns: Sequence[str]) -> list[str]:
    try:
        header = [cell.strip() for cell in next(reader)]
    except StopIteration:
        raise BundleError(f"{name}: the file is empty; its header must be {','.join(columns)}") from None
    except csv.Error as exc:
        raise BundleError(f"{name}: line 1 (the header) is not readable CSV ({exc})") from exc
    missing = [column for column in columns if column not in header]
    if missing:
        raise BundleError(
            f"{name}: the header lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(expected {','.join(columns)}; found {','.join(header)})"
        )
    return header
