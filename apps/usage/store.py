"""Storing validated events exactly once, and telling the client what became of each.

PostgreSQL: the batch is streamed with ``COPY`` into a temporary staging table (dropped at
commit, so it is safe behind a transaction-pooling proxy) and moved with one
``INSERT ... SELECT ... ORDER BY event_id ON CONFLICT (tenant_id, event_id) DO NOTHING``.
The unique index is the arbiter: two requests carrying the same event store it once, the
second waiting for the first to commit. Taking keys in one order (``ORDER BY``) keeps
two overlapping batches from deadlocking. Only when some rows were not inserted does a
second query tell duplicates (same content) from conflicts (same ``event_id``, different
content); rows of this batch are told apart by ``batch_id``.

SQLite (the embedded default): ``bulk_create(ignore_conflicts=True)`` and the same
classification in Python.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import msgspec
from django.db import DatabaseError, connection, transaction

from apps.accounts.models import Account
from apps.audit.models import AuditEvent
from apps.audit.services import Actor, actor_label, snapshot
from apps.catalog.models import Meter
from apps.common.request_id import get_request_id
from apps.tenancy.context import current_tenant_id
from apps.usage.ingest import EventError, Row
from apps.usage.models import IngestBatch, UsageEvent
from apps.users.models import User

logger = logging.getLogger(__name__)

# (index, event_id, account id, meter id, quantity, occurred_at, properties as JSON text)
Staged = tuple[int, str, int, int, Decimal, dt.datetime, str]

DEADLOCK_RETRIES: Final = 3
_RETRYABLE_SQLSTATES: Final = {"40P01", "40001"}  # deadlock detected, serialization failure
_COPY_ESCAPES: Final = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

_STAGING_DDL: Final = """
CREATE TEMP TABLE IF NOT EXISTS usage_staging (
    event_id text COLLATE "C" NOT NULL,
    account_id bigint NOT NULL,
    meter_id bigint NOT NULL,
    quantity numeric NOT NULL,
    occurred_at timestamptz NOT NULL,
    properties jsonb NOT NULL
) ON COMMIT DROP
"""
_COPY: Final = (
    "COPY usage_staging (event_id, account_id, meter_id, quantity, occurred_at, properties) FROM STDIN"
)
_INSERT: Final = """
INSERT INTO usage_usageevent (
    tenant_id, event_id, account_id, meter_id, quantity, occurred_at,
    received_at, properties, source, batch_id
)
SELECT %s, event_id, account_id, meter_id, quantity, occurred_at, %s, properties, %s, %s
FROM usage_staging
ORDER BY event_id
ON CONFLICT (tenant_id, event_id) DO NOTHING
"""
# A new statement, so (READ COMMITTED) it sees the rows a concurrent batch committed while
# our INSERT waited on them. One index probe per staged row (LATERAL ... OFFSET 0 keeps the
# planner from hashing a whole partition when its statistics are stale) and no JIT: the
# cost estimate is large, the work is not.
_ALREADY_STORED: Final = """
SELECT s.event_id,
       e.account_id = s.account_id AND e.meter_id = s.meter_id AND e.quantity = s.quantity
           AND e.occurred_at = s.occurred_at AND e.properties = s.properties,
       e.received_at
FROM usage_staging s
CROSS JOIN LATERAL (
    SELECT account_id, meter_id, quantity, occurred_at, properties, received_at, batch_id
    FROM usage_usageevent
    WHERE tenant_id = %s AND event_id = s.event_id
    OFFSET 0
) e
WHERE e.batch_id <> %s
"""


@dataclass(slots=True)
class Stored:
    """What became of a batch's valid rows: counts, and an error for each one not stored."""

    accepted: int = 0
    duplicates: int = 0
    errors: list[EventError] = field(default_factory=list)
    # Indexes of the batch's repeats of an event (same content as its first occurrence).
    repeats: dict[str, list[int]] = field(default_factory=dict)


