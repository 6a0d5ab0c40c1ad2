"""Reading usage events from API payloads (JSON array, NDJSON) and CSV rows into validated rows.

The hot path of ingestion: no DRF serializer and no model instance per event. msgspec
decodes and type-checks a whole batch in one call (C code); the few rules msgspec does not
express are checked here in a tight loop. A batch with a malformed event is decoded again
event by event, so each bad one is reported on its own while the good ones go on.

A validated event is a plain tuple, a :data:`Row`; :mod:`apps.usage.store` stores them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from decimal import Context, Decimal, InvalidOperation
from typing import Annotated, Final

import msgspec

from apps.usage.models import QUANTITY_DIGITS, QUANTITY_PLACES

EVENT_ID_MAX: Final = 255
ACCOUNT_KEY_MAX: Final = 100  # Account.key
METER_KEY_MAX: Final = 64  # Meter.key
PROPERTIES_MAX_BYTES: Final = 16_384
MAX_FUTURE: Final = dt.timedelta(days=1)
"""How far ahead of the server's clock an event may claim to have occurred (clock skew)."""

_INTEGER_DIGITS: Final = QUANTITY_DIGITS - QUANTITY_PLACES
_EMPTY_OBJECT: Final = msgspec.Raw(b"{}")

# (index, event_id, account key, meter key, quantity, occurred_at, properties as JSON text)
Row = tuple[int, str, str, str, Decimal, dt.datetime, str]


class EventError(msgspec.Struct, omit_defaults=False):
    """Why one event was not stored. ``index`` is its position in the request, or its CSV line."""

    index: int
    field: str | None
    code: str
    message: str
    event_id: str | None = None


class EventIn(msgspec.Struct):
    """One event as clients send it. Unknown fields (``received_at`` among them) are ignored."""

    event_id: str
    account_id: str
    meter: str
    quantity: Decimal
    occurred_at: Annotated[dt.datetime, msgspec.Meta(tz=True)]
    properties: msgspec.Raw = _EMPTY_OBJECT


class PayloadError(ValueError):
    """The request body as a whole cannot be read (not JSON, not an array)."""


_array_decoder = msgspec.json.Decoder(list[EventIn])
_raw_array_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_event_decoder = msgspec.json.Decoder(EventIn)
_any_decoder = msgspec.json.Decoder()

_AT_FIELD = re.compile(r"`\$(?:\[\d+\])?\.(\w+)")
_MISSING = re.compile(r"missing required field `(\w+)`")


def _decode_error(index: int, exc: msgspec.DecodeError) -> EventError:
    text = str(exc)
    missing = _MISSING.search(text)
    if missing:
        return EventError(index, missing.group(1), "required", "This field is required.")
    at = _AT_FIELD.search(text)
    if isinstance(exc, msgspec.ValidationError):
        message = text.split(" - at `", 1)[0]
        if at and at.group(1) == "occurred_at" and "timezone" in message:
            message = "Expected an RFC 3339 date-time with a time zone offset, e.g. 2026-10-01T12:00:00Z."
        return EventError(index, at.group(1) if at else None, "invalid", message)
    return EventError(index, None, "invalid_json", f"Not valid JSON: {text}")


def _event_id_of(raw: bytes) -> str | None:
    try:
        value = _any_decoder.decode(raw)
    except msgspec.DecodeError:
        return None
    event_id = value.get("event_id") if isinstance(value, dict) else None
    return event_id if isinstance(event_id, str) else None


def decode_json_array(body: bytes) -> tuple[list[EventIn | None], list[EventError]]:
    """A JSON array of events: all decoded in one call, or one by one when some are malformed.

    Returns one entry per array item (None where the item could not be decoded) and the errors.
    """
    try:
        return list(_array_decoder.decode(body)), []
    except msgspec.ValidationError:
        pass
    except msgspec.DecodeError as exc:
        raise PayloadError(f"The body is not valid JSON: {exc}") from None
    try:
        items = _raw_array_decoder.decode(body)
    except msgspec.DecodeError:
        raise PayloadError("Expected a JSON array of events (or NDJSON, one event per line).") from None
    return _decode_items(items)


def decode_ndjson(body: bytes) -> tuple[list[EventIn | None], list[EventError]]:
    """One event per line; blank lines are skipped and do not count as events."""
    lines = [line for line in body.split(b"\n") if line.strip()]
    try:
        return list(_array_decoder.decode(b"[" + b",".join(lines) + b"]")), []
    except msgspec.DecodeError:
        return _decode_items(lines)


