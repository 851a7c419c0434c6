"""Events for websockets: one builder per event, sent only after the transaction commits.

An event is a plain dict of ids plus the few rendered bits a client needs; the database stays the
truth (a client that misses one catches up by cursor), so a lost event never loses data.
"""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from .groups import agent_group, conversation_group, customer_group, supervisors_group
from .models import Message

logger = logging.getLogger(__name__)


def _group_send(group: str, event: dict, *, handler: str = "console.event") -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": handler, "event": event})
    except Exception:  # noqa: BLE001 - a notification failure must never undo committed data
        logger.exception("could not publish %s to %s", event.get("type"), group)


def publish_now(groups: list[str], event: dict, *, handler: str = "console.event") -> None:
    """Publish immediately; for callers already running after commit (or outside a transaction)."""
    for group in dict.fromkeys(groups):
        _group_send(group, event, handler=handler)


def send_on_commit(groups: list[str], event: dict) -> None:
    """Publish ``event`` to ``groups`` once the current transaction commits (never if it rolls back)."""
    transaction.on_commit(lambda: publish_now(groups, event))


def conversation_recipients(conversation_id: int, *agent_ids: int | None) -> list[str]:
    """Who hears about a conversation: its watchers, the supervisors and the agents concerned."""
    groups = [conversation_group(conversation_id), supervisors_group()]
    return groups + [agent_group(agent_id) for agent_id in agent_ids if agent_id]


def message_event(event_type: str, message: Message) -> dict:
    event = {
        "type": event_type,
        "message": message.pk,
        "conversation": message.conversation_id,
        "customer": message.customer_id,
        "channel": message.channel,
        "direction": message.direction,
        "kind": message.kind,
        "seq": message.seq,
    }
    if message.direction == "outbound":
        event |= {"delivery_status": message.delivery_status, "delivery_error": message.delivery_error}
    return event


def message_recipients(message: Message, assignee_id: int | None) -> list[str]:
    """A message concerns its conversation's watchers and, because the console shows one timeline
    per customer, everyone looking at that customer."""
    return conversation_recipients(message.conversation_id, assignee_id) + [customer_group(message.customer_id)]


def notify_message_created(message: Message, *, assignee_id: int | None) -> None:
    send_on_commit(message_recipients(message, assignee_id), message_event("message.created", message))
