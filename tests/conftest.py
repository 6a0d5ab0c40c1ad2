from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from apps.tenancy.context import tenant_context
from apps.tenancy.roles import Role
from tests.factories import MembershipFactory, TenantFactory, UserFactory


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        return
    skip = pytest.mark.skip(
        reason="PostgreSQL-only (row-level security, triggers): the tests are running on SQLite"
    )
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def tenant_a(db: None) -> Any:
    return TenantFactory(slug="alpha", name="Alpha Inc")


@pytest.fixture
def tenant_b(db: None) -> Any:
    return TenantFactory(slug="bravo", name="Bravo GmbH")


def member(tenant: Any, role: str = Role.ADMIN, **user_kwargs: Any) -> Any:
    """A user with ``role`` in ``tenant``."""
    user = UserFactory(**user_kwargs)
    MembershipFactory(tenant=tenant, user=user, role=role)
    return user


@pytest.fixture
def admin_a(tenant_a: Any) -> Any:
    return member(tenant_a, Role.ADMIN, email="admin@alpha.test")


@pytest.fixture
def in_a(tenant_a: Any) -> Any:
    with tenant_context(tenant_a):
        yield tenant_a


@pytest.fixture
def is_postgres() -> bool:
    return connection.vendor == "postgresql"
