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
def _sqlite_audit_triggers_allow_the_test_flush(request: pytest.FixtureRequest) -> Any:
    """On SQLite, a transactional test ends with DELETE FROM every table, which the audit triggers refuse.

    PostgreSQL flushes with TRUNCATE, which row triggers do not see. On SQLite the triggers
    are put in place at the start of each database test and lifted just before such a flush.
    """
    marker = request.node.get_closest_marker("django_db")
    if marker is None:
        yield
        return
    from django.conf import settings

    if not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        yield
        return
    transactional = bool(marker.kwargs.get("transaction"))
    request.getfixturevalue("transactional_db" if transactional else "db")
    migration = __import__("apps.audit.migrations.0003_append_only", fromlist=["SQLITE_FORWARD"])
    with connection.cursor() as cursor:
        for statement in migration.SQLITE_FORWARD:
            cursor.execute(statement.replace("CREATE TRIGGER", "CREATE TRIGGER IF NOT EXISTS"))
    yield
    if transactional:
        with connection.cursor() as cursor:
            for statement in migration.SQLITE_BACKWARD:
                cursor.execute(statement)


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
