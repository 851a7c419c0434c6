"""The voice channel's Celery tasks, by registered name (queued with ``enqueue_on_commit``)."""

from contactcenter.enqueue import task_name

PUT_THROUGH = task_name("conversations.voice_put_through")
