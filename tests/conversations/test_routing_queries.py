"""Routing's cost per decision (bench/routing): a fixed number of queries, whatever the number of
agents, waiting conversations or past conversations of the customer.

The counts include the transaction's BEGIN and COMMIT."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from conversations.models import Agent, AgentSkill, Conversation, Offer, PresenceState, Queue, Skill
from conversations.routing.assignment import conversation_resolve
from conversations.routing.decisions import route_conversation, route_for_agent
from profiles.models import Customer

from ..factories import make_conversation, make_customer, make_inbox

pytestmark = pytest.mark.django_db

# PostgreSQL: BEGIN, lock the conversation (its routing facts, its eligible agents and the lock of
# the first of them nobody else holds come along), make the offer (one statement that inserts it if
# the agent has room, restarts their idle time, saves the conversation with the event's sequence
# number and inserts the event), COMMIT. SQLite: BEGIN, the lock and facts, the eligible agents, the
# agent, the offer's four writes in turn, COMMIT.
ROUTE_CONVERSATION_QUERIES = 4 if connection.vendor == "postgresql" else 9
ROUTE_FOR_AGENT_QUERIES = 1 + ROUTE_CONVERSATION_QUERIES


@pytest.fixture
def floor(db):
    """A queue needing two skills and a way to add agents (every one has both skills and one
    more, capacity 3 on SMS) and waiting conversations in bulk."""
    available = PresenceState.objects.create(name="Available", is_available=True)
    skills = [Skill.objects.create(name=f"Skill {c}", slug=f"skill-{c}") for c in "abcd"]
    queue = Queue.objects.create(name="Support", slug="support", is_default=True)
    queue.required_skills.add(skills[0], skills[1])
    inbox = make_inbox("sms", default_queue=queue)

    class Floor:
        agents: list[Agent] = []

        def add_agents(self, n: int) -> list[Agent]:
            start = len(self.agents)
            users = User.objects.bulk_create([User(username=f"floor-{start + i}") for i in range(n)])
            agents = Agent.objects.bulk_create([
                Agent(user=user, display_name=f"Agent {start + i}", presence=available, capacity={"sms": 3},
                      last_assigned_at=timezone.now() - timedelta(minutes=start + i))
                for i, user in enumerate(users)
            ])
            AgentSkill.objects.bulk_create([AgentSkill(agent=a, skill=s) for a in agents
                                            for s in (skills[0], skills[1], skills[2 + a.pk % 2])])
            self.agents += agents
            return agents

        def add_waiting(self, n: int, **fields) -> list[Conversation]:
            customers = Customer.objects.bulk_create([Customer(display_name=f"w{i}") for i in range(n)])
            now = timezone.now()
            return Conversation.objects.bulk_create([
                Conversation(customer=c, inbox=inbox, channel="sms", status="open", queue=queue,
                             queued_at=now - timedelta(seconds=n - i), created_at=now - timedelta(seconds=n - i),
                             **fields) for i, c in enumerate(customers)
            ])

        def fill(self, agent: Agent) -> list[Conversation]:
            return self.add_waiting(3, assignee=agent, assigned_at=timezone.now())

    floor = Floor()
    floor.queue, floor.inbox = queue, inbox
    return floor


def _count(django_assert_num_queries, expected, fn):
    with django_assert_num_queries(expected):
        return fn()


def test_a_routing_decision_takes_the_same_queries_for_few_or_many_agents(floor, django_assert_num_queries):
    for agents, waiting in ((3, 5), (60, 400)):
        floor.add_agents(agents)
        floor.add_waiting(waiting)
        customer = make_customer()
        # The customer was served before (the known-agent step looks), long ago.
        make_conversation(customer, floor.inbox, status="resolved", assignee=floor.agents[0],
                          assigned_at=timezone.now() - timedelta(days=90))
        conversation = make_conversation(customer, floor.inbox, queue=floor.queue)
        decision = _count(django_assert_num_queries, ROUTE_CONVERSATION_QUERIES,
                          lambda c=conversation: route_conversation(conversation_id=c.pk))
        assert decision.offer is not None and decision.offer.status == "pending"


def test_routing_for_a_freed_agent_takes_the_same_queries_for_a_short_or_long_backlog(
        floor, django_assert_num_queries, monkeypatch):
    from conversations.tasks import route_for_agent_task

    monkeypatch.setattr(route_for_agent_task, "apply_async", lambda *a, **k: None)
    for agents, backlog in ((2, 3), (40, 300)):
        added = floor.add_agents(agents)
        held = {agent.pk: floor.fill(agent) for agent in added}
        floor.add_waiting(backlog)
        agent = added[-1]
        conversation_resolve(conversation_id=held[agent.pk][0].pk, by=None)
        offered = _count(django_assert_num_queries, ROUTE_FOR_AGENT_QUERIES,
                         lambda a=agent: route_for_agent(agent_id=a.pk))
        assert offered == 1
        assert Offer.objects.filter(agent=agent, status="pending").count() == 1


def test_resolving_with_a_pending_offer_takes_seven_statements(floor, django_assert_num_queries, monkeypatch):
    """BEGIN, lock the conversation (its queue along), lock its pending offers, close the offer,
    save the conversation taking two sequence numbers, insert both events (the offer's outcome,
    the resolution), COMMIT. Recorded one by one, with the offer's agent read for its event, it
    was eleven. bench/routing's desk resolves twenty conversations a second this way."""
    floor.add_agents(3)
    conversation = floor.add_waiting(1)[0]
    assert route_conversation(conversation_id=conversation.pk).offer is not None
    _count(django_assert_num_queries, 7, lambda: conversation_resolve(conversation_id=conversation.pk, by=None))
    assert Offer.objects.get(conversation=conversation).status == "canceled"