def store_rows(
    *,
    rows: Sequence[Row],
    batch: IngestBatch,
    auto_create_accounts: bool,
    default_timezone: str,
    actor: Actor,
) -> Stored:
    """Store validated rows in ``batch`` (inside the caller's tenant transaction)."""
    result = Stored()
    if not rows:
        return result
    staged = _resolve(rows, result, auto_create_accounts, default_timezone, actor, batch.received_at)
    if not staged:
        return result
    insert = _insert_postgresql if connection.vendor == "postgresql" else _insert_other
    for attempt in range(1, DEADLOCK_RETRIES + 1):
        try:
            with transaction.atomic():
                accepted, stored = insert(staged, batch)
            break
        except DatabaseError as exc:
            sqlstate = getattr(exc.__cause__, "sqlstate", None)
            if sqlstate not in _RETRYABLE_SQLSTATES or attempt == DEADLOCK_RETRIES:
                raise
            logger.warning("ingest batch %s: %s, retrying (%d)", batch.pk, sqlstate, attempt)
    result.accepted = accepted
    by_event_id = {item[1]: item for item in staged}
    for event_id, same, received_at in stored:
        if same:
            result.duplicates += 1
            continue
        # The first occurrence conflicts with the stored event, and so do its repeats in this batch.
        repeats = result.repeats.get(event_id, [])
        result.duplicates -= len(repeats)
        for index in (by_event_id[event_id][0], *repeats):
            result.errors.append(
                EventError(
                    index,
                    "event_id",
                    "conflict",
                    f"An event with this event_id was already received on {received_at.isoformat()} "
                    "with different content; it was not changed.",
                    event_id,
                )
            )
    missing = len(staged) - accepted - len(stored)
    if missing:  # cannot happen while the unique index holds; never let it pass silently
        raise RuntimeError(f"ingest batch {batch.pk}: {missing} events neither stored nor found")
    return result


def _resolve(
    rows: Sequence[Row],
    result: Stored,
    auto_create_accounts: bool,
    default_timezone: str,
    actor: Actor,
    now: dt.datetime,
) -> list[Staged]:
    """Account and meter keys to ids, and duplicates inside the batch itself (the first one wins)."""
    meters = dict(Meter.objects.values_list("key", "id"))
    keys = {row[2] for row in rows}
    accounts = _account_ids(keys)
    if auto_create_accounts and len(accounts) < len(keys):
        accounts.update(_create_accounts(keys - accounts.keys(), default_timezone, actor, now))
    errors = result.errors
    staged: list[Staged] = []
    first: dict[str, Staged] = {}
    for index, event_id, account_key, meter_key, quantity, occurred_at, properties in rows:
        account_id = accounts.get(account_key)
        if account_id is None:
            errors.append(
                EventError(
                    index, "account_id", "unknown_account", f"No account with id {account_key!r}.", event_id
                )
            )
            continue
        meter_id = meters.get(meter_key)
        if meter_id is None:
            errors.append(
                EventError(index, "meter", "unknown_meter", f"No meter with key {meter_key!r}.", event_id)
            )
            continue
        item = (index, event_id, account_id, meter_id, quantity, occurred_at, properties)
        previous = first.setdefault(event_id, item)
        if previous is item:
            staged.append(item)
        elif _same_content(previous, item):
            result.duplicates += 1
            result.repeats.setdefault(event_id, []).append(index)
        else:
            errors.append(
                EventError(
                    index,
                    "event_id",
                    "conflict",
                    f"The same event_id came earlier in this batch (at {previous[0]}) "
                    "with different content.",
                    event_id,
                )
            )
    return staged


def _account_ids(keys: set[str]) -> dict[str, int]:
    """The ids of the tenant's accounts among ``keys``."""
    if connection.vendor != "postgresql":
        return dict(Account.objects.filter(key__in=keys).values_list("key", "id"))
    # One array parameter instead of an IN list of thousands (which Django and psycopg
    # would spell out and quote one by one: a tenth of a request's time).
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT key, id FROM accounts_account WHERE tenant_id = %s AND key = ANY(%s)",
            [current_tenant_id(), list(keys)],
        )
        return dict(cursor.fetchall())


def _same_content(a: Staged, b: Staged) -> bool:
    return a[2:6] == b[2:6] and (a[6] == b[6] or json.loads(a[6]) == json.loads(b[6]))


