"""RevOps settings screens: thresholds, routing rules, pricing and approvals, the schedule."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.reconciliation.models import ReconciliationSchedule, RoutingRule, Threshold
from apps.reconciliation.schedule import next_firings
from apps.reconciliation.settings_selectors import routing_try, threshold_try
from apps.reconciliation.settings_services import routing_rule_create, schedule_rule
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Tenant
from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import AccountFactory, MeterFactory, RoutingRuleFactory, ThresholdFactory

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}
NOT_SETTINGS_EDITORS = [Role.ADMIN, Role.FINANCE_APPROVER, Role.FINANCE_ANALYST, Role.CSM, Role.VIEWER]


def url(name, tenant, *args):
    return reverse(name, args=[tenant.slug, *args])


def audit(tenant, action):
    with tenant_context(tenant):
        return list(AuditEvent.objects.filter(action=action).order_by("id"))


@pytest.fixture
def revops_user(tenant_a):
    return member(tenant_a, Role.REVOPS, email="rory@alpha.test")


@pytest.fixture
def revops(client, revops_user):
    client.force_login(revops_user)
    return client


@pytest.fixture
def api_calls(tenant_a):
    return MeterFactory(tenant=tenant_a, key="api_calls", name="API calls")


# --- thresholds -----------------------------------------------------------------------------------


def test_revops_creates_edits_and_deletes_a_threshold_each_audited(revops, tenant_a, api_calls):
    created = revops.post(
        url("settings-thresholds", tenant_a),
        {"segment": "enterprise", "meter": api_calls.pk, "absolute": "5", "relative": "0.01"},
    )
    assert created.status_code == 302
    with tenant_context(tenant_a):
        threshold = Threshold.objects.get()
    assert (threshold.segment, threshold.meter_id, threshold.absolute, threshold.relative) == (
        "enterprise",
        api_calls.pk,
        Decimal(5),
        Decimal("0.01"),
    )
    [create] = audit(tenant_a, "threshold.create")
    assert create.actor_label == "rory@alpha.test"
    assert create.after["absolute"] == "5" and create.after["meter"] == api_calls.pk

    edit = url("settings-threshold-edit", tenant_a, threshold.pk)
    assert "enterprise" in revops.get(edit).content.decode()
    saved = revops.post(
        edit, {"segment": "enterprise", "meter": api_calls.pk, "absolute": "12.50", "relative": "0.01"}
    )
    assert saved.status_code == 302
    with tenant_context(tenant_a):
        threshold.refresh_from_db()
    assert threshold.absolute == Decimal("12.50")
    [update] = audit(tenant_a, "threshold.update")
    assert update.before == {"absolute": "5.000000000000"} and update.after == {"absolute": "12.50"}

    assert revops.post(url("settings-threshold-delete", tenant_a, threshold.pk)).status_code == 302
    with tenant_context(tenant_a):
        assert not Threshold.objects.exists()
    [delete] = audit(tenant_a, "threshold.delete")
    assert delete.before["segment"] == "enterprise" and delete.object_id == str(threshold.pk)


def test_threshold_errors_are_422_and_name_the_field(revops, tenant_a, api_calls):
    page = url("settings-thresholds", tenant_a)
    negative = revops.post(page, {"segment": "", "meter": "", "absolute": "-1", "relative": "0"})
    assert negative.status_code == 422
    assert 'id="id_absolute-error"' in negative.content.decode()
    ThresholdFactory(tenant=tenant_a, segment="smb", meter=api_calls)
    duplicate = revops.post(page, {"segment": "smb", "meter": api_calls.pk, "absolute": "1", "relative": "0"})
    assert duplicate.status_code == 422
    assert 'id="id_segment-error"' in duplicate.content.decode()
    assert "exists already" in duplicate.content.decode()
    with tenant_context(tenant_a):
        assert Threshold.objects.count() == 1
        assert not AuditEvent.objects.filter(action="threshold.create").exists()


def test_a_meter_of_another_tenant_cannot_be_chosen(revops, tenant_a, tenant_b):
    theirs = MeterFactory(tenant=tenant_b)
    response = revops.post(
        url("settings-thresholds", tenant_a),
        {"segment": "", "meter": theirs.pk, "absolute": "1", "relative": "0"},
    )
    assert response.status_code == 422 and 'id="id_meter-error"' in response.content.decode()


@pytest.mark.parametrize("role", NOT_SETTINGS_EDITORS)
def test_only_revops_changes_settings_others_get_403_and_nothing_changes(client, tenant_a, api_calls, role):
    threshold = ThresholdFactory(tenant=tenant_a, segment="smb", absolute=Decimal(1))
    rule = RoutingRuleFactory(tenant=tenant_a, classification="under_bill", owner_role=Role.REVOPS)
    client.force_login(member(tenant_a, role))
    assert client.get(url("settings", tenant_a)).status_code == 200
    assert client.get(url("settings-thresholds", tenant_a)).status_code == 200
    writes = [
        (url("settings-thresholds", tenant_a), {"segment": "x", "absolute": "1", "relative": "0"}),
        (
            url("settings-threshold-edit", tenant_a, threshold.pk),
            {"segment": "smb", "absolute": "9", "relative": "0"},
        ),
        (url("settings-threshold-delete", tenant_a, threshold.pk), {}),
        (
            url("settings-routing", tenant_a),
            {"classification": "over_bill", "owner_kind": "role", "owner_role": "csm"},
        ),
        (
            url("settings-routing-edit", tenant_a, rule.pk),
            {"classification": "under_bill", "owner_kind": "role", "owner_role": "viewer"},
        ),
        (url("settings-routing-delete", tenant_a, rule.pk), {}),
        (
            url("settings-general", tenant_a),
            {
                "default_timezone": "UTC",
                "rounding_mode": "ROUND_DOWN",
                "proration": "days",
                "single_approval_limit": "1",
            },
        ),
        (url("settings-schedule", tenant_a), {"day_of_month": "9", "hour": "1"}),
    ]
    for target, data in writes:
        assert client.post(target, data).status_code == 403, target
    with tenant_context(tenant_a):
        threshold.refresh_from_db()
        rule.refresh_from_db()
    tenant_a.refresh_from_db()
    assert threshold.absolute == Decimal(1) and rule.owner_role == Role.REVOPS
    assert (tenant_a.single_approval_limit, tenant_a.rounding_mode) == (Decimal(1000), "ROUND_HALF_UP")
    with tenant_context(tenant_a):
        assert Threshold.objects.count() == 1 and RoutingRule.objects.count() == 1
        assert not ReconciliationSchedule.objects.exists()
        assert not AuditEvent.objects.exists()


def test_another_tenants_threshold_and_rule_are_not_found(revops, tenant_a, tenant_b):
    threshold = ThresholdFactory(tenant=tenant_b, segment="smb", absolute=Decimal(1))
    rule = RoutingRuleFactory(tenant=tenant_b)
    for name, pk in (
        ("settings-threshold-edit", threshold.pk),
        ("settings-threshold-delete", threshold.pk),
        ("settings-routing-edit", rule.pk),
        ("settings-routing-delete", rule.pk),
    ):
        assert revops.post(url(name, tenant_a, pk), {"segment": "x", "absolute": "9"}).status_code == 404
    with tenant_context(tenant_b):
        threshold.refresh_from_db()
        assert threshold.absolute == Decimal(1)
        assert RoutingRule.objects.filter(pk=rule.pk).exists()


def test_try_it_applies_the_most_specific_threshold_as_a_run_would(revops, tenant_a, api_calls):
    storage = MeterFactory(tenant=tenant_a, key="storage_gb", name="Storage")
    default = ThresholdFactory(tenant=tenant_a, segment="", meter=None, absolute=Decimal(5))
    by_segment = ThresholdFactory(tenant=tenant_a, segment="enterprise", absolute=Decimal(50))
    by_meter = ThresholdFactory(tenant=tenant_a, segment="", meter=api_calls, absolute=Decimal(20))
    both = ThresholdFactory(
        tenant=tenant_a, segment="enterprise", meter=api_calls, absolute=Decimal(100), relative=Decimal("0.1")
    )

    def trial(segment, meter, expected, difference):
        with tenant_context(tenant_a):
            result = threshold_try(
                tenant_a,
                segment=segment,
                meter=meter,
                expected=Decimal(expected),
                difference=Decimal(difference),
            )
        return result.rule, result.verdict.classification

    assert trial("enterprise", api_calls, "1000", "99") == (both, "within_tolerance")
    assert trial("enterprise", api_calls, "2000", "150") == (both, "within_tolerance")  # < 0.1 x 2000
    assert trial("enterprise", api_calls, "1000", "150") == (both, "under_bill")
    assert trial("smb", api_calls, "1000", "-25") == (by_meter, "over_bill")
    assert trial("enterprise", storage, "1000", "30") == (by_segment, "within_tolerance")
    assert trial("enterprise", None, "1000", "30") == (by_segment, "within_tolerance")
    assert trial("smb", storage, "10", "5") == (default, "under_bill")
    assert trial("smb", storage, "10", "0") == (default, "matched")

    response = revops.get(
        url("settings-threshold-try", tenant_a),
        {"segment": "enterprise", "meter": api_calls.pk, "expected": "1000", "difference": "150"},
        **HX,
    )
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert "Material: it becomes a discrepancy" in html
    assert reverse("settings-threshold-edit", args=[tenant_a.slug, both.pk]) in html
    bad = revops.get(url("settings-threshold-try", tenant_a), {"expected": "x", "difference": "1"}, **HX)
    assert bad.status_code == 422 and 'id="id_expected-error"' in bad.content.decode()


def test_with_no_threshold_every_minor_unit_is_material(revops, tenant_a):
    response = revops.get(
        url("settings-threshold-try", tenant_a),
        {"segment": "", "meter": "", "expected": "10", "difference": "0.01"},
    )
    html = response.content.decode()
    assert response.status_code == 200 and "<html" in html  # without HTMX: the whole page
    assert "Material: it becomes a discrepancy" in html and "the built-in 0 and 0" in html


# --- routing rules --------------------------------------------------------------------------------


def test_revops_routes_a_class_to_a_member_edits_and_deletes_the_rule(revops, tenant_a, api_calls):
    cora = member(tenant_a, Role.CSM, email="cora@alpha.test")
    page = url("settings-routing", tenant_a)
    html = revops.get(page).content.decode()
    assert "cora@alpha.test" in html and "The watch-list: no owner" in html  # the defaults are shown
    created = revops.post(
        page,
        {
            "classification": "over_bill",
            "segment": "enterprise",
            "meter": api_calls.pk,
            "owner_kind": "person",
            "owner": cora.pk,
        },
    )
    assert created.status_code == 302
    with tenant_context(tenant_a):
        rule = RoutingRule.objects.get()
    assert (rule.classification, rule.segment, rule.meter_id, rule.owner_id, rule.owner_role) == (
        "over_bill",
        "enterprise",
        api_calls.pk,
        cora.pk,
        "",
    )
    assert audit(tenant_a, "routing_rule.create")[0].after["owner"] == cora.pk

    edit = url("settings-routing-edit", tenant_a, rule.pk)
    saved = revops.post(
        edit,
        {
            "classification": "over_bill",
            "segment": "enterprise",
            "owner_kind": "csm",
            "owner_role": "finance_analyst",
        },
    )
    assert saved.status_code == 302
    with tenant_context(tenant_a):
        rule.refresh_from_db()
    assert (rule.to_account_csm, rule.owner_id, rule.owner_role, rule.meter_id) == (
        True,
        None,
        "finance_analyst",
        None,
    )
    [update] = audit(tenant_a, "routing_rule.update")
    assert update.before["owner"] == cora.pk and update.after["owner"] is None
    assert update.after["to_account_csm"] is True

    assert revops.post(url("settings-routing-delete", tenant_a, rule.pk)).status_code == 302
    with tenant_context(tenant_a):
        assert not RoutingRule.objects.exists()
    assert audit(tenant_a, "routing_rule.delete")[0].before["classification"] == "over_bill"


def test_a_rule_cannot_route_to_someone_outside_the_tenant(revops, tenant_a, tenant_b, revops_user):
    outsider = member(tenant_b, Role.CSM, email="bob@bravo.test")
    page = url("settings-routing", tenant_a)
    assert "bob@bravo.test" not in revops.get(page).content.decode()
    response = revops.post(
        page, {"classification": "over_bill", "owner_kind": "person", "owner": outsider.pk}
    )
    assert response.status_code == 422 and 'id="id_owner-error"' in response.content.decode()
    # The service refuses it too, whatever calls it.
    from django.core.exceptions import ValidationError

    with tenant_context(tenant_a), pytest.raises(ValidationError) as refused:
        routing_rule_create(actor=revops_user, classification="over_bill", owner=outsider)
    assert "owner" in refused.value.message_dict
    with tenant_context(tenant_a):
        assert not RoutingRule.objects.exists()


def test_routing_errors_are_422_and_name_the_field(revops, tenant_a):
    page = url("settings-routing", tenant_a)
    no_role = revops.post(page, {"classification": "under_bill", "owner_kind": "role", "owner_role": ""})
    assert no_role.status_code == 422 and 'id="id_owner_role-error"' in no_role.content.decode()
    RoutingRuleFactory(tenant=tenant_a, classification="under_bill", owner_role=Role.REVOPS)
    twice = revops.post(page, {"classification": "under_bill", "owner_kind": "role", "owner_role": "viewer"})
    assert twice.status_code == 422 and 'id="id_classification-error"' in twice.content.decode()


def test_try_routing_uses_the_rules_then_the_products_defaults(revops, tenant_a, api_calls):
    cora = member(tenant_a, Role.CSM, email="cora@alpha.test")
    rory = member(tenant_a, Role.REVOPS, email="rory2@alpha.test")
    with_csm = AccountFactory(tenant=tenant_a, key="acme", segment="smb", csm_owner=cora)
    by_segment = RoutingRuleFactory(
        tenant=tenant_a, classification="under_bill", segment="enterprise", owner=rory, owner_role=""
    )
    by_meter = RoutingRuleFactory(
        tenant=tenant_a, classification="under_bill", meter=api_calls, owner_role=Role.FINANCE_ANALYST
    )

    def trial(classification, account=None, segment="", meter=None):
        with tenant_context(tenant_a):
            result = routing_try(
                tenant_a, classification=classification, account=account, segment=segment, meter=meter
            )
        return result.rule, result.owner_role, result.owner

    assert trial("under_bill", segment="enterprise", meter=api_calls) == (
        by_segment,
        "",
        rory,
    )  # segment wins
    assert trial("under_bill", segment="smb", meter=api_calls) == (by_meter, Role.FINANCE_ANALYST, None)
    assert trial("under_bill", segment="smb") == (None, Role.REVOPS, None)  # default
    assert trial("over_bill", account=with_csm) == (None, Role.CSM, cora)  # default: the account's CSM
    assert trial("timing", segment="smb") == (None, "", None)  # the watch-list

    response = revops.get(
        url("settings-routing-try", tenant_a), {"classification": "over_bill", "account": "acme"}, **HX
    )
    html = response.content.decode()
    assert (
        response.status_code == 200 and "&lt;cora@alpha.test&gt;</h3>" in html and "the default route" in html
    )
    missing = revops.get(
        url("settings-routing-try", tenant_a), {"classification": "over_bill", "account": "nope"}, **HX
    )
    assert missing.status_code == 422 and 'id="id_account-error"' in missing.content.decode()


def test_try_routing_never_finds_another_tenants_account(revops, tenant_a, tenant_b):
    AccountFactory(tenant=tenant_b, key="theirs")
    response = revops.get(
        url("settings-routing-try", tenant_a), {"classification": "over_bill", "account": "theirs"}, **HX
    )
    assert response.status_code == 422 and "No account of this tenant" in response.content.decode()


# --- pricing and approvals ------------------------------------------------------------------------


def test_revops_changes_the_approval_limit_and_rounding_with_before_and_after(revops, tenant_a):
    page = url("settings-general", tenant_a)
    data = {
        "default_timezone": "Europe/Paris",
        "rounding_mode": "ROUND_HALF_EVEN",
        "proration": "days",
        "single_approval_limit": "2500.00",
        "reason": "Board approved new limits",
    }
    assert revops.post(page, data).status_code == 302
    tenant = Tenant.objects.get(pk=tenant_a.pk)
    assert (tenant.single_approval_limit, tenant.rounding_mode, tenant.default_timezone) == (
        Decimal("2500.00"),
        "ROUND_HALF_EVEN",
        "Europe/Paris",
    )
    [event] = audit(tenant_a, "tenant.settings")
    assert event.before == {
        "default_timezone": "UTC",
        "rounding_mode": "ROUND_HALF_UP",
        "single_approval_limit": "1000.00",
    }
    assert event.after == {
        "default_timezone": "Europe/Paris",
        "rounding_mode": "ROUND_HALF_EVEN",
        "single_approval_limit": "2500.00",
    }
    assert event.reason == "Board approved new limits" and event.object_type == "tenancy.tenant"
    assert revops.post(page, data).status_code == 302
    assert len(audit(tenant_a, "tenant.settings")) == 1  # nothing changed: nothing recorded


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("single_approval_limit", "-1"),
        ("default_timezone", "Mars/Olympus"),
        ("rounding_mode", "ROUND_CEILING"),
    ],
)
def test_invalid_general_settings_are_422_and_name_the_field(revops, tenant_a, field, value):
    data = {
        "default_timezone": "UTC",
        "rounding_mode": "ROUND_HALF_UP",
        "proration": "days",
        "single_approval_limit": "10",
    }
    response = revops.post(url("settings-general", tenant_a), {**data, field: value})
    assert response.status_code == 422 and f'id="id_{field}-error"' in response.content.decode()
    tenant = Tenant.objects.get(pk=tenant_a.pk)
    assert (tenant.single_approval_limit, tenant.default_timezone) == (Decimal(1000), "UTC")


# --- the schedule ---------------------------------------------------------------------------------


def test_revops_edits_the_schedule_and_sees_the_next_run_in_the_tenants_time_zone(revops, tenant_a):
    Tenant.objects.filter(pk=tenant_a.pk).update(default_timezone="Asia/Tokyo")
    page = url("settings-schedule", tenant_a)
    assert "No schedule saved: the default applies" in revops.get(page).content.decode()
    saved = revops.post(
        page, {"enabled": "on", "day_of_month": "5", "hour": "7", "pre_invoice_days_before_month_end": "2"}
    )
    assert saved.status_code == 302
    with tenant_context(tenant_a):
        row = ReconciliationSchedule.objects.get()
    assert (row.enabled, row.day_of_month, row.hour, row.pre_invoice_days_before_month_end) == (True, 5, 7, 2)
    [event] = audit(tenant_a, "schedule.update")
    assert event.before == {"day_of_month": 2, "hour": 6, "pre_invoice_days_before_month_end": None}
    assert event.after == {"day_of_month": 5, "hour": 7, "pre_invoice_days_before_month_end": 2}

    html = revops.get(page).content.decode()
    tenant = Tenant.objects.get(pk=tenant_a.pk)
    firings = next_firings(schedule_rule(tenant, row), timezone.now())
    assert len(firings) == 2
    for firing in firings:
        if firing.at <= timezone.now():  # e.g. this month's day 5 is past and its period not run yet
            assert "<strong>due now</strong>, at the next hourly check" in html
        else:
            assert f"{firing.at:%A %-d %B %Y}, 07:00 JST" in html
    assert "Asia/Tokyo" in html


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("day_of_month", "29"),
        ("day_of_month", "0"),
        ("hour", "24"),
        ("pre_invoice_days_before_month_end", "28"),
    ],
)
def test_an_out_of_range_schedule_is_422_and_names_the_field(revops, tenant_a, field, value):
    data = {"enabled": "on", "day_of_month": "2", "hour": "6", field: value}
    response = revops.post(url("settings-schedule", tenant_a), data)
    assert response.status_code == 422 and f'id="id_{field}-error"' in response.content.decode()
    with tenant_context(tenant_a):
        assert not ReconciliationSchedule.objects.exists()


def test_turning_the_schedule_off_says_so(revops, tenant_a):
    assert (
        revops.post(url("settings-schedule", tenant_a), {"day_of_month": "2", "hour": "6"}).status_code == 302
    )
    html = revops.get(url("settings-schedule", tenant_a)).content.decode()
    assert "Scheduled reconciliation is off" in html
    assert audit(tenant_a, "schedule.update")[0].after == {"enabled": False}


def test_the_settings_landing_page_links_every_area_and_the_nav_shows_it(client, tenant_a):
    client.force_login(member(tenant_a, Role.ADMIN))
    html = client.get(url("settings", tenant_a)).content.decode()
    for name in (
        "settings-thresholds",
        "settings-routing",
        "settings-general",
        "settings-schedule",
        "api-keys",
        "connections",
        "usage-settings",
    ):
        assert url(name, tenant_a) in html, name
    assert f'href="{url("audit-log", tenant_a)}"' in html
    client.force_login(member(tenant_a, Role.CSM))
    html = client.get(url("settings", tenant_a)).content.decode()
    assert url("api-keys", tenant_a) not in html
    assert f'href="{url("audit-log", tenant_a)}"' not in html  # CSMs may not read the audit log


def test_saving_the_default_schedule_unchanged_stores_and_records_nothing(revops, tenant_a):
    data = {"enabled": "on", "day_of_month": "2", "hour": "6", "pre_invoice_days_before_month_end": ""}
    assert revops.post(url("settings-schedule", tenant_a), data).status_code == 302
    with tenant_context(tenant_a):
        assert not ReconciliationSchedule.objects.exists()
        assert not AuditEvent.objects.exists()
