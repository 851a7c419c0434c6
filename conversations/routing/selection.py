"""Who could take a conversation, and which conversation to route: the reads behind a routing decision.

Reads, plus the two statements of an agent's capacity check (lock the agent, then insert the offer
only while they have room); the rest of the locking and the writes live in
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


class _RowReader:
    """Model instances from the columns of a plain SQL statement: the same converters the ORM
    applies (JSON, SQLite's datetimes), without building and compiling a query per call."""

    def __init__(self, model, alias: str):
        self.model = model
        self.fields = list(model._meta.concrete_fields)
        self.names = [field.attname for field in self.fields]
        self.columns = ", ".join(f"{alias}.{connection.ops.quote_name(field.column)}" for field in self.fields)
        self._converters = {}

    def instance(self, values):
        converters = self._converters.get(connection.vendor)
        if converters is None:
            converters = self._converters[connection.vendor] = [
                (connection.ops.get_db_converters(col) + field.get_db_converters(connection), col)
                for field in self.fields for col in [field.get_col(self.model._meta.db_table)]
            ]
        converted = []
        for value, (functions, col) in zip(values, converters, strict=True):
            for function in functions:
                value = function(value, col, connection)
            converted.append(value)
        return self.model.from_db(connection.alias, self.names, converted)


@cache
def _readers() -> tuple[_RowReader, _RowReader]:
    return _RowReader(Conversation, "c"), _RowReader(Queue, "q")


def waiting_conversation_lock(conversation_id: int) -> Conversation | None:
    """Lock a waiting conversation (and fetch its queue) until commit, or None when it is not
    waiting or another router holds it (SKIP LOCKED). The first statement of every decision,
    written out once: compiling the equivalent queryset cost more than running it (bench/routing)."""
    conversations, queues = _readers()
    sql = (
        f"SELECT {conversations.columns}, {queues.columns} FROM {{conversation}} c "
        "LEFT JOIN {queue} q ON q.id = c.queue_id "
        "WHERE c.id = %s AND c.status = %s AND c.assignee_id IS NULL AND c.abandoned_at IS NULL"
    )
    features = connection.features
    if features.has_select_for_update:  # SQLite has no row locks: its writers take turns anyway
        sql += " FOR UPDATE OF c SKIP LOCKED" if features.has_select_for_update_of else " FOR UPDATE SKIP LOCKED"
    with connection.cursor() as cursor:
        cursor.execute(_sql(sql), [conversation_id, ConversationStatus.OPEN])
        row = cursor.fetchone()
    if row is None:
        return None
    split = len(conversations.names)
    conversation = conversations.instance(row[:split])
    if conversation.queue_id is not None:
        conversation.queue = queues.instance(row[split:])
    return conversation


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


# Available agents having every skill the queue requires, in offer order: the known agent first
# (when there is one), then the longest idle (never assigned first, then the longest since their
# presence changed, then the lower id). The LIMIT in the inner query is a fence, not a limit: it
# keeps the planner from merging the two levels, so the agents are sorted first (cheap: no loads
# yet) and the outer WHERE counts loads one agent at a time, in that order, only until enough
# agents with room are found. Counting every agent's load first cost more than the rest of the
# decision (bench/routing). The outer query keeps the inner order: it only filters and limits.
_ELIGIBLE = f"""SELECT a.id, a.capacity, {_LOAD} FROM (
        SELECT a.id, a.capacity FROM {{agent}} a JOIN {{presence}} p ON p.id = a.presence_id
        WHERE p.is_available AND NOT EXISTS (
            SELECT 1 FROM {{required}} r WHERE r.queue_id = %s AND NOT EXISTS (
                SELECT 1 FROM {{agentskill}} s WHERE s.agent_id = a.id AND s.skill_id = r.skill_id))
            {{exclude}}
        ORDER BY CASE WHEN a.id = %s THEN 0 ELSE 1 END, a.last_assigned_at IS NOT NULL, a.last_assigned_at,
            a.presence_changed_at, a.id
        LIMIT 2147483647) a
    WHERE {_LOAD} < {{capacity}}
    LIMIT %s"""

# An agent's capacity on a channel in SQL (``capacity_on``): the JSON key, else the channel's default.
_CAPACITY = {
    "postgresql": "COALESCE((a.capacity ->> %s)::integer, %s)",
    "sqlite": "COALESCE(CAST(json_extract(a.capacity, %s) AS INTEGER), %s)",
}


def _capacity_params(channel: str) -> list:
    key = channel if connection.vendor == "postgresql" else f'$."{channel}"'
    return [key, DEFAULT_CAPACITY.get(channel, 1)]


@cache
def _eligible_sql(vendor: str, excluded: int) -> str:
    exclude = f"AND a.id NOT IN ({', '.join(['%s'] * excluded)})" if excluded else ""
    return _sql(_ELIGIBLE.replace("{exclude}", exclude).replace("{capacity}", _CAPACITY[vendor]))


_AGENT_LOAD = f"SELECT {_LOAD} FROM {{agent}} a WHERE a.id = %s"

_AGENT = """SELECT p.is_available, a.capacity, a.display_name
    FROM {agent} a LEFT JOIN {presence} p ON p.id = a.presence_id WHERE a.id = %s"""


# How many agents with room a decision asks for: it offers to the first it can lock, and the rest
# are for when others are locked by concurrent routers (and for the explanation).
ELIGIBLE_LIMIT = 10


def eligible_agents(*, queue: Queue, channel: str, exclude: set[int] = frozenset(), first: int | None = None,
                    limit: int = ELIGIBLE_LIMIT) -> list[Candidate]:
    """Up to ``limit`` agents who could take a conversation of ``queue`` on ``channel`` now:
    available, every skill the queue requires, room on the channel (open/pending conversations
    plus pending offers below their capacity). ``first`` (the known agent) comes first when they
    qualify, then the longest idle; never-assigned agents count as the longest idle; ties go to
    the lower id. One statement, plain rows, no model instances (bench/routing)."""
    excluded = sorted(exclude)
    with connection.cursor() as cursor:
        cursor.execute(_eligible_sql(connection.vendor, len(excluded)),
                       [*_load_params(channel), queue.pk, *excluded, first, *_load_params(channel),
                        *_capacity_params(channel), limit])
        rows = cursor.fetchall()
    candidates = []
    for pk, capacity, load in rows:
        room = capacity_on(capacity, channel)
        if load < room:  # the SQL already checked: this only guards against an odd capacity value
            candidates.append(Candidate(pk=pk, load=load, capacity=room))
    return candidates


LOCKED_ELSEWHERE = "locked elsewhere"


def offer_insert_if_room(offer: Offer, limit: int) -> bool:
    """Insert ``offer`` only while its agent's load on its channel is below ``limit``: the capacity
    check and the insert in one statement. Caller holds the agent's row lock, taken in an earlier
    statement, so this statement's snapshot includes every offer and assignment that earlier
    holders of the lock committed (READ COMMITTED): the count is exact. A write among the reads
    because it is the other half of the agent's capacity check."""
    meta = Offer._meta
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(field.column) for field in fields)}) "
        f"SELECT {', '.join(['%s'] * len(fields))} WHERE ({_sql(_AGENT_LOAD)}) < %s "
        f"RETURNING {quote(meta.pk.column)}"
    )
    params = [field.get_db_prep_save(field.pre_save(offer, add=True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *_load_params(offer.channel), offer.agent_id, limit])
        row = cursor.fetchone()
    if row is None:
        return False
    offer.pk = row[0]
    offer._state.adding, offer._state.db = False, connection.alias
    return True


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


@dataclass(frozen=True)
class NextWork:
    """An agent's state and what they could be offered next, best first: (conversation id,
    channel, the agent's load on that channel)."""

    available: bool
    capacity: dict
    waiting: list[tuple[int, str, int]]


# The agent's presence and capacity, with the waiting conversations they could serve (_WAITING_FOR,
# same order) and their load on each one's channel: what a freed agent's routing starts from, in
# one statement. The LEFT JOIN keeps the agent's row when nothing waits.
_NEXT_WORK = f"""SELECT p.is_available, a.capacity, w.id, w.channel,
        (SELECT COUNT(*) FROM {{conversation}} x WHERE x.assignee_id = a.id AND x.channel = w.channel
            AND x.status IN (%s, %s))
        + (SELECT COUNT(*) FROM {{offer}} o WHERE o.agent_id = a.id AND o.channel = w.channel AND o.status = %s)
    FROM {{agent}} a LEFT JOIN {{presence}} p ON p.id = a.presence_id
    LEFT JOIN ({_WAITING_FOR.replace("SELECT c.id, c.channel FROM",
                                     "SELECT c.id, c.channel, c.priority, c.queued_at, c.created_at FROM")}) w ON 1 = 1
    WHERE a.id = %s
    ORDER BY w.priority DESC, w.queued_at, w.created_at, w.id"""


def agent_next_work(agent_id: int, *, limit: int) -> NextWork | None:
    """None when there is no such agent."""
    with connection.cursor() as cursor:
        cursor.execute(_sql(_NEXT_WORK), [*LOAD_STATUSES, OfferStatus.PENDING, ConversationStatus.OPEN, agent_id,
                                          OfferStatus.PENDING, limit, agent_id])
        rows = cursor.fetchall()
    if not rows:
        return None
    available, capacity = rows[0][0], rows[0][1]
    return NextWork(available=bool(available), capacity=_parsed(capacity) if isinstance(capacity, str) else capacity,
                    waiting=[(pk, channel, load) for _a, _c, pk, channel, load in rows if pk is not None])
