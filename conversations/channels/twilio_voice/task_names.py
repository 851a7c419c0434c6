"""The voice channel's Celery tasks, by registered name (queued with ``enqueue_on_commit``)."""

from contactcenter.enqueue import task_name

CONNECT_CALL = task_name("conversations.voice_connect_call")
CALL_BACK = task_name("conversations.voice_call_back")
