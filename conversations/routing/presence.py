"""Agents' presence as routing sees it: set by the agent, a supervisor or a timed-out offer.
"""

from django.db import transaction
from django.utils import timezone

from contactcenter.enqueue import enqueue_on_commit

from .. import lifecycle
from ..events import agent_presence_event, send_on_commit
from ..groups import agent_group, supervisors_group
from ..models import Agent, Offer, OfferStatus, PresenceState
from ..services.system_events import system_events_record
from ..task_names import ROUTE_CONVERSATION, ROUTE_FOR_AGENT
from .offers import offer_close, offer_lock, pending_offers_rescind

MISSED_OFFER_PRESENCE = "Missed offer"


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
            conversation, offer = offer_lock(offer_id)
            if offer.status != OfferStatus.PENDING:
                continue
            offer.conversation = conversation
            system_events_record(conversation, [offer_close(offer, OfferStatus.TIMEOUT, now)])
            sent_away = agent_send_away_after_missed(offer.agent_id, now)
            enqueue_on_commit(ROUTE_CONVERSATION, conversation.pk)
            done += 1
        if sent_away:
            # A transaction of its own: its conversations are locked before their offers, and the
            # one above ended holding the agent's lock (lock order: conversation -> agent).
            with transaction.atomic():
                pending_offers_rescind(offer.agent_id, now)
    return done


def presence_record(agent: Agent, presence: PresenceState, now, *, reason: str = "", by: Agent | None = None) -> None:
    """Caller holds the agent's lock. ``reason`` says why, ``by`` who made the change for the agent
    (a supervisor), both for the listeners of ``lifecycle.presence_changed``."""
    agent.presence = presence
    agent.presence_changed_at = now
    agent.save(update_fields=["presence", "presence_changed_at"])
    lifecycle.presence_changed.send(sender=Agent, agent_id=agent.pk, presence=presence, changed_at=now,
                                    reason=reason, by_agent_id=by.pk if by is not None else None)
    send_on_commit([agent_group(agent.pk), supervisors_group()], agent_presence_event(agent, presence, reason=reason))


def agent_presence_set(*, agent: Agent, presence: PresenceState, reason: str = "agent",
                       by: Agent | None = None) -> Agent:
    """Change an agent's presence (``reason``, for the agent and supervisors: "agent" when they
    chose it; ``by``: who did it for them, a supervisor). Becoming available routes waiting work to them; going offline or unavailable
    rescinds their pending offers (which go to the next agent)."""
    now = timezone.now()
    with transaction.atomic():
        if presence.is_offline or not presence.is_available:
            pending_offers_rescind(agent.pk, now)
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        presence_record(agent, presence, now, reason=reason, by=by)
        if presence.is_available:
            enqueue_on_commit(ROUTE_FOR_AGENT, agent.pk)
    return agent


def agent_send_away_after_missed(agent_id: int, now) -> bool:
    """An agent who let work ring out (an offer timed out, the phone of a call put through to
    them not answered) is not at their desk: an available one moves to "Missed offer", so routing
    does not hand the next customer (or the same one) to them again. In the caller's transaction,
    after the conversation's lock (lock order: conversation -> agent). True when they were moved:
    the caller then rescinds their other pending offers in a transaction of its own."""
    agent = Agent.objects.select_for_update(of=("self",)).select_related("presence").get(pk=agent_id)
    if not (agent.presence and agent.presence.is_available):
        return False
    presence_record(agent, missed_offer_presence(), now, reason="missed_offer")
    return True
