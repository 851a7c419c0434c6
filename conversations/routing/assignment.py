"""Assignment, pick, transfer, resolve and abandon: the manual moves of a conversation.
"""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from contactcenter.enqueue import enqueue_on_commit

from .. import lifecycle
from ..models import (
    Agent,
    Conversation,
    ConversationStatus,
    EventType,
    OfferStatus,
    Queue,
)
from ..services.system_events import (
    system_event,
    system_event_record,
    system_events_record,
)
from ..task_names import ROUTE_CONVERSATION, ROUTE_FOR_AGENT
from .offers import (
    ASSIGNED_FIELDS,
    RoutingError,
    assignment_record,
    pending_offers_close,
    routing_event_publish,
)
from .placement import queue_enter
from .sql import LOAD_STATUSES


def offline_requeue(*, limit: int = 200) -> int:
    """Tick job: conversations of agents offline longer than their queue's grace go back to the
    queue (queues with the requeue policy), so nothing waits with nobody watching."""
    now = timezone.now()
    rows = list(
        Conversation.objects.filter(status__in=LOAD_STATUSES, assignee__presence__is_offline=True,
                                    queue__offline_policy="requeue")
        .select_related("queue", "assignee").order_by("pk")[:limit]
    )
    moved = 0
    for row in rows:
        if now - row.assignee.presence_changed_at < timedelta(seconds=row.queue.offline_grace_seconds):
            continue
        with transaction.atomic():
            conversation = Conversation.objects.select_for_update().get(pk=row.pk)
            if conversation.assignee_id != row.assignee_id:
                continue
            previous = conversation.assignee_id
            conversation.assignee = None
            conversation.queued_at = now
            conversation.routing_note = "back to the queue: agent went offline"
            conversation.save(update_fields=["assignee", "queued_at", "routing_note", "updated_at"])
            system_event_record(conversation, EventType.TRANSFERRED, from_agent=previous, to_queue=conversation.queue_id,
                            reason="agent_offline")
            routing_event_publish({"type": "conversation.requeued", "conversation": conversation.pk, "agent": previous},
                     agents=[previous], conversation_id=conversation.pk)
            enqueue_on_commit(ROUTE_CONVERSATION, conversation.pk)
            moved += 1
    return moved


def conversation_abandon(*, conversation_id: int, reason: str) -> bool:
    """The customer left while waiting: cancel routing (pending offers canceled); counts as
    abandoned. Returns False when the conversation was already with an agent."""
    now = timezone.now()
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
        if conversation.assignee_id or conversation.abandoned_at:
            return False
        if conversation.follow_up_at is not None:
            # We told them we would get back to them (after hours): leaving does not cancel that.
            return False
        events = pending_offers_close(conversation, OfferStatus.CANCELED, now)
        conversation.abandoned_at = now
        conversation.routing_note = f"abandoned: {reason}"[:300]
        # On the timeline like every routing outcome, and live: supervisors' waiting counts drop.
        events.append(system_event(conversation, EventType.ABANDONED, reason=reason[:100]))
        system_events_record(conversation, events, update_fields=["abandoned_at", "routing_note"])
        routing_event_publish({"type": "conversation.abandoned", "conversation": conversation.pk, "queue": conversation.queue_id,
                  "reason": reason[:100]}, agents=[], conversation_id=conversation.pk)
    return True


def conversation_assign(*, conversation_id: int, agent: Agent, by: Agent | None, note: str = "", via: str = "manual") -> Conversation:
    """Supervisor assignment, reassignment or an agent's pick. Pending offers are rescinded."""
    now = timezone.now()
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
        if conversation.status == ConversationStatus.RESOLVED:
            raise RoutingError(_("This conversation is resolved."), code="resolved")
        previous = conversation.assignee_id
        events = pending_offers_close(conversation, OfferStatus.RESCINDED, now)
        target = Agent.objects.select_for_update().get(pk=agent.pk)
        events.append(assignment_record(conversation, target, now, via=via, by=by, note=note))
        conversation.routing_note = f"{via} by {by.display_name if by else 'system'}"[:300]
        system_events_record(conversation, events, update_fields=[*ASSIGNED_FIELDS, "routing_note"])
        if previous and previous != target.pk:
            enqueue_on_commit(ROUTE_FOR_AGENT, previous)
    return conversation


def conversation_pick(*, conversation_id: int, agent: Agent, supervisor: bool = False) -> Conversation:
    """An agent takes a waiting conversation from a queue that allows picking; a ``supervisor``
    takes it from any queue, as an assignment to themselves. Never one somebody already has
    (checked again under the conversation's lock: assigning would silently reassign it)."""
    conversation = Conversation.objects.select_related("queue").get(pk=conversation_id)
    if conversation.assignee_id:
        raise RoutingError(_("Someone already took this conversation."), code="taken")
    if not supervisor and conversation.queue and not conversation.queue.allow_pick:
        raise RoutingError(_("This queue does not allow picking."), code="pick_not_allowed")
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation_id)
        if locked.assignee_id:
            raise RoutingError(_("Someone already took this conversation."), code="taken")
        return conversation_assign(conversation_id=conversation_id, agent=agent, by=agent,
                                   via="assign" if supervisor else "pick")


