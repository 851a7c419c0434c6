"""What the widget tells a visitor: whether anyone can chat now (hours, available agents) and
their place in the queue.
"""

import logging
import zoneinfo
from datetime import datetime, time

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef
from django.utils import timezone

from profiles.models import Customer, IdentityKind

from ...models import (
    Agent,
    Conversation,
    ConversationStatus,
    Inbox,
    Queue,
)
from .input_limits import _require_rate, limits
from .visitors import Visitor, _ended_by_visitor, _visitor_target

logger = logging.getLogger(__name__)


_UNKNOWN = object()


def _visitor_chat(inbox: Inbox, visitor: Visitor | None, now: datetime,
                  customer=_UNKNOWN) -> tuple[Customer | None, Conversation | None]:
    """The visitor's customer, as the ingest resolves them (their ``web_visitor`` identity, which
    follows merges; signed visitors have one too), and the conversation of this widget their next
    message would join (the ingest's choice: the customer's latest here, unless it is abandoned;
    a resolved one only if the message would reopen it: within the inbox's reopen window, not
    ended by the visitor), with its queue. Three statements at most, whatever the history."""
    from ...services.ingest import ACTIVE_STATUSES, within_reopen_window

    if visitor is None:
        return None, None
    if customer is _UNKNOWN:
        customer = Customer.objects.filter(identities__kind=IdentityKind.WEB_VISITOR,
                                           identities__value=visitor.key).first()
    if customer is None:
        return customer, None
    latest = (
        Conversation.objects.filter(customer=customer, inbox=inbox).select_related("queue")
        .order_by("-last_message_at", "-id").first()
    )
    if latest is None or latest.abandoned_at is not None:
        return customer, None
    if latest.status in ACTIVE_STATUSES:
        return customer, latest
    if not within_reopen_window(latest, inbox, now) or _ended_by_visitor(latest):
        return customer, None
    return customer, latest


def _would_be_queue(inbox: Inbox, visitor: Visitor | None, customer: Customer | None, now: datetime) -> Queue | None:
    """The queue the routing rules would put a new chat of ``visitor`` in now: ``queue_pick`` on a
    conversation that is never saved, for their customer, or for a customer who does not exist
    yet with what the browser told us (the ingest creates them with exactly that). Like the ingest,
    the browser's language stands in for a customer who has none."""
    from ...routing.placement import queue_pick
    from ...services.ingest import customer_language

    language = customer_language(visitor.language) if visitor is not None else ""
    if customer is None:
        customer, tags = Customer(language=language), []  # nobody yet, so no tags
    else:
        tags = None  # read by queue_pick only when a rule asks about them
        if language and not customer.language:
            customer.language = language  # this instance only: the ingest stores it
    conversation = Conversation(customer=customer, inbox=inbox, channel=inbox.kind)
    queue_pick(conversation, tags=tags, at=now)
    return conversation.queue


def _available_agent_for(queue: Queue | None) -> bool:
    """Someone available who has every skill ``queue`` requires at its level, in one statement."""
    agents = Agent.objects.filter(presence__is_available=True)
    if queue is not None:
        from ...routing.eligibility import skills_lacking

        agents = agents.exclude(Exists(skills_lacking(queue_id=queue.pk, agent_id=OuterRef(OuterRef("pk")))))
    return agents.exists()


def _legacy_inbox_hours_open(inbox: Inbox, now: datetime) -> bool:
    """Older widgets kept their hours in ``inbox.settings["business_hours"]`` (``weekdays``,
    ``open``, ``close``). Still honoured so an upgrade does not open a closed chat, but the queue's
    business hours (the ones routing uses) are the place to set them now."""
    hours = inbox.settings.get("business_hours")
    if not hours:
        return True
    try:
        tz = zoneinfo.ZoneInfo(hours.get("time_zone") or settings.CC_DEFAULT_TIME_ZONE)
        local = now.astimezone(tz)
        opens = time.fromisoformat(hours.get("open", "00:00"))
        closes = time.fromisoformat(hours.get("close", "23:59"))
    except (ValueError, zoneinfo.ZoneInfoNotFoundError, TypeError):
        logger.warning("inbox %s has unreadable business_hours; treating it as open", inbox.pk)
        return True
    if local.weekday() not in hours.get("weekdays", range(7)):
        return False
    return opens <= local.time() < closes


