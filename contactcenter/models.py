from django.db import models
from django.utils import timezone


class WorkerHeartbeat(models.Model):
    """A row a Celery worker writes to prove it ran a task (health checks, mode tests)."""

    token = models.CharField(max_length=100, unique=True)
    seen_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.token} @ {self.seen_at:%Y-%m-%d %H:%M:%S}"
