"""Routing decisions: which agent gets a waiting conversation, and when to try again.

One decision per waiting conversation at a time, the way TaskRouter places a task: lock the
conversation and its first eligible agents, offer to the first one with room, or say when to try
again (the known-agent step ending, an overflow, the queue opening). Decisions are idempotent:
a conversation that already has a pending offer or an agent is left alone.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from contactcenter.enqueue import enqueue, enqueue_on_commit

from ..models import (
    Agent,
    Conversation,
    EventType,
    Offer,
    OfferStatus,
    Queue,
)
from ..services.system_events import system_event, system_event_record
from ..task_names import ROUTE_CONVERSATION
from .after_hours import after_hours_handle
from .eligibility import ELIGIBLE_LIMIT, agent_serves, eligible_agents, recent_refusals
from .offers import (
    assigned_event_data,
    assigned_publish,
    offer_event,
    routing_event_publish,
)
from .placement import queue_enter, queue_pick
from .position import queue_auto_reply
from .selection import (
    LOCKED_ELSEWHERE,
    agent_head_lock,
    agent_lock,
    agent_next_work,
    has_pending_offer,
    known_agent_id,
    offer_write,
    waiting_conversation_lock,
)
from .sql import Candidate, capacity_on
from .sql import waiting as _waiting


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
    # customer wait tells them their position (queue_auto_reply).
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
            fields += after_hours_handle(conversation, queue, hours, reopen, now)
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
                queue_auto_reply(conversation)
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
        queue_auto_reply(conversation)
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
            previous = conversation.assignee, conversation.assigned_at, conversation.answered_at, conversation.routing_note
            conversation.assignee = agent
            fields += ["assignee", *conversation.accepted(now)]
            conversation.routing_note = f"assigned to {display_name}"[:300]
            event = system_event(conversation, EventType.ASSIGNED, **assigned_event_data(agent, via="auto_accept"))
        else:
            offer.expires_at = now + timedelta(seconds=queue.offer_timeout_seconds)
            previous = None, None, conversation.answered_at, conversation.routing_note
            conversation.routing_note = f"offered to {display_name}"[:300]
            event = system_event(conversation, EventType.OFFERED, agent=agent, offer=None, step=self.step,
                                 queue=queue.pk)
        if not available or not offer_write(offer, limit=capacity_on(capacity, conversation.channel),
                                            conversation=conversation, conversation_fields=fields, event=event):
            (conversation.assignee, conversation.assigned_at, conversation.answered_at,
             conversation.routing_note) = previous
            if savepoint:
                transaction.savepoint_rollback(savepoint)
            return _NO_ROOM
        if savepoint:
            transaction.savepoint_commit(savepoint)
        # Made: the offer (or assignment), the agent's idle time, the conversation, the event.
        if offer.status == OfferStatus.ACCEPTED:
            assigned_publish(conversation, agent, via="auto_accept")
            return RoutingDecision(offer=offer, assigned=True, explanation=offer.explanation)
        routing_event_publish(offer_event(offer, "offer.created"), agents=[agent.pk], conversation_id=conversation.pk)
        return RoutingDecision(offer=offer, explanation=offer.explanation)


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