def _queue_open(queue: Queue | None, now: datetime) -> bool:
    from ...routing.hours import BusinessHours

    if queue is None or not queue.business_hours:
        return True
    try:
        return BusinessHours.from_config(queue.business_hours).is_open(now)
    except ValidationError:
        return True  # validated on save; an unreadable config never closes the chat silently


def widget_status(inbox: Inbox, *, visitor: Visitor | None = None, now: datetime | None = None,
                  customer=_UNKNOWN) -> dict:
    """Whether a live agent can take ``visitor``'s chat now; when not, the widget offers the offline form.

    It speaks for where the chat is or would go, so it never promises a live agent the router would
    answer with another queue's after-hours message, nor the reverse: the agent who has the
    visitor's conversation; else the queue it waits in; else the queue the routing rules would
    pick for a new chat of this visitor (``_would_be_queue``). For that queue: its business hours
    (the ones routing applies) and an available agent with its skills.

    Every hello and every opening of the widget asks, on every page of the site: a fixed number of
    statements whatever the rules, skills, agents or history (tests: test_widget). ``customer``:
    the visitor's (``visitors.visitor_customer``), when the caller (the hello) has read it already."""
    now = now or timezone.now()
    customer, chat = _visitor_chat(inbox, visitor, now, customer)
    if chat is not None and chat.assignee_id is not None:
        # An agent has the chat: whether they are here is the answer, closing time or not (they
        # finish what they started, and nobody else will be offered it). A resolved chat the next
        # message reopens goes back to its agent if they are available (ingest._reopen), and is
        # placed as a new one otherwise.
        if Agent.objects.filter(pk=chat.assignee_id, presence__is_available=True).exists():
            return {"type": "status", "online": True, "reason": "available"}
        if chat.status != ConversationStatus.RESOLVED:
            return {"type": "status", "online": False, "reason": "no_agent"}
    if chat is not None and chat.status != ConversationStatus.RESOLVED and chat.queue_id is not None:
        queue = chat.queue
    else:
        # No chat, one never placed (routing places it when it first routes it, queue_pick too), or
        # a resolved one reopened without its agent: placed by the rules, as a new chat is.
        queue = _would_be_queue(inbox, visitor, customer, now)
    if not _queue_open(queue, now) or not _legacy_inbox_hours_open(inbox, now):
        return {"type": "status", "online": False, "reason": "closed"}
    if not _available_agent_for(queue):
        return {"type": "status", "online": False, "reason": "no_agent"}
    return {"type": "status", "online": True, "reason": "available"}


def visitor_status(*, visitor: Visitor) -> dict:
    """``widget_status`` on request. Limited: each answer runs the routing rules."""
    _require_rate(f"status-visitor:{visitor.key}", limits()["status_per_visitor"])
    return widget_status(Inbox.objects.get(pk=visitor.inbox_id), visitor=visitor)


def queue_frame(conversation: Conversation | None) -> dict:
    """``{"type": "queue", "conversation", "waiting", "position", "estimated_wait_seconds"}``.
    ``waiting``: open and nobody has it yet; ``position`` is null while it is not (or not yet) in a
    queue, and once an agent has it: the widget hides the line then."""
    from ...routing.position import queue_position

    position = queue_position(conversation=conversation) if conversation is not None else None
    waiting = bool(
        conversation is not None and conversation.status == ConversationStatus.OPEN
        and conversation.assignee_id is None and conversation.abandoned_at is None
    )
    return {
        "type": "queue", "conversation": conversation.pk if conversation is not None else None,
        "waiting": waiting,
        "position": position["position"] if position else None,
        "estimated_wait_seconds": position["estimated_wait_seconds"] if position else None,
        # After hours with the fallback: no live wait to show, the answer comes later on this channel.
        "follow_up": (conversation.follow_up_channel or None) if conversation is not None and waiting else None,
    }


def visitor_queue(*, visitor: Visitor, conversation_id=None) -> dict:
    """Where the visitor's conversation stands in its queue (the widget polls this while waiting)."""
    _require_rate(f"queue-visitor:{visitor.key}", limits()["queue_per_visitor"])
    return queue_frame(_visitor_target(visitor, conversation_id))
