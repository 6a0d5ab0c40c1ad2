"""Two clients posting the same events at the same time store each event exactly once.

Real concurrency: a live server (one thread per request, each with its own database
connection) and clients in threads released together by a barrier.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any

import pytest

from apps.tenancy.context import tenant_context
from apps.usage.models import UsageEvent
from tests.usage.conftest import EVENTS_URL, event, make_catalog

# PostgreSQL: the production database, where requests really run side by side (SQLite takes
# one writer at a time, and its in-memory test database cannot be flushed past the audit trigger).
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def post_together(url: str, raw_key: str, bodies: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    barrier = threading.Barrier(len(bodies))
    results: list[Any] = [None] * len(bodies)

    def send(position: int, body: list[dict[str, Any]]) -> None:
        request = urllib.request.Request(  # noqa: S310 - the live test server
            url,
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"},
            method="POST",
        )
        barrier.wait()
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            results[position] = (response.status, json.loads(response.read()))

    threads = [threading.Thread(target=send, args=(n, body)) for n, body in enumerate(bodies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(status == 200 for status, _ in results), results
    return [data for _, data in results]


def test_two_clients_posting_the_same_batch_at_once_store_each_event_once(live_server, tenant_a):
    catalog = make_catalog(tenant_a)
    batch = [event(n, account_id=("acme", "globex")[n % 2], quantity=str(n)) for n in range(3000)]
    for attempt in range(3):  # a few rounds, so the two requests really overlap
        body = [dict(e, event_id=f"{e['event_id']}-{attempt}") for e in batch]
        first, second = post_together(live_server.url + EVENTS_URL, catalog.raw_key, [body, body])
        accepted = first["summary"]["accepted"] + second["summary"]["accepted"]
        duplicates = first["summary"]["duplicates"] + second["summary"]["duplicates"]
        assert (accepted, duplicates) == (len(body), len(body))
        assert first["errors"] == second["errors"] == []
    with tenant_context(tenant_a):
        assert UsageEvent.objects.count() == 3 * len(batch)
        assert UsageEvent.objects.values("event_id").distinct().count() == 3 * len(batch)


def test_overlapping_batches_in_opposite_orders_neither_deadlock_nor_double_store(live_server, tenant_a):
    catalog = make_catalog(tenant_a)
    events = [event(n) for n in range(4000)]
    forward, backward = events[:3000], list(reversed(events[1000:]))
    first, second = post_together(live_server.url + EVENTS_URL, catalog.raw_key, [forward, backward])
    assert first["summary"]["accepted"] + second["summary"]["accepted"] == 4000
    assert first["summary"]["duplicates"] + second["summary"]["duplicates"] == 2000
    with tenant_context(tenant_a):
        assert UsageEvent.objects.count() == 4000
