"""Routing: the right agent at the right time (TaskRouter's model, shared/reference/twilio.md §6).

A waiting conversation (open, unassigned, in a queue) is offered to one eligible agent at a time:
available presence, free capacity on the conversation's channel, every skill the queue requires.
Order: the known agent first (the last agent who served the customer, for the queue's known-agent
step), then longest idle, ties broken by id. An offer is a reservation: pending → accepted |
rejected | timeout | canceled | rescinded. The reads behind a decision are in
``conversations.routing.selection``.

Concurrency (two workers routing at once): every writer locks the conversation row first and the
agent row second, always in that order, so routers cannot deadlock. The conversation lock makes one
router the owner of a conversation; the agent lock serialises the capacity check and the offer
insert, so two routers can never both take an agent's last free slot. The partial unique
constraint "one pending offer per conversation" is the database's own guarantee on top.
Routers take both locks with SKIP LOCKED first, so concurrent decisions do not queue behind each
other: they all see the same longest-idle agent first, and each moves on to the next one instead
of waiting for the router that holds them (bench/routing).
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from contactcenter.enqueue import enqueue, enqueue_on_commit

from ..channels.registry import channel_conversation_assigned
from ..events import agent_presence_event, conversation_assigned_event, conversation_recipients, send_on_commit
from ..groups import agent_group, supervisors_group
from ..models import (
    AfterHoursAction,
    Agent,
    Conversation,
    ConversationStatus,
    EventType,
    Message,
    Offer,
    OfferStatus,
    PresenceState,
    Queue,
)
from ..routing.selection import (
    ELIGIBLE_LIMIT,
    LOAD_STATUSES,
    LOCKED_ELSEWHERE,
    Candidate,
    agent_head_lock,
    agent_lock,
    agent_next_work,
    agent_serves,
    capacity_on,
    eligible_agents,
    has_pending_offer,
    known_agent_id,
    offer_write,
    queue_enter,
    queue_pick,
    recent_refusals,
    waiting_conversation_lock,
)
from ..routing.selection import waiting as _waiting
from ..task_names import ROUTE_CONVERSATION, ROUTE_FOR_AGENT
from .system_events import system_event, system_event_record, system_events_record

logger = logging.getLogger(__name__)

MISSED_OFFER_PRESENCE = "Missed offer"


@dataclass
class RoutingDecision:
    offer: Offer | None = None
    assigned: bool = False
    reason: str = ""
    explanation: dict = field(default_factory=dict)
    candidates: list[Candidate] | None = None  # the agents with room it looked at, when it got that far
    # ``candidates`` holds every agent with room there was (fewer than it asked for), not the first few.
    candidates_complete: bool = False
    conversation_id: int | None = None  # the conversation decided on (route_for_agent's first: found by the lock)
    channel: str = ""


# --- events -----------------------------------------------------------------------------------

def _publish(event: dict, *, agents: list[int | None], conversation_id: int) -> None:
    send_on_commit(conversation_recipients(conversation_id, *agents), event)


def offer_event(offer: Offer, event_type: str) -> dict:
    return {
        "type": event_type, "offer": offer.pk, "conversation": offer.conversation_id, "agent": offer.agent_id,
        "queue": offer.queue_id, "channel": offer.channel, "step": offer.step, "status": offer.status,
        "expires_at": offer.expires_at.isoformat() if offer.expires_at else None,
    }


# --- routing ------------------------------------------------------------------------------------

def route_conversation(*, conversation_id: int, candidate_limit: int = ELIGIBLE_LIMIT) -> RoutingDecision:
    """Offer (or, on auto-accept queues, assign) one waiting conversation. Idempotent: a
    conversation already assigned, already offered, or being routed by another worker is left.

    ``candidate_limit``: how many agents with room to look for, in offer order. The first of them
    gets the offer unless another router holds them; the rest are for that case. Fewer is cheaper
    when few agents have room (every agent before the first few with room is counted), and if the
    short list's agents were all taken meanwhile the whole question is asked again, so the choice
    is the same either way (route_for_agent)."""
    return _route(conversation_id=conversation_id, limit=candidate_limit)


def _route(*, conversation_id: int | None = None, head_of_agent: int | None = None, limit: int) -> RoutingDecision:
    """route_conversation(), for ``conversation_id`` or (PostgreSQL) for the first waiting
    conversation agent ``head_of_agent`` could serve, found and locked by the decision's first
    statement (``agent_head_lock``). The decision says which conversation it was."""
    try:
        decision = _route_conversation(conversation_id, waits=False, limit=limit, head_of_agent=head_of_agent)
    except _StartOver as restart:
        # Rolled back, every lock released: decide again, prepared to wait (_offer_to_first_free).
        decision = _route_conversation(restart.conversation_id, waits=True, limit=limit)
    if decision.offer is None and decision.candidates and not decision.candidates_complete \
            and limit < ELIGIBLE_LIMIT:
        # Every agent of the short list was taken by other routers meanwhile: someone further on
        # may have room.
        return route_conversation(conversation_id=decision.conversation_id)
    return decision


def _route_conversation(conversation_id: int | None, *, waits: bool, limit: int,
                        head_of_agent: int | None = None) -> RoutingDecision:
    now = timezone.now()
    with transaction.atomic():
        # Lock order, first: the conversation. SKIP LOCKED: another router holding it will decide.
        # Only the queue comes along: the customer and the inbox are read on the rare paths (rules,
        # auto-replies), and joining them costs every decision (bench/routing).
        # The first candidate agent is locked by the same statement (PostgreSQL), except on the
        # second try, which waits for agents and so must hold none it did not lock in a savepoint.
        if head_of_agent is not None:
            head = agent_head_lock(head_of_agent, now, limit=limit)
            if head.conversation_id is None:
                return RoutingDecision(reason="nothing waits for this agent, or they are not available")
            locked = head.locked
            if locked is None:
                return RoutingDecision(reason="not waiting or being routed elsewhere",
                                       conversation_id=head.conversation_id, channel=head.channel)
        else:
            locked = waiting_conversation_lock(conversation_id, now, lock_first_candidate=not waits, limit=limit)
            if locked is None:
                return RoutingDecision(reason="not waiting or being routed elsewhere", conversation_id=conversation_id)
        conversation, facts = locked
        try:
            decision = _decide(conversation, facts, now, waits=waits, limit=limit)
        except _StartOver:
            raise _StartOver(conversation.pk) from None
        decision.conversation_id, decision.channel = conversation.pk, conversation.channel
        return decision


def _decide(conversation: Conversation, facts, now, *, waits: bool, limit: int) -> RoutingDecision:
    """The decision on a conversation locked with its ``facts`` (RoutingFacts), inside the caller's
    transaction: its queue (rules, overflow, business hours), the step, the offer."""
    from ..routing.hours import BusinessHours

    if facts.has_pending_offer:
        return RoutingDecision(reason="already offered")
    explanation: dict = {}
    fields = []
    # Never decided on before (the ingest leaves no note): the decision that first makes the
    # customer wait tells them their position (_queue_auto_reply).
    first_decision = not conversation.routing_note
    if conversation.queue_id is None:
        # Not placed when it was opened (the ingest places every conversation it opens).
        why = queue_pick(conversation, at=now)
        explanation.update(why)
        if conversation.queue is None:
            return RoutingDecision(reason="no queue matched and no default queue")
        fields += queue_enter(conversation, conversation.queue, at=now, reason=why["rule"])
    elif conversation.queue_reason:
        explanation["rule"] = conversation.queue_reason
    if conversation.queued_at is None:
        conversation.queued_at = now
        fields.append("queued_at")
    queue = conversation.queue
    if queue.overflow_queue_id and queue.overflow_after_seconds is not None and \
            now - conversation.queued_at >= timedelta(seconds=queue.overflow_after_seconds):
        overflow = Queue.objects.get(pk=queue.overflow_queue_id)
        refused = overflow_refusal(overflow, conversation.channel)
        if refused:
            # Admin validation keeps this from happening (Queue.clean); a queue deactivated or
            # narrowed since must not swallow the conversation: it waits where it is.
            explanation["overflow_refused"] = refused
        else:
            system_event_record(conversation, EventType.TRANSFERRED, from_queue=queue.pk, to_queue=overflow.pk,
                                reason="overflow")
            explanation["overflow_from"] = queue.pk
            fields += queue_enter(conversation, overflow, at=now, reason=f"overflow from {queue.slug}")
            queue = overflow

    hours = BusinessHours.from_config(queue.business_hours or None)
    if not hours.is_open(now):
        reopen = hours.next_open(now)
        note = f"queue {queue.slug} closed; opens {reopen.isoformat() if reopen else 'never'}"
        if conversation.routing_note != note:
            conversation.routing_note = note[:300]
            fields.append("routing_note")
            fields += _after_hours(conversation, queue, hours, reopen, now)
        if conversation.queue_id != queue.pk:
            # Handed to the follow-up queue, which may be open now (an email team elsewhere):
            # its own decision, after this one commits.
            explanation["after_hours_fallback_to"] = conversation.queue_id
            enqueue_on_commit(ROUTE_CONVERSATION, conversation.pk)
        else:
            conversation.route_at = _next_try(conversation, queue, now, opens=reopen or now + CLOSED_RETRY)
            fields.append("route_at")
        conversation.save(update_fields=[*dict.fromkeys(fields), "updated_at"])
        return RoutingDecision(reason=note, explanation=explanation)

    # Refusers are left out by eligible_agents() itself; this set is for the known-agent step
    # and the explanation.
    refused = recent_refusals(conversation.pk, now) if facts.has_recent_refusal else set()
    step = "queue"
    known = known_agent_id(facts, queue, now)
    in_known_step = known is not None and now - conversation.queued_at < timedelta(
        seconds=queue.known_agent_timeout_seconds) and known not in refused
    from_lock = facts.candidates is not None and facts.candidates_queue_id == queue.pk and not in_known_step
    if from_lock:
        candidates = list(facts.candidates)  # read with the lock (PostgreSQL)
    else:
        candidates = eligible_agents(queue=queue, channel=conversation.channel, conversation_id=conversation.pk,
                                     now=now, first=known if in_known_step else None, limit=limit)
    complete = len(candidates) < limit
    if in_known_step:
        known_candidates = [a for a in candidates if a.pk == known]
        if known_candidates:
            # Only the known agent now: the list no longer says who else has room.
            candidates, step, complete = known_candidates, "known_agent", False
        elif _known_agent_could_take(known, queue, conversation.channel) and \
                known not in recent_refusals(conversation.pk, now):  # (the lock's facts may be a moment old)
            # Known agent is here but full: wait for them until the step times out.
            note = f"waiting for known agent #{known}"
            conversation.routing_note = note
            conversation.route_at = _next_try(conversation, queue, now, step_ends=conversation.queued_at + timedelta(
                seconds=queue.known_agent_timeout_seconds))
            conversation.save(update_fields=[*dict.fromkeys(fields), "routing_note", "route_at", "updated_at"])
            if first_decision:
                _queue_auto_reply(conversation)
            return RoutingDecision(reason=note, explanation=explanation)
    explanation |= {"queue": queue.slug, "step": step, "known_agent": known,
                    "candidates": [a.pk for a in candidates][:20], "excluded": sorted(refused)}

    decision = _offer_to_first_free(conversation, candidates, queue, step, explanation, now, fields, waits=waits,
                                    prelocked=facts.locked_candidate, prelocked_from=candidates if from_lock else None)
    if decision is not None:  # the conversation is saved
        decision.candidates, decision.candidates_complete = candidates, complete
        return decision
    if has_pending_offer(conversation.pk):
        # Another router's offer committed just before our lock (the facts came with the lock:
        # see waiting_conversation_lock); offer_write() refused to add a second one.
        return RoutingDecision(reason="already offered")
    conversation.routing_note = "waiting: no eligible agent is free"
    conversation.route_at = _next_try(conversation, queue, now)
    conversation.save(update_fields=[*dict.fromkeys(fields), "routing_note", "route_at", "updated_at"])
    if first_decision:
        _queue_auto_reply(conversation)
    return RoutingDecision(reason=conversation.routing_note, explanation=explanation, candidates=candidates,
                           candidates_complete=complete)


# A conversation left waiting is routed again when an agent frees capacity or becomes available
# (route_for_agent) and when something about it changes; the tick tries it again after this only
# in case one of those tasks was lost. Retrying every waiting conversation on every tick cost a
# decision per waiting conversation every few seconds, for the same answer.
WAITING_RETRY = timedelta(seconds=60)
CLOSED_RETRY = timedelta(hours=1)  # a queue closed for the next two weeks (BusinessHours' horizon)


def _next_try(conversation: Conversation, queue: Queue, now, *, step_ends=None, opens=None):
    """When the tick should route a conversation left waiting in ``queue`` again: its next
    time-based change (the queue's overflow due, the known-agent step ending at ``step_ends``, the
    queue opening at ``opens``), else WAITING_RETRY from now; while closed, nothing but the opening
    or an overflow can change the answer."""
    due = [opens] if opens is not None else [now + WAITING_RETRY]
    if queue.overflow_queue_id and queue.overflow_after_seconds is not None and conversation.queued_at is not None:
        overflow_at = conversation.queued_at + timedelta(seconds=queue.overflow_after_seconds)
        if overflow_at > now:  # past and still here: the overflow queue refused it (overflow_refusal)
            due.append(overflow_at)
    if step_ends is not None:
        due.append(step_ends)
    return min(due)


def overflow_refusal(overflow: Queue, channel: str) -> str:
    """Why ``overflow`` cannot take a conversation of ``channel`` overflowing into it ("" if it can)."""
    if not overflow.is_active:
        return f"overflow queue {overflow.slug} is inactive"
    if not overflow.takes(channel):
        return f"overflow queue {overflow.slug} does not take {channel}"
    return ""


def _known_agent_could_take(agent_id: int, queue: Queue, channel: str) -> bool:
    """The known agent is worth waiting for: available, every skill the queue requires (at its level), some
    capacity on the channel (only full right now). An agent who could never take it from this
    queue (another team's, no capacity for the channel) is not waited for."""
    agent = Agent.objects.filter(pk=agent_id, presence__is_available=True).only("capacity").first()
    if agent is None or capacity_on(agent.capacity, channel) < 1:
        return False
    return agent_serves(agent_id=agent_id, queue_id=queue.pk)


class _StartOver(Exception):
    """A decision that must wait for an agent but holds another agent's lock (see below)."""

    def __init__(self, conversation_id: int | None = None):
        super().__init__(conversation_id)
        self.conversation_id = conversation_id


_NO_ROOM = "no room"


def _offer_to_first_free(conversation: Conversation, candidates: list[Candidate], queue: Queue, step: str,
                         explanation: dict, now, fields: list[str], *, waits: bool,
                         prelocked: tuple | None = None, prelocked_from: list[Candidate] | None = None,
                         ) -> RoutingDecision | None:
    """Offer to the first candidate who still has room once their row is locked. Caller holds the
    conversation lock. Lock order: conversation (held) → agent. The load is counted again under the
    agent's lock, in the statement after the lock's, which inserts the offer only if there is room
    (its snapshot then includes every offer the previous holder of the lock committed): another
    router may have taken the last slot since eligible_agents() looked.

    First pass, SKIP LOCKED: an agent locked by another router is being offered something right
    now, so this router tries the next one rather than queueing behind it, and routers do not
    serialise on the longest idle agent they all see first. This pass never waits for anything, so
    it cannot be part of a deadlock, and an agent it locked who turned out to be full simply stays
    locked until commit (no savepoint to release them: two round trips fewer per decision).

    Only when nobody else is free does the router wait for the agents it skipped, and while it
    waits it must hold no agent's lock: two routers each holding one agent and waiting for the
    other's would deadlock. So each of those agents is locked inside a savepoint, rolled back (lock
    released) when they are full; and a first pass that kept a full agent locked starts the
    decision over (``_StartOver``: the transaction rolls back) with ``waits``, where every agent is
    locked inside a savepoint from the start.

    ``prelocked``: an agent the lock statement already locked (``RoutingFacts.locked_candidate``),
    the first of ``prelocked_from`` (when that is the list of these candidates) whose row nobody
    else held, so the ones before them in it were held elsewhere. Tried without a second lock, and
    held like any full agent when not offered this conversation."""
    assert prelocked is None or not waits, "a decision that waits holds no lock from the lock statement"
    skipped, holding = [], False
    offer_to = _OfferTo(conversation, queue, step, explanation, now, fields)
    before_prelocked = prelocked is not None and prelocked_from is candidates
    if prelocked is not None and all(c.pk != prelocked[0] for c in candidates):
        holding = True  # locked by the lock statement for another list; kept until commit
    for candidate in candidates:
        if prelocked is not None and candidate.pk == prelocked[0]:
            before_prelocked = False
            outcome = offer_to.agent(candidate.pk, skip_locked=True, release_if_full=False, locked=prelocked[1:])
        elif before_prelocked:
            outcome = LOCKED_ELSEWHERE  # the lock statement skipped them: held by another router
        else:
            outcome = offer_to.agent(candidate.pk, skip_locked=True, release_if_full=waits)
        if outcome is LOCKED_ELSEWHERE:
            skipped.append(candidate)
        elif outcome is _NO_ROOM:
            holding = holding or not waits
        elif outcome is not None:
            return outcome
    if not skipped:
        return None
    if holding:
        raise _StartOver
    for candidate in skipped:
        outcome = offer_to.agent(candidate.pk, skip_locked=False, release_if_full=True)
        if isinstance(outcome, RoutingDecision):
            return outcome
    return None


@dataclass
class _OfferTo:
    """One decision's offer, tried agent after agent (``_offer_to_first_free``)."""

    conversation: Conversation
    queue: Queue
    step: str
    explanation: dict
    now: object
    fields: list[str]

    def agent(self, agent_id: int, *, skip_locked: bool, release_if_full: bool, locked: tuple | None = None):
        """Lock the agent's row until commit, then insert the offer only while they are available
        with room on the channel (``offer_write``: the load counted in a statement after
        the lock's). Returns the decision; else ``_NO_ROOM`` (their lock released again if
        ``release_if_full``, by rolling back a savepoint taken before it), None when the agent is
        gone, or ``LOCKED_ELSEWHERE`` when ``skip_locked`` and another transaction holds them.
        ``locked``: the agent is locked already (the lock statement), as ``agent_lock`` returns."""
        savepoint = transaction.savepoint() if release_if_full else None
        if locked is None:
            locked = agent_lock(agent_id, skip_locked=skip_locked)
        if locked is None or locked is LOCKED_ELSEWHERE:
            if savepoint:
                transaction.savepoint_rollback(savepoint)
            return locked
        available, capacity, display_name = locked
        conversation, queue, now = self.conversation, self.queue, self.now
        agent = Agent(pk=agent_id, capacity=capacity, display_name=display_name)
        offer = Offer(conversation=conversation, agent=agent, queue=queue, channel=conversation.channel,
                      step=self.step, explanation=self.explanation, created_at=now)
        fields = [*self.fields, "routing_note"]
        if queue.auto_accept:
            offer.status, offer.decided_at = OfferStatus.ACCEPTED, now
            previous = conversation.assignee, conversation.assigned_at, conversation.routing_note
            conversation.assignee, conversation.assigned_at = agent, now
            conversation.routing_note = f"assigned to {display_name}"[:300]
            fields += ["assignee", "assigned_at"]
            event = system_event(conversation, EventType.ASSIGNED, **_assigned_data(agent, via="auto_accept"))
        else:
            offer.expires_at = now + timedelta(seconds=queue.offer_timeout_seconds)
            previous = None, None, conversation.routing_note
            conversation.routing_note = f"offered to {display_name}"[:300]
            event = system_event(conversation, EventType.OFFERED, agent=agent, offer=None, step=self.step,
                                 queue=queue.pk)
        if not available or not offer_write(offer, limit=capacity_on(capacity, conversation.channel),
                                            conversation=conversation, conversation_fields=fields, event=event):
            conversation.assignee, conversation.assigned_at, conversation.routing_note = previous
            if savepoint:
                transaction.savepoint_rollback(savepoint)
            return _NO_ROOM
        if savepoint:
            transaction.savepoint_commit(savepoint)
        # Made: the offer (or assignment), the agent's idle time, the conversation, the event.
        if offer.status == OfferStatus.ACCEPTED:
            _assigned_publish(conversation, agent, via="auto_accept")
            return RoutingDecision(offer=offer, assigned=True, explanation=offer.explanation)
        _publish(offer_event(offer, "offer.created"), agents=[agent.pk], conversation_id=conversation.pk)
        return RoutingDecision(offer=offer, explanation=offer.explanation)


def _queue_auto_reply(conversation: Conversation) -> None:
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
    from .outbound import SendRefused, message_send

    try:
        message_send(conversation=conversation, agent=None, text=text)
    except SendRefused as exc:
        logger.info("queue auto-reply not sent for conversation %s: %s", conversation.pk, exc.messages)


def _after_hours(conversation: Conversation, queue: Queue, hours, reopen, now) -> list[str]:
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
    from .outbound import SendRefused, message_send

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


def _assign(conversation: Conversation, agent: Agent, now, *, via: str, by: Agent | None = None, note: str = "") -> Message:
    """Caller holds the conversation lock (and the agent's, when capacity matters), and saves the
    conversation's ``_ASSIGNED_FIELDS`` with the returned timeline event (``system_events_record``)."""
    conversation.assignee = agent
    conversation.assigned_at = now
    Agent.objects.filter(pk=agent.pk).update(last_assigned_at=now)
    _assigned_publish(conversation, agent, via=via)
    return system_event(conversation, EventType.ASSIGNED, agent=by, **_assigned_data(agent, via=via, note=note))


_ASSIGNED_FIELDS = ["assignee", "assigned_at"]


def _assigned_data(agent: Agent, *, via: str, note: str = "") -> dict:
    return {"assignee": agent.pk, "assignee_name": agent.display_name, "via": via, **({"note": note} if note else {})}


def _assigned_publish(conversation: Conversation, agent: Agent, *, via: str) -> None:
    _publish(conversation_assigned_event(conversation, agent, via=via), agents=[agent.pk], conversation_id=conversation.pk)
    channel_conversation_assigned(conversation, agent)  # e.g. the web-chat visitor hears "<agent> joined"


# --- offers -------------------------------------------------------------------------------------

class RoutingError(ValidationError):
    """A routing action that cannot be done, with the reason for the person who asked."""


def _locked_offer(offer_id: int) -> tuple[Conversation, Offer]:
    conversation_id = Offer.objects.filter(pk=offer_id).values_list("conversation_id", flat=True).first()
    if conversation_id is None:
        raise RoutingError(_("No such offer."), code="offer_missing")
    conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
    return conversation, Offer.objects.select_for_update(of=("self",)).select_related("agent").get(pk=offer_id)


def offer_accept(*, offer_id: int, agent: Agent) -> Offer:
    now = timezone.now()
    with transaction.atomic():
        conversation, offer = _locked_offer(offer_id)
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
            system_events_record(conversation, [_close_offer(offer, OfferStatus.TIMEOUT, now)])
            enqueue_on_commit(ROUTE_CONVERSATION, conversation.pk)
        else:
            offer.status = OfferStatus.ACCEPTED
            offer.decided_at = now
            offer.save(update_fields=["status", "decided_at"])
            event = _assign(conversation, offer.agent, now, via="offer")
            system_events_record(conversation, [event], update_fields=_ASSIGNED_FIELDS)
            _publish(offer_event(offer, "offer.accepted"), agents=[agent.pk], conversation_id=conversation.pk)
    if timed_out:
        raise RoutingError(_("This offer timed out."), code="offer_timeout")
    return offer


def _close_offer(offer: Offer, status: str, now) -> Message:
    """Close a pending offer (caller holds its conversation's lock and the offer's) and publish that
    after commit. Returns the timeline event saying so, not saved yet: the caller records it with
    the conversation's other changes (``system_events_record``: one UPDATE and one INSERT for all)."""
    offer.status = status
    offer.decided_at = now
    offer.save(update_fields=["status", "decided_at"])
    _publish(offer_event(offer, f"offer.{status}"), agents=[offer.agent_id], conversation_id=offer.conversation_id)
    # The offer's agent by id: their row is not needed for the event, and reading it cost a query.
    return system_event(offer.conversation, EventType.OFFERED, author_agent_id=offer.agent_id, offer=offer.pk,
                        outcome=status)


def offer_reject(*, offer_id: int, agent: Agent) -> Offer:
    with transaction.atomic():
        conversation, offer = _locked_offer(offer_id)
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
        system_events_record(conversation, [_close_offer(offer, OfferStatus.REJECTED, timezone.now())])
    return offer


def missed_offer_presence() -> PresenceState:
    state, _created = PresenceState.objects.get_or_create(
        name=MISSED_OFFER_PRESENCE, defaults={"is_available": False, "is_offline": False, "ordering": 90})
    return state


def offers_expire(*, limit: int = 200) -> int:
    """Tick job: time out due offers, move their agents to an unavailable presence (they are not at
    their desk), rescind their other pending offers (each customer would wait out its own timeout
    for nobody), re-route."""
    now = timezone.now()
    done = 0
    due = list(Offer.objects.filter(status=OfferStatus.PENDING, expires_at__lte=now).order_by("expires_at")
               .values_list("pk", flat=True)[:limit])
    for offer_id in due:
        with transaction.atomic():
            conversation, offer = _locked_offer(offer_id)
            if offer.status != OfferStatus.PENDING:
                continue
            offer.conversation = conversation
            system_events_record(conversation, [_close_offer(offer, OfferStatus.TIMEOUT, now)])
            agent = Agent.objects.select_for_update(of=("self",)).select_related("presence").get(pk=offer.agent_id)
            sent_away = bool(agent.presence and agent.presence.is_available)
            if sent_away:
                _set_presence(agent, missed_offer_presence(), now, reason="missed_offer")
            enqueue_on_commit(ROUTE_CONVERSATION, conversation.pk)
            done += 1
        if sent_away:
            # A transaction of its own: its conversations are locked before their offers, and the
            # one above ended holding the agent's lock (lock order: conversation -> agent).
            with transaction.atomic():
                _rescind_pending_offers_of(agent.pk, now)
    return done


# --- presence -----------------------------------------------------------------------------------

def _set_presence(agent: Agent, presence: PresenceState, now, *, reason: str = "") -> None:
    agent.presence = presence
    agent.presence_changed_at = now
    agent.save(update_fields=["presence", "presence_changed_at"])
    send_on_commit([agent_group(agent.pk), supervisors_group()], agent_presence_event(agent, presence, reason=reason))


def agent_presence_set(*, agent: Agent, presence: PresenceState, reason: str = "agent") -> Agent:
    """Change an agent's presence (``reason``, for the agent and supervisors: "agent" when they
    chose it). Becoming available routes waiting work to them; going offline or unavailable
    rescinds their pending offers (which go to the next agent)."""
    now = timezone.now()
    with transaction.atomic():
        if presence.is_offline or not presence.is_available:
            _rescind_pending_offers_of(agent.pk, now)
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        _set_presence(agent, presence, now, reason=reason)
        if presence.is_available:
            enqueue_on_commit(ROUTE_FOR_AGENT, agent.pk)
    return agent


def _rescind_pending_offers_of(agent_id: int, now) -> list[int]:
    """Rescind the agent's pending offers, each conversation re-routed after commit (to the next
    agent); the conversations' ids. Caller owns the transaction and holds no agent lock yet: each
    conversation is locked before its offer (lock order: conversation -> agent)."""
    rescinded = []
    for offer_id in Offer.objects.filter(agent_id=agent_id, status=OfferStatus.PENDING).values_list("pk", flat=True):
        conversation, offer = _locked_offer(offer_id)
        if offer.status == OfferStatus.PENDING:
            offer.conversation = conversation
            system_events_record(conversation, [_close_offer(offer, OfferStatus.RESCINDED, now)])
            enqueue_on_commit(ROUTE_CONVERSATION, conversation.pk)
            rescinded.append(conversation.pk)
    return rescinded


def route_for_agent(*, agent_id: int, limit: int = 20) -> int:
    """An agent became available or freed capacity: route the waiting conversations they could
    serve, highest priority then oldest first, until none is left or they are full.

    Each conversation goes through route_conversation(), which decides who gets it (the known
    agent, else the longest idle) under its locks. Its candidates (the agents with room it looked
    at, with their loads) tell whether this agent still has room on that channel: a channel is done
    when they took its last slot, or were not among the agents with room while that list was
    complete. So nothing but the decisions counts their load (bench/routing).

    Each decision asks for one candidate, the agent who gets the offer: with a backlog waiting
    every other agent is usually full, and the decision counts the load of every agent ahead of the
    first few with room, so asking for ten counted the whole floor's, one agent at a time, for each
    freed slot. Asking for one stops at the first agent with room, most often this one.

    On PostgreSQL the first decision finds its conversation itself (agent_head_lock), and the rest
    of the list (agent_next_work) is read after its commit, when the agent may have room left."""
    offered, channels_done, tried = 0, set(), set()

    def account(decision: RoutingDecision, channel: str) -> None:
        nonlocal offered
        offered += bool(decision.offer)
        if decision.candidates is None:
            return  # decided before looking at agents (closed, known agent, already offered)
        mine = next((c for c in decision.candidates if c.pk == agent_id), None)
        if decision.offer is not None and decision.offer.agent_id == agent_id:
            if mine is None or mine.load + 1 >= mine.capacity:
                channels_done.add(channel)
        elif mine is None and decision.candidates_complete:
            channels_done.add(channel)  # not among the agents with room: none for them there

    if connection.vendor == "postgresql":
        # The first conversation waiting for them is found by the decision's own lock statement,
        # so the freed agent's offer needs no statement before it (agent_head_lock).
        first = _route(head_of_agent=agent_id, limit=1)
        if first.conversation_id is None:
            return 0  # nothing waits for them, or they are not available
        tried.add(first.conversation_id)
        account(first, first.channel)
    work = agent_next_work(agent_id, limit=limit)
    if work is None or not work.available:
        return offered
    for conversation_id, channel in work.waiting:
        if channel in channels_done or conversation_id in tried:
            continue  # full there: every further attempt would look at every agent and find nobody
        account(route_conversation(conversation_id=conversation_id, candidate_limit=1), channel)
    return offered


def route_waiting(*, limit: int = 500) -> int:
    """Tick job: every waiting conversation without a pending offer whose ``route_at`` has come
    gets a routing attempt (the known-agent step ending, an overflow due, its queue opening, a task
    that was lost; see _next_try)."""
    ids = list(
        _waiting().exclude(offers__status=OfferStatus.PENDING).filter(Q(queue__isnull=False) | Q(queued_at__isnull=True))
        .filter(Q(route_at__isnull=True) | Q(route_at__lte=timezone.now()))
        .order_by("-priority", "queued_at", "pk").values_list("pk", flat=True)[:limit]
    )
    queued = 0
    for conversation_id in ids:
        if not enqueue(ROUTE_CONVERSATION, conversation_id):
            break  # broker down: next tick
        queued += 1
    return queued


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
            _publish({"type": "conversation.requeued", "conversation": conversation.pk, "agent": previous},
                     agents=[previous], conversation_id=conversation.pk)
            enqueue_on_commit(ROUTE_CONVERSATION, conversation.pk)
            moved += 1
    return moved


# --- customer leaves, manual control ---------------------------------------------------------------

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
        events = _close_pending_offers(conversation, OfferStatus.CANCELED, now)
        conversation.abandoned_at = now
        conversation.routing_note = f"abandoned: {reason}"[:300]
        # On the timeline like every routing outcome, and live: supervisors' waiting counts drop.
        events.append(system_event(conversation, EventType.ABANDONED, reason=reason[:100]))
        system_events_record(conversation, events, update_fields=["abandoned_at", "routing_note"])
        _publish({"type": "conversation.abandoned", "conversation": conversation.pk, "queue": conversation.queue_id,
                  "reason": reason[:100]}, agents=[], conversation_id=conversation.pk)
    return True


def _close_pending_offers(conversation: Conversation, status: str, now) -> list[Message]:
    """Close the conversation's pending offers (caller holds its lock); their unsaved events. Each
    offer held a slot of its agent's: their waiting work is routed after commit."""
    events = []
    for offer in Offer.objects.select_for_update().filter(conversation=conversation, status=OfferStatus.PENDING):
        offer.conversation = conversation
        events.append(_close_offer(offer, status, now))
        enqueue_on_commit(ROUTE_FOR_AGENT, offer.agent_id)
    return events


def conversation_assign(*, conversation_id: int, agent: Agent, by: Agent | None, note: str = "", via: str = "manual") -> Conversation:
    """Supervisor assignment, reassignment or an agent's pick. Pending offers are rescinded."""
    now = timezone.now()
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
        if conversation.status == ConversationStatus.RESOLVED:
            raise RoutingError(_("This conversation is resolved."), code="resolved")
        previous = conversation.assignee_id
        events = _close_pending_offers(conversation, OfferStatus.RESCINDED, now)
        target = Agent.objects.select_for_update().get(pk=agent.pk)
        events.append(_assign(conversation, target, now, via=via, by=by, note=note))
        conversation.routing_note = f"{via} by {by.display_name if by else 'system'}"[:300]
        system_events_record(conversation, events, update_fields=[*_ASSIGNED_FIELDS, "routing_note"])
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
        events = _close_pending_offers(conversation, OfferStatus.RESCINDED, now)
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
        _publish({"type": "conversation.transferred", "conversation": conversation.pk, "queue": to_queue.pk},
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
        events = _close_pending_offers(conversation, OfferStatus.CANCELED, now)
        conversation.status = ConversationStatus.RESOLVED
        conversation.resolved_at = now
        conversation.waiting_since = None
        events.append(system_event(conversation, EventType.RESOLVED, agent=by, wrap_up_code=wrap_up_code.strip()[:64],
                                   note=note.strip()[:2000], **({"ended_by": ended_by} if ended_by else {})))
        # The offers' events, then the resolution, and the conversation's own changes: one UPDATE
        # and one INSERT (bench/routing resolves twenty conversations a second beside the routers).
        system_events_record(conversation, events, update_fields=["status", "resolved_at", "waiting_since"])
        _publish({"type": "conversation.resolved", "conversation": conversation.pk},
                 agents=[conversation.assignee_id], conversation_id=conversation.pk)
    return conversation


# --- position and wait ------------------------------------------------------------------------------

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
        Conversation.objects.filter(queue_id=conversation.queue_id, assigned_at__isnull=False, queued_at__isnull=False)
        .order_by("-assigned_at").values_list("queued_at", "assigned_at")[:50]
    )
    waits = sorted((assigned - queued).total_seconds() for queued, assigned in recent if assigned >= queued)
    median = waits[len(waits) // 2] if waits else None
    estimate = round(median * (ahead + 1)) if median is not None else None
    return {"position": ahead + 1, "ahead": ahead, "estimated_wait_seconds": estimate}
