"""Routing under concurrency (issue 4), on PostgreSQL + Redis with a real worker process.

Thousands of conversations are routed by a 4-thread `celery worker` process and by routers in this
process at the same time, while agents accept, reject, let offers time out, resolve and go offline
and back. Invariants checked on the way and at the end: no conversation is given to two agents, no
agent ever holds more than their capacity, at most one pending offer per conversation, and every
accepted offer's agent is the conversation's assignee.
"""

import dataclasses
import random
import threading
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from conversations.models import Agent, AgentSkill, Conversation, Inbox, Offer, PresenceState, Queue, Skill
from conversations.routing.presence import agent_presence_set, offers_expire
from conversations.routing.assignment import conversation_resolve
from conversations.routing.offers import offer_accept, offer_reject
from conversations.routing.decisions import route_conversation, route_waiting
from profiles.models import Customer

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]

CONVERSATIONS = 2000
AGENTS = 24
CAPACITY = 3
SECONDS = 45


def _check_invariants():
    """One SQL statement per check, so each sees one consistent snapshot (two separate counts
    could straddle a resolve and a new offer and report a false overload)."""
    held = Subquery(
        Conversation.objects.filter(assignee=OuterRef("pk"), status__in=["open", "pending"])
        .values("assignee").annotate(n=Count("pk")).values("n")[:1]
    )
    offered = Subquery(
        Offer.objects.filter(agent=OuterRef("pk"), status="pending").values("agent").annotate(n=Count("pk"))
        .values("n")[:1]
    )
    over = list(
        Agent.objects.annotate(load=Coalesce(held, 0) + Coalesce(offered, 0)).filter(load__gt=CAPACITY)
        .values_list("pk", "load")
    )
    assert not over, f"agents over capacity: {over}"
    doubled = Offer.objects.filter(status="pending").values("conversation_id").annotate(n=Count("id")).filter(n__gt=1)
    assert not doubled.exists()