def _decode_items(items: Iterable[msgspec.Raw | bytes]) -> tuple[list[EventIn | None], list[EventError]]:
    events: list[EventIn | None] = []
    errors: list[EventError] = []
    for index, item in enumerate(items):
        try:
            events.append(_event_decoder.decode(item))
        except msgspec.DecodeError as exc:
            events.append(None)
            error = _decode_error(index, exc)
            error.event_id = _event_id_of(bytes(item))
            errors.append(error)
    return events, errors


def count_array_items(body: bytes) -> int:
    return len(_raw_array_decoder.decode(body))


_PLACES: Final = Decimal(1).scaleb(-QUANTITY_PLACES)
_WIDE: Final = Context(prec=100)


def quantity_problem(quantity: Decimal) -> str | None:
    """Why a quantity cannot be stored exactly, or None."""
    if not quantity.is_finite():
        return "The quantity must be a finite number."
    if quantity < 0:
        return "The quantity must not be negative."
    if quantity.adjusted() >= _INTEGER_DIGITS:
        return f"The quantity has more than {_INTEGER_DIGITS} digits before the decimal point."
    # 1.5000000000000000 is exact at 12 places; 1.0000000000001 is not.
    if quantity != quantity.quantize(_PLACES, context=_WIDE):
        return f"The quantity has more than {QUANTITY_PLACES} decimal places."
    return None


def key_problem(value: str, limit: int) -> str | None:
    if not value:
        return "This field may not be blank."
    if len(value) > limit:
        return f"At most {limit} characters."
    if not value.isprintable():
        return "Control characters are not allowed."
    return None


def validate_events(events: list[EventIn | None], errors: list[EventError], *, now: dt.datetime) -> list[Row]:
    """The events that pass every rule, as rows; each one that does not adds an error."""
    rows: list[Row] = []
    latest = now + MAX_FUTURE
    append = rows.append
    for index, event in enumerate(events):
        if event is None:
            continue
        event_id = event.event_id
        account = event.account_id
        meter = event.meter
        quantity = event.quantity
        occurred_at = event.occurred_at
        properties = bytes(event.properties)
        # The common case costs a few comparisons; the precise message is worked out only on failure.
        if (
            0 < len(event_id) <= EVENT_ID_MAX
            and 0 < len(account) <= ACCOUNT_KEY_MAX
            and 0 < len(meter) <= METER_KEY_MAX
            and event_id.isprintable()
            and account.isprintable()
            and meter.isprintable()
            and quantity.is_finite()
            and quantity >= 0
            and quantity.as_tuple().exponent >= -QUANTITY_PLACES  # type: ignore[operator]
            and quantity.adjusted() < _INTEGER_DIGITS
            and occurred_at <= latest
            and properties[:1] == b"{"
            and len(properties) <= PROPERTIES_MAX_BYTES
            and b"\\u0000" not in properties
        ):
            append((index, event_id, account, meter, quantity, occurred_at, properties.decode()))
            continue
        error = _event_problem(index, event, latest)
        if error is None:  # a quantity like 1.500000000000000 (trailing zeros) is exact after all
            append((index, event_id, account, meter, quantity, occurred_at, properties.decode()))
        else:
            errors.append(error)
    return rows


def _event_problem(index: int, event: EventIn, latest: dt.datetime) -> EventError | None:
    def error(field: str, message: str, code: str = "invalid") -> EventError:
        return EventError(index, field, code, message, event.event_id or None)

    for field, value, limit in (
        ("event_id", event.event_id, EVENT_ID_MAX),
        ("account_id", event.account_id, ACCOUNT_KEY_MAX),
        ("meter", event.meter, METER_KEY_MAX),
    ):
        problem = key_problem(value, limit)
        if problem:
            return error(field, problem, "required" if not value else "invalid")
    problem = quantity_problem(event.quantity)
    if problem:
        return error("quantity", problem)
    if event.occurred_at > latest:
        return error("occurred_at", "The event cannot have occurred more than a day from now.", "in_future")
    raw = bytes(event.properties)
    if raw[:1] != b"{":
        return error("properties", "The properties must be a JSON object.")
    if len(raw) > PROPERTIES_MAX_BYTES:
        return error("properties", f"The properties may take at most {PROPERTIES_MAX_BYTES} bytes.")
    if _has_nul(_any_decoder.decode(raw)):
        return error("properties", NUL_MESSAGE)
    return None


