"""After a call: wrap-up holds the agent's voice capacity until they resolve, or until the queue's
wrap-up limit passes (found by the tick)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from contactcenter import tick
from conversations.channels.twilio_voice.softphone import controls
from conversations.channels.twilio_voice.softphone.wrap_up import WRAP_UP_LIMIT_CODE, call_wrap_ups_expire
from conversations.models import ConversationStatus, EventType, Message

pytestmark = pytest.mark.django_db


def ended_ago(conversation, seconds):
    Message.objects.filter(conversation=conversation, event_type=EventType.CALL_ENDED).update(
        created_at=timezone.now() - timedelta(seconds=seconds))


def test_the_tick_resolves_a_wrap_up_past_the_queues_limit(agent, offered_call, voice_queue):
    voice_queue.wrap_up_limit_seconds, voice_queue.wrap_up_required = 60, True
    voice_queue.save()
    controls.call_answer(conversation=offered_call, agent=agent)
    offered_call.refresh_from_db()
    controls.call_hang_up(conversation=offered_call, agent=agent)
    ended_ago(offered_call, 30)
    assert call_wrap_ups_expire() == 0
    offered_call.refresh_from_db()
    assert offered_call.status == ConversationStatus.OPEN and offered_call.assignee_id == agent.pk
    ended_ago(offered_call, 61)
    assert tick.registered()["call_wrap_ups_expire"]() == 1
    offered_call.refresh_from_db()
    assert offered_call.status == ConversationStatus.RESOLVED
    resolved = Message.objects.get(conversation=offered_call, event_type=EventType.RESOLVED)
    assert resolved.event_data["wrap_up_code"] == WRAP_UP_LIMIT_CODE and resolved.author_agent_id is None
    assert call_wrap_ups_expire() == 0


def test_no_limit_or_a_call_still_going_on_is_left_alone(agent, offered_call, voice_queue):
    controls.call_answer(conversation=offered_call, agent=agent)
    offered_call.refresh_from_db()
    Message.objects.filter(conversation=offered_call).update(created_at=timezone.now() - timedelta(hours=1))
    voice_queue.wrap_up_limit_seconds = 60
    voice_queue.save()
    assert call_wrap_ups_expire() == 0  # on the call for an hour: not wrap-up
    controls.call_hang_up(conversation=offered_call, agent=agent)
    ended_ago(offered_call, 3600)
    voice_queue.wrap_up_limit_seconds = 0
    voice_queue.save()
    assert call_wrap_ups_expire() == 0  # no limit: the agent resolves
    offered_call.refresh_from_db()
    assert offered_call.status == ConversationStatus.OPEN