def test_concurrent_routing_keeps_every_invariant(celery_worker):
    available = PresenceState.objects.create(name="Available", is_available=True)
    offline = PresenceState.objects.create(name="Offline", is_offline=True)
    skill = Skill.objects.create(name="Support", slug="support")
    queue = Queue.objects.create(name="Support", slug="support", is_default=True, offer_timeout_seconds=2,
                                 known_agent_window_days=0)
    queue.required_skills.add(skill)
    from django.contrib.auth.models import User

    agents = []
    for index in range(AGENTS):
        user = User.objects.create(username=f"stress{index}")
        agent = Agent.objects.create(user=user, display_name=f"Stress {index}", presence=available,
                                     capacity={"sms": CAPACITY, "email": CAPACITY})
        AgentSkill.objects.create(agent=agent, skill=skill)
        agents.append(agent)
    inbox = Inbox.objects.create(name="sms", kind="sms", address="+815000000001")
    customers = Customer.objects.bulk_create([Customer(display_name=f"c{i}") for i in range(CONVERSATIONS)])
    now = timezone.now()
    Conversation.objects.bulk_create([
        Conversation(customer=c, inbox=inbox, channel="sms", status="open", priority=i % 3,
                     created_at=now - timedelta(seconds=CONVERSATIONS - i)) for i, c in enumerate(customers)
    ])
    ids = list(Conversation.objects.values_list("pk", flat=True))

    stop = threading.Event()
    errors: list[BaseException] = []

    def guarded(fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                stop.set()
            finally:
                connections.close_all()
        return threading.Thread(target=run)

    def local_router():
        rng = random.Random()
        while not stop.is_set():
            route_conversation(conversation_id=rng.choice(ids))

    def agents_at_work(seed):
        rng = random.Random(seed)
        while not stop.is_set():
            offer = Offer.objects.filter(status="pending").order_by("?").first()
            roll = rng.random()
            if offer is not None and roll < 0.6:
                try:
                    offer_accept(offer_id=offer.pk, agent=offer.agent)
                except Exception as exc:  # noqa: BLE001 - RoutingError when another thread got there first
                    if type(exc).__name__ != "RoutingError":
                        raise
            elif offer is not None and roll < 0.7:
                try:
                    offer_reject(offer_id=offer.pk, agent=offer.agent)
                except Exception as exc:  # noqa: BLE001
                    if type(exc).__name__ != "RoutingError":
                        raise
            elif roll < 0.9:
                busy = Conversation.objects.filter(status="open", assignee__isnull=False).order_by("?").first()
                if busy is not None:
                    conversation_resolve(conversation_id=busy.pk, by=busy.assignee)
            else:
                agent = rng.choice(agents)
                agent_presence_set(agent=agent, presence=offline)
                time.sleep(0.05)
                agent_presence_set(agent=Agent.objects.get(pk=agent.pk), presence=available)

    def ticker():
        while not stop.is_set():
            offers_expire()
            route_waiting(limit=300)  # onto the broker: the worker process routes them too
            time.sleep(0.5)

    def inspector():
        while not stop.is_set():
            _check_invariants()
            time.sleep(1)

    threads = [guarded(local_router) for _ in range(2)] + [guarded(lambda s=s: agents_at_work(s)) for s in range(3)]
    threads += [guarded(ticker), guarded(inspector)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline and not stop.is_set():
        if not Conversation.objects.filter(status="open", assignee__isnull=True).exists():
            break
        time.sleep(1)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    _check_invariants()
    resolved = Conversation.objects.filter(status="resolved").count()
    accepted = Offer.objects.filter(status="accepted").count()
    # Work really flowed through every path.
    assert resolved > 20 and accepted > resolved
    assert Offer.objects.filter(status="rejected").exists()
    assert Offer.objects.filter(status="rescinded").exists() or Offer.objects.filter(status="timeout").exists()
    # Every resolved-or-assigned conversation was accepted by exactly its assignee.
    for conversation_id, assignee_id in Conversation.objects.filter(assignee__isnull=False).values_list("pk", "assignee_id")[:500]:
        last = Offer.objects.filter(conversation_id=conversation_id, status="accepted").order_by("-decided_at").first()
        assert last is None or last.agent_id == assignee_id


# --- the agent lock: routers do not queue behind each other ---------------------------------------

def _routing_floor(*capacities):
    """A queue and one available agent per capacity, the first the longest idle."""
    available = PresenceState.objects.create(name="Available", is_available=True)
    queue = Queue.objects.create(name="Support", slug="support", is_default=True, known_agent_window_days=0)
    from django.contrib.auth.models import User

    now = timezone.now()
    agents = [
        Agent.objects.create(user=User.objects.create(username=f"lock{i}"), display_name=f"Lock {i}",
                             presence=available, capacity={"sms": capacity},
                             last_assigned_at=now - timedelta(hours=len(capacities) - i))
        for i, capacity in enumerate(capacities)
    ]
    inbox = Inbox.objects.create(name="sms", kind="sms", address="+815000000002")
    return queue, inbox, agents


def _waiting(queue, inbox):
    return Conversation.objects.create(customer=Customer.objects.create(display_name="waiting"), inbox=inbox,
                                       channel="sms", status="open", queue=queue)


class _AgentHeld(threading.Thread):
    """Another transaction holding an agent's row lock (a router offering them something) until
    ``release`` is set or ``hold`` seconds pass; ``before_commit`` runs while the lock is held."""

    def __init__(self, agent_id, *, hold=5.0, before_commit=None):
        super().__init__(daemon=True)
        self.agent_id, self.hold, self.before_commit = agent_id, hold, before_commit
        self.locked, self.release = threading.Event(), threading.Event()
        self.error = None

    def run(self):
        from django.db import transaction

        try:
            with transaction.atomic():
                Agent.objects.select_for_update().get(pk=self.agent_id)
                self.locked.set()
                self.release.wait(self.hold)
                if self.before_commit:
                    self.before_commit()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            connections.close_all()

    def __enter__(self):
        self.start()
        assert self.locked.wait(10)
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.join(10)
        assert self.error is None, self.error


def test_a_router_skips_an_agent_another_router_holds_and_offers_to_the_next():
    queue, inbox, (first, second) = _routing_floor(3, 3)
    conversation = _waiting(queue, inbox)
    with _AgentHeld(first.pk):
        started = time.monotonic()
        decision = route_conversation(conversation_id=conversation.pk)
        waited = time.monotonic() - started
    assert decision.offer.agent_id == second.pk
    assert waited < 2, f"the router queued behind the held agent for {waited:.1f} s"


def test_when_only_a_held_agent_is_free_the_router_waits_for_them():
    queue, inbox, (only,) = _routing_floor(3)
    conversation = _waiting(queue, inbox)
    with _AgentHeld(only.pk, hold=0.5):
        decision = route_conversation(conversation_id=conversation.pk)
    assert decision.offer.agent_id == only.pk


def test_the_last_slot_taken_while_the_router_waited_is_not_taken_twice():
    queue, inbox, (only,) = _routing_floor(1)
    conversation = _waiting(queue, inbox)
    other = _waiting(queue, inbox)

    def offer_the_last_slot():
        Offer.objects.create(conversation=other, agent=only, queue=queue, channel="sms", step="queue")

    with _AgentHeld(only.pk, hold=0.5, before_commit=offer_the_last_slot):
        decision = route_conversation(conversation_id=conversation.pk)
    assert decision.offer is None and decision.reason == "waiting: no eligible agent is free"
    assert Offer.objects.filter(agent=only, status="pending").count() == 1


def test_a_router_holding_a_full_agent_starts_over_before_it_waits_for_another(monkeypatch):
    """The first pass keeps a full agent locked (no savepoint); to wait for a held agent it must
    let go of them first, or two such routers could deadlock."""
    from django.db import DatabaseError, transaction

    from conversations.routing.sql import Candidate
    from conversations.routing import decisions as routing

    queue, inbox, (full, held) = _routing_floor(1, 3)
    Conversation.objects.create(customer=Customer.objects.create(display_name="busy"), inbox=inbox, channel="sms",
                                status="open", queue=queue, assignee=full, assigned_at=timezone.now())
    conversation = _waiting(queue, inbox)
    looked = []

    stale = [Candidate(pk=full.pk, load=0, capacity=1), Candidate(pk=held.pk, load=0, capacity=3)]
    real_lock = routing.waiting_conversation_lock

    def lock_with_stale_candidates(conversation_id, now, **kwargs):  # as seen just before ``full`` took their last slot
        locked = real_lock(conversation_id, now, **kwargs)  # locks no agent: ``held`` is held, ``full`` has no room
        looked.append(conversation_id)
        conversation, facts = locked
        return conversation, dataclasses.replace(facts, candidates=tuple(stale), candidates_queue_id=queue.pk)

    monkeypatch.setattr(routing, "waiting_conversation_lock", lock_with_stale_candidates)
    full_was_free = []

    def lock_full_meanwhile():
        try:
            time.sleep(0.3)  # the router is waiting for ``held`` by now
            with transaction.atomic():
                Agent.objects.select_for_update(nowait=True).get(pk=full.pk)
            full_was_free.append(True)
        except DatabaseError:
            full_was_free.append(False)
        finally:
            connections.close_all()

    checker = threading.Thread(target=lock_full_meanwhile, daemon=True)
    with _AgentHeld(held.pk, hold=0.8):
        checker.start()
        decision = route_conversation(conversation_id=conversation.pk)
    checker.join(10)
    assert decision.offer.agent_id == held.pk
    assert len(looked) == 2, "the decision should have started over once"
    assert full_was_free == [True], "the router held the full agent while it waited"


def _row_locked_elsewhere(agent_id) -> bool:
    """Whether another transaction holds the agent's row (asked from a connection of its own)."""
    from django.db import DatabaseError, transaction

    result = []

    def probe():
        try:
            with transaction.atomic():
                Agent.objects.select_for_update(nowait=True).get(pk=agent_id)
            result.append(False)
        except DatabaseError:
            result.append(True)
        finally:
            connections.close_all()

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(10)
    return result[0]


def test_the_lock_statement_locks_the_first_candidate_nobody_else_holds():
    """With ``lock_first_candidate`` the conversation's lock also locks the first eligible agent
    whose row is free (a round trip fewer per decision): the one another router holds is passed
    over, the next is locked until commit, and nobody after them."""
    from django.db import transaction

    from conversations.routing.selection import waiting_conversation_lock

    queue, inbox, (first, second, third) = _routing_floor(3, 3, 3)
    conversation = _waiting(queue, inbox)
    with _AgentHeld(first.pk), transaction.atomic():
        _locked, facts = waiting_conversation_lock(conversation.pk, timezone.now(), lock_first_candidate=True)
        assert [c.pk for c in facts.candidates] == [first.pk, second.pk, third.pk]
        assert facts.locked_candidate == (second.pk, True, {"sms": 3}, second.display_name)
        assert _row_locked_elsewhere(second.pk) and not _row_locked_elsewhere(third.pk)
    assert not _row_locked_elsewhere(second.pk)
    with transaction.atomic():
        _locked, facts = waiting_conversation_lock(conversation.pk, timezone.now())
        assert facts.locked_candidate is None and not _row_locked_elsewhere(first.pk)


def test_a_decision_offers_to_the_agent_the_lock_statement_locked_and_no_other_lock_is_taken(monkeypatch):
    """The agent locked with the conversation gets the offer without a second lock of their row;
    the agents before them in the list, held elsewhere when the statement ran, are not asked."""
    from conversations.routing import decisions as routing

    queue, inbox, (first, second, _third) = _routing_floor(3, 3, 3)
    conversation = _waiting(queue, inbox)
    asked = []
    real_agent_lock = routing.agent_lock
    monkeypatch.setattr(routing, "agent_lock", lambda agent_id, **kw: asked.append(agent_id) or real_agent_lock(agent_id, **kw))
    with _AgentHeld(first.pk):
        decision = route_conversation(conversation_id=conversation.pk)
    assert decision.offer.agent_id == second.pk
    assert asked == []


def test_an_agent_locked_with_the_conversation_but_full_by_then_is_passed_over(monkeypatch):
    """The candidates are read just before the locks: an agent whose last slot was taken in between
    is locked, found full by the offer's own statement, and the next agent gets the offer."""
    from conversations.routing.sql import Candidate
    from conversations.routing import decisions as routing

    queue, inbox, (full, other) = _routing_floor(1, 3)
    Conversation.objects.create(customer=Customer.objects.create(display_name="busy"), inbox=inbox, channel="sms",
                                status="open", queue=queue, assignee=full, assigned_at=timezone.now())
    conversation = _waiting(queue, inbox)
    real_lock = routing.waiting_conversation_lock

    def lock_as_seen_before_the_last_slot_went(conversation_id, now, **kwargs):
        from conversations.routing.selection import agent_lock

        locked_conversation, facts = real_lock(conversation_id, now, **kwargs)
        stale = (Candidate(pk=full.pk, load=0, capacity=1), Candidate(pk=other.pk, load=0, capacity=3))
        available, capacity, name = agent_lock(full.pk, skip_locked=True)  # as the statement would have
        return locked_conversation, dataclasses.replace(
            facts, candidates=stale, candidates_queue_id=queue.pk, locked_candidate=(full.pk, available, capacity, name))

    monkeypatch.setattr(routing, "waiting_conversation_lock", lock_as_seen_before_the_last_slot_went)
    decision = route_conversation(conversation_id=conversation.pk)
    assert decision.offer.agent_id == other.pk
    assert not Offer.objects.filter(agent=full).exists()
