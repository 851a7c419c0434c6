"""Where a waiting conversation stands in its queue, and telling the customer.
"""

import logging

from django.db.models import Q

from ..models import (
    Conversation,
    ConversationStatus,
)
from .sql import waiting as _waiting

logger = logging.getLogger(__name__)


def queue_auto_reply(conversation: Conversation) -> None:
    """SMS/WhatsApp inboxes may tell a customer who has to wait where they stand:
    ``inbox.settings["queue_auto_reply"]``, e.g. "You are number {position} in line (about
    {wait_minutes} min)." Sent once, when the conversation first has to wait."""
    template = (conversation.inbox.settings or {}).get("queue_auto_reply")
    if not template or conversation.channel not in ("sms", "whatsapp"):
        return
    position = queue_position(conversation=conversation)
    if position is None:
        return
    wait = position["estimated_wait_seconds"]
    try:
        text = str(template).format(position=position["position"],
                                    wait_minutes=max(1, round(wait / 60)) if wait is not None else "?")
    except (KeyError, IndexError, ValueError):
        logger.warning("inbox %s has an invalid queue_auto_reply template", conversation.inbox_id)
        return
    from ..services.outbound import SendRefused, message_send

    try:
        message_send(conversation=conversation, agent=None, text=text)
    except SendRefused as exc:
        logger.info("queue auto-reply not sent for conversation %s: %s", conversation.pk, exc.messages)


def queue_position(*, conversation: Conversation) -> dict | None:
    """Position among the queue's waiting conversations (priority, then age) and an estimated wait
    from the queue's recent answer times (median of the last 50 accepted offers)."""
    conversation.refresh_from_db(fields=["assignee", "queue", "status", "queued_at", "priority", "abandoned_at"])
    if conversation.assignee_id or not conversation.queue_id or conversation.status != ConversationStatus.OPEN:
        return None
    if conversation.queued_at is None or conversation.abandoned_at:
        return None
    ahead = _waiting().filter(queue_id=conversation.queue_id).filter(
        Q(priority__gt=conversation.priority)
        | Q(priority=conversation.priority, queued_at__lt=conversation.queued_at)
        | Q(priority=conversation.priority, queued_at=conversation.queued_at, pk__lt=conversation.pk)
    ).count()
    recent = list(
        Conversation.objects.filter(queue_id=conversation.queue_id, answered_at__isnull=False, queued_at__isnull=False)
        .order_by("-answered_at").values_list("queued_at", "answered_at")[:50]
    )
    waits = sorted((assigned - queued).total_seconds() for queued, assigned in recent if assigned >= queued)
    median = waits[len(waits) // 2] if waits else None
    estimate = round(median * (ahead + 1)) if median is not None else None
    return {"position": ahead + 1, "ahead": ahead, "estimated_wait_seconds": estimate}
