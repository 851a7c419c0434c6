"""Tick jobs that find work whose task was lost (broker down at enqueue, worker killed) and
queue it again. Every task they queue is idempotent, so a duplicate is harmless. A channel's own
jobs (the Twilio webhooks and media) are registered by its folder (``channels/*/__init__.py``)."""

import logging
from datetime import timedelta

from django.utils import timezone

from contactcenter.enqueue import enqueue

from .models import DeliveryStatus, Direction, Message
from .task_names import DELIVER_MESSAGE

logger = logging.getLogger(__name__)

# Long enough that the normal on-commit enqueue has certainly been tried first.
OUTBOUND_GRACE = timedelta(seconds=30)
BATCH = 200


def requeue_stuck_outbound() -> int:
    cutoff = timezone.now() - OUTBOUND_GRACE
    ids = Message.objects.filter(
        direction=Direction.OUTBOUND, delivery_status=DeliveryStatus.PENDING, provider_id__isnull=True,
        created_at__lt=cutoff,
    ).order_by("created_at").values_list("pk", flat=True)[:BATCH]
    return sum(enqueue(DELIVER_MESSAGE, pk) for pk in ids)


def register() -> None:
    from contactcenter import tick

    tick.register("requeue_stuck_outbound", requeue_stuck_outbound)

    from .routing.assignment import offline_requeue
    from .routing.decisions import route_waiting
    from .routing.presence import offers_expire

    # Time-based routing transitions, found in the database each tick (DESIGN.md).
    tick.register("offers_expire", offers_expire)
    tick.register("route_waiting", route_waiting)
    tick.register("offline_requeue", offline_requeue)
    from .routing.console_presence import agents_without_console_offline
    tick.register("agents_without_console_offline", agents_without_console_offline)
