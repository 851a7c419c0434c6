"""The Celery app. Task modules are discovered in every installed app (``tasks.py``)."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contactcenter.settings")

app = Celery("contactcenter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def close_old_database_connections(task=None, **kwargs) -> None:
    """Around every task, what Django does around every request: keep a connection for
    CONN_MAX_AGE, close it when it is obsolete, unusable or broken by an error (settings.py turns
    off Celery's own "close always", CELERY_DB_REUSE_MAX). Eager tasks run inside their caller's
    request or test and leave its connection alone, as Celery's fixup does."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
