"""Offers (TaskRouter's reservations): made by the decisions, accepted, rejected, closed.

Every function that changes an offer takes the conversation's lock first (``offer_locked``),
so an accept, a reject, a timeout and a transfer of the same conversation happen one at a time.
"""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from contactcenter.enqueue import enqueue_on_commit

from ..channels.registry import channel_conversation_assigned
from ..events import (
    conversation_assigned_event,
    conversation_recipients,
    send_on_commit,
)
from ..models import Agent, Conversation, EventType, Message, Offer, OfferStatus
from ..services.system_events import system_event, system_events_record
from ..task_names import ROUTE_CONVERSATION, ROUTE_FOR_AGENT


def routing_event_publish(event: dict, *, agents: list[int | None], conversation_id: int) -> None:
    send_on_commit(conversation_recipients(conversation_id, *agents), event)


def offer_event(offer: Offer, event_type: str) -> dict:
    return {
        "type": event_type, "offer": offer.pk, "conversation": offer.conversation_id, "agent": offer.agent_id,
        "queue": offer.queue_id, "channel": offer.channel, "step": offer.step, "status": offer.status,
        "expires_at": offer.expires_at.isoformat() if offer.expires_at else None,
    }


def assignment_record(conversation: Conversation, agent: Agent, now, *, via: str, by: Agent | None = None, note: str = "") -> Message:
    """Caller holds the conversation lock (and the agent's, when capacity matters), and saves the
    conversation's ``ASSIGNED_FIELDS`` with the returned timeline event (``system_events_record``)."""
    conversation.assignee = agent
    conversation.accepted(now)
    Agent.objects.filter(pk=agent.pk).update(last_assigned_at=now)
    assigned_publish(conversation, agent, via=via)
    return system_event(conversation, EventType.ASSIGNED, agent=by, **assigned_event_data(agent, via=via, note=note))


ASSIGNED_FIELDS = ["assignee", "assigned_at", "answered_at"]


def assigned_event_data(agent: Agent, *, via: str, note: str = "") -> dict:
    return {"assignee": agent.pk, "assignee_name": agent.display_name, "via": via, **({"note": note} if note else {})}


def assigned_publish(conversation: Conversation, agent: Agent, *, via: str) -> None:
    routing_event_publish(conversation_assigned_event(conversation, agent, via=via), agents=[agent.pk], conversation_id=conversation.pk)
    channel_conversation_assigned(conversation, agent)  # e.g. the web-chat visitor hears "<agent> joined"


class RoutingError(ValidationError):
    """A routing action that cannot be done, with the reason for the person who asked."""


def offer_lock(offer_id: int) -> tuple[Conversation, Offer]:
    conversation_id = Offer.objects.filter(pk=offer_id).values_list("conversation_id", flat=True).first()
    if conversation_id is None:
        raise RoutingError(_("No such offer."), code="offer_missing")
    conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
    return conversation, Offer.objects.select_for_update(of=("self",)).select_related("agent").get(pk=offer_id)


def offer_accept(*, offer_id: int, agent: Agent) -> Offer:
    now = timezone.now()
    with transaction.atomic():
        conversation, offer = offer_lock(offer_id)
        offer.conversation = conversation
        if offer.agent_id != agent.pk:
            raise RoutingError(_("This offer is not yours."), code="offer_not_yours")
        if offer.status != OfferStatus.PENDING:
            raise RoutingError(_("This offer is no longer open (%(status)s)."), code="offer_closed",
                               params={"status": offer.get_status_display()})
        timed_out = bool(offer.expires_at and offer.expires_at <= now)
        if timed_out:
            # Too late: it times out now and goes to the next agent. Committed before the agent is
            # told (raising in here would roll it back and leave it to the tick). The agent did
            # answer, so their presence stays, unlike an offer nobody answered (offers_expire).
            system_events_record(conversation, [offer_close(offer, OfferStatus.TIMEOUT, now)])
            enqueue_on_commit(ROUTE_CONVERSATION, conversation.pk)
        else:
            offer.status = OfferStatus.ACCEPTED
            offer.decided_at = now
            offer.save(update_fields=["status", "decided_at"])
            event = assignment_record(conversation, offer.agent, now, via="offer")
            system_events_record(conversation, [event], update_fields=ASSIGNED_FIELDS)
            routing_event_publish(offer_event(offer, "offer.accepted"), agents=[agent.pk], conversation_id=conversation.pk)
    if timed_out:
        raise RoutingError(_("This offer timed out."), code="offer_timeout")
    return offer


def offer_close(offer: Offer, status: str, now) -> Message:
    """Close a pending offer (caller holds its conversation's lock and the offer's) and publish that
    after commit. Returns the timeline event saying so, not saved yet: the caller records it with
    the conversation's other changes (``system_events_record``: one UPDATE and one INSERT for all)."""
    offer.status = status
    offer.decided_at = now
    offer.save(update_fields=["status", "decided_at"])
    routing_event_publish(offer_event(offer, f"offer.{status}"), agents=[offer.agent_id], conversation_id=offer.conversation_id)
    # The offer's agent by id: their row is not needed for the event, and reading it cost a query.
    return system_event(offer.conversation, EventType.OFFERED, author_agent_id=offer.agent_id, offer=offer.pk,
                        outcome=status)


def offer_reject(*, offer_id: int, agent: Agent) -> Offer:
    with transaction.atomic():
        conversation, offer = offer_lock(offer_id)
        if offer.agent_id != agent.pk:
            raise RoutingError(_("This offer is not yours."), code="offer_not_yours")
        if offer.status != OfferStatus.PENDING:
            raise RoutingError(_("This offer is no longer open (%(status)s)."), code="offer_closed",
                               params={"status": offer.get_status_display()})
        offer.conversation = conversation
        enqueue_on_commit(ROUTE_CONVERSATION, conversation.pk)  # before the events: to the next agent first
        # The slot the offer held is free: other waiting work for them (not this conversation,
        # which they just turned down: REJECT_MEMORY).
        enqueue_on_commit(ROUTE_FOR_AGENT, agent.pk)
        system_events_record(conversation, [offer_close(offer, OfferStatus.REJECTED, timezone.now())])
    return offer


def pending_offers_rescind(agent_id: int, now) -> list[int]:
    """Rescind the agent's pending offers, each conversation re-routed after commit (to the next
    agent); the conversations' ids. Caller owns the transaction and holds no agent lock yet: each
    conversation is locked before its offer (lock order: conversation -> agent)."""
    rescinded = []
    for offer_id in Offer.objects.filter(agent_id=agent_id, status=OfferStatus.PENDING).values_list("pk", flat=True):
        conversation, offer = offer_lock(offer_id)
        if offer.status == OfferStatus.PENDING:
            offer.conversation = conversation
            system_events_record(conversation, [offer_close(offer, OfferStatus.RESCINDED, now)])
            enqueue_on_commit(ROUTE_CONVERSATION, conversation.pk)
            rescinded.append(conversation.pk)
    return rescinded


def pending_offers_close(conversation: Conversation, status: str, now) -> list[Message]:
    """Close the conversation's pending offers (caller holds its lock); their unsaved events. Each
    offer held a slot of its agent's: their waiting work is routed after commit."""
    events = []
    for offer in Offer.objects.select_for_update().filter(conversation=conversation, status=OfferStatus.PENDING):
        offer.conversation = conversation
        events.append(offer_close(offer, status, now))
        enqueue_on_commit(ROUTE_FOR_AGENT, offer.agent_id)
    return events