def _transfer_allowed(conversation: Conversation, *, by: Agent, supervisor: bool) -> None:
    """Only the conversation's assignee or a supervisor hands it on (caller holds its lock: the
    assignee read is the one the transfer acts on)."""
    if not supervisor and conversation.assignee_id != by.pk:
        raise RoutingError(_("Only the agent who has this conversation, or a supervisor, may transfer it."),
                           code="transfer_not_allowed")


def conversation_transfer(*, conversation_id: int, by: Agent, note: str, to_agent: Agent | None = None,
                          to_queue: Queue | None = None, supervisor: bool = False) -> Conversation:
    """Hand a conversation to an agent or back to a queue with a handoff note the receiver sees
    first. Only its assignee or a ``supervisor`` transfers it; a transfer to oneself is a pick
    (``conversation_pick``: the queue's rules apply, so it never takes what picking may not)."""
    if (to_agent is None) == (to_queue is None):
        raise RoutingError(_("Transfer to an agent or to a queue."), code="transfer_target")
    if to_agent is not None and to_agent.pk == by.pk:
        return conversation_pick(conversation_id=conversation_id, agent=by, supervisor=supervisor)
    note = (note or "").strip()[:2000]
    if to_agent is not None:
        # One transaction: the receiver is told of the assignment after commit, and the note they
        # are to see first must be there by then.
        with transaction.atomic():
            _transfer_allowed(Conversation.objects.select_for_update().get(pk=conversation_id), by=by,
                              supervisor=supervisor)
            conversation = conversation_assign(conversation_id=conversation_id, agent=to_agent, by=by, note=note,
                                               via="transfer")
            system_event_record(conversation, EventType.TRANSFERRED, agent=by, to_agent=to_agent.pk, note=note)
        return conversation
    now = timezone.now()
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
        _transfer_allowed(conversation, by=by, supervisor=supervisor)
        if conversation.status == ConversationStatus.RESOLVED:
            raise RoutingError(_("This conversation is resolved."), code="resolved")
        if not to_queue.takes(conversation.channel):
            raise RoutingError(_("%(queue)s does not take %(channel)s conversations."), code="queue_channel",
                               params={"queue": to_queue.name, "channel": conversation.get_channel_display()})
        previous = conversation.assignee_id
        # An offer made from the queue it leaves is void; its agent's slot is free again.
        events = pending_offers_close(conversation, OfferStatus.RESCINDED, now)
        conversation.assignee = None
        fields = ["assignee", "routing_note", *queue_enter(conversation, to_queue, at=now,
                                                              reason=f"transferred by {by.display_name}")]
        if conversation.status != ConversationStatus.OPEN:
            # Snoozed or pending on the customer: in a queue it waits for an agent, so it is open.
            conversation.status, conversation.snoozed_until = ConversationStatus.OPEN, None
            fields += ["status", "snoozed_until"]
        conversation.routing_note = f"transferred to {to_queue.slug} by {by.display_name}"[:300]
        events.append(system_event(conversation, EventType.TRANSFERRED, agent=by, to_queue=to_queue.pk, note=note))
        system_events_record(conversation, events, update_fields=fields)
        routing_event_publish({"type": "conversation.transferred", "conversation": conversation.pk, "queue": to_queue.pk},
                 agents=[previous], conversation_id=conversation.pk)
        enqueue_on_commit(ROUTE_CONVERSATION, conversation.pk)
        if previous:
            enqueue_on_commit(ROUTE_FOR_AGENT, previous)
    return conversation


def conversation_resolve(*, conversation_id: int, by: Agent | None, wrap_up_code: str = "", note: str = "",
                         ended_by: str = "") -> Conversation:
    """Resolve; frees the agent's capacity, which routes the next waiting conversation to them.
    ``ended_by="customer"``: the customer ended it (a code, shown in the reader's language)."""
    now = timezone.now()
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update(of=("self",)).select_related("queue").get(pk=conversation_id)
        if conversation.status == ConversationStatus.RESOLVED:
            return conversation
        if conversation.queue and conversation.queue.wrap_up_required and not wrap_up_code.strip():
            raise RoutingError(_("This queue requires a wrap-up code to resolve."), code="wrap_up_required")
        if conversation.assignee_id:
            # Registered before the events: on-commit callbacks run in order, and the agent's next
            # conversation should not wait behind the websocket notifications (bench/routing).
            enqueue_on_commit(ROUTE_FOR_AGENT, conversation.assignee_id)
        events = pending_offers_close(conversation, OfferStatus.CANCELED, now)
        conversation.status = ConversationStatus.RESOLVED
        conversation.resolved_at = now
        conversation.waiting_since = None
        events.append(system_event(conversation, EventType.RESOLVED, agent=by, wrap_up_code=wrap_up_code.strip()[:64],
                                   note=note.strip()[:2000], **({"ended_by": ended_by} if ended_by else {})))
        # The offers' events, then the resolution, and the conversation's own changes: one UPDATE
        # and one INSERT (bench/routing resolves twenty conversations a second beside the routers).
        system_events_record(conversation, events, update_fields=["status", "resolved_at", "waiting_since"])
        routing_event_publish({"type": "conversation.resolved", "conversation": conversation.pk},
                 agents=[conversation.assignee_id], conversation_id=conversation.pk)
        # After commit: what other apps do about it (a survey) never undoes the resolve.
        lifecycle.resolved(conversation.pk)
    return conversation
