"""Which agents may take a conversation from a queue: skills, presence, capacity, idle order.
"""

from functools import cache

from django.db import connection
from django.db.models import Exists, OuterRef

from ..models import DEFAULT_CAPACITY, Agent, AgentSkill, Offer, Queue, QueueSkill
from .sql import REFUSED, REJECT_MEMORY, Candidate, vendor_sql


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


def recent_refusals(conversation_id: int, now) -> set[int]:
    return set(Offer.objects.filter(conversation_id=conversation_id, status__in=REFUSED,
                                    decided_at__gte=now - REJECT_MEMORY).values_list("agent_id", flat=True))


# An agent's load on a channel: open/pending conversations held plus pending offers. {in_channel}:
# the channel, as a parameter or a column (below).
_LOAD = """(SELECT COUNT(*) FROM {conversation} lc WHERE lc.assignee_id = a.id AND lc.channel = {in_channel}
              AND lc.status IN ({c_open}, {c_pending}))
         + (SELECT COUNT(*) FROM {offer} lo WHERE lo.agent_id = a.id AND lo.channel = {in_channel}
              AND lo.status = {o_pending})"""


def load_params(channel: str) -> list:
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
# ``rank`` carries the order where an aggregate needs it (candidates_of_locked_sql). The {in_…}
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


AGENT_LOAD_SQL = _with_inputs(f"SELECT {_LOAD} FROM {{agent}} a WHERE a.id = %s", {"channel": "%s"})


AGENT_SQL = """SELECT p.is_available, a.capacity, a.display_name
    FROM {agent} a LEFT JOIN {presence} p ON p.id = a.presence_id WHERE a.id = %s"""


def _eligible_template(vendor: str, inputs: dict[str, str], *, known_first: bool) -> str:
    sql = (_ELIGIBLE_KNOWN_FIRST if known_first else _ELIGIBLE_BY_IDLE).replace("{eligible}", _ELIGIBLE_WHERE)
    sql = sql.replace("{load}", _LOAD_MANY[vendor]).replace("{capacity}", _CAPACITY[vendor]).replace("{fence}", _FENCE[vendor])
    return _with_inputs(sql.replace("{order}", _KNOWN_FIRST_ORDER).replace("{idle_order}", _IDLE_ORDER), inputs)


@cache
def _eligible_sql(vendor: str, known_first: bool) -> str:
    return vendor_sql(_eligible_template(vendor, _PARAMETER_INPUTS, known_first=known_first))


# The same question for the conversation the lock statement locks, as a JSON list of [agent id,
# load, room] in offer order: a select-list column of that statement (PostgreSQL). Its subqueries
# refer to c, so PostgreSQL evaluates them once, for the locked row. CASE: no queue yet, nothing
# to compute. No known agent first: a decision in the known-agent step asks eligible_agents().
@cache
def candidates_of_locked_sql() -> str:
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
