"""The tenant context: which tenant the current code acts for.

Two walls keep tenants apart. In Python, tenant models' default manager reads
the scope from a context variable and refuses to query without one. In
PostgreSQL, row-level security policies read ``app.tenant_id`` (and
``app.user_id`` for a user's own memberships), which :func:`tenant_context`
sets with ``set_config(..., is_local => true)`` — the ``SET LOCAL`` form — inside
the transaction it opens, so the setting ends with the transaction and a pooled
connection never carries it into the next request.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import connections, transaction

if TYPE_CHECKING:
    from apps.tenancy.models import Tenant


class TenantContextMissing(RuntimeError):
    """A tenant-scoped model was queried or saved outside a tenant context."""


class CrossTenantWrite(RuntimeError):
    """An object of one tenant was about to be written inside another tenant's context."""


@dataclass(frozen=True, slots=True)
class Scope:
    tenant_id: int | None = None
    user_id: int | None = None
    unscoped: bool = False


_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("trueup_scope", default=None)
_EMPTY = Scope()


def current_scope() -> Scope | None:
    return _scope.get()


def current_tenant_id() -> int:
    """The id of the tenant in context; raises when there is none (fail closed)."""
    scope = _scope.get()
    if scope is None or scope.tenant_id is None:
        raise TenantContextMissing("No tenant in context: enter tenant_context(tenant) first.")
    return scope.tenant_id


def _apply_db_scope(using: str, scope: Scope) -> None:
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('app.tenant_id', %s, true), set_config('app.user_id', %s, true),"
            " set_config('app.unscoped', %s, true)",
            [
                "" if scope.tenant_id is None else str(scope.tenant_id),
                "" if scope.user_id is None else str(scope.user_id),
                "on" if scope.unscoped else "",
            ],
        )


@contextmanager
def _enter(scope: Scope, using: str) -> Iterator[None]:
    previous = _scope.get()
    token = _scope.set(scope)
    try:
        with transaction.atomic(using=using):
            _apply_db_scope(using, scope)
            yield
    finally:
        _scope.reset(token)
        connection = connections[using]
        # Nested inside an outer transaction (a savepoint was released): put the outer
        # scope back, since SET LOCAL lasts until the outer transaction ends.
        if connection.in_atomic_block and not connection.needs_rollback:
            _apply_db_scope(using, previous or _EMPTY)


@contextmanager
def tenant_context(
    tenant: Tenant | int, *, user_id: int | None = None, using: str = "default"
) -> Iterator[None]:
    """Act for one tenant: scope the ORM and the database session to it, in one transaction."""
    tenant_id = tenant if isinstance(tenant, int) else tenant.pk
    if tenant_id is None:
        raise TenantContextMissing("tenant_context() needs a saved tenant.")
    with _enter(Scope(tenant_id=tenant_id, user_id=user_id), using):
        yield


@contextmanager
def user_context(user_id: int, *, using: str = "default") -> Iterator[None]:
    """No tenant yet: only the user's own memberships are visible (used to pick a tenant)."""
    with _enter(Scope(user_id=user_id), using):
        yield


@contextmanager
def unscoped_context(*, reason: str, using: str = "default") -> Iterator[None]:
    """Cross every tenant. For platform operators and maintenance only; ``reason`` is for reviewers."""
    if not reason:
        raise ValueError("unscoped_context() needs a reason")
    with _enter(Scope(unscoped=True), using):
        yield
