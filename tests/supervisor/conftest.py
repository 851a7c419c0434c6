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
