"""The Celery app. With no CELERY_BROKER_URL, tasks run in-process (eagerly)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.config.settings")

app = Celery("trueup")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
