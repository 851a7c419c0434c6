"""Who could take a conversation, and which conversation to route: the reads behind a routing decision.

Reads, plus the one statement that locks an agent; the rest of the locking and the writes live in
``conversations.services.routing``. Every helper here is one SQL statement. A decision's cost is
its round trips plus the ORM's work to build each statement, and building the correlated load
subqueries took more CPU than PostgreSQL took to run them (bench/routing), so the statements run
once per decision are written out in SQL that PostgreSQL and SQLite both accept.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache

from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ..models import (
    DEFAULT_CAPACITY,
    Agent,
    AgentSkill,
    Conversation,
    ConversationStatus,
    Offer,
    OfferStatus,
    PresenceState,
    Queue,
    RoutingRule,
)

LOAD_STATUSES = (ConversationStatus.OPEN, ConversationStatus.PENDING)
# An agent who turned a conversation down is not offered it again for this long (unless they are
# picked or assigned by hand), so an offer cannot ping-pong between two agents.
REJECT_MEMORY = timedelta(minutes=10)
REFUSED = (OfferStatus.REJECTED, OfferStatus.TIMEOUT)


# --- which queue -----------------------------------------------------------------------------------

def rule_context(conversation: Conversation) -> dict:
    customer = conversation.customer
    local = timezone.localtime(timezone.now())
    return {
        "channel": conversation.channel, "inbox": conversation.inbox.address, "language": customer.language,
        "tags": [tag.name for tag in customer.tags.all()], "journey_stage": customer.journey_stage,
        "priority": conversation.priority, "ivr": (conversation.inbox.settings or {}).get("ivr_choice"),
        "customer_id": customer.pk, "subject": conversation.subject, "hour": local.hour, "weekday": local.isoweekday(),
    }


def queue_pick(conversation: Conversation) -> tuple[Queue | None, dict]:
    """The first active rule whose expression matches decides; else the inbox's default queue, else
    the queue marked default."""
    from .rules import first_match

    # A rule can only send a conversation to a queue that serves its channel (empty = all).
    rules = [rule for rule in RoutingRule.objects.filter(is_active=True, queue__is_active=True).select_related("queue")
             if not rule.queue.channels or conversation.channel in rule.queue.channels]
    context = rule_context(conversation)
    matched = first_match(((rule, rule.expression) for rule in rules), context)
    if matched is not None:
        return matched.queue, {"rule": matched.name, "rule_id": matched.pk}
    if conversation.inbox.default_queue_id:
        return conversation.inbox.default_queue, {"rule": "inbox default"}
    default = Queue.objects.filter(is_default=True, is_active=True).order_by("id").first()
    return default, {"rule": "default queue" if default else "no queue"}


# --- the conversation ------------------------------------------------------------------------------

def waiting(qs=None):
    """Open, unassigned, not abandoned: what routing may offer."""
    return (qs if qs is not None else Conversation.objects).filter(
        status=ConversationStatus.OPEN, assignee__isnull=True, abandoned_at__isnull=True)


@dataclass(frozen=True)
class RoutingFacts:
    """What a decision needs to know about a conversation besides its row."""

    has_pending_offer: bool
    has_recent_refusal: bool  # an agent turned it down within REJECT_MEMORY
    last_assignee_id: int | None  # the customer's latest other assignment, for the known-agent step
    last_assigned_at: datetime | None


_FACTS = """SELECT
    EXISTS (SELECT 1 FROM {offer} WHERE conversation_id = %s AND status = %s),
    EXISTS (SELECT 1 FROM {offer} WHERE conversation_id = %s AND status IN (%s, %s) AND decided_at >= %s),
    (SELECT assignee_id FROM {conversation} WHERE customer_id = %s AND id <> %s AND assignee_id IS NOT NULL
        AND assigned_at IS NOT NULL ORDER BY assigned_at DESC, id DESC LIMIT 1),
    (SELECT assigned_at FROM {conversation} WHERE customer_id = %s AND id <> %s AND assignee_id IS NOT NULL
        AND assigned_at IS NOT NULL ORDER BY assigned_at DESC, id DESC LIMIT 1)"""


def routing_facts(conversation: Conversation, now) -> RoutingFacts:
    """One statement. Run it after locking the conversation: its snapshot then includes whatever an
    earlier holder of the lock committed (an offer, a refusal)."""
    since = connection.ops.adapt_datetimefield_value(now - REJECT_MEMORY)
    pk, customer_id = conversation.pk, conversation.customer_id
    with connection.cursor() as cursor:
        cursor.execute(_sql(_FACTS), [pk, OfferStatus.PENDING, pk, *REFUSED, since, customer_id, pk, customer_id, pk])
        pending, refused, last_assignee_id, last_assigned_at = cursor.fetchone()
    if isinstance(last_assigned_at, str):  # SQLite hands a computed column back as text
        last_assigned_at = parse_datetime(last_assigned_at)
    if last_assigned_at is not None and timezone.is_naive(last_assigned_at):
        last_assigned_at = timezone.make_aware(last_assigned_at, UTC)
    return RoutingFacts(has_pending_offer=bool(pending), has_recent_refusal=bool(refused),
                        last_assignee_id=last_assignee_id, last_assigned_at=last_assigned_at)


def recent_refusals(conversation_id: int, now) -> set[int]:
    return set(Offer.objects.filter(conversation_id=conversation_id, status__in=REFUSED,
                                    decided_at__gte=now - REJECT_MEMORY).values_list("agent_id", flat=True))


def known_agent_id(facts: RoutingFacts, queue: Queue, now) -> int | None:
    """The agent who last served the customer within the queue's known-agent window: the latest
    assignment overall is inside the window exactly when any is."""
    if not queue.known_agent_window_days or facts.last_assigned_at is None:
        return None
    if facts.last_assigned_at < now - timedelta(days=queue.known_agent_window_days):
        return None
    return facts.last_assignee_id


# --- the agents ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    pk: int
    load: int
    capacity: int


def capacity_on(capacity: dict | str | None, channel: str) -> int:
    if isinstance(capacity, str):  # a raw cursor returns JSON as text
        capacity = _parsed(capacity)
    return int((capacity or {}).get(channel, DEFAULT_CAPACITY.get(channel, 1)))


@lru_cache(maxsize=256)
def _parsed(capacity: str) -> dict:
    """Most agents share a few capacity settings: parse each text once (callers only read it)."""
    return json.loads(capacity)


@cache
def _sql(template: str) -> str:
    """``template`` with its {table} names filled in, quoted for the database in use."""
    tables = {
        "agent": Agent, "presence": PresenceState, "agentskill": AgentSkill, "conversation": Conversation,
        "offer": Offer, "queue": Queue, "required": Queue.required_skills.through,
    }
    return template.format(**{key: connection.ops.quote_name(model._meta.db_table) for key, model in tables.items()})


# An agent's load on a channel: open/pending conversations held plus pending offers (_load_params).
_LOAD = """(SELECT COUNT(*) FROM {conversation} c WHERE c.assignee_id = a.id AND c.channel = %s
              AND c.status IN (%s, %s))
         + (SELECT COUNT(*) FROM {offer} o WHERE o.agent_id = a.id AND o.channel = %s AND o.status = %s)"""


def _load_params(channel: str) -> list:
    return [channel, *LOAD_STATUSES, channel, OfferStatus.PENDING]


# Available agents having every skill the queue requires, longest idle first (never assigned
# first, then the longest since their presence changed, then the lower id).
_ELIGIBLE = f"""SELECT a.id, a.capacity, {_LOAD}
    FROM {{agent}} a JOIN {{presence}} p ON p.id = a.presence_id
    WHERE p.is_available AND NOT EXISTS (
        SELECT 1 FROM {{required}} r WHERE r.queue_id = %s AND NOT EXISTS (
            SELECT 1 FROM {{agentskill}} s WHERE s.agent_id = a.id AND s.skill_id = r.skill_id))
    ORDER BY a.last_assigned_at IS NOT NULL, a.last_assigned_at, a.presence_changed_at, a.id"""

_AGENT_LOAD = f"SELECT {_LOAD} FROM {{agent}} a WHERE a.id = %s"

_AGENT = """SELECT p.is_available, a.capacity, a.display_name
    FROM {agent} a LEFT JOIN {presence} p ON p.id = a.presence_id WHERE a.id = %s"""


def eligible_agents(*, queue: Queue, channel: str, exclude: set[int] = frozenset()) -> list[Candidate]:
    """Agents who could take a conversation of ``queue`` on ``channel`` now, longest idle first.

    One statement: skills, presence and each agent's load (open/pending conversations plus
    pending offers on the channel) come back as plain rows, no model instances (bench/routing).
    Never-assigned agents count as the longest idle; ties go to the lower id."""
    with connection.cursor() as cursor:
        cursor.execute(_sql(_ELIGIBLE), [*_load_params(channel), queue.pk])
        rows = cursor.fetchall()
    candidates = []
    for pk, capacity, load in rows:
        limit = capacity_on(capacity, channel)
        if load < limit and pk not in exclude:
            candidates.append(Candidate(pk=pk, load=load, capacity=limit))
    return candidates


def agent_load(agent_id: int, channel: str) -> int:
    """An agent's load on ``channel``. Under the agent's row lock, in a statement after the one that
    took it, this is exact: every offer or assignment to them was made by a holder of that lock and
    is committed, and a new statement sees every commit (READ COMMITTED)."""
    with connection.cursor() as cursor:
        cursor.execute(_sql(_AGENT_LOAD), [*_load_params(channel), agent_id])
        return cursor.fetchone()[0]


LOCKED_ELSEWHERE = "locked elsewhere"


def agent_lock(agent_id: int, *, skip_locked: bool) -> tuple[bool, dict, str] | str | None:
    """Lock an agent's row until commit: (available, capacity, display name); None when the agent
    does not exist; ``LOCKED_ELSEWHERE`` when ``skip_locked`` and another transaction holds it.
    Caller holds the conversation lock (the lock order is conversation → agent)."""
    features = connection.features
    sql = _sql(_AGENT)
    if features.has_select_for_update:  # SQLite has no row locks: its writers take turns anyway
        sql += " FOR UPDATE OF a" if features.has_select_for_update_of else " FOR UPDATE"
        if skip_locked:
            sql += " SKIP LOCKED"
    with connection.cursor() as cursor:
        cursor.execute(sql, [agent_id])
        row = cursor.fetchone()
    if row is None:  # with SKIP LOCKED most likely locked; if deleted, the caller's second try says so
        return LOCKED_ELSEWHERE if skip_locked and features.has_select_for_update else None
    available, capacity, display_name = row
    return bool(available), _parsed(capacity) if isinstance(capacity, str) else capacity, display_name


def agent_state(agent_id: int) -> tuple[bool, dict] | None:
    """(available, capacity) of an agent, unlocked; None when there is no such agent."""
    with connection.cursor() as cursor:
        cursor.execute(_sql(_AGENT), [agent_id])
        row = cursor.fetchone()
    if row is None:
        return None
    available, capacity, _name = row
    return bool(available), _parsed(capacity) if isinstance(capacity, str) else capacity


# Waiting conversations (open, unassigned, not abandoned, no pending offer) in the queues whose
# every required skill the agent has, or not queued yet; highest priority, then oldest. "Not in the
# pending offers" rather than a correlated NOT EXISTS: there are at most as many pending offers as
# free slots, so PostgreSQL hashes them once, whatever its statistics say; with statistics that lag
# behind a fast-growing backlog it ran NOT EXISTS as a nested loop over every pending offer for
# every waiting conversation (12 ms for 500 waiting, bench/routing).
_WAITING_FOR = """SELECT c.id, c.channel FROM {conversation} c
    WHERE c.status = %s AND c.assignee_id IS NULL AND c.abandoned_at IS NULL
      AND (c.queue_id IS NULL OR c.queue_id IN (
          SELECT q.id FROM {queue} q WHERE q.is_active AND NOT EXISTS (
              SELECT 1 FROM {required} r WHERE r.queue_id = q.id AND NOT EXISTS (
                  SELECT 1 FROM {agentskill} s WHERE s.agent_id = %s AND s.skill_id = r.skill_id))))
      AND c.id NOT IN (SELECT o.conversation_id FROM {offer} o WHERE o.status = %s)
    ORDER BY c.priority DESC, c.queued_at, c.created_at, c.id
    LIMIT %s"""


def waiting_for_agent(agent_id: int, *, limit: int) -> list[tuple[int, str]]:
    """What the agent could be offered next: (conversation id, channel), best first."""
    with connection.cursor() as cursor:
        cursor.execute(_sql(_WAITING_FOR), [ConversationStatus.OPEN, agent_id, OfferStatus.PENDING, limit])
        return cursor.fetchall()
