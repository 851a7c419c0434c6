"""Events for websockets: one builder per event, sent only after the transaction commits.

An event is a plain dict of ids plus the few rendered bits a client needs; the database stays the
truth (a client that misses one catches up by cursor), so a lost event never loses data.
"""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from .groups import agent_group, conversation_group, supervisors_group
from .models import Message

logger = logging.getLogger(__name__)


def _group_send(group: str, event: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": "console.event", "event": event})
    except Exception:  # noqa: BLE001 - a notification failure must never undo committed data
        logger.exception("could not publish %s to %s", event.get("type"), group)


def send_on_commit(groups: list[str], event: dict) -> None:
    """Publish ``event`` to ``groups`` once the current transaction commits (never if it rolls back)."""

    def publish():
        for group in dict.fromkeys(groups):
            _group_send(group, event)

    transaction.on_commit(publish)


def message_created_event(message: Message) -> dict:
    return {
        "type": "message.created",
        "message": message.pk,
        "conversation": message.conversation_id,
        "customer": message.customer_id,
        "channel": message.channel,
        "direction": message.direction,
        "kind": message.kind,
    }


def message_recipients(message: Message, *, assignee_id: int | None) -> list[str]:
    groups = [conversation_group(message.conversation_id), supervisors_group()]
    if assignee_id:
        groups.append(agent_group(assignee_id))
    return groups


def notify_message_created(message: Message, *, assignee_id: int | None) -> None:
    send_on_commit(message_recipients(message, assignee_id=assignee_id), message_created_event(message))
