"""A conversation whose queue is closed: told when it opens, or handed to a follow-up queue.
"""

import logging

from ..models import (
    AfterHoursAction,
    Conversation,
    EventType,
    Queue,
)
from ..services.system_events import (
    system_event_record,
)
from .placement import queue_enter

logger = logging.getLogger(__name__)


def after_hours_handle(conversation: Conversation, queue: Queue, hours, reopen, now) -> list[str]:
    """The queue is closed (once per closing: the caller compares routing notes). "Keep queued":
    tell the customer and wait for the opening. "Voicemail / email fallback": the contact becomes
    a follow-up, answered later on the channel we tell the customer (email when we have their
    address), moved to the follow-up queue when there is one. A conversation that is already a
    follow-up is not told twice. Returns the fields it changed (the caller saves)."""
    fields: list[str] = []
    already_follow_up = conversation.follow_up_at is not None
    if queue.after_hours_action == AfterHoursAction.VOICEMAIL and not already_follow_up:
        channel, _address = follow_up_target(conversation)
        conversation.follow_up_at, conversation.follow_up_channel = now, channel
        fields += ["follow_up_at", "follow_up_channel"]
        target = queue.after_hours_fallback_queue_id
        if target and target != conversation.queue_id:
            system_event_record(conversation, EventType.TRANSFERRED, from_queue=queue.pk, to_queue=target,
                                reason="after_hours")
            fields += queue_enter(conversation, Queue.objects.get(pk=target), at=now,
                                  reason=f"after-hours fallback from {queue.slug}")
    system_event_record(conversation, EventType.OFFERED, step="after_hours", queue=queue.pk,
                        action=queue.after_hours_action, follow_up_channel=conversation.follow_up_channel)
    if queue.after_hours_message and not already_follow_up:
        _after_hours_message_send(conversation, queue, hours, reopen)
    return fields


def follow_up_target(conversation: Conversation) -> tuple[str, str]:
    """Where an after-hours follow-up is answered: by email when the customer wrote by email or we
    know a verified address for them, else on the channel they used. ``(channel, address)``."""
    from profiles.models import Identity, IdentityKind

    from ..models import Channel

    email = (
        Identity.objects.filter(customer_id=conversation.customer_id, kind=IdentityKind.EMAIL)
        .order_by("-verified", "-last_seen_at", "-pk").values_list("value", flat=True).first()
    )
    if email or conversation.channel == Channel.EMAIL:
        return Channel.EMAIL, email or ""
    return conversation.channel, ""


def _after_hours_message_send(conversation: Conversation, queue: Queue, hours, reopen) -> None:
    """``after_hours_message`` with ``{opens}`` (the next opening, in the queue's time zone) and
    ``{reply_to}`` (the follow-up address). A template the admin got wrong is sent as written."""
    from ..services.outbound import SendRefused, message_send

    opens = reopen.astimezone(hours.time_zone).strftime("%Y-%m-%d %H:%M") if reopen is not None else ""
    _channel, reply_to = follow_up_target(conversation) if conversation.follow_up_at else ("", "")
    text = queue.after_hours_message
    try:
        text = text.format(opens=opens, reply_to=reply_to)
    except (KeyError, IndexError, ValueError):
        logger.warning("queue %s has an invalid after_hours_message template", queue.pk)
    try:
        message_send(conversation=conversation, agent=None, text=text)
    except SendRefused as exc:
        logger.info("after-hours message not sent for conversation %s: %s", conversation.pk, exc.messages)
