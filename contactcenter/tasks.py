"""Project-wide tasks: the periodic tick and a probe used by health checks and tests."""

import logging

from celery import shared_task

from . import tick as tick_registry

logger = logging.getLogger(__name__)


@shared_task(name="contactcenter.tick", ignore_result=True)
def tick() -> dict[str, int]:
    """Run every registered time-based job once.

    Beat schedules this every ``CC_TICK_SECONDS``. Each job queries the database for what is due,
    so a lost tick only delays work by one period (DESIGN.md: time-based transitions).
    """
    return tick_registry.run_due_jobs()


@shared_task(name="contactcenter.record_heartbeat", ignore_result=True)
def record_heartbeat(*, token: str) -> None:
    """Write a row proving a worker picked this task up (tests and ``/healthz?deep=1``)."""
    from .models import WorkerHeartbeat

    WorkerHeartbeat.objects.get_or_create(token=token)
