"""Who could take a conversation, and which conversation to route: the reads behind a routing decision.

Reads, plus the two statements of an agent's capacity check (lock the agent, then make the offer
only while they have room, ``offer_write``); the rest of the locking and the writes live in
``conversations.services.routing``. Every helper here is one SQL statement. A decision's cost is
its round trips plus the ORM's work to build each statement, and building the correlated load
subqueries took more CPU than PostgreSQL took to run them (bench/routing), so the statements run
once per decision are written out in SQL that PostgreSQL and SQLite both accept.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from zoneinfo import ZoneInfo

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from profiles.languages import primary_language

from ..models import (
    DEFAULT_CAPACITY,
    Agent,
    AgentSkill,
    Conversation,
    ConversationStatus,
    Message,
    Offer,
    OfferStatus,
    PresenceState,
    Queue,
    QueueSkill,
    RoutingRule,
)

LOAD_STATUSES = (ConversationStatus.OPEN, ConversationStatus.PENDING)
# An agent who turned a conversation down is not offered it again for this long (unless they are
# picked or assigned by hand), so an offer cannot ping-pong between two agents.
REJECT_MEMORY = timedelta(minutes=10)
REFUSED = (OfferStatus.REJECTED, OfferStatus.TIMEOUT)


# --- which queue -----------------------------------------------------------------------------------

def rule_context(conversation: Conversation, *, tags: list[str] | None = None, at=None) -> dict:
    """What a routing rule can ask about ``conversation`` (rules.ALLOWED_FIELDS). ``tags``: the
    customer's tag names when the caller already knows them; else they are read. ``hour`` and
    ``weekday`` are the contact center's (CC_DEFAULT_TIME_ZONE), not whatever time zone the calling
    process has active: the same message must meet the same rule in a worker (UTC) as in a request
    (the signed-in user's zone). ``at``: the moment asked about (default now): a message's
    arrival, or the moment the widget asks for."""
    customer = conversation.customer
    from django.conf import settings

    local = timezone.localtime(at or timezone.now(), ZoneInfo(settings.CC_DEFAULT_TIME_ZONE))  # ZoneInfo caches it
    return {
        "channel": conversation.channel, "inbox": conversation.inbox.address,
        "language": primary_language(customer.language) or customer.language,  # "ja-JP" set by hand meets "ja"
        "tags": tags if tags is not None else [tag.name for tag in customer.tags.all()],
        "journey_stage": customer.journey_stage,
        "priority": conversation.priority, "ivr": (conversation.inbox.settings or {}).get("ivr_choice"),
        "customer_id": customer.pk, "subject": conversation.subject, "hour": local.hour, "weekday": local.isoweekday(),
    }


def skills_lacking(*, queue_id, agent_id):
    """The queue's required skills (QueueSkill rows) the agent does not have at the level asked;
    either id may be an ``OuterRef``. Empty: the agent serves the queue. The Python side of the
    routing statements' {eligible} test, for the checks outside them."""
    has = AgentSkill.objects.filter(agent_id=agent_id, skill_id=OuterRef("skill_id"), level__gte=OuterRef("min_level"))
    return QueueSkill.objects.filter(queue_id=queue_id).exclude(Exists(has))


def agent_serves(*, agent_id: int, queue_id: int) -> bool:
    """The agent has every skill the queue requires, at its level (one statement)."""
    return not skills_lacking(queue_id=queue_id, agent_id=agent_id).exists()


def queues_served(agent: Agent, queues: list[Queue]) -> list[Queue]:
    """Those of ``queues`` (their ``queueskill_set`` prefetched) whose every required skill the
    agent has at its level: one read of the agent's skills, however many queues."""
    levels = dict(AgentSkill.objects.filter(agent=agent).values_list("skill_id", "level"))
    return [queue for queue in queues
            if all(levels.get(required.skill_id, 0) >= required.min_level for required in queue.queueskill_set.all())]


def queue_pick(conversation: Conversation, *, tags: list[str] | None = None, at=None) -> dict:
    """Put ``conversation`` in the queue it belongs in (its ``queue``, not saved) and say why, as
    TaskRouter's workflow places a task when it is created: the first active rule whose expression
    matches decides; else the inbox's default queue, else the active queue marked default; no queue
    when there is none. ``{"rule": <the rule's name, "inbox default", "default queue" or "no
    queue">}``, with ``rule_id`` when a rule matched.

    Reads the active rules; the customer's tags only when a rule asks about them (``tags``: the
    caller knows them, e.g. none for a customer created in its transaction); the chosen queue when
    no rule matched (an inactive default is passed over). The caller then puts the conversation in
    it (``queue_enter``)."""
    from .rules import first_match

    # A rule can only send a conversation to a queue that serves its channel (empty = all).
    rules = [rule for rule in _active_rules() if rule.queue.takes(conversation.channel)]
    if rules:
        if tags is None and not any("tags" in _rule_fields(rule.expression) for rule in rules):
            tags = []  # nobody asks: not worth a query
        matched = first_match(((rule, rule.expression) for rule in rules), rule_context(conversation, tags=tags, at=at))
        if matched is not None:
            conversation.queue = matched.queue
            return {"rule": matched.name, "rule_id": matched.pk}
    inbox_queue = conversation.inbox.default_queue_id
    default = _fallback_queue(inbox_queue)
    conversation.queue = default
    if default is None:
        return {"rule": "no queue"}
    return {"rule": "inbox default" if default.pk == inbox_queue else "default queue"}


# queue_pick's two reads, written out once: every conversation opened asks them, and compiling the
# equivalent querysets cost more CPU than running them (about 2 ms of an SMS's 13 ms ingest here).
_ACTIVE_RULES = """SELECT {rule_columns}, {queue_columns} FROM {rule} r JOIN {queue} q ON q.id = r.queue_id
    WHERE r.is_active AND q.is_active ORDER BY r.{order}, r.id"""
# The inbox's default queue, else the queue marked default (the inbox's may be NULL or inactive).
_FALLBACK_QUEUE = """SELECT {queue_columns} FROM {queue} q WHERE q.is_active AND (q.id = %s OR q.is_default)
    ORDER BY CASE WHEN q.id = %s THEN 0 ELSE 1 END, q.id LIMIT 1"""


@cache
def _queue_pick_sql(vendor: str) -> tuple[str, str]:
    rules, queues = _rule_readers()
    quote = connection.ops.quote_name
    names = {"rule_columns": rules.columns, "queue_columns": queues.columns, "order": quote("order"),
             "rule": quote(RoutingRule._meta.db_table), "queue": quote(Queue._meta.db_table)}
    return _ACTIVE_RULES.format(**names), _FALLBACK_QUEUE.format(**names)


@cache
def _rule_readers() -> tuple["_RowReader", "_RowReader"]:
    return _RowReader(RoutingRule, "r"), _RowReader(Queue, "q")


def _active_rules() -> list[RoutingRule]:
    """The active rules of active queues, in order, each with its queue."""
    rules, queues = _rule_readers()
    width = len(rules.fields)
    with connection.cursor() as cursor:
        cursor.execute(_queue_pick_sql(connection.vendor)[0])
        rows = cursor.fetchall()
    out = []
    for row in rows:
        rule = rules.instance(row[:width])
        rule.queue = queues.instance(row[width:])
        out.append(rule)
    return out


def _fallback_queue(inbox_queue_id: int | None) -> Queue | None:
    """The inbox's default queue if active, else the active queue marked default, else None."""
    with connection.cursor() as cursor:
        cursor.execute(_queue_pick_sql(connection.vendor)[1], [inbox_queue_id, inbox_queue_id])
        row = cursor.fetchone()
    return None if row is None else _rule_readers()[1].instance(row)


def queue_enter(conversation: Conversation, queue: Queue, *, at, reason: str) -> list[str]:
    """Put ``conversation`` in ``queue`` as of ``at`` (not saved): it waits there from then
    (``queued_at``: its position, its overflow timer, its answer time), says why (``queue_reason``),
    and takes at least the queue's priority, as a TaskRouter workflow target sets its task's
    priority: the waiting order is priority then age, so an agent serving several queues gets the
    higher-priority queue's conversations first. Returns the fields it changed, for the caller's
    save."""
    conversation.queue, conversation.queued_at, conversation.queue_reason = queue, at, reason[:200]
    fields = ["queue", "queued_at", "queue_reason"]
    if queue.priority > conversation.priority:
        conversation.priority = queue.priority
        fields.append("priority")
    return fields


def _rule_fields(expression: str) -> frozenset[str]:
    """The fields a rule's expression asks about; everything, for one that does not compile (so
    first_match gets to log it)."""
    from django.core.exceptions import ValidationError

    from .rules import ALLOWED_FIELDS, compile_rule

    try:
        return compile_rule(expression).fields
    except ValidationError:
        return frozenset(ALLOWED_FIELDS)


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


@dataclass(frozen=True)
class RoutingFacts:
    """What a decision needs to know about a conversation besides its row."""

    has_pending_offer: bool
    has_recent_refusal: bool  # an agent turned it down within REJECT_MEMORY
    last_assignee_id: int | None  # the customer's latest other assignment, for the known-agent step
    last_assigned_at: datetime | None
    # PostgreSQL: what eligible_agents(queue=<the queue it was locked in>, first=None) returns, read
    # in the same statement (_CANDIDATES_OF_LOCKED); None where it was not (SQLite, no queue yet).
    candidates: tuple["Candidate", ...] | None = None
    candidates_queue_id: int | None = None
    # PostgreSQL, when asked (``lock_first_candidate``): the first of ``candidates`` whose row was
    # not locked by another router, locked by the same statement for this transaction, as
    # ``agent_lock`` returns it with the id first: (agent id, available, capacity, display name).
    # None when every candidate was locked elsewhere, or none was locked.
    locked_candidate: tuple[int, bool, dict, str] | None = None


# The facts come with the lock, in one statement. Its subqueries read the statement's snapshot,
# taken just before the row lock: a router that committed in between (an offer, a refusal) is not
# in them. That is safe in each direction it can go wrong, and costs no round trip:
# - a pending offer it misses: the offer's own statement checks again (offer_write: "no pending
#   offer" in a later statement, exact), so no second offer is made;
# - a pending offer it still sees that has just been closed: whoever closed it (reject, timeout,
#   rescind) enqueued routing after their commit, and that task decides; cancel and accept need none;
# - a refusal it misses: the offer's own statement refuses a recent refuser (offer_write, exact);
# - the customer's last agent: a preference, a moment old at worst.
# On PostgreSQL the same statement brings the conversation's first eligible agents (below): a
# list of whom to try, each checked again under their own lock before any offer (offer_write).
_LOCK = """SELECT {columns},
        EXISTS (SELECT 1 FROM {offer} o WHERE o.conversation_id = c.id AND o.status = {o_pending}) AS routing_pending,
        EXISTS (SELECT 1 FROM {offer} o WHERE o.conversation_id = c.id AND o.status IN ({o_rejected}, {o_timeout})
            AND o.decided_at >= %(since)s),
        (SELECT x.assignee_id FROM {conversation} x WHERE x.customer_id = c.customer_id AND x.id <> c.id
            AND x.assignee_id IS NOT NULL AND x.assigned_at IS NOT NULL ORDER BY x.assigned_at DESC, x.id DESC LIMIT 1),
        (SELECT x.assigned_at FROM {conversation} x WHERE x.customer_id = c.customer_id AND x.id <> c.id
            AND x.assignee_id IS NOT NULL AND x.assigned_at IS NOT NULL ORDER BY x.assigned_at DESC, x.id DESC LIMIT 1)
    FROM {conversation} c LEFT JOIN {queue} q ON q.id = c.queue_id
    WHERE c.id = %(conversation_id)s AND c.status = {c_open} AND c.assignee_id IS NULL AND c.abandoned_at IS NULL"""


# PostgreSQL, the lock statement that also locks the first candidate it can (``lock_first_candidate``):
# the statement above, materialised so that it runs (and locks the conversation) first, then the
# candidates in offer order until one whose row nobody holds, which is locked and returned: a
# decision's usual second statement (agent_lock) comes along, a round trip fewer. Lock order stays
# conversation -> agent, and both locks SKIP LOCKED, so this statement never waits for anyone. The
# agent's load is not read here: offer_write counts it in a later statement, under this lock.
_FIRST_FREE_CANDIDATE = """
    LEFT JOIN LATERAL (
        SELECT a.id, p.is_available, a.capacity, a.display_name
        FROM json_array_elements(locked.routing_candidates) WITH ORDINALITY AS e(candidate, n)
        JOIN {agent} a ON a.id = (e.candidate ->> 0)::bigint LEFT JOIN {presence} p ON p.id = a.presence_id
        WHERE NOT locked.routing_pending
        ORDER BY e.n LIMIT 1 FOR UPDATE OF a SKIP LOCKED) fa ON true"""
_LOCK_WITH_FIRST_CANDIDATE = """WITH locked AS MATERIALIZED ({lock})
    SELECT locked.*, fa.id, fa.is_available, fa.capacity, fa.display_name FROM locked""" + _FIRST_FREE_CANDIDATE


# PostgreSQL, for an agent who just freed capacity or became available (route_for_agent): the same
# lock statement, for the first waiting conversation they could serve (_WAITING_FOR's order), found
# by the statement itself. Without it the freed agent's first offer waited for a statement of its
# own (agent_next_work) before the decision's: a round trip, on a busy machine a wait for a core
# (bench/routing, phase b). The head's id and channel come back even when another router holds its
# row (the locked columns are then NULL); no row at all: the agent is not available, or nothing
# waits for them.
_HEAD_OF_AGENT = """WITH head AS MATERIALIZED (
        SELECT w.id, w.channel FROM ({waiting}) w
        WHERE EXISTS (SELECT 1 FROM {agent} ha JOIN {presence} hp ON hp.id = ha.presence_id
                      WHERE ha.id = %(agent_id)s AND hp.is_available)),
    locked AS MATERIALIZED ({lock})
    SELECT head.id, head.channel, locked.*, fa.id, fa.is_available, fa.capacity, fa.display_name
    FROM head LEFT JOIN locked ON true""" + _FIRST_FREE_CANDIDATE


def _replaced(text: str, old: str, new: str) -> str:
    """``text`` with its one ``old`` replaced: an SQL template edited elsewhere fails here, not in a
    statement that silently lost its condition."""
    assert text.count(old) == 1, f"expected one {old!r} in the statement"
    return text.replace(old, new)


@cache
def _lock_sql(vendor: str, lock_first_candidate: bool, head_of_agent: bool = False) -> str:
    conversations, queues = _readers()
    columns = f"{conversations.columns}, {queues.columns}"
    if vendor == "postgresql":
        columns += ", " + _candidates_of_locked_sql() + " AS routing_candidates"
    sql = _LOCK.replace("{columns}", columns)
    features = connection.features
    if features.has_select_for_update:  # SQLite has no row locks: its writers take turns anyway
        sql += " FOR UPDATE OF c SKIP LOCKED" if features.has_select_for_update_of else " FOR UPDATE SKIP LOCKED"
    if head_of_agent:
        assert vendor == "postgresql" and lock_first_candidate
        sql = _replaced(sql, "WHERE c.id = %(conversation_id)s", "WHERE c.id = (SELECT head.id FROM head)")
        waiting = _replaced(_replaced(_WAITING_FOR, "s.agent_id = %s", "s.agent_id = %(agent_id)s"), "LIMIT %s", "LIMIT 1")
        return _sql(_HEAD_OF_AGENT.replace("{waiting}", waiting).replace("{lock}", sql))
    if vendor == "postgresql" and lock_first_candidate:
        sql = _LOCK_WITH_FIRST_CANDIDATE.replace("{lock}", sql)
    return _sql(sql)


def waiting_conversation_lock(conversation_id: int, now, *, lock_first_candidate: bool = False,
                              limit: int | None = None) -> tuple[Conversation, RoutingFacts] | None:
    """Lock a waiting conversation until commit, with its queue and the facts a decision needs, or
    None when it is not waiting or another router holds it (SKIP LOCKED). The first statement of
    every decision, written out once: compiling the equivalent queryset cost more than running it
    (bench/routing). On PostgreSQL it also brings the eligible agents of the conversation's queue
    (``RoutingFacts.candidates``), a round trip fewer per decision, and with
    ``lock_first_candidate`` locks the first of them it can (``RoutingFacts.locked_candidate``),
    one more. Only for a caller that waits for no lock later in the transaction: the agent stays
    locked until commit. ``limit``: how many eligible agents with room to bring (ELIGIBLE_LIMIT)."""
    with_candidates = connection.vendor == "postgresql"
    lock_first_candidate = lock_first_candidate and with_candidates
    since = connection.ops.adapt_datetimefield_value(now - REJECT_MEMORY)
    with connection.cursor() as cursor:
        cursor.execute(_lock_sql(connection.vendor, lock_first_candidate),
                       {"since": since, "conversation_id": conversation_id, "limit": limit or ELIGIBLE_LIMIT})
        row = cursor.fetchone()
    if row is None:
        return None
    return _locked_from_row(row, lock_first_candidate=lock_first_candidate, with_candidates=with_candidates)


@dataclass(frozen=True)
class HeadOfAgent:
    """``agent_head_lock``'s answer: the first waiting conversation the agent could serve (None:
    nothing waits for them, or they are not available), and, unless another router holds it, the
    conversation locked with its facts, as ``waiting_conversation_lock`` returns it."""

    conversation_id: int | None
    channel: str = ""
    locked: tuple[Conversation, RoutingFacts] | None = None


def agent_head_lock(agent_id: int, now, *, limit: int) -> HeadOfAgent:
    """PostgreSQL: ``waiting_conversation_lock(lock_first_candidate=True)`` for the first waiting
    conversation agent ``agent_id`` could serve, found by the same statement (_HEAD_OF_AGENT)."""
    assert connection.vendor == "postgresql"
    since = connection.ops.adapt_datetimefield_value(now - REJECT_MEMORY)
    with connection.cursor() as cursor:
        cursor.execute(_lock_sql(connection.vendor, True, head_of_agent=True),
                       {"since": since, "agent_id": agent_id, "limit": limit})
        row = cursor.fetchone()
    if row is None:
        return HeadOfAgent(conversation_id=None)
    head_id, channel, row = row[0], row[1], row[2:]
    if row[0] is None:  # the conversation's own id: NULL when the lock skipped it
        return HeadOfAgent(conversation_id=head_id, channel=channel)
    return HeadOfAgent(conversation_id=head_id, channel=channel,
                       locked=_locked_from_row(row, lock_first_candidate=True, with_candidates=True))


def _locked_from_row(row, *, lock_first_candidate: bool, with_candidates: bool) -> tuple[Conversation, RoutingFacts]:
    conversations, queues = _readers()
    locked_candidate = None
    if lock_first_candidate:
        row, (agent_id, available, capacity, display_name) = row[:-4], row[-4:]
        if agent_id is not None:
            locked_candidate = (agent_id, bool(available), _parsed(capacity) if isinstance(capacity, str) else capacity,
                                display_name)
    split, facts_at = len(conversations.names), len(conversations.names) + len(queues.names)
    conversation = conversations.instance(row[:split])
    if conversation.queue_id is not None:
        conversation.queue = queues.instance(row[split:facts_at])
    candidates = None
    if with_candidates:
        candidates, row = row[facts_at], row[:facts_at] + row[facts_at + 1:]
        if isinstance(candidates, str):
            candidates = json.loads(candidates)
        if conversation.queue_id is not None:
            candidates = tuple(Candidate(pk=pk, load=load, capacity=room) for pk, load, room in candidates or ())
    pending, refused, last_assignee_id, last_assigned_at = row[facts_at:]
    if isinstance(last_assigned_at, str):  # SQLite hands a computed column back as text
        last_assigned_at = parse_datetime(last_assigned_at)
    if last_assigned_at is not None and timezone.is_naive(last_assigned_at):
        last_assigned_at = timezone.make_aware(last_assigned_at, UTC)
    return conversation, RoutingFacts(has_pending_offer=bool(pending), has_recent_refusal=bool(refused),
                                      last_assignee_id=last_assignee_id, last_assigned_at=last_assigned_at,
                                      candidates=candidates,
                                      candidates_queue_id=conversation.queue_id if candidates is not None else None,
                                      locked_candidate=locked_candidate)


def has_pending_offer(conversation_id: int) -> bool:
    return Offer.objects.filter(conversation_id=conversation_id, status=OfferStatus.PENDING).exists()


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


# The statuses the routing statements test, written into them as literals rather than passed as
# parameters: PostgreSQL only uses a partial index (``WHERE status = 'pending'``) when it can see
# the value, and with server-side binding a prepared statement's generic plan sees parameters only
# as "$1" (settings: CC_DB_SERVER_SIDE_BINDING). They are constants of the code, never input.
_STATUS_LITERALS = {
    "c_open": ConversationStatus.OPEN, "c_pending": ConversationStatus.PENDING, "o_pending": OfferStatus.PENDING,
    "o_rejected": OfferStatus.REJECTED, "o_timeout": OfferStatus.TIMEOUT,
}
assert all(value.isidentifier() for value in _STATUS_LITERALS.values())


@cache
def _sql(template: str) -> str:
    """``template`` with its {table} names filled in, quoted for the database in use, and its
    {status} literals (_STATUS_LITERALS)."""
    tables = {
        "agent": Agent, "presence": PresenceState, "agentskill": AgentSkill, "conversation": Conversation,
        "offer": Offer, "queue": Queue, "required": QueueSkill,
    }
    return template.format(**{key: connection.ops.quote_name(model._meta.db_table) for key, model in tables.items()},
                           **{key: f"'{value}'" for key, value in _STATUS_LITERALS.items()})


# An agent's load on a channel: open/pending conversations held plus pending offers. {in_channel}:
# the channel, as a parameter or a column (below).
_LOAD = """(SELECT COUNT(*) FROM {conversation} lc WHERE lc.assignee_id = a.id AND lc.channel = {in_channel}
              AND lc.status IN ({c_open}, {c_pending}))
         + (SELECT COUNT(*) FROM {offer} lo WHERE lo.agent_id = a.id AND lo.channel = {in_channel}
              AND lo.status = {o_pending})"""
assert LOAD_STATUSES == (_STATUS_LITERALS["c_open"], _STATUS_LITERALS["c_pending"])


def _load_params(channel: str) -> list:
    return [channel, channel]


# Available agents having every skill the queue requires, at its level (QueueSkill.min_level), and
# who have not just turned this
# conversation down ({eligible}), with their load and room, in offer order, only until ``limit`` of
# them have room. Two shapes of the same question:
#
# - _ELIGIBLE_BY_IDLE, the usual one (no known agent to put first): the agents are walked in idle
#   order straight from agent_idle_order_idx (longest idle first: never assigned first, then the
#   longest since their last offer, then since their presence changed, then the lower id), and each
#   one's load is counted as it comes, so a decision reads a dozen agents however many are logged
#   in. Sorting every available agent first cost more than the rest of the statement with 100
#   agents, and grows with the floor (bench/routing). {fence} (OFFSET 0) is a fence, not an
#   offset: it keeps the planner from merging the levels (and so counting a load twice, for its
#   column and the WHERE), while still planning the inner level for the few rows the LIMIT takes,
#   which is what makes the index walk PostgreSQL's cheapest plan (a LIMIT fence would plan it for
#   every row, and sort).
# - _ELIGIBLE_KNOWN_FIRST, with the known agent first (the known-agent step: rare): that CASE is in
#   no index, so the agents are sorted first (cheap: no loads yet), then their loads counted in that
#   order only until enough agents with room are found. Its LIMITs are fences of the same kind.
#
# ``rank`` carries the order where an aggregate needs it (_candidates_of_locked_sql). The {in_…}
# inputs are parameters in eligible_agents() (_PARAMETER_INPUTS), and the locked conversation's own
# columns when the lock statement asks the same question (_LOCKED_INPUTS).
_ELIGIBLE_WHERE = """p.is_available AND NOT EXISTS (
            SELECT 1 FROM {required} r WHERE r.queue_id = {in_queue} AND NOT EXISTS (
                SELECT 1 FROM {agentskill} s WHERE s.agent_id = a.id AND s.skill_id = r.skill_id
                    AND s.level >= r.min_level))
            AND a.id NOT IN (SELECT ro.agent_id FROM {offer} ro WHERE ro.conversation_id = {in_conversation}
                AND ro.status IN ({o_rejected}, {o_timeout}) AND ro.decided_at >= %(since)s)"""
_IDLE_ORDER = "a.last_assigned_at NULLS FIRST, a.presence_changed_at, a.id"  # agent_idle_order_idx
_ELIGIBLE_BY_IDLE = """SELECT x.id, x.load, x.room, x.rank FROM (
      SELECT a.id, row_number() OVER (ORDER BY {idle_order}) AS rank, {load} AS load, {capacity} AS room
        FROM {agent} a JOIN {presence} p ON p.id = a.presence_id
        WHERE {eligible}
        ORDER BY {idle_order}
        {fence}) x
    WHERE x.load < x.room
    LIMIT %(limit)s"""
_ELIGIBLE_KNOWN_FIRST = """SELECT x.id, x.load, x.room, x.rank FROM (
      SELECT a.id, a.rank, {load} AS load, {capacity} AS room FROM (
        SELECT a.id, a.capacity, row_number() OVER (ORDER BY {order}) AS rank
        FROM {agent} a JOIN {presence} p ON p.id = a.presence_id
        WHERE {eligible}
        ORDER BY {order}
        LIMIT 2147483647) a
      LIMIT 2147483647) x
    WHERE x.load < x.room
    LIMIT %(limit)s"""
_KNOWN_FIRST_ORDER = "CASE WHEN a.id = {in_first} THEN 0 ELSE 1 END, " + _IDLE_ORDER
_FENCE = {"postgresql": "OFFSET 0", "sqlite": "LIMIT -1 OFFSET 0"}  # SQLite has no OFFSET without LIMIT

# The load of many agents on PostgreSQL: the pending offers are read once per statement (an
# InitPlan: all of them, few) and each agent's are counted in that array. As a subquery per agent,
# the planner could read them through the one-pending-per-conversation index instead of the
# agent's and scan every pending offer for every agent; it did once statistics said "few pending"
# and there were hundreds (bench/routing: 3 -> 15 ms). SQLite, one writer, counts per agent.
_LOAD_MANY = {
    "postgresql": """(SELECT COUNT(*) FROM {conversation} lc WHERE lc.assignee_id = a.id AND lc.channel = {in_channel}
              AND lc.status IN ({c_open}, {c_pending}))
         + COALESCE(cardinality(array_positions((SELECT array_agg(lo.agent_id) FROM {offer} lo
              WHERE lo.channel = {in_channel} AND lo.status = {o_pending}), a.id)), 0)""",
    "sqlite": _LOAD,
}

# An agent's capacity on a channel in SQL (``capacity_on``): the JSON key, else the channel's default.
_CAPACITY = {
    "postgresql": "COALESCE((a.capacity ->> {in_channel})::integer, {in_default_room})",
    "sqlite": "COALESCE(CAST(json_extract(a.capacity, %(capacity_path)s) AS INTEGER), {in_default_room})",
}

_PARAMETER_INPUTS = {"queue": "%(queue)s", "conversation": "%(conversation)s", "channel": "%(channel)s",
                     "first": "%(first)s", "default_room": "%(default_room)s"}


def _default_room_by_channel() -> str:
    """DEFAULT_CAPACITY as SQL, for the locked conversation's channel (constants of the code)."""
    assert all(channel.isidentifier() and isinstance(room, int) for channel, room in DEFAULT_CAPACITY.items())
    return "CASE c.channel " + " ".join(
        f"WHEN '{channel}' THEN {room}" for channel, room in DEFAULT_CAPACITY.items()) + " ELSE 1 END"


# The locked conversation (alias c in _LOCK): its queue, itself, its channel; no known agent first.
_LOCKED_INPUTS = {"queue": "c.queue_id", "conversation": "c.id", "channel": "c.channel",
                  "default_room": _default_room_by_channel()}


def _with_inputs(template: str, inputs: dict[str, str]) -> str:
    for key, value in inputs.items():
        template = template.replace("{in_" + key + "}", value)
    return template


_AGENT_LOAD = _with_inputs(f"SELECT {_LOAD} FROM {{agent}} a WHERE a.id = %s", {"channel": "%s"})

_AGENT = """SELECT p.is_available, a.capacity, a.display_name
    FROM {agent} a LEFT JOIN {presence} p ON p.id = a.presence_id WHERE a.id = %s"""


def _eligible_template(vendor: str, inputs: dict[str, str], *, known_first: bool) -> str:
    sql = (_ELIGIBLE_KNOWN_FIRST if known_first else _ELIGIBLE_BY_IDLE).replace("{eligible}", _ELIGIBLE_WHERE)
    sql = sql.replace("{load}", _LOAD_MANY[vendor]).replace("{capacity}", _CAPACITY[vendor]).replace("{fence}", _FENCE[vendor])
    return _with_inputs(sql.replace("{order}", _KNOWN_FIRST_ORDER).replace("{idle_order}", _IDLE_ORDER), inputs)


@cache
def _eligible_sql(vendor: str, known_first: bool) -> str:
    return _sql(_eligible_template(vendor, _PARAMETER_INPUTS, known_first=known_first))


# The same question for the conversation the lock statement locks, as a JSON list of [agent id,
# load, room] in offer order: a select-list column of that statement (PostgreSQL). Its subqueries
# refer to c, so PostgreSQL evaluates them once, for the locked row. CASE: no queue yet, nothing
# to compute. No known agent first: a decision in the known-agent step asks eligible_agents().
@cache
def _candidates_of_locked_sql() -> str:
    return ("CASE WHEN c.queue_id IS NULL THEN NULL ELSE (SELECT json_agg(json_build_array(e.id, e.load, e.room) "
            f"ORDER BY e.rank) FROM ({_eligible_template('postgresql', _LOCKED_INPUTS, known_first=False)}) e) END")


# How many agents with room a decision asks for: it offers to the first it can lock, and the rest
# are for when others are locked by concurrent routers (and for the explanation).
ELIGIBLE_LIMIT = 10


def eligible_agents(*, queue: Queue, channel: str, conversation_id: int, now, first: int | None = None,
                    limit: int = ELIGIBLE_LIMIT) -> list[Candidate]:
    """Up to ``limit`` agents who could take conversation ``conversation_id`` of ``queue`` on
    ``channel`` now: available, every skill the queue requires at its level, room on the channel
    (open/pending conversations plus pending offers below their capacity), and not one who turned
    this conversation down within REJECT_MEMORY. ``first`` (the known agent) comes first when they
    qualify, then the longest idle; never-assigned agents count as the longest idle; ties go to
    the lower id. One statement, plain rows, no model instances (bench/routing)."""
    params = {"channel": channel, "default_room": DEFAULT_CAPACITY.get(channel, 1), "queue": queue.pk,
              "conversation": conversation_id, "limit": limit,
              "since": connection.ops.adapt_datetimefield_value(now - REJECT_MEMORY)}
    if first is not None:
        params["first"] = first
    if connection.vendor != "postgresql":
        params["capacity_path"] = f'$."{channel}"'
    with connection.cursor() as cursor:
        cursor.execute(_eligible_sql(connection.vendor, first is not None), params)
        rows = cursor.fetchall()
    return [Candidate(pk=pk, load=load, capacity=room) for pk, load, room, _rank in rows]


LOCKED_ELSEWHERE = "locked elsewhere"


@cache
def _insert_fields(model, exclude: tuple[str, ...] = ()) -> tuple:
    """The fields an INSERT of ``model`` writes (all but the primary key and ``exclude``), in order."""
    return tuple(f for f in model._meta.concrete_fields if not f.primary_key and f.attname not in exclude)


def _insert_values(db, fields, instance) -> list:
    """``instance``'s values of ``fields`` as ``save()`` would insert them."""
    return [field.get_db_prep_save(field.pre_save(instance, add=True), db) for field in fields]


@cache
def _offer_insert_if_room_sql() -> str:
    meta, quote = Offer._meta, connection.ops.quote_name
    fields = _insert_fields(Offer)
    table = quote(meta.db_table)
    return (
        f"INSERT INTO {table} ({', '.join(quote(field.column) for field in fields)}) "
        f"SELECT {', '.join(['%s'] * len(fields))} WHERE ({_sql(_AGENT_LOAD)}) < %s "
        f"AND NOT EXISTS (SELECT 1 FROM {table} pending WHERE pending.conversation_id = %s "
        f"AND pending.status = {_sql('{o_pending}')}) "
        f"AND NOT EXISTS (SELECT 1 FROM {table} refused WHERE refused.conversation_id = %s AND refused.agent_id = %s "
        f"AND refused.status IN {_sql('({o_rejected}, {o_timeout})')} AND refused.decided_at >= %s) "
        f"RETURNING {quote(meta.pk.column)}"
    )


def _offer_insert_if_room(db, offer: Offer, limit: int) -> tuple[str, list]:
    """``INSERT … SELECT … RETURNING id`` of ``offer``, inserting nothing unless its agent's load on
    its channel is below ``limit``, its conversation has no pending offer and its agent has not
    turned the conversation down within REJECT_MEMORY. Both ways of making an offer start with it."""
    since = db.ops.adapt_datetimefield_value(offer.created_at - REJECT_MEMORY)
    return _offer_insert_if_room_sql(), [
        *_insert_values(db, _insert_fields(Offer), offer), *_load_params(offer.channel), offer.agent_id, limit,
        offer.conversation_id, offer.conversation_id, offer.agent_id, since]


# offer_write's statement for the conversation fields it saves, and whether the event names the
# offer: the same few texts every time, built once (building them cost more than PostgreSQL took
# to run them, bench/routing).
@lru_cache(maxsize=64)
def _offer_write_sql(conversation_fields: tuple[str, ...], event_names_offer: bool) -> str:
    from ..sequence import conversation_assignments_sql

    quote = connection.ops.quote_name
    event_fields = _insert_fields(Message, ("seq",))
    event_columns = [quote(f.column) for f in event_fields] + [quote(Message._meta.get_field("seq").column)]
    event_values = ["%s"] * len(event_fields) + ["conv.last_seq"]
    if event_names_offer:
        data_at = [f.attname for f in event_fields].index("event_data")
        event_values[data_at] = "jsonb_set(%s::jsonb, '{offer}', to_jsonb(new_offer.id))"
    return (
        f"WITH new_offer AS ({_offer_insert_if_room_sql()}), "
        f"idle AS (UPDATE {quote(Agent._meta.db_table)} SET {quote(Agent._meta.get_field('last_assigned_at').column)} = %s "
        "WHERE id = %s AND EXISTS (SELECT 1 FROM new_offer)), "
        f"conv AS (UPDATE {quote(Conversation._meta.db_table)} SET {conversation_assignments_sql(conversation_fields)}, "
        "last_seq = last_seq + 1 WHERE id = %s AND EXISTS (SELECT 1 FROM new_offer) RETURNING last_seq), "
        f"ev AS (INSERT INTO {quote(Message._meta.db_table)} ({', '.join(event_columns)}) "
        f"SELECT {', '.join(event_values)} FROM conv, new_offer RETURNING id, seq) "
        "SELECT new_offer.id, ev.id, ev.seq FROM new_offer, ev"
    )


def offer_write(offer: Offer, *, limit: int, conversation: Conversation, conversation_fields: list[str],
                event: Message) -> bool:
    """Make the offer, all or nothing, only while its agent's load on its channel is below ``limit``,
    the conversation has no pending offer and the agent has not just turned it down: insert ``offer``, restart the agent's idle time,
    save the conversation's ``conversation_fields`` taking the next sequence number, and insert the
    timeline ``event`` with that number (its ``event_data["offer"]`` set to the offer's id when it
    has that key). False, and nothing written, when there was no room, an offer is pending or the
    agent turned the conversation down.

    Caller holds the conversation's and the agent's row locks, taken in earlier statements, so the
    snapshot of this one includes everything earlier holders of those locks committed (READ
    COMMITTED): the load and the pending check are exact. A write among the reads because it is the
    other half of the agent's capacity check.

    On PostgreSQL, one statement (data-modifying CTEs, each conditional on the offer's insert): each
    round trip waits for a core on a busy machine, and the decision's last four writes were four of
    them (bench/routing). SQLite has no data-modifying CTEs, and one writer at a time: the same writes
    in turn."""
    # The connection itself, not the proxy: each attribute of ``django.db.connection`` is a lookup
    # in asgiref's context-local storage, and preparing the values asks for it per field.
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        return _offer_write_in_turn(db, offer, limit=limit, conversation=conversation,
                                    conversation_fields=conversation_fields, event=event)
    from ..sequence import conversation_assignment_values

    names_offer = "offer" in (event.event_data or {})
    fields = tuple(dict.fromkeys(conversation_fields))
    _insert_sql, insert_params = _offer_insert_if_room(db, offer, limit)
    params = [*insert_params, db.ops.adapt_datetimefield_value(offer.created_at), offer.agent_id,
              *conversation_assignment_values(db, conversation, fields), conversation.pk,
              *_insert_values(db, _insert_fields(Message, ("seq",)), event)]
    with db.cursor() as cursor:
        cursor.execute(_offer_write_sql(fields, names_offer), params)
        row = cursor.fetchone()
    if row is None:
        return False
    offer.pk, event.pk, event.seq = row
    conversation.last_seq = event.seq
    if names_offer:
        event.event_data = {**event.event_data, "offer": offer.pk}
    for instance in (offer, event):
        instance._state.adding, instance._state.db = False, db.alias
    return True


def _offer_write_in_turn(db, offer: Offer, *, limit: int, conversation: Conversation, conversation_fields: list[str],
                         event: Message) -> bool:
    from ..sequence import conversation_save_taking_seq

    with db.cursor() as cursor:
        cursor.execute(*_offer_insert_if_room(db, offer, limit))
        row = cursor.fetchone()
    if row is None:
        return False
    offer.pk = row[0]
    offer._state.adding, offer._state.db = False, db.alias
    Agent.objects.filter(pk=offer.agent_id).update(last_assigned_at=offer.created_at)
    event.seq = conversation_save_taking_seq(conversation, conversation_fields)
    if "offer" in (event.event_data or {}):
        event.event_data = {**event.event_data, "offer": offer.pk}
    event.save(force_insert=True)
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
    WHERE c.status = {c_open} AND c.assignee_id IS NULL AND c.abandoned_at IS NULL
      AND (c.queue_id IS NULL OR c.queue_id IN (
          SELECT q.id FROM {queue} q WHERE q.is_active AND NOT EXISTS (
              SELECT 1 FROM {required} r WHERE r.queue_id = q.id AND NOT EXISTS (
                  SELECT 1 FROM {agentskill} s WHERE s.agent_id = %s AND s.skill_id = r.skill_id
                      AND s.level >= r.min_level))))
      AND c.id NOT IN (SELECT o.conversation_id FROM {offer} o WHERE o.status = {o_pending})
    ORDER BY c.priority DESC, c.queued_at, c.created_at, c.id
    LIMIT %s"""


@dataclass(frozen=True)
class NextWork:
    """An agent's state and what they could be offered next, best first: (conversation id,
    channel)."""

    available: bool
    capacity: dict
    waiting: list[tuple[int, str]]


# The agent's presence and capacity, with the waiting conversations they could serve (_WAITING_FOR,
# same order), in one statement. The LEFT JOIN keeps the agent's row when nothing waits. No loads:
# the decisions made from it say whether the agent still has room (route_for_agent).
_NEXT_WORK = f"""SELECT p.is_available, a.capacity, w.id, w.channel
    FROM {{agent}} a LEFT JOIN {{presence}} p ON p.id = a.presence_id
    LEFT JOIN ({_WAITING_FOR.replace("SELECT c.id, c.channel FROM",
                                     "SELECT c.id, c.channel, c.priority, c.queued_at, c.created_at FROM")}) w ON 1 = 1
    WHERE a.id = %s
    ORDER BY w.priority DESC, w.queued_at, w.created_at, w.id"""


def agent_next_work(agent_id: int, *, limit: int) -> NextWork | None:
    """None when there is no such agent."""
    with connection.cursor() as cursor:
        cursor.execute(_sql(_NEXT_WORK), [agent_id, limit, agent_id])
        rows = cursor.fetchall()
    if not rows:
        return None
    available, capacity = rows[0][0], rows[0][1]
    return NextWork(available=bool(available), capacity=_parsed(capacity) if isinstance(capacity, str) else capacity,
                    waiting=[(pk, channel) for _a, _c, pk, channel in rows if pk is not None])
