"""A finding's status changes from its queue row, in place: the answer is the row alone."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.reconciliation.models import Discrepancy
from apps.tenancy.context import tenant_context
from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import DiscrepancyFactory

pytestmark = pytest.mark.django_db


def _url(tenant, finding) -> str:
    return reverse("queue-row-status", kwargs={"tenant_slug": tenant.slug, "discrepancy_id": finding.pk})


def test_an_analyst_resolves_a_finding_from_its_row(client, tenant_a):
    finding = DiscrepancyFactory(tenant=tenant_a)
    analyst = member(tenant_a, Role.FINANCE_ANALYST)
    client.force_login(analyst)
    queue = client.get(reverse("queue", kwargs={"tenant_slug": tenant_a.slug})).content.decode()
    assert f'hx-post="{_url(tenant_a, finding)}"' in queue
    response = client.post(
        _url(tenant_a, finding), {f"status_{finding.pk}": "resolved"}, headers={"hx-request": "true"}
    )
    row = response.content.decode()
    assert response.status_code == 200 and row.lstrip().startswith(f'<tr id="finding-{finding.pk}"')
    assert '<option value="resolved" selected>' in row and "<html" not in row
    with tenant_context(tenant_a):
        assert Discrepancy.objects.get(pk=finding.pk).status == "resolved"
        assert AuditEvent.objects.filter(action="discrepancy.status", actor=analyst).count() == 1


def test_dismissing_from_the_row_is_refused_it_needs_a_reason(client, tenant_a):
    finding = DiscrepancyFactory(tenant=tenant_a)
    client.force_login(member(tenant_a, Role.FINANCE_ANALYST))
    response = client.post(_url(tenant_a, finding), {f"status_{finding.pk}": "dismissed"})
    assert response.status_code == 422 and "dismiss with a reason" in response.content.decode()
    with tenant_context(tenant_a):
        assert Discrepancy.objects.get(pk=finding.pk).status == finding.status


@pytest.mark.parametrize("role", [Role.VIEWER, Role.CSM, Role.ADMIN])
def test_roles_that_do_not_work_the_queue_cannot(client, tenant_a, role):
    finding = DiscrepancyFactory(tenant=tenant_a)
    client.force_login(member(tenant_a, role))
    assert client.post(_url(tenant_a, finding), {f"status_{finding.pk}": "resolved"}).status_code == 403
    with tenant_context(tenant_a):
        assert Discrepancy.objects.get(pk=finding.pk).status == finding.status


def test_the_queue_filters_by_owner(client, tenant_a):
    analyst = member(tenant_a, Role.FINANCE_ANALYST)
    mine = DiscrepancyFactory(tenant=tenant_a, owner=analyst, status="assigned")
    routed = DiscrepancyFactory(tenant=tenant_a, owner_role=Role.REVOPS)
    watched = DiscrepancyFactory(tenant=tenant_a, owner_role="")
    client.force_login(analyst)
    queue = reverse("queue", kwargs={"tenant_slug": tenant_a.slug})

    def shown(owner: str) -> set[int]:
        page = client.get(queue, {"owner": owner}).content.decode()
        return {d.pk for d in (mine, routed, watched) if f'name="ids" value="{d.pk}"' in page}

    assert shown(f"user:{analyst.pk}") == {mine.pk}
    assert shown("role:revops") == {routed.pk}
    assert shown("nobody") == {watched.pk}
    assert shown("") == {mine.pk, routed.pk, watched.pk}
    assert f'<option value="user:{analyst.pk}"' in client.get(queue).content.decode()
