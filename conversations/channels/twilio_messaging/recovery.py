"""Tick jobs of the Twilio messaging channel: stored webhooks and media whose task was lost are
queued again (every task is idempotent), processed webhooks are pruned after their retention."""

from datetime import timedelta

from django.utils import timezone

from contactcenter.enqueue import enqueue

from ...models import Attachment, AttachmentState
from ...task_names import FETCH_TWILIO_MEDIA, PROCESS_TWILIO_INBOUND

# Long enough that the normal on-commit enqueue has certainly been tried first.
MEDIA_GRACE = timedelta(seconds=60)
INBOUND_GRACE = timedelta(seconds=30)
BATCH = 200


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
    from .ingest import twilio_inbound_events_overdue

    ids = twilio_inbound_events_overdue(grace=INBOUND_GRACE, limit=BATCH)
    return sum(enqueue(PROCESS_TWILIO_INBOUND, pk) for pk in ids)


def prune_processed_inbound() -> int:
    """Keep processed Twilio webhooks ``CC_INBOUND_EVENT_RETENTION_DAYS``; looks at most once every
    ten minutes (the tick runs every few seconds, the cutoff moves by days)."""
    from django.conf import settings
    from django.core.cache import cache

    from .ingest import twilio_inbound_events_prune

    if not cache.add("cc:prune-inbound-events", 1, timeout=600):
        return 0
    return twilio_inbound_events_prune(older_than=timedelta(days=settings.CC_INBOUND_EVENT_RETENTION_DAYS))
