"""Skill levels: a queue asks for a least level of each skill it requires (QueueSkill.min_level,
1 = the skill alone), and every place that asks "does this agent serve this queue" honours it:
offers, a freed agent's next work, the known-agent step, the widget's "an agent is there", the
console's queues and the conversations an agent may open, the API."""

from datetime import timedelta

import pytest
from django.http import Http404
from django.utils import timezone

from conversations.models import AgentSkill, QueueSkill, Skill
from conversations.selectors import access_conversation
from conversations.routing.decisions import route_conversation, route_for_agent

from ..factories import make_agent, make_conversation, make_customer, make_inbox
from .routing_helpers import waiting

pytestmark = pytest.mark.django_db


@pytest.fixture
def senior_only(support):
    """Support asks for level 3 in its skill."""
    QueueSkill.objects.filter(queue=support).update(min_level=3)
    return support


def agent_at(username, state, level, **fields):
    agent = make_agent(username, presence=state, **fields)
    AgentSkill.objects.create(agent=agent, skill=Skill.objects.get(slug="support"), level=level)
    return agent


def test_offers_go_only_to_agents_at_the_queues_level(senior_only, presence):
    # The junior has been idle longest (never assigned): without levels, they would be first.
    junior = agent_at("junior", presence["available"], 2)
    senior = agent_at("senior", presence["available"], 3, last_assigned_at=timezone.now())
    decision = route_conversation(conversation_id=waiting(senior_only).pk)
    assert decision.offer is not None and decision.offer.agent == senior
    assert [c.pk for c in decision.candidates] == [senior.pk]  # the junior is not even a candidate
    assert junior.pk not in decision.explanation.get("candidates", [])


def test_a_queue_at_level_one_asks_only_for_the_skill(support, presence):
    junior = agent_at("junior", presence["available"], 1)
    assert route_conversation(conversation_id=waiting(support).pk).offer.agent == junior


def test_a_freed_agent_below_the_level_is_not_given_the_queues_conversations(senior_only, presence):
    junior = agent_at("junior", presence["break"], 2)
    senior = agent_at("senior", presence["break"], 4)
    conversation = waiting(senior_only)
    for agent in (junior, senior):
        agent.presence = presence["available"]
        agent.save(update_fields=["presence"])
    assert route_for_agent(agent_id=junior.pk) == 0
    assert route_for_agent(agent_id=senior.pk) == 1
    assert conversation.offers.get().agent == senior


def test_a_known_agent_below_the_level_is_not_waited_for(senior_only, presence):
    senior_only.known_agent_window_days, senior_only.known_agent_timeout_seconds = 30, 60
    senior_only.save()
    customer = make_customer()
    junior = agent_at("junior", presence["available"], 2)
    make_conversation(customer, make_inbox("sms"), status="resolved", assignee=junior,
                      assigned_at=timezone.now() - timedelta(days=1))
    senior = agent_at("senior", presence["available"], 3)
    decision = route_conversation(conversation_id=waiting(senior_only, customer=customer).pk)
    assert decision.offer is not None and decision.offer.agent == senior


def test_the_widget_counts_only_agents_at_the_level_as_there(senior_only, presence):
    from conversations.channels.webchat.status import _available_agent_for

    junior = agent_at("junior", presence["available"], 2)
    assert not _available_agent_for(senior_only)
    AgentSkill.objects.filter(agent=junior).update(level=3)
    assert _available_agent_for(senior_only)


def test_the_console_lists_and_opens_a_queues_conversations_for_agents_at_its_level(senior_only, presence):
    from conversations.console.selectors import agent_queues

    junior = agent_at("junior", presence["available"], 2)
    senior = agent_at("senior", presence["available"], 3)
    conversation = waiting(senior_only)
    assert senior_only not in agent_queues(junior, supervisor=False)
    assert senior_only in agent_queues(senior, supervisor=False)
    with pytest.raises(Http404):
        access_conversation(user=junior.user, conversation_id=conversation.pk)
    assert access_conversation(user=senior.user, conversation_id=conversation.pk) == conversation


def test_the_admin_sets_the_level_on_the_queue_page(senior_only, admin_user, client):
    client.force_login(admin_user)
    url = f"/admin/conversations/queue/{senior_only.pk}/change/"
    page = client.get(url).content.decode()
    assert 'name="queueskill_set-0-min_level"' in page and 'value="3"' in page
