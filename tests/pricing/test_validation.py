"""Charge and catalogue validation: every rule names the field it is about."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from apps.pricing import (
    Charge,
    PricingValidationError,
    Tier,
    UnitRule,
    parse_catalog,
    validate_catalog,
    validate_charge,
    validate_unit_rule,
)

D = Decimal
OPEN = Tier(None, D(1))


def fields(issues: Any) -> list[str]:
    return [issue.field for issue in issues]


@pytest.mark.parametrize(
    ("charge", "field", "reason"),
    [
        (
            Charge("graduated", tiers=(Tier(D(10), D(1)), Tier(D(10), D(1)), OPEN)),
            "tiers[1].up_to",
            "greater",
        ),
        (Charge("volume", tiers=(Tier(D(10), D(1)), Tier(D(5), D(1)), OPEN)), "tiers[1].up_to", "greater"),
        (Charge("graduated", tiers=(Tier(D(1), D(1)), Tier(D(2), D(1)))), "tiers[1].up_to", "last tier"),
        (Charge("graduated", tiers=(OPEN, Tier(None, D(2)))), "tiers[0].up_to", "only the last"),
        (Charge("graduated", tiers=(Tier(D(0), D(1)), OPEN)), "tiers[0].up_to", "greater than 0"),
        (Charge("graduated", tiers=(Tier(D(1), D(-1)), OPEN)), "tiers[0].unit_amount", "negative"),
        (
            Charge("volume", tiers=(Tier(D(1), D(1)), Tier(None, D(1), D(-5)))),
            "tiers[1].flat_amount",
            "negative",
        ),
        (Charge("graduated", tiers=()), "tiers", "at least one tier"),
        (Charge("per_unit"), "unit_amount", "required"),
        (Charge("per_unit", unit_amount=D("-0.01")), "unit_amount", "negative"),
        (Charge("per_unit", unit_amount=D("0.0000000000001")), "unit_amount", "13 decimal places"),
        (Charge("per_unit", unit_amount=D(1), tiers=(OPEN,)), "tiers", "not used"),
        (Charge("graduated", unit_amount=D(1), tiers=(OPEN,)), "unit_amount", "not used"),
        (Charge("package", package_amount=D(40)), "package_size", "required"),
        (Charge("package", package_size=D(0), package_amount=D(40)), "package_size", "greater than 0"),
        (Charge("package", package_size=D(5)), "package_amount", "required"),
        (Charge("package", package_size=D(5), package_amount=D(-40)), "package_amount", "negative"),
        (Charge("tiered"), "model", "unknown model"),  # type: ignore[arg-type]
        (Charge("per_unit", unit_amount=D("NaN")), "unit_amount", "finite"),
        (Charge("per_unit", unit_amount=0.5), "unit_amount", "float"),  # type: ignore[arg-type]
    ],
)
def test_each_charge_rule_names_its_field(charge: Charge, field: str, reason: str) -> None:
    issues = validate_charge(charge)
    assert fields(issues) == [field]
    assert reason in issues[0].reason


def test_twelve_decimal_places_are_allowed_and_trailing_zeros_do_not_count() -> None:
    assert validate_charge(Charge("per_unit", unit_amount=D("0.000000000001"))) == []
    assert validate_charge(Charge("per_unit", unit_amount=D("1.00000000000000000"))) == []


def test_an_unknown_currency_is_reported_on_the_currency_field() -> None:
    issues = validate_charge(Charge("per_unit", unit_amount=D(1)), "ABC")
    assert fields(issues) == ["currency"]


def test_paths_are_prefixed_for_nested_charges() -> None:
    charge = Charge("graduated", tiers=(Tier(D(5), D(1)), Tier(D(3), D(1)), OPEN))
    assert fields(validate_charge(charge, path="plans[0].charges[1]")) == [
        "plans[0].charges[1].tiers[1].up_to"
    ]


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        (UnitRule(D(0), "up"), "unit_size"),
        (UnitRule(D(-1000), "up"), "unit_size"),
        (UnitRule(D(1), "round"), "rounding"),  # type: ignore[arg-type]
    ],
)
def test_unit_rules_need_a_positive_size_and_a_known_rounding(rule: UnitRule, field: str) -> None:
    assert fields(validate_unit_rule(rule)) == [field]


CATALOG: dict[str, Any] = {
    "meters": [
        {"key": "api_calls", "name": "API calls", "unit_size": "1000", "rounding": "up"},
        {"key": "storage_gb", "name": "Storage (GB-month)", "unit_size": "1", "rounding": "none"},
        {"key": "seats", "name": "Seats", "unit_size": "1", "rounding": "none"},
    ],
    "plans": [
        {
            "key": "growth",
            "name": "Growth",
            "currency": "USD",
            "base_fee": "99.00",
            "charges": [
                {
                    "meter": "api_calls",
                    "model": "graduated",
                    "tiers": [
                        {"up_to": "1", "unit_amount": "10.00"},
                        {"up_to": "10", "unit_amount": "8.00"},
                        {"up_to": None, "unit_amount": "5.00"},
                    ],
                },
                {
                    "meter": "storage_gb",
                    "model": "volume",
                    "tiers": [
                        {"up_to": "100", "unit_amount": "0.25"},
                        {"up_to": "1000", "unit_amount": "0.20"},
                        {"up_to": None, "unit_amount": "0.15", "flat_amount": "5.00"},
                    ],
                },
                {"meter": "seats", "model": "package", "package_size": "5", "package_amount": "40.00"},
            ],
        },
        {
            "key": "tokyo",
            "name": "Tokyo",
            "currency": "JPY",
            "base_fee": "15000",
            "charges": [{"meter": "api_calls", "model": "per_unit", "unit_amount": "13.7"}],
        },
    ],
}


def broken(**changes: Any) -> dict[str, Any]:
    """A copy of CATALOG with values replaced at dotted paths (`plans.0.base_fee`); None deletes."""
    data = copy.deepcopy(CATALOG)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        key: Any = int(last) if last.isdigit() else last
        if value is None:
            del node[key]
        else:
            node[key] = value
    return data


def test_the_example_catalogue_parses() -> None:
    catalog = parse_catalog(CATALOG)
    assert validate_catalog(CATALOG) == []
    growth = catalog.plan("growth")
    assert growth.base_fee == D("99.00")
    api = growth.charge_for("api_calls")
    assert api is not None
    assert api.tiers[2] == Tier(None, D("5.00"), D(0))
    assert catalog.meter("api_calls").unit_rule == UnitRule(D(1000), "up")
    assert catalog.plan("tokyo").currency == "JPY"
    assert growth.charge_for("nope") is None


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"plans.0.charges.0.tiers.1.up_to": "1"}, "plans[0].charges[0].tiers[1].up_to", "greater"),
        ({"plans.0.charges.0.tiers.2.up_to": "100"}, "plans[0].charges[0].tiers[2].up_to", "last tier"),
        ({"plans.0.charges.0.tiers.0.up_to": None}, "plans[0].charges[0].tiers[0].up_to", "required"),
        (
            {"plans.0.charges.0.tiers.0.unit_amount": "-1"},
            "plans[0].charges[0].tiers[0].unit_amount",
            "negative",
        ),
        (
            {"plans.0.charges.1.tiers.2.flat_amount": "-5"},
            "plans[0].charges[1].tiers[2].flat_amount",
            "negative",
        ),
        (
            {"plans.1.charges.0.unit_amount": "0.1234567890123"},
            "plans[1].charges[0].unit_amount",
            "decimal places",
        ),
        ({"plans.1.charges.0.unit_amount": 13.7}, "plans[1].charges[0].unit_amount", "inexact"),
        ({"plans.1.charges.0.unit_amount": "13,7"}, "plans[1].charges[0].unit_amount", "decimal string"),
        ({"plans.1.charges.0.unit_amount": "Infinity"}, "plans[1].charges[0].unit_amount", "decimal string"),
        ({"plans.1.charges.0.unit_amount": None}, "plans[1].charges[0].unit_amount", "required"),
        ({"plans.1.charges.0.model": "tiered"}, "plans[1].charges[0].model", "unknown model"),
        ({"plans.1.charges.0.meter": "minutes"}, "plans[1].charges[0].meter", "unknown meter"),
        ({"plans.0.charges.2.package_size": "0"}, "plans[0].charges[2].package_size", "greater than 0"),
        ({"plans.0.charges.2.package_amount": None}, "plans[0].charges[2].package_amount", "required"),
        ({"plans.1.currency": "YEN"}, "plans[1].currency", "unknown currency"),
        ({"plans.0.base_fee": "-99"}, "plans[0].base_fee", "negative"),
        ({"plans.0.base_fee": None}, "plans[0].base_fee", "required"),
        ({"plans.1.key": "growth"}, "plans[1].key", "duplicate plan"),
        ({"plans.0.charges.2.meter": "api_calls"}, "plans[0].charges[2].meter", "already prices"),
        (
            {"plans.0.charges.1.tiers.2.flat_amout": "5"},
            "plans[0].charges[1].tiers[2].flat_amout",
            "unknown field",
        ),
        ({"meters.0.unit_size": "0"}, "meters[0].unit_size", "greater than 0"),
        ({"meters.0.rounding": "nearest"}, "meters[0].rounding", "must be one of"),
        ({"meters.1.key": "api_calls"}, "meters[1].key", "duplicate meter"),
        ({"meters": "api_calls"}, "meters", "must be a list"),
        ({"plans.0.charges.0.tiers": {}}, "plans[0].charges[0].tiers", "must be a list"),
    ],
)
def test_each_catalogue_rule_names_its_field(changes: dict[str, Any], field: str, reason: str) -> None:
    issues = validate_catalog(broken(**changes))
    assert field in fields(issues), issues
    match = next(issue for issue in issues if issue.field == field)
    assert reason in match.reason
    with pytest.raises(PricingValidationError):
        parse_catalog(broken(**changes))


def test_all_errors_are_reported_at_once_and_nothing_is_half_parsed() -> None:
    data = broken(
        **{
            "meters.0.unit_size": "-1",
            "plans.0.currency": "???",
            "plans.0.charges.0.tiers.1.up_to": "0.5",
            "plans.1.charges.0.unit_amount": 1.5,
        }
    )
    with pytest.raises(PricingValidationError) as caught:
        parse_catalog(data)
    assert fields(caught.value.errors) == [
        "meters[0].unit_size",
        "plans[0].currency",
        "plans[0].charges[0].tiers[1].up_to",
        "plans[1].charges[0].unit_amount",
    ]
    assert "4 pricing validation errors" in str(caught.value)
    assert caught.value.as_dict()[0] == {
        "field": "meters[0].unit_size",
        "reason": "must be greater than 0 (got -1)",
    }


def test_an_unreadable_value_is_reported_once() -> None:
    issues = validate_catalog(broken(**{"plans.0.charges.0.tiers.1.up_to": "ten"}))
    assert fields(issues) == ["plans[0].charges[0].tiers[1].up_to"]


@pytest.mark.parametrize("data", [[], "pricing", None, 3])
def test_a_catalogue_must_be_an_object(data: object) -> None:
    assert fields(validate_catalog(data)) == [""]


def test_missing_sections_are_required() -> None:
    assert fields(validate_catalog({})) == ["meters", "plans"]


def test_whole_numbers_in_json_are_exact_and_accepted() -> None:
    catalog = parse_catalog(broken(**{"plans.1.base_fee": 15000, "meters.0.unit_size": 1000}))
    assert catalog.plan("tokyo").base_fee == D(15000)


def test_null_optional_amounts_mean_not_set() -> None:
    catalog = parse_catalog(broken(**{"plans.0.charges.0.tiers.0.flat_amount": "0"}))
    assert catalog.plan("growth").charge_for("api_calls") is not None
    data = broken()
    data["plans"][0]["charges"][0]["tiers"][0]["flat_amount"] = None
    api = parse_catalog(data).plan("growth").charge_for("api_calls")
    assert api is not None
    assert api.tiers[0].flat_amount == D(0)
    data["plans"][0]["charges"][2]["package_size"] = None
    assert fields(validate_catalog(data)) == ["plans[0].charges[2].package_size"]
