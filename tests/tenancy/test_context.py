"""The Python wall: tenant models fail closed outside a tenant context."""

from __future__ import annotations

import pytest

from apps.accounts.models import Account
from apps.tenancy.context import (
    CrossTenantWrite,
    TenantContextMissing,
    current_scope,
    tenant_context,
    unscoped_context,
)
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db


def test_querying_without_a_tenant_context_raises(tenant_a):
    AccountFactory(tenant=tenant_a)
    with pytest.raises(TenantContextMissing, match=r"accounts\.Account queried outside a tenant context"):
        Account.objects.count()
    with pytest.raises(TenantContextMissing):
        list(Account.objects.filter(name="x"))


def test_saving_without_a_tenant_context_raises(tenant_a):
    with pytest.raises(TenantContextMissing):
        Account(key="k", name="n", tenant=tenant_a).save()


def test_queries_see_only_the_tenant_in_context(tenant_a, tenant_b):
    mine = AccountFactory(tenant=tenant_a)
    theirs = AccountFactory(tenant=tenant_b)
    with tenant_context(tenant_a):
        assert list(Account.objects.all()) == [mine]
        assert not Account.objects.filter(pk=theirs.pk).exists()
        # filtering by the other tenant explicitly still finds nothing
        assert not Account.objects.filter(tenant=tenant_b).exists()


def test_new_objects_take_the_tenant_in_context(tenant_a):
    with tenant_context(tenant_a):
        account = Account(key="k1", name="Acme")
        account.save()
        created = Account.objects.bulk_create([Account(key="k2", name="Beta")])
    assert account.tenant_id == tenant_a.pk
    assert created[0].tenant_id == tenant_a.pk


def test_writing_another_tenants_object_raises(tenant_a, tenant_b):
    theirs = AccountFactory(tenant=tenant_b)
    with tenant_context(tenant_a):
        theirs.name = "hijacked"
        with pytest.raises(CrossTenantWrite):
            theirs.save()
        with pytest.raises(CrossTenantWrite):
            Account.objects.bulk_create([Account(key="x", name="x", tenant=tenant_b)])


def test_unscoped_context_crosses_tenants_only_when_asked(tenant_a, tenant_b):
    AccountFactory(tenant=tenant_a)
    AccountFactory(tenant=tenant_b)
    with unscoped_context(reason="test"):
        assert Account.objects.count() == 2
    with pytest.raises(ValueError, match="reason"), unscoped_context(reason=""):
        pass


def test_nested_contexts_restore_the_outer_one(tenant_a, tenant_b):
    AccountFactory(tenant=tenant_a, name="a")
    AccountFactory(tenant=tenant_b, name="b")
    with tenant_context(tenant_a):
        with tenant_context(tenant_b):
            assert [a.name for a in Account.objects.all()] == ["b"]
        assert [a.name for a in Account.objects.all()] == ["a"]
    assert current_scope() is None


def test_an_exception_rolls_back_the_tenant_transaction(tenant_a):
    with pytest.raises(RuntimeError), tenant_context(tenant_a):
        Account(key="k", name="n").save()
        raise RuntimeError("boom")
    with tenant_context(tenant_a):
        assert not Account.objects.exists()
