"""Shared set-up for the usage tests: two tenants with accounts and meters, and a way to post events."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from apps.tenancy.roles import Role
from tests.factories import AccountFactory, MeterFactory, api_key_for

EVENTS_URL = "/api/v1/events"


@dataclass
class Catalog:
    tenant: Any
    accounts: dict[str, Any]
    meters: dict[str, Any]
    raw_key: str


def make_catalog(tenant: Any, role: str = Role.ADMIN) -> Catalog:
    accounts = {
        key: AccountFactory(tenant=tenant, key=key, name=key.title(), timezone=zone)
        for key, zone in (("acme", "UTC"), ("globex", "America/New_York"), ("initech", "Asia/Tokyo"))
    }
    meters = {key: MeterFactory(tenant=tenant, key=key, name=key) for key in ("api_calls", "storage_gb")}
    _, raw = api_key_for(tenant, role)
    return Catalog(tenant, accounts, meters, raw)


@pytest.fixture
def cat_a(tenant_a: Any) -> Catalog:
    return make_catalog(tenant_a)


@pytest.fixture
def cat_b(tenant_b: Any) -> Catalog:
    return make_catalog(tenant_b)


def event(n: int | str, **overrides: Any) -> dict[str, Any]:
    data = {
        "event_id": f"evt-{n}",
        "account_id": "acme",
        "meter": "api_calls",
        "quantity": "10",
        "occurred_at": "2026-10-15T12:00:00Z",
        "properties": {"region": "eu"},
    }
    data.update(overrides)
    return data


def post_events(
    client: Client, raw_key: str, body: Any, content_type: str = "application/json", **extra: Any
) -> Any:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(
        EVENTS_URL, data=data, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {raw_key}", **extra
    )
