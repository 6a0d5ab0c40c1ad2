"""The audit log screen: filters, keyset pages, expandable rows, the streamed CSV export."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.urls import reverse

from apps.tenancy.models import Tenant
from apps.tenancy.roles import MATRIX, Action, Role
from tests.conftest import member
from tests.factories import ApiKeyFactory, AuditEventFactory

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}
OCT = dt.datetime(2026, 10, 10, 12, 0, tzinfo=dt.UTC)


def log_url(tenant):
    return reverse("audit-log", args=[tenant.slug])


def export_url(tenant):
    return reverse("audit-export", args=[tenant.slug])


def ids_on(response):
    """The event ids a page shows, in order (each row's detail names its event)."""
    html = response.content.decode()
    return [int(part.split("<")[0]) for part in html.split("· event ")[1:]]


def exported(response):
    assert response.streaming
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def viewer(client, tenant_a):
    user = member(tenant_a, Role.VIEWER, email="vera@alpha.test")
    client.force_login(user)
    return client


@pytest.fixture
def log(tenant_a, tenant_b):
    """A small log: two people, an API key and the system, over a few days; and tenant B's own."""
    rory = member(tenant_a, Role.REVOPS, email="rory@alpha.test")
    fiona = member(tenant_a, Role.FINANCE_APPROVER, email="fiona@alpha.test")
    key = ApiKeyFactory(tenant=tenant_a, name="pipeline")  # (api_key_for would audit its creation)

    def event(days, **fields):
        return AuditEventFactory(tenant=tenant_a, created_at=OCT + dt.timedelta(days=days), **fields)

    events = {
        "threshold": event(
            0,
            actor=rory,
            actor_label=rory.email,
            action="threshold.create",
            object_type="reconciliation.threshold",
            object_id="7",
            object_repr="enterprise / API calls",
            after={"absolute": "5", "relative": "0.01"},
        ),
        "approve": event(
            1,
            actor=fiona,
            actor_label=fiona.email,
            action="proposal.approve",
            object_type="approvals.proposal",
            object_id="3",
            object_repr="Credit note 40.00 USD for Acme",
            reason="Customer confirmed the double count",
            before={"status": "proposed"},
            after={"status": "approved"},
        ),
        "reject": event(
            2,
            actor=fiona,
            actor_label=fiona.email,
            action="proposal.reject",
            object_type="approvals.proposal",
            object_id="4",
            object_repr="Catch-up charge for Globex",
            reason="Contract says otherwise",
        ),
        "run": event(
            3,
            actor_label="system",
            action="run.create",
            object_type="reconciliation.reconciliationrun",
            object_id="12",
            object_repr="Run 12 of 2026-10",
            after={"period": "2026-10", "trigger": "schedule"},
        ),
        "key": event(
            4,
            actor_label=f"api-key:{key.name} ({key.prefix})",
            action="account.create",
            object_type="accounts.account",
            object_id="9",
            object_repr='=HYPERLINK("http://x")',
        ),
    }
    AuditEventFactory(
        tenant=tenant_b,
        created_at=OCT,
        actor_label="bob@bravo.test",
        action="proposal.approve",
        object_type="approvals.proposal",
        object_repr="Bravo secret credit",
        reason="Customer confirmed",
    )
    return events, rory, fiona, key


def test_the_log_shows_the_tenants_events_newest_first_with_before_after_and_reason(viewer, tenant_a, log):
    events, *_ = log
    response = viewer.get(log_url(tenant_a))
    html = response.content.decode()
    assert response.status_code == 200
    assert ids_on(response) == [events[k].pk for k in ("key", "run", "reject", "approve", "threshold")]
    assert "Bravo secret credit" not in html
    assert "Customer confirmed the double count" in html
    assert '<tr class="changed"><td><code>status</code></td><td>proposed</td><td>approved</td></tr>' in html
    assert "<details>" in html  # each row expands


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"action": "proposal."}, ["reject", "approve"]),
        ({"action": "proposal.approve"}, ["approve"]),
        ({"object_type": "approvals.proposal"}, ["reject", "approve"]),
        ({"text": "globex"}, ["reject"]),
        ({"text": "double count"}, ["approve"]),  # the reason
        ({"actor": "system"}, ["run"]),
        ({"since": "2026-10-11", "until": "2026-10-12"}, ["reject", "approve"]),
        ({"action": "proposal.", "since": "2026-10-12"}, ["reject"]),
        ({"action": "nothing."}, []),
    ],
)
def test_filters_return_exactly_the_matching_events(viewer, tenant_a, log, query, expected):
    events, *_ = log
    response = viewer.get(log_url(tenant_a), query, **HX)
    assert response.status_code == 200
    assert "<html" not in response.content.decode()  # only the rows are swapped in
    assert ids_on(response) == [events[k].pk for k in expected]


