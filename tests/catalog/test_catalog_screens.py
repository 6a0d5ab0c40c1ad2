from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from apps.catalog.models import Charge, Meter
from apps.tenancy.context import tenant_context
from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import MeterFactory, PlanVersionFactory

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def revops(client, tenant_a):
    client.force_login(member(tenant_a, Role.REVOPS))
    return client


@pytest.fixture
def setup(tenant_a):
    meter = MeterFactory(
        tenant=tenant_a, key="api_calls", name="API calls", unit_size=Decimal(1000), rounding="up"
    )
    version = PlanVersionFactory(tenant=tenant_a)
    url = reverse("charge-edit", args=[tenant_a.slug, version.pk, meter.pk])
    preview = reverse("charge-preview", args=[tenant_a.slug, version.pk, meter.pk])
    return meter, version, url, preview


def tiers(*rows, model="graduated", op="save", **extra):
    data = {"model": model, "tier_count": str(len(rows)), "op": op, **extra}
    for i, (up_to, unit, flat) in enumerate(rows):
        data |= {f"tier-{i}-up_to": up_to, f"tier-{i}-unit_amount": unit, f"tier-{i}-flat_amount": flat}
    return data


SEED = [("1", "10", ""), ("10", "8", ""), ("", "5", "")]


def test_the_tier_editor_adds_removes_and_reorders_rows_without_saving(revops, setup):
    _, version, url, _ = setup
    added = revops.post(url, tiers(*SEED, op="add"), **HX).content.decode()
    assert added.count('class="tier-row"') == 4 and 'name="tier-3-up_to" value=""' in added
    removed = revops.post(url, tiers(*SEED, op="remove-0"), **HX).content.decode()
    assert removed.count('class="tier-row"') == 2 and 'name="tier-0-up_to" value="10"' in removed
    moved = revops.post(url, tiers(*SEED, op="down-0"), **HX).content.decode()
    assert 'name="tier-0-up_to" value="10"' in moved and 'name="tier-1-up_to" value="1"' in moved
    with tenant_context(version.tenant):
        assert not Charge.objects.filter(plan_version=version).exists()


def test_saving_shows_each_error_next_to_its_field(revops, setup):
    _, version, url, _ = setup
    response = revops.post(url, tiers(("10", "1", ""), ("5", "abc", ""), ("", "1", "-2")), **HX)
    html = response.content.decode()
    assert response.status_code == 422
    assert 'id="tier-1-up_to-error"' in html and "strictly increases" in html
    assert 'id="tier-1-unit_amount-error"' in html and "&#x27;abc&#x27; is not a number" in html
    assert 'id="tier-2-flat_amount-error"' in html
    assert 'value="abc"' in html, "what the user typed is kept"
    with tenant_context(version.tenant):
        assert not Charge.objects.filter(plan_version=version).exists()


def test_a_valid_charge_saves_and_shows_on_the_version(revops, setup, tenant_a):
    meter, version, url, _ = setup
    response = revops.post(url, tiers(*SEED), **HX)
    assert response.status_code == 204 and response["HX-Redirect"].endswith(
        f"/catalog/versions/{version.pk}/"
    )
    page = revops.get(reverse("plan-version", args=[tenant_a.slug, version.pk])).content.decode()
    assert "API calls" in page and "Graduated tiers" in page and "∞" in page
    with tenant_context(tenant_a):
        charge = Charge.objects.get(plan_version=version, meter=meter)
        assert [t.unit_amount for t in charge.tiers.order_by("position")] == [10, 8, 5]


def test_switching_the_model_shows_its_fields(revops, setup):
    _, _, url, _ = setup
    html = revops.post(url, {"model": "package", "tier_count": "0", "op": "refresh"}, **HX).content.decode()
    assert 'name="package_size"' in html and 'class="tier-row"' not in html
    html = revops.post(url, {"model": "volume", "tier_count": "0", "op": "refresh"}, **HX).content.decode()
    assert html.count('class="tier-row"') == 2


def test_the_live_preview_prices_the_typed_tiers_tier_by_tier(revops, setup):
    _, _, _, preview = setup
    html = revops.post(preview, tiers(*SEED, preview_quantity="25000"), **HX).content.decode()
    assert "<strong>25</strong> billing units" in html
    assert "157.00 USD" in html
    assert [cell for cell in ("10", "72", "75") if f'<td class="num">{cell}</td>' in html] == [
        "10",
        "72",
        "75",
    ]
    volume = revops.post(
        preview, tiers(*SEED, model="volume", preview_quantity="25000"), **HX
    ).content.decode()
    assert "125.00 USD" in volume and "applies" in volume
    exact = revops.post(preview, tiers(*SEED, preview_quantity="1000"), **HX).content.decode()
    assert "10.00 USD" in exact, "exactly 1,000 calls stays in tier one"
    broken = revops.post(
        preview, tiers(("5", "1", ""), ("1", "1", ""), ("", "1", ""), preview_quantity="10"), **HX
    )
    assert "Fix the highlighted fields" in broken.content.decode()


def test_meters_are_created_with_clear_errors(revops, tenant_a):
    url = reverse("meter-new", args=[tenant_a.slug])
    bad = revops.post(
        url, {"key": "seats", "name": "Seats", "aggregation": "max", "unit_size": "0", "rounding": "none"}
    )
    assert bad.status_code == 422 and "unit size must be greater than 0" in bad.content.decode()
    ok = revops.post(
        url, {"key": "seats", "name": "Seats", "aggregation": "max", "unit_size": "1", "rounding": "none"}
    )
    assert ok.status_code == 302
    with tenant_context(tenant_a):
        assert Meter.objects.get(key="seats").aggregation == "max"


def test_an_override_is_created_for_an_account(revops, tenant_a):
    from tests.factories import AccountFactory

    account = AccountFactory(tenant=tenant_a, name="Acme")
    meter = MeterFactory(tenant=tenant_a, name="Seats")
    url = reverse("override-new", args=[tenant_a.slug])
    form = {
        "account": account.pk,
        "meter": meter.pk,
        "effective_from": "2026-10-01T00:00",
        "reason": "contract",
        "model": "package",
        "package_size": "5",
        "package_amount": "40",
        "tier_count": "0",
        "op": "save",
    }
    assert revops.post(url, form).status_code == 302
    page = revops.get(reverse("catalog", args=[tenant_a.slug])).content.decode()
    assert "Acme" in page and "contract" in page and "Package" in page


def test_viewers_read_the_catalogue_but_cannot_change_it(client, tenant_a, setup):
    _, version, url, _ = setup
    client.force_login(member(tenant_a, Role.VIEWER))
    assert client.get(reverse("plan-version", args=[tenant_a.slug, version.pk])).status_code == 200
    assert (
        "Edit prices"
        not in client.get(reverse("plan-version", args=[tenant_a.slug, version.pk])).content.decode()
    )
    assert client.post(url, tiers(*SEED)).status_code == 403
