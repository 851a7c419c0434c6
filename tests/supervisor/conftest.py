"""Fixtures of the supervisor tests: presences, a support queue with its skill, a desk of agents."""

from dataclasses import dataclass

import pytest

from conversations.models import AgentSkill, PresenceState, Queue, Skill

from ..factories import make_agent, make_inbox


@dataclass
class Desk:
    queue: Queue
    sales: Queue
    skill: Skill
    available: PresenceState
    lunch: PresenceState
    offline: PresenceState


@pytest.fixture
def desk(db) -> Desk:
    skill = Skill.objects.create(name="Support", slug="support")
    queue = Queue.objects.create(name="Support", slug="support", is_default=True, sla_seconds=60,
                                 offer_timeout_seconds=60)
    queue.required_skills.add(skill)
    sales = Queue.objects.create(name="Sales", slug="sales", sla_seconds=30)
    make_inbox()
    return Desk(
        queue=queue, sales=sales, skill=skill,
        available=PresenceState.objects.create(name="Available", is_available=True, ordering=1),
        lunch=PresenceState.objects.create(name="Lunch", ordering=2),
        offline=PresenceState.objects.create(name="Offline", is_offline=True, ordering=3),
    )


def desk_agent(desk: Desk, username: str, *, presence=None, skilled: bool = True, **fields):
    agent = make_agent(username, presence=presence or desk.available, **fields)
    if skilled:
        AgentSkill.objects.create(agent=agent, skill=desk.skill, level=1)
    return agent


# Scenarios for the reports: conversations whose timelines are written entry by entry at chosen
# instants (as the services record them), so every metric has a known answer.

import zoneinfo
from datetime import datetime, timedelta

import pytest

from conversations.models import Channel, Direction, MessageKind, Queue
from supervisor.facts.services import facts_rebuild

from ..factories import make_conversation, make_customer, make_message

TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")


def tokyo(year, month, day, hour=0, minute=0, second=0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=TOKYO)


class Story:
    """One conversation told entry by entry: ``at(seconds)`` is its start plus that many seconds."""

    def __init__(self, *, customer, start: datetime, queue=None, channel=Channel.SMS):
        self.start = start
        self.conversation = make_conversation(customer, make_inbox(channel), queue=queue, created_at=start)

    def at(self, seconds: float) -> datetime:
        return self.start + timedelta(seconds=seconds)

    def customer_says(self, seconds, text="hello"):
        make_message(self.conversation, text, direction=Direction.INBOUND, created_at=self.at(seconds))
        return self

    def agent_says(self, seconds, agent, text="reply"):
        make_message(self.conversation, text, direction=Direction.OUTBOUND, author_agent=agent, created_at=self.at(seconds))
        return self

    def event(self, seconds, event_type, agent=None, **data):
        make_message(self.conversation, "", direction=Direction.INTERNAL, kind=MessageKind.EVENT, event_type=event_type,
                     event_data=data, author_agent=agent, created_at=self.at(seconds))
        return self

    def assigned(self, seconds, agent, via="offer"):
        return self.event(seconds, "assigned", assignee=agent.pk, assignee_name=agent.display_name, via=via)

    def resolved(self, seconds, agent=None):
        return self.event(seconds, "resolved", agent=agent, wrap_up_code="")

    def abandoned(self, seconds):
        from conversations.models import Conversation

        Conversation.objects.filter(pk=self.conversation.pk).update(abandoned_at=self.at(seconds))
        return self.event(seconds, "abandoned", reason="left")


@pytest.fixture
def story():
    return Story


@pytest.fixture
def queue(db):
    return Queue.objects.create(name="Support", slug="support", sla_seconds=60)


@pytest.fixture
def staff(db):
    return {"alice": make_agent("alice", display_name="Alice"), "bob": make_agent("bob", display_name="Bob")}


@pytest.fixture
def day_of_scenarios(db, queue, staff, settings):
    """One Tokyo day (2026-03-10) of five conversations with known figures (docs/metrics.md):

    A transfer: queued 0, accepted by Alice at 30 s, her reply at 60 s, transferred to Bob at 90 s,
      his reply at 120 s, resolved at 600 s.
    B short abandon: left after 5 s.   C abandon: left after 40 s.
    D slow answer: accepted at 120 s, reply at 130 s, resolved at 300 s.
    E reopen: accepted at 10 s, reply at 20 s, resolved at 100 s, the customer writes again at
      1000 s, resolved again at 1200 s.
    """
    settings.CC_SHORT_ABANDON_SECONDS = 10  # B's 5 s is within it, C's 40 s after it
    alice, bob = staff["alice"], staff["bob"]
    day = tokyo(2026, 3, 10, 10)
    stories = {}
    a = Story(customer=make_customer("A"), start=day, queue=queue).customer_says(0).assigned(30, alice)
    a.agent_says(60, alice).event(90, "transferred", agent=alice, to_agent=bob.pk).assigned(90, bob, via="transfer")
    stories["A"] = a.agent_says(120, bob).resolved(600, bob)
    stories["B"] = Story(customer=make_customer("B"), start=day + timedelta(hours=1), queue=queue).customer_says(0).abandoned(5)
    stories["C"] = Story(customer=make_customer("C"), start=day + timedelta(hours=2), queue=queue).customer_says(0).abandoned(40)
    stories["D"] = (Story(customer=make_customer("D"), start=day + timedelta(hours=3), queue=queue).customer_says(0)
                    .assigned(120, alice).agent_says(130, alice).resolved(300, alice))
    stories["E"] = (Story(customer=make_customer("E"), start=day + timedelta(hours=4), queue=queue).customer_says(0)
                    .assigned(10, alice).agent_says(20, alice).resolved(100, alice)
                    .event(1000, "reopened", reason="customer_message").customer_says(1000).resolved(1200, alice))
    facts_rebuild()
    return stories
