"""The statements of a routing decision: lock a waiting conversation with its facts and first
eligible agents, write an offer only if the agent still has room, find an agent's next work.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ..models import (
    Agent,
    Conversation,
    Message,
    Offer,
    OfferStatus,
    Queue,
)
from .eligibility import (
    AGENT_LOAD_SQL,
    AGENT_SQL,
    ELIGIBLE_LIMIT,
    candidates_of_locked_sql,
    load_params,
)
from .sql import (
    LOAD_STATUSES,
    REJECT_MEMORY,
    STATUS_LITERALS,
    Candidate,
    capacity_parsed,
    insert_fields,
    insert_values,
    replaced_checked,
    row_readers,
    vendor_sql,
)


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


@cache
def _lock_sql(vendor: str, lock_first_candidate: bool, head_of_agent: bool = False) -> str:
    conversations, queues = row_readers()
    columns = f"{conversations.columns}, {queues.columns}"
    if vendor == "postgresql":
        columns += ", " + candidates_of_locked_sql() + " AS routing_candidates"
    sql = _LOCK.replace("{columns}", columns)
    features = connection.features
    if features.has_select_for_update:  # SQLite has no row locks: its writers take turns anyway
        sql += " FOR UPDATE OF c SKIP LOCKED" if features.has_select_for_update_of else " FOR UPDATE SKIP LOCKED"
    if head_of_agent:
        assert vendor == "postgresql" and lock_first_candidate
        sql = replaced_checked(sql, "WHERE c.id = %(conversation_id)s", "WHERE c.id = (SELECT head.id FROM head)")
        waiting = replaced_checked(replaced_checked(_WAITING_FOR, "s.agent_id = %s", "s.agent_id = %(agent_id)s"), "LIMIT %s", "LIMIT 1")
        return vendor_sql(_HEAD_OF_AGENT.replace("{waiting}", waiting).replace("{lock}", sql))
    if vendor == "postgresql" and lock_first_candidate:
        sql = _LOCK_WITH_FIRST_CANDIDATE.replace("{lock}", sql)
    return vendor_sql(sql)


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
    conversations, queues = row_readers()
    locked_candidate = None
    if lock_first_candidate:
        row, (agent_id, available, capacity, display_name) = row[:-4], row[-4:]
        if agent_id is not None:
            locked_candidate = (agent_id, bool(available), capacity_parsed(capacity) if isinstance(capacity, str) else capacity,
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


def known_agent_id(facts: RoutingFacts, queue: Queue, now) -> int | None:
    """The agent who last served the customer within the queue's known-agent window: the latest
    assignment overall is inside the window exactly when any is."""
    if not queue.known_agent_window_days or facts.last_assigned_at is None:
        return None
    if facts.last_assigned_at < now - timedelta(days=queue.known_agent_window_days):
        return None
    return facts.last_assignee_id


assert all(value.isidentifier() for value in STATUS_LITERALS.values())


assert LOAD_STATUSES == (STATUS_LITERALS["c_open"], STATUS_LITERALS["c_pending"])


LOCKED_ELSEWHERE = "locked elsewhere"


@cache
def _offer_insert_if_room_sql() -> str:
    meta, quote = Offer._meta, connection.ops.quote_name
    fields = insert_fields(Offer)
    table = quote(meta.db_table)
    return (
        f"INSERT INTO {table} ({', '.join(quote(field.column) for field in fields)}) "
        f"SELECT {', '.join(['%s'] * len(fields))} WHERE ({vendor_sql(AGENT_LOAD_SQL)}) < %s "
        f"AND NOT EXISTS (SELECT 1 FROM {table} pending WHERE pending.conversation_id = %s "
        f"AND pending.status = {vendor_sql('{o_pending}')}) "
        f"AND NOT EXISTS (SELECT 1 FROM {table} refused WHERE refused.conversation_id = %s AND refused.agent_id = %s "
        f"AND refused.status IN {vendor_sql('({o_rejected}, {o_timeout})')} AND refused.decided_at >= %s) "
        f"RETURNING {quote(meta.pk.column)}"
    )


def _offer_insert_if_room(db, offer: Offer, limit: int) -> tuple[str, list]:
    """``INSERT … SELECT … RETURNING id`` of ``offer``, inserting nothing unless its agent's load on
    its channel is below ``limit``, its conversation has no pending offer and its agent has not
    turned the conversation down within REJECT_MEMORY. Both ways of making an offer start with it."""
    since = db.ops.adapt_datetimefield_value(offer.created_at - REJECT_MEMORY)
    return _offer_insert_if_room_sql(), [
        *insert_values(db, insert_fields(Offer), offer), *load_params(offer.channel), offer.agent_id, limit,
        offer.conversation_id, offer.conversation_id, offer.agent_id, since]


# offer_write's statement for the conversation fields it saves, and whether the event names the
# offer: the same few texts every time, built once (building them cost more than PostgreSQL took
# to run them, bench/routing).
@lru_cache(maxsize=64)
def _offer_write_sql(conversation_fields: tuple[str, ...], event_names_offer: bool) -> str:
    from ..sequence import conversation_assignments_sql

    quote = connection.ops.quote_name
    event_fields = insert_fields(Message, ("seq",))
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
              *insert_values(db, insert_fields(Message, ("seq",)), event)]
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
    sql = vendor_sql(AGENT_SQL)
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
    return bool(available), capacity_parsed(capacity) if isinstance(capacity, str) else capacity, display_name


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
        cursor.execute(vendor_sql(_NEXT_WORK), [agent_id, limit, agent_id])
        rows = cursor.fetchall()
    if not rows:
        return None
    available, capacity = rows[0][0], rows[0][1]
    return NextWork(available=bool(available), capacity=capacity_parsed(capacity) if isinstance(capacity, str) else capacity,
                    waiting=[(pk, channel) for _a, _c, pk, channel in rows if pk is not None])