NUL_MESSAGE: Final = "The properties may not contain the NUL character (\\u0000)."


def _has_nul(value: object) -> bool:
    """PostgreSQL's jsonb cannot hold U+0000; look for it (only when the text has its escape)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


# --- CSV -------------------------------------------------------------------------------

CSV_COLUMNS: Final = ("event_id", "account_id", "meter", "quantity", "occurred_at")
CSV_OPTIONAL: Final = ("properties",)
_CSV_ALIASES: Final = {"account": "account_id", "meter_key": "meter", "timestamp": "occurred_at"}


def csv_header(header: list[str]) -> tuple[list[str], str | None]:
    """The column names (normalised), or the reason the header cannot be used."""
    names = [_CSV_ALIASES.get(name.strip().lower(), name.strip().lower()) for name in header]
    if names and names[0].startswith("\ufeff"):  # a byte-order mark left by spreadsheet exports
        names[0] = names[0].lstrip("\ufeff")
    missing = [name for name in CSV_COLUMNS if name not in names]
    if missing:
        return (
            names,
            f"The header lacks the column(s) {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}.",
        )
    return names, None


def parse_datetime(text: str) -> dt.datetime | None:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.utcoffset() is not None else None


def csv_rows(
    records: Iterator[tuple[int, list[str]]],
    columns: list[str],
    errors: list[EventError],
    *,
    now: dt.datetime,
) -> Iterator[Row]:
    """Validate CSV records ``(line, cells)``; each bad one adds an error (``index`` = its line)."""
    position = {name: columns.index(name) for name in (*CSV_COLUMNS, *CSV_OPTIONAL) if name in columns}
    places = (*(position[name] for name in CSV_COLUMNS), position.get("properties"))
    width = max(position.values()) + 1
    latest = now + MAX_FUTURE
    for line, cells in records:
        if len(cells) < width:
            if any(cell.strip() for cell in cells):
                errors.append(
                    EventError(line, None, "invalid", f"Expected {len(columns)} columns, got {len(cells)}.")
                )
            continue
        row = _csv_row(line, cells, places, latest)
        if isinstance(row, EventError):
            errors.append(row)
        else:
            yield row


def _csv_row(
    line: int, cells: list[str], places: tuple[int | None, ...], latest: dt.datetime
) -> Row | EventError:
    i_event, i_account, i_meter, i_quantity, i_time, i_props = places
    event_id = cells[i_event].strip()  # type: ignore[index]
    account = cells[i_account].strip()  # type: ignore[index]
    meter = cells[i_meter].strip()  # type: ignore[index]
    for field, value, limit in (
        ("event_id", event_id, EVENT_ID_MAX),
        ("account_id", account, ACCOUNT_KEY_MAX),
        ("meter", meter, METER_KEY_MAX),
    ):
        problem = key_problem(value, limit)
        if problem:
            return EventError(line, field, "invalid" if value else "required", problem, event_id or None)
    text = cells[i_quantity].strip()  # type: ignore[index]
    try:
        quantity = Decimal(text)
    except InvalidOperation:
        return EventError(line, "quantity", "invalid", f"Not a number: {text[:50]!r}.", event_id)
    problem = quantity_problem(quantity)
    if problem:
        return EventError(line, "quantity", "invalid", problem, event_id)
    occurred_at = parse_datetime(cells[i_time].strip())  # type: ignore[index]
    if occurred_at is None:
        message = "Expected an ISO 8601 date-time with a time zone offset, e.g. 2026-10-01T12:00:00Z."
        return EventError(line, "occurred_at", "invalid", message, event_id)
    if occurred_at > latest:
        message = "The event cannot have occurred more than a day from now."
        return EventError(line, "occurred_at", "in_future", message, event_id)
    properties = cells[i_props].strip() if i_props is not None else ""
    if not properties:
        properties = "{}"
    else:
        try:
            decoded = _any_decoder.decode(properties)
        except msgspec.DecodeError:
            decoded = None
        if not isinstance(decoded, dict):
            return EventError(
                line, "properties", "invalid", "The properties must be a JSON object.", event_id
            )
        if len(properties.encode()) > PROPERTIES_MAX_BYTES:
            message = f"The properties may take at most {PROPERTIES_MAX_BYTES} bytes."
            return EventError(line, "properties", "invalid", message, event_id)
        if "\\u0000" in properties and _has_nul(decoded):
            return EventError(line, "properties", "invalid", NUL_MESSAGE, event_id)
    return (line, event_id, account, meter, quantity, occurred_at, properties)
