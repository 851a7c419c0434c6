"""Events for websockets: one builder per event, sent only after the transaction commits.

An event is a plain dict of ids plus the few rendered bits a client needs; the database stays the
truth (a client that misses one catches up by cursor), so a lost event never loses data.
"""

import asyncio
import logging
import os
import threading

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from .groups import (
    WATCHED_GROUP_PREFIXES,
    agent_group,
    conversation_group,
    customer_group,
    session_group,
    supervisors_group,
    user_group,
)
from .models import Message

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECONDS = 10


class _PublisherLoop:
    """One event loop per process, in a daemon thread, for publishing from synchronous code.

    ``async_to_sync`` outside an event loop (Celery worker threads, management commands) starts a
    thread and an event loop per call, and channels_redis keeps its connection pool per loop, so
    every publish also opened and closed a Redis connection: ~8 ms of CPU for an event sent to
    three groups, against ~0.7 ms on a loop that lives on (bench/routing). Callers still wait for
    the send, so events leave in the order they were published."""

    def __init__(self):
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._running()).result(PUBLISH_TIMEOUT_SECONDS)

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():  # after a fork the thread is gone
                self._loop, self._pid = asyncio.new_event_loop(), os.getpid()
                threading.Thread(target=self._loop.run_forever, name="cc-event-publisher", daemon=True).start()
            return self._loop


_publisher = _PublisherLoop()


def watched_handler(group: str, handler: str) -> str:
    """A console event sent to a conversation's or a customer's group reaches the sockets that
    watch it, and goes to ``console.watched``, which asks the access rule again before relaying
    (ConsoleConsumer._may_relay); the agent's, user's and supervisors' groups relay directly."""
    if handler == "console.event" and group.startswith(WATCHED_GROUP_PREFIXES):
        return "console.watched"
    return handler


def _groups_send(groups: list[str], event: dict, *, handler: str = "console.event") -> None:
    """``event`` to every group. On Redis, the groups go together in one hand-off to the publisher
    loop and are sent concurrently: one round trip's wait instead of one per group, and one thread
    switch (an offer goes to three groups, a message to four; bench/routing). Each group still
    gets a caller's events in order: the caller waits for all of them before publishing again."""
    layer = get_channel_layer()
    if layer is None:
        return
    messages = {group: {"type": watched_handler(group, handler), "event": event} for group in groups}
    # channels_redis or a subclass of it (contactcenter.redis_pools.BoundedRedisChannelLayer).
    if any(cls.__module__.startswith("channels_redis.") for cls in type(layer).__mro__):
        async def send_all():
            return await asyncio.gather(*(layer.group_send(group, messages[group]) for group in groups),
                                        return_exceptions=True)

        try:
            results = _publisher.run(send_all())
        except Exception:  # noqa: BLE001 - a notification failure must never undo committed data
            logger.exception("could not publish %s to %s", event.get("type"), groups)
            return
        for group, result in zip(groups, results, strict=True):
            if isinstance(result, BaseException):
                logger.error("could not publish %s to %s", event.get("type"), group, exc_info=result)
        return
    for group in groups:  # the in-memory layer's queues belong to the loop its consumers run on
        try:
            async_to_sync(layer.group_send)(group, messages[group])
        except Exception:  # noqa: BLE001 - as above
            logger.exception("could not publish %s to %s", event.get("type"), group)


def publish_now(groups: list[str], event: dict, *, handler: str = "console.event") -> None:
    """Publish immediately; for callers already running after commit (or outside a transaction)."""
    _groups_send(list(dict.fromkeys(groups)), event, handler=handler)


def send_on_commit(groups: list[str], event: dict) -> None:
    """Publish ``event`` to ``groups`` once the current transaction commits (never if it rolls back)."""
    transaction.on_commit(lambda: publish_now(groups, event))


def close_consoles_of_session(session_key: str) -> None:
    """Close every console socket opened with this session (it is signing out): a socket is
    authorised once, when it connects, and would otherwise go on relaying customers' messages to a
    browser whose session is gone."""
    transaction.on_commit(lambda: publish_now([session_group(session_key)], {"type": "signed_out"},
                                                 handler="console.signed_out"))


def reauthenticate_consoles_of(user_id: int) -> None:
    """Make every console socket of ``user_id`` connect again, after commit: their password,
    active flag or roles changed, and a socket is authorised only when it connects."""
    transaction.on_commit(lambda: publish_now([user_group(user_id)], {"type": "reauthenticate"},
                                                 handler="console.reauthenticate"))


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


def conversation_event(conversation, event_type: str, **extra) -> dict:
    """A change of a conversation's state (snoozed, reopened, read …) for the consoles."""
    return {"type": event_type, "conversation": conversation.pk, "customer": conversation.customer_id,
            "status": conversation.status, **extra}


def agent_presence_event(agent, presence, *, reason: str = "") -> dict:
    """An agent's presence changed; ``reason`` says why ("agent" when they chose it). ``since``
    (ISO 8601) and ``offline`` are the committed change whole, so a wallboard can show it without
    reading the agent again."""
    return {"type": "agent.presence", "agent": agent.pk, "presence": presence.pk, "name": presence.name,
            "available": presence.is_available, "offline": presence.is_offline,
            "since": agent.presence_changed_at.isoformat(), "reason": reason}


def viewer_message(*, sender: str, reply: bool, conversation_id: int, agent_id: int, name: str, state: str) -> dict:
    """The channel-layer message a console sends to the others watching the same conversation when
    it starts or stops viewing it (``reply``: an answer to a newcomer's "viewing", not to answer)."""
    return {"type": "console.viewer", "from": sender, "reply": reply,
            "event": {"type": "viewer", "conversation": conversation_id, "agent": agent_id, "name": name,
                      "state": state}}


def widget_layer_message(frame: dict) -> dict:
    """The channel-layer message that relays one frame to a visitor's widget sockets."""
    return {"type": "widget.event", "event": frame}


def conversation_assigned_event(conversation, agent, *, via: str) -> dict:
    """An agent has the conversation now (``via``: offer accepted, auto-accept, pick, transfer …)."""
    return {"type": "conversation.assigned", "conversation": conversation.pk, "agent": agent.pk, "via": via}


def typing_event(conversation_id: int, *, on: bool, agent_id: int | None = None, customer: bool = False) -> dict:
    """Someone types in a conversation: an agent (``agent_id``) or the customer (``customer``)."""
    event = {"type": "typing", "conversation": conversation_id, "on": bool(on)}
    if customer:
        event["customer"] = True
    else:
        event["agent"] = agent_id
    return event


def layer_probe_message(token: str) -> dict:
    """The probe conversations.layer_watch sends through its process's group and expects back."""
    return {"type": "layer.probe", "token": token}


def socket_evicted_message() -> dict:
    """To a socket pushed over its owner's cap (conversations.socket_caps): it closes with 4429."""
    return {"type": "socket.evicted"}
