"""Tick jobs that find work whose task was lost (broker down at enqueue, worker killed) and
queue it again. Every task they queue is idempotent, so a duplicate is harmless."""

import logging
from datetime import timedelta

from django.utils import timezone

from contactcenter.enqueue import enqueue

from .models import Attachment, AttachmentState, DeliveryStatus, Direction, Message
from .task_names import DELIVER_MESSAGE, FETCH_TWILIO_MEDIA, PROCESS_TWILIO_INBOUND

logger = logging.getLogger(__name__)

# Long enough that the normal on-commit enqueue has certainly been tried first.
OUTBOUND_GRACE = timedelta(seconds=30)
MEDIA_GRACE = timedelta(seconds=60)
INBOUND_GRACE = timedelta(seconds=30)
BATCH = 200


def requeue_stuck_outbound() -> int:
    cutoff = timezone.now() - OUTBOUND_GRACE
    ids = Message.objects.filter(
        direction=Direction.OUTBOUND, delivery_status=DeliveryStatus.PENDING, provider_id__isnull=True,
        created_at__lt=cutoff,
    ).order_by("created_at").values_list("pk", flat=True)[:BATCH]
    return sum(enqueue(DELIVER_MESSAGE, pk) for pk in ids)


def requeue_pending_media() -> int:
    cutoff = timezone.now() - MEDIA_GRACE
    message_ids = (
        Attachment.objects.filter(state=AttachmentState.PENDING, created_at__lt=cutoff)
        .exclude(source_url="").order_by("message_id").values_list("message_id", flat=True).distinct()[:BATCH]
    )
    return sum(enqueue(FETCH_TWILIO_MEDIA, pk) for pk in message_ids)


def requeue_unprocessed_inbound() -> int:
    """Stored Twilio webhooks whose processing is overdue: the task was never queued (broker down
    at commit), was lost, or its worker died mid-way."""
    from .services.messaging import twilio_inbound_events_overdue
    ids = twilio_inbound_events_overdue(grace=INBOUND_GRACE, limit=BATCH)
    return sum(enqueue(PROCESS_TWILIO_INBOUND, pk) for pk in ids)


def prune_processed_inbound() -> int:
    """Keep processed Twilio webhooks ``CC_INBOUND_EVENT_RETENTION_DAYS``; looks at most once every
    ten minutes (the tick runs every few seconds, the cutoff moves by days)."""
    from django.conf import settings
    from django.core.cache import cache

    from .services.messaging import twilio_inbound_events_prune

    if not cache.add("cc:prune-inbound-events", 1, timeout=600):
        return 0
    return twilio_inbound_events_prune(older_than=timedelta(days=settings.CC_INBOUND_EVENT_RETENTION_DAYS))


def register() -> None:
    from contactcenter import tick

    tick.register("requeue_stuck_outbound", requeue_stuck_outbound)
    tick.register("requeue_pending_media", requeue_pending_media)
    tick.register("requeue_unprocessed_inbound", requeue_unprocessed_inbound)
    tick.register("prune_processed_inbound", prune_processed_inbound)

    from .services import routing

    # Time-based routing transitions, found in the database each tick (DESIGN.md).
    tick.register("offers_expire", routing.offers_expire)
    tick.register("route_waiting", routing.route_waiting)
    tick.register("offline_requeue", routing.offline_requeue)
    from .services.presence import agents_without_console_offline
    tick.register("agents_without_console_offline", agents_without_console_offline)
