"""Fixtures shared by the conversations tests: the presences and the support queue routing needs."""

import pytest

from conversations.models import PresenceState, Queue, Skill


@pytest.fixture
def presence(db):
    return {
        "available": PresenceState.objects.create(name="Available", is_available=True),
        "break": PresenceState.objects.create(name="Break"),
        "offline": PresenceState.objects.create(name="Offline", is_offline=True),
    }


@pytest.fixture
def support(db):
    skill = Skill.objects.create(name="Support", slug="support")
    queue = Queue.objects.create(name="Support", slug="support", is_default=True, offer_timeout_seconds=60,
                                 known_agent_timeout_seconds=30)
    queue.required_skills.add(skill)
    return queue
