"""Tasks act for one tenant: in-process without a broker, and in a real worker over Redis."""

from __future__ import annotations

import socket

import pytest

from apps.accounts.models import Account
from apps.config.celery import app
from apps.tenancy.context import current_scope
from apps.tenancy.tasks import tenant_task
from tests.factories import AccountFactory


@tenant_task()
def account_names(tenant_id: int) -> list[str]:
    return sorted(Account.objects.values_list("name", flat=True))


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.django_db
def test_without_a_broker_tasks_run_in_process_inside_the_tenant(tenant_a, tenant_b):
    AccountFactory(tenant=tenant_a, name="mine")
    AccountFactory(tenant=tenant_b, name="theirs")
    assert app.conf.task_always_eager
    assert account_names.delay(tenant_a.pk).get() == ["mine"]
    assert current_scope() is None, "the task's context does not leak into the caller"


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not _redis_up(), reason="Redis is not reachable on 127.0.0.1:6379")
def test_a_real_worker_over_redis_runs_the_task_in_the_tenant(tenant_a, tenant_b):
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    AccountFactory(tenant=tenant_a, name="mine")
    AccountFactory(tenant=tenant_b, name="theirs")
    # The project's app, configured as production runs it: a Redis broker, a worker elsewhere.
    redis_app = Celery("trueup-test", set_as_current=False)
    redis_app.config_from_object("django.conf:settings", namespace="CELERY")
    redis_app.conf.update(
        broker_url="redis://127.0.0.1:6379/14",
        result_backend="redis://127.0.0.1:6379/14",
        task_always_eager=False,
    )
    with start_worker(redis_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        name = account_names.name
        assert redis_app.send_task(name, args=[tenant_b.pk]).get(timeout=20) == ["theirs"]
        assert redis_app.send_task(name, args=[tenant_a.pk]).get(timeout=20) == ["mine"]