def test_accepting_an_offer_takes_nine_statements(floor, django_assert_num_queries):
    """BEGIN, the offer's conversation, lock it, lock the offer (its agent along), accept the offer,
    the agent's idle time, save the conversation taking the event's number, the event, COMMIT."""
    from conversations.routing.offers import offer_accept

    floor.add_agents(2)
    conversation = floor.add_waiting(1)[0]
    offer = route_conversation(conversation_id=conversation.pk).offer
    _count(django_assert_num_queries, 9, lambda: offer_accept(offer_id=offer.pk, agent=offer.agent))
    conversation.refresh_from_db()
    assert conversation.assignee_id == offer.agent_id and conversation.last_seq == 2


def _plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def _lock_statement(decide) -> tuple[str, list]:
    """The lock statement (with its parameters) of the decision ``decide()`` makes."""
    statements = []

    def capture(execute, sql, params, many, context):
        statements.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        decide()
    return next((sql, params) for sql, params in statements if "FOR UPDATE" in sql)


def _agent_reads(sql: str, params) -> list[dict]:
    """The plan nodes of ``sql`` that read agents (other than by primary key), as it runs now."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    plan = plan if isinstance(plan, list) else json.loads(plan)
    return [node for node in _plan_nodes(plan[0]["Plan"])
            if node.get("Relation Name") == "conversations_agent" and node.get("Index Name") != "conversations_agent_pkey"]


def _rows(nodes: list[dict]) -> int:
    return sum(node["Actual Rows"] * node["Actual Loops"] for node in nodes)


@pytest.mark.production
def test_a_decision_reads_a_dozen_agents_however_many_are_available(floor):
    """The lock statement walks the agents in idle order (agent_idle_order_idx) and stops once ten
    with room are found: with 300 available agents, PostgreSQL reads a dozen of them, where sorting
    them all first read 300 (bench/routing; it grows with the floor)."""
    from conversations.routing.eligibility import ELIGIBLE_LIMIT

    floor.add_agents(300)
    for agent in floor.agents[-5:]:  # the longest idle are full: the walk goes past them
        floor.fill(agent)
    conversation = floor.add_waiting(1)[0]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    lock = _lock_statement(lambda: route_conversation(conversation_id=conversation.pk))
    Offer.objects.all().delete()  # so the conversation is waiting again for the EXPLAIN
    agent_reads = _agent_reads(*lock)
    assert agent_reads, "the plan reads no agents"
    assert all(node.get("Index Name") == "agent_idle_order_idx" for node in agent_reads), agent_reads
    assert _rows(agent_reads) <= ELIGIBLE_LIMIT + 10


@pytest.mark.production
def test_routing_for_a_freed_agent_reads_the_agents_ahead_of_them_not_the_whole_full_floor(floor, monkeypatch):
    """With a backlog every agent is full but the one just freed. Asking for ten candidates walked
    the whole floor counting loads (fewer than ten had room); route_for_agent asks for one, and the
    walk stops at the first agent with room: here the longest idle, the one just freed."""
    from conversations.tasks import route_for_agent_task

    monkeypatch.setattr(route_for_agent_task, "apply_async", lambda *a, **k: None)
    floor.add_agents(300)
    held = {agent.pk: floor.fill(agent) for agent in floor.agents}
    floor.add_waiting(5)
    freed = floor.agents[-1]  # the longest idle
    conversation_resolve(conversation_id=held[freed.pk][0].pk, by=None)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    lock = _lock_statement(lambda: route_for_agent(agent_id=freed.pk))
    assert Offer.objects.get(status="pending").agent_id == freed.pk
    # As before the offer, for the EXPLAIN: the conversation waiting, the agent free and idle longest.
    Offer.objects.all().delete()
    Agent.objects.filter(pk=freed.pk).update(last_assigned_at=freed.last_assigned_at)
    agent_reads = _agent_reads(*lock)
    assert _rows(agent_reads) <= 3, agent_reads


@pytest.mark.production
def test_a_freed_agents_first_offer_commits_with_the_decisions_own_statements(floor, monkeypatch):
    """The first conversation waiting for the freed agent is found by the decision's lock statement:
    BEGIN, lock (finding the conversation), offer, COMMIT, and only then the rest of their list.
    Before, a statement of its own read the list first, a round trip before every freed agent's
    offer (bench/routing, phase b)."""
    from conversations.tasks import route_for_agent_task

    monkeypatch.setattr(route_for_agent_task, "apply_async", lambda *a, **k: None)
    agent, other = floor.add_agents(2)
    held = floor.fill(agent)
    floor.fill(other)
    first, _second = floor.add_waiting(2)
    conversation_resolve(conversation_id=held[0].pk, by=None)
    statements = []

    def capture(execute, sql, params, many, context):
        if not sql.startswith(("SAVEPOINT", "RELEASE SAVEPOINT")):  # the test's transaction stands in for BEGIN/COMMIT
            statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        assert route_for_agent(agent_id=agent.pk) == 1
    assert Offer.objects.get(status="pending").conversation_id == first.pk
    assert "WITH head AS" in statements[0] and "FOR UPDATE" in statements[0]
    assert 'INSERT INTO "conversations_offer"' in statements[1]
    assert len(statements) == 3  # then the rest of the list (agent_next_work): nothing more for them


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_a_freed_agent_gets_the_next_conversation_while_another_router_holds_the_first(floor, monkeypatch):
    import psycopg

    from conversations.tasks import route_conversation_task, route_for_agent_task

    monkeypatch.setattr(route_for_agent_task, "apply_async", lambda *a, **k: None)
    monkeypatch.setattr(route_conversation_task, "apply_async", lambda *a, **k: None)
    (agent,) = floor.add_agents(1)
    first, second = floor.add_waiting(2)
    db = connection.settings_dict
    with psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
                         password=db["PASSWORD"] or None, dbname=db["NAME"]) as other_router:
        other_router.execute("SELECT id FROM conversations_conversation WHERE id = %s FOR UPDATE", [first.pk])
        assert route_for_agent(agent_id=agent.pk) == 1  # the second; the first is held by the other router
        other_router.rollback()
    offers = list(Offer.objects.filter(status="pending").values_list("conversation_id", flat=True))
    assert offers == [second.pk]


@pytest.mark.production
def test_routing_for_an_agent_who_is_away_or_has_nothing_waiting_offers_nothing(floor, monkeypatch):
    (agent,) = floor.add_agents(1)
    assert route_for_agent(agent_id=agent.pk) == 0  # nothing waits
    floor.add_waiting(1)
    Agent.objects.filter(pk=agent.pk).update(presence=PresenceState.objects.create(name="Break", is_available=False))
    assert route_for_agent(agent_id=agent.pk) == 0
    assert not Offer.objects.exists()
