"""Helpers of the routing tests: an agent with presence and skills, a waiting conversation."""

from datetime import timedelta

from django.utils import timezone

from conversations.models import AgentSkill, Conversation, Skill

from ..factories import make_agent, make_conversation, make_customer, make_inbox


def staff(username, presence_state, *skills, **fields):
    agent = make_agent(username, presence=presence_state, **fields)
    for slug in skills:
        AgentSkill.objects.create(agent=agent, skill=Skill.objects.get(slug=slug))
    return agent


def waiting(queue=None, *, priority=0, channel="sms", age_seconds=0, customer=None):
    conversation = make_conversation(customer or make_customer(), make_inbox(channel), queue=queue, priority=priority)
    if age_seconds:
        Conversation.objects.filter(pk=conversation.pk).update(queued_at=timezone.now() - timedelta(seconds=age_seconds))
    return conversation
