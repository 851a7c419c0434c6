"""Enqueueing tasks after commit without letting a broker outage break the request.

The database is the truth (DESIGN.md): a task that could not be queued is found again by the
periodic tick (conversations.recovery), so a failed enqueue is logged, never raised into a
webhook's response (which would make the provider retry a message we already committed).
"""

import logging

from django.db import transaction

logger = logging.getLogger(__name__)


def enqueue_on_commit(task, *args, **kwargs) -> None:
    def send():
        try:
            task.apply_async(args=args, kwargs=kwargs, retry=False)
        except Exception:  # noqa: BLE001 - broker down: the tick's recovery job will pick it up
            logger.warning("could not enqueue %s%r; the periodic recovery will retry", task.name, args, exc_info=True)

    transaction.on_commit(send)
