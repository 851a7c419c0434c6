"""The ``conversation.call`` event: its payload, and who hears it (the conversation's watchers, the
supervisors, the customer's timeline readers and the agents on the call)."""

import pytest

from conversations.channels.twilio_voice.softphone import controls
from conversations.models import EventType

from .conftest import CALL_SID

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    captured = []
    monkeypatch.setattr(controls, "send_on_commit", lambda groups, event: captured.append((groups, event)))
    return captured


def test_answer_then_consult_tell_the_agents_on_the_call(sent, agent, other_agent, offered_call):
    controls.call_answer(conversation=offered_call, agent=agent)
    offered_call.refresh_from_db()
    controls.call_consult(conversation=offered_call, agent=agent, colleague=other_agent)
    (answered_groups, answered), (consult_groups, consult) = sent
    c, customer = offered_call.pk, offered_call.customer_id
    assert answered_groups == [f"conversation.{c}", "supervisors", f"agent.{agent.pk}", f"customer.{customer}"]
    assert answered["type"] == "conversation.call" and answered["event"] == EventType.CALL_CONNECTED
    assert answered["call"]["state"] == "connected" and answered["call"]["agent"] == agent.pk
    assert answered["call"]["call_sid"] == CALL_SID and answered["by"] == agent.pk
    # The colleague asked in hears it through their own group, with who is asking.
    assert f"agent.{other_agent.pk}" in consult_groups
    assert consult["call"]["state"] == "consulting" and consult["call"]["consult_agent"] == other_agent.pk
    assert consult["call"]["consult_agent_name"] == "Bob" and consult["from_name"] == "Alice"
    assert consult["seq"] == answered["seq"] + 1


def test_the_server_side_records_a_customer_hang_up_through_the_same_seam(sent, agent, offered_call):
    controls.call_answer(conversation=offered_call, agent=agent)
    call = controls.call_event_record(conversation_id=offered_call.pk, event_type=EventType.CALL_ENDED, agent=None,
                                      ended_by="customer", **controls.call_duration(75))
    assert call.state == "ended" and call.duration_seconds == 75
    assert sent[-1][1]["call"]["state"] == "ended"
    assert offered_call.messages.get(event_type=EventType.CALL_ENDED).event_data["duration"] == "1:15"
