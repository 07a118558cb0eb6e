"""The Celery application: configured from Django's settings (the CELERY_* names)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dialoog.settings.base")

app = Celery("dialoog")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