def test_the_actor_filter_knows_people_and_api_keys(viewer, tenant_a, log):
    events, _, fiona, key = log
    assert ids_on(viewer.get(log_url(tenant_a), {"actor": f"user:{fiona.pk}"}, **HX)) == [
        events["reject"].pk,
        events["approve"].pk,
    ]
    assert ids_on(viewer.get(log_url(tenant_a), {"actor": f"key:{key.prefix}"}, **HX)) == [events["key"].pk]


def test_dates_are_days_in_the_tenants_time_zone(viewer, tenant_a, log):
    events, *_ = log
    Tenant.objects.filter(pk=tenant_a.pk).update(default_timezone="Pacific/Auckland")
    # 10 Oct 12:00 UTC is 11 Oct 01:00 in Auckland: the threshold event belongs to the 11th there.
    response = viewer.get(log_url(tenant_a), {"since": "2026-10-11", "until": "2026-10-11"}, **HX)
    assert ids_on(response) == [events["threshold"].pk]


def test_a_bad_filter_is_422_and_says_which(viewer, tenant_a, log):
    response = viewer.get(log_url(tenant_a), {"since": "2026-10-12", "until": "2026-10-01"}, **HX)
    assert response.status_code == 422
    assert "To: The end date is before the start date." in response.content.decode()
    assert viewer.get(log_url(tenant_a), {"since": "yesterday"}, **HX).status_code == 422


def test_keyset_pages_walk_the_whole_log_once_even_with_equal_times(viewer, tenant_a):
    same_second = [AuditEventFactory(tenant=tenant_a, created_at=OCT, action="tie") for _ in range(30)]
    others = [
        AuditEventFactory(tenant=tenant_a, created_at=OCT + dt.timedelta(minutes=i), action="minute")
        for i in range(1, 91)
    ]
    expected = [e.pk for e in sorted(same_second + others, key=lambda e: (e.created_at, e.pk), reverse=True)]
    seen, pages, query = [], [], {}
    while True:
        response = viewer.get(log_url(tenant_a), query, **HX)
        page = ids_on(response)
        pages.append(page)
        seen += page
        html = response.content.decode()
        if "before=" not in html:
            break
        query = {"before": html.split("before=")[1].split('"')[0]}
    assert [len(p) for p in pages] == [50, 50, 20]
    assert seen == expected
    # and back: the page newer than the third is the second again
    third_cursor = html.split("after=")[1].split('"')[0]
    assert ids_on(viewer.get(log_url(tenant_a), {"after": third_cursor}, **HX)) == pages[1]


def test_csv_export_streams_the_filtered_events_and_never_another_tenants(viewer, tenant_a, log):
    events, *_ = log
    response = viewer.get(export_url(tenant_a), {"action": "proposal."})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = exported(response)
    assert [r["action"] for r in rows] == ["proposal.reject", "proposal.approve"]
    approve = rows[1]
    assert approve["actor"] == "fiona@alpha.test" and approve["object_id"] == "3"
    assert approve["reason"] == "Customer confirmed the double count"
    assert approve["before"] == '{"status": "proposed"}' and approve["after"] == '{"status": "approved"}'
    assert approve["created_at"] == events["approve"].created_at.isoformat()

    everything = exported(viewer.get(export_url(tenant_a)))
    assert len(everything) == 5
    assert all("Bravo" not in r["object_repr"] and "bravo" not in r["actor"] for r in everything)
    # A spreadsheet would run this as a formula; it is exported as text.
    assert [r["object_repr"] for r in everything if r["action"] == "account.create"] == [
        '\'=HYPERLINK("http://x")'
    ]


def test_only_roles_with_audit_view_read_the_log(client, tenant_a, log):
    for role in Role.values:
        client.force_login(member(tenant_a, role))
        allowed = role != Role.CSM
        assert (client.get(log_url(tenant_a)).status_code == 200) == allowed, role
        assert (client.get(export_url(tenant_a)).status_code == 200) == allowed, role
        if not allowed:
            assert client.get(log_url(tenant_a)).status_code == 403
            assert client.get(export_url(tenant_a)).status_code == 403


def test_the_export_also_needs_the_export_permission(client, tenant_a, log, monkeypatch):
    monkeypatch.setitem(MATRIX, Role.VIEWER, frozenset({Action.VIEW, Action.AUDIT_VIEW}))
    client.force_login(member(tenant_a, Role.VIEWER))
    assert client.get(log_url(tenant_a)).status_code == 200
    assert client.get(export_url(tenant_a)).status_code == 403


def test_another_tenants_member_cannot_reach_this_log(client, tenant_a, tenant_b, log):
    client.force_login(member(tenant_b, Role.VIEWER))
    assert client.get(log_url(tenant_a)).status_code == 404
    assert client.get(export_url(tenant_a)).status_code == 404
    rows = exported(client.get(export_url(tenant_b)))
    assert [r["object_repr"] for r in rows] == ["Bravo secret credit"]