def _create_accounts(keys: set[str], timezone: str, actor: Actor, now: dt.datetime) -> dict[str, int]:
    """The tenant asked for unknown accounts to be created: create them (audited), return their ids.

    A concurrent batch may create the same account; the unique (tenant, key) keeps one, and
    only the accounts this call created (marked by its timestamp) are audited here.
    """
    Account.objects.bulk_create(
        [Account(key=key, name=key, timezone=timezone, created_at=now) for key in sorted(keys)],
        ignore_conflicts=True,
    )
    accounts = list(Account.objects.filter(key__in=keys))
    user = actor if isinstance(actor, User) else None
    AuditEvent.objects.bulk_create(
        [
            AuditEvent(
                actor=user,
                actor_label=actor_label(actor),
                action="account.create",
                object_type=account._meta.label_lower,
                object_id=str(account.pk),
                object_repr=str(account)[:200],
                after=snapshot(account),
                reason="created for its first usage event (auto-create accounts is on)",
                request_id=get_request_id(),
            )
            for account in accounts
            if account.created_at == now
        ]
    )
    return {account.key: account.pk for account in accounts}


# --- PostgreSQL -------------------------------------------------------------------------


def copy_text(staged: Sequence[Staged]) -> str:
    """The rows in COPY's text format (tab-separated, backslash escapes)."""
    # msgspec turns a whole column of decimals or datetimes into RFC 3339 / plain strings in
    # C, some forty times faster than calling isoformat() on each.
    quantities = msgspec.to_builtins([item[4] for item in staged])
    times = msgspec.to_builtins([item[5] for item in staged])
    lines: list[str] = []
    append = lines.append
    for (_, event_id, account_id, meter_id, _, _, properties), quantity, occurred_at in zip(
        staged, quantities, times, strict=True
    ):
        # Keys are printable (checked when read), so only a backslash needs escaping there.
        if "\\" in event_id:
            event_id = event_id.replace("\\", "\\\\")
        if "\\" in properties or "\n" in properties or "\t" in properties or "\r" in properties:
            properties = properties.translate(_COPY_ESCAPES)
        append(f"{event_id}\t{account_id}\t{meter_id}\t{quantity}\t{occurred_at}\t{properties}\n")
    return "".join(lines)


def _insert_postgresql(staged: Sequence[Staged], batch: IngestBatch) -> tuple[int, list[Any]]:
    tenant_id = current_tenant_id()
    with connection.cursor() as cursor:
        cursor.execute(_STAGING_DDL)
        cursor.execute("TRUNCATE usage_staging")
        with cursor.cursor.copy(_COPY) as copy:
            copy.write(copy_text(staged))
        cursor.execute(_INSERT, [tenant_id, batch.received_at, batch.source, batch.pk])
        accepted = cursor.rowcount
        if accepted == len(staged):
            return accepted, []
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(_ALREADY_STORED, [tenant_id, batch.pk])
        return accepted, cursor.fetchall()


# --- SQLite and others ------------------------------------------------------------------

_CHUNK: Final = 500


def _insert_other(staged: Sequence[Staged], batch: IngestBatch) -> tuple[int, list[Any]]:
    UsageEvent.objects.bulk_create(
        [
            UsageEvent(
                event_id=event_id,
                account_id=account_id,
                meter_id=meter_id,
                quantity=quantity,
                occurred_at=occurred_at,
                received_at=batch.received_at,
                properties=json.loads(properties),
                source=batch.source,
                batch_id=batch.pk,
            )
            for _, event_id, account_id, meter_id, quantity, occurred_at, properties in staged
        ],
        batch_size=_CHUNK,
        ignore_conflicts=True,
    )
    accepted = 0
    stored = []
    for start in range(0, len(staged), _CHUNK):
        chunk = {item[1]: item for item in staged[start : start + _CHUNK]}
        found = UsageEvent.objects.filter(event_id__in=chunk).values_list(
            "event_id",
            "batch_id",
            "account_id",
            "meter_id",
            "quantity",
            "occurred_at",
            "properties",
            "received_at",
        )
        for event_id, batch_id, account_id, meter_id, quantity, occurred_at, properties, received_at in found:
            if batch_id == batch.pk:
                accepted += 1
                continue
            item = chunk[event_id]
            same = (account_id, meter_id, quantity, occurred_at) == item[2:6] and properties == json.loads(
                item[6]
            )
            stored.append((event_id, same, received_at))
    return accepted, stored
