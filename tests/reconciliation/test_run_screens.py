from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from django.test import TestCase
from django.urls import reverse

from apps.reconciliation.models import ReconciliationRun
from apps.tenancy.context import tenant_context
from apps.tenancy.roles import Role
from tests.conftest import member

pytestmark = pytest.mark.django_db
BUNDLE = Path(__file__).resolve().parents[1] / "data" / "bundle-2026-10"


def zipped(folder: Path, *, break_pricing: bool = False) -> io.BytesIO:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        for path in folder.iterdir():
            text = path.read_text()
            if break_pricing and path.name == "pricing.json":
                text = text.replace('"up_to": "10"', '"up_to": "0.5"', 1)
            archive.writestr(path.name, text)
    data.seek(0)
    data.name = "bundle.zip"
    return data


@pytest.fixture
def analyst(client, tenant_a):
    client.force_login(member(tenant_a, Role.FINANCE_ANALYST))
    return client


def test_uploading_a_bundle_loads_it_and_shows_the_reconciled_lines(analyst, tenant_a):
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = analyst.post(reverse("bundle-upload", args=[tenant_a.slug]), {"bundle": zipped(BUNDLE)})
    assert response.status_code == 302
    with tenant_context(tenant_a):
        run = ReconciliationRun.objects.get()
    assert response["Location"] == reverse("run-detail", args=[tenant_a.slug, run.pk])
    page = analyst.get(response["Location"]).content.decode()
    assert "4 unreadable rows were skipped" in page
    assert "Reconciliation of 2026-10" in page and "Under-bill" in page and "Proration" in page
    only_timing = analyst.get(response["Location"], {"class": "timing"}).content.decode()
    assert only_timing.count('class="class class-timing"') >= 1 and "class-under_bill" not in only_timing


def test_a_broken_bundle_is_refused_naming_the_file_and_field(analyst, tenant_a):
    response = analyst.post(
        reverse("bundle-upload", args=[tenant_a.slug]), {"bundle": zipped(BUNDLE, break_pricing=True)}
    )
    assert response.status_code == 422
    assert "pricing.json" in response.content.decode() and "up_to" in response.content.decode()
    with tenant_context(tenant_a):
        assert not ReconciliationRun.objects.exists()


def test_starting_a_run_and_watching_its_progress(analyst, tenant_a):
    url = reverse("runs", args=[tenant_a.slug])
    assert analyst.post(url, {"period": "2026-13"}).status_code == 422
    response = analyst.post(url, {"period": "2026-10"})  # queued: its commit starts it in production
    with tenant_context(tenant_a):
        run = ReconciliationRun.objects.get()
    detail = reverse("run-detail", args=[tenant_a.slug, run.pk])
    progress = analyst.get(detail, {"part": "progress"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 302 and "<progress" in progress.content.decode()
    listing = analyst.get(url).content.decode()
    assert 'hx-trigger="every 1s"' in listing, "the list refreshes itself while a run is going"
    with tenant_context(tenant_a):
        ReconciliationRun.objects.filter(pk=run.pk).update(status="succeeded", progress=100)
    done = analyst.get(detail, {"part": "progress"}, HTTP_HX_REQUEST="true")
    assert done.status_code == 204 and done["HX-Refresh"] == "true"


def test_viewers_cannot_start_runs(client, tenant_a):
    client.force_login(member(tenant_a, Role.VIEWER))
    assert client.post(reverse("runs", args=[tenant_a.slug]), {"period": "2026-10"}).status_code == 403
    assert client.get(reverse("runs", args=[tenant_a.slug])).status_code == 200


def test_a_line_shows_its_working(analyst, tenant_a):
    from apps.reconciliation.models import ReconciliationLine

    with TestCase.captureOnCommitCallbacks(execute=True):
        analyst.post(reverse("bundle-upload", args=[tenant_a.slug]), {"bundle": zipped(BUNDLE)})
    with tenant_context(tenant_a):
        run = ReconciliationRun.objects.get()
        timing = ReconciliationLine.objects.filter(run=run, classification="timing").first()
        credit = ReconciliationLine.objects.filter(run=run, classification="credit").first()
    page = analyst.get(reverse("run-line", args=[tenant_a.slug, run.pk, timing.pk])).content.decode()
    assert "Late events" in page and "Received after the cut-off" in page and "tier by tier" in page
    assert "rounded once" in page and "Metered by the provider" in page
    credited = analyst.get(reverse("run-line", args=[tenant_a.slug, run.pk, credit.pk])).content.decode()
    assert "Credits applied" in credited
