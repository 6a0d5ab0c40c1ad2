from __future__ import annotations

import socket

import pytest

pytestmark = pytest.mark.django_db


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
        return True
    except OSError:
        return False


def test_healthy_without_a_broker_runs_tasks_in_process(client, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "in-process (no broker configured)"},
    }


@pytest.fixture
def broker(settings):
    """Point the settings and the Celery app at a broker URL for one test."""
    from apps.config.celery import app

    saved = app.conf.broker_url

    def use(url: str) -> None:
        settings.CELERY_BROKER_URL = url
        settings.CELERY_TASK_ALWAYS_EAGER = False
        app.conf.broker_url = url

    yield use
    app.conf.broker_url = saved


@pytest.mark.redis
@pytest.mark.skipif(not _redis_up(), reason="Redis is not reachable on 127.0.0.1:6379")
def test_healthy_with_a_reachable_redis_broker(client, broker):
    broker("redis://127.0.0.1:6379/15")
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"]["broker"] == "ok"


def test_unready_when_the_broker_is_down(client, broker):
    broker("redis://127.0.0.1:1/0")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["checks"]["broker"].startswith("error:")
