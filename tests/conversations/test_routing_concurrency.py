"""Routing under concurrency (issue 4), on PostgreSQL + Redis with a real worker process.

Thousands of conversations are routed by a 4-thread `celery worker` process and by routers in this
process at the same time, while agents accept, reject, let offers time out, resolve and go offline
and back. Invariants checked on the way and at the end: no conversation is given to two agents, no
agent ever holds more than their capacity, at most one pending offer per conversation, and every
accepted offer's agent is the conversation's assignee.
"""

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
from conversations.services.routing import (
    agent_presence_set,
    conversation_resolve,
    offer_accept,
    offer_reject,
    offers_expire,
    route_conversation,
    route_waiting,
)
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
