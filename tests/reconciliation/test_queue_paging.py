"""Paging the queue: filters survive it, rows keep their order, a long queue is counted only so far."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from apps.reconciliation import selectors, views
from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import DiscrepancyFactory, ReconciliationLineFactory, ReconciliationRunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def queue(client, tenant_a, monkeypatch):
    """12 findings needing action (amounts 1..12) and 5 resolved ones; pages of 5 rows."""
    monkeypatch.setattr(views, "QUEUE_PAGE", 5)
    run = ReconciliationRunFactory(tenant=tenant_a)
    for n, status in [(n, "open") for n in range(1, 13)] + [(n, "resolved") for n in range(13, 18)]:
        amount = Decimal(n)
        line = ReconciliationLineFactory(tenant=tenant_a, run=run, difference=amount)
        DiscrepancyFactory(tenant=tenant_a, line=line, amount=amount, status=status)
    client.force_login(member(tenant_a, Role.FINANCE_ANALYST))
    return reverse("queue", args=[tenant_a.slug])


def amounts(html: str) -> list[str]:
    return re.findall(r'<td class="num under">([\d.]+) USD</td>', html)


def pager(html: str) -> str:
    return re.sub(r"\s+", " ", re.search(r"<span>(Page .*?)</span>", html).group(1))


def test_the_next_page_of_the_default_queue_is_still_the_default_queue(client, queue):
    first = client.get(queue).content.decode()
    assert pager(first) == "Page 1 of 3 · 12 discrepancies"
    assert 'href="?&amp;page=2"' in first
    second = client.get(queue, {"page": "2"}).content.decode()  # the link: no status in it
    assert pager(second) == "Page 2 of 3 · 12 discrepancies", "resolved findings came into page 2"
    assert '<option value="active" selected>' in second


def test_any_status_is_a_choice_the_page_remembers(client, queue):
    html = client.get(queue, {"status": "", "page": "4"}).content.decode()
    assert pager(html) == "Page 4 of 4 · 17 discrepancies"
    assert '<option value="" selected>' in html and '<option value="active" selected>' not in html


def test_rows_come_in_the_sort_order_page_after_page(client, queue):
    seen = [
        a
        for page in (1, 2, 3)
        for a in amounts(client.get(queue, {"sort": "amount", "page": page}).content.decode())
    ]
    assert seen == [f"{n}.00" for n in range(12, 0, -1)]


def test_a_long_queue_is_counted_only_as_far_as_it_matters(client, queue, monkeypatch):
    monkeypatch.setattr(selectors, "QUEUE_COUNT_AHEAD", 7)
    first = client.get(queue).content.decode()
    assert pager(first) == "Page 1 of 2+ · 7+ discrepancies" and "Next →" in first
    # Further on, the count reaches the end of the queue: exact again.
    last = client.get(queue, {"page": "3"}).content.decode()
    assert pager(last) == "Page 3 of 3 · 12 discrepancies" and "Next →" not in last
    assert amounts(last) == ["2.00", "1.00"]
