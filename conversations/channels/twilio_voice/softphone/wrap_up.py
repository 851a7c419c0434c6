"""The end of a call's wrap-up: the queue's limit.

After a call ends, its conversation stays with the agent (capacity held, as TaskRouter's
*wrapping* task does) until they resolve it. A queue with a ``wrap_up_limit_seconds`` resolves it
by itself once the wrap-up took that long, so an agent who forgets is offered calls again. Found by
the periodic tick from the database (DESIGN.md: time-based transitions), never by a timer alone.
"""

from datetime import timedelta

from django.db.models import OuterRef, Subquery
from django.utils import timezone

from ....models import Channel, Conversation, ConversationStatus, EventType, Message
from ....routing.assignment import conversation_resolve
from ....routing.offers import RoutingError
from .calls import CALL_EVENT_TYPES

# Resolved by the limit, on the timeline and in reports: the code a queue requiring one gets.
WRAP_UP_LIMIT_CODE = "wrap_up_limit"


def call_wrap_ups_expire(*, limit: int = 200) -> int:
    """Tick job: resolve the voice conversations whose last call event is its end, longer ago than
    their queue's wrap-up limit. Idempotent (resolving twice does nothing)."""
    now = timezone.now()
    last_call_event = Message.objects.filter(conversation=OuterRef("pk"), event_type__in=CALL_EVENT_TYPES).order_by(
        "-seq", "-id")
    rows = (
        Conversation.objects.filter(channel=Channel.VOICE, status=ConversationStatus.OPEN, assignee__isnull=False,
                                    queue__wrap_up_limit_seconds__gt=0)
        .annotate(last_call_type=Subquery(last_call_event.values("event_type")[:1]),
                  last_call_at=Subquery(last_call_event.values("created_at")[:1]))
        .filter(last_call_type=EventType.CALL_ENDED)
        .select_related("queue").order_by("last_call_at")[:limit]
    )
    resolved = 0
    for row in rows:
        if row.last_call_at + timedelta(seconds=row.queue.wrap_up_limit_seconds) > now:
            continue
        try:
            conversation_resolve(conversation_id=row.pk, by=None, wrap_up_code=WRAP_UP_LIMIT_CODE,
                                 note="wrap-up limit")
        except RoutingError:
            continue  # changed meanwhile (reassigned, resolved): nothing to do
        resolved += 1
    return resolved
