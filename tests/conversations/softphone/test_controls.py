"""Call controls: each is a POST on a conversation the agent may see (404 otherwise), drives
Twilio's REST API (recorded locally without credentials) and puts one event on the timeline."""

from xml.etree import ElementTree

import pytest
from django.urls import reverse

from conversations.channels.twilio_recorded_voice import conference_sid_for
from conversations.channels.twilio_voice.softphone.calls import CallState, call_of
from conversations.channels.twilio_voice.softphone.controls import conference_name
from conversations.models import (
    Call,
    Conversation,
    ConversationStatus,
    EventType,
    Message,
    Offer,
    OfferStatus,
    VoiceAnswerOn,
)
from conversations.routing.assignment import conversation_resolve
from tests.factories import PASSWORD

from .conftest import (
    CALL_SID,
    VOICE_NUMBER,
    control,
    ring,
    signed_post,
    twilio_requests,
)

pytestmark = pytest.mark.django_db


def events(conversation):
    return list(Message.objects.filter(conversation=conversation, kind="event").order_by("seq")
                .values_list("event_type", flat=True))


@pytest.fixture
def alice(client, agent):
    client.login(username="alice", password=PASSWORD)
    return client


def test_answer_accepts_the_offer_and_joins_customer_and_agent_in_the_conference(alice, agent, offered_call):
    response = control(alice, "answer", offered_call.pk)
    assert response.status_code == 200, response.content
    assert response.json()["call"]["state"] == CallState.CONNECTED
    offered_call.refresh_from_db()
    assert offered_call.assignee_id == agent.pk
    assert Offer.objects.get(conversation=offered_call).status == OfferStatus.ACCEPTED
    (m1, path1, p1), (m2, path2, p2) = twilio_requests()
    # The customer's leg is redirected out of <Enqueue> to our conference TwiML …
    assert (m1, path1) == ("POST", f"Calls/{CALL_SID}.json")
    call = Call.objects.get(call_sid=CALL_SID)
    assert p1["Url"].endswith(f"/webhooks/twilio/voice/conference/?call={call.pk}")
    dial = ElementTree.fromstring(signed_post(p1["Url"], CallSid=CALL_SID).content).find("Dial")
    conference = dial.find("Conference")
    assert conference.text == conference_name(offered_call.pk)
    assert conference.get("participantLabel") == "customer" and conference.get("endConferenceOnExit") == "true"
    # … and the agent's browser is added to it.
    assert (m2, path2) == ("POST", f"Conferences/{conference_name(offered_call.pk)}/Participants.json")
    assert p2["To"] == f"client:agent_{agent.pk}" and p2["From"] == VOICE_NUMBER and p2["Label"] == f"agent_{agent.pk}"
    assert p2["StatusCallback"].endswith(f"/webhooks/twilio/voice/agent-leg/?conversation={offered_call.pk}&agent={agent.pk}")
    assert events(offered_call)[-1] == EventType.CALL_CONNECTED
    call.refresh_from_db()
    assert call.agent == agent and call.answered_at is not None and call.outcome == "answered"


def test_an_agent_who_answers_on_their_phone_is_dialled_there(alice, agent, offered_call):
    agent.voice_answer_on, agent.voice_phone_number = VoiceAnswerOn.PHONE, "+819011112222"
    agent.save()
    assert control(alice, "answer", offered_call.pk).status_code == 200
    assert twilio_requests()[-1][2]["To"] == "+819011112222"


def test_hold_and_resume_hold_the_customer_participant(alice, agent, offered_call):
    control(alice, "answer", offered_call.pk)
    before = len(twilio_requests())
    assert control(alice, "hold", offered_call.pk).json()["call"]["state"] == CallState.HELD
    assert control(alice, "resume", offered_call.pk).json()["call"]["state"] == CallState.CONNECTED
    sid = conference_sid_for(conference_name(offered_call.pk))
    held = twilio_requests()[before:]
    assert [(m, p) for m, p, _ in held] == [
        ("GET", "Conferences.json"), ("POST", f"Conferences/{sid}/Participants/customer.json"),
        ("GET", "Conferences.json"), ("POST", f"Conferences/{sid}/Participants/customer.json")]
    assert held[1][2]["Hold"] == "true" and held[3][2]["Hold"] == "false"
    assert events(offered_call)[-3:] == [EventType.CALL_CONNECTED, EventType.CALL_HELD, EventType.CALL_RESUMED]
    # Resuming a call that is not on hold is refused in words, and nothing is asked of Twilio.
    count = len(twilio_requests())
    response = control(alice, "resume", offered_call.pk)
    assert response.status_code == 400 and "error" in response.json()
    assert len(twilio_requests()) == count


def test_hang_up_ends_the_call_with_its_duration_and_wrap_up_keeps_the_capacity(alice, agent, offered_call):
    control(alice, "answer", offered_call.pk)
    response = control(alice, "hangup", offered_call.pk)
    assert response.json()["call"]["state"] == CallState.ENDED
    method, path, params = twilio_requests()[-1]
    assert (method, path, params["Status"]) == ("POST", f"Calls/{CALL_SID}.json", "completed")
    ended = Message.objects.get(conversation=offered_call, event_type=EventType.CALL_ENDED)
    assert ended.event_data["duration_seconds"] >= 0 and ended.author_agent_id == agent.pk
    # Wrap-up: still the agent's and open, so it counts against their voice capacity (1) …
    offered_call.refresh_from_db()
    assert offered_call.assignee_id == agent.pk and offered_call.status == ConversationStatus.OPEN
    from django.utils import timezone

    from conversations.models import PresenceState
    from conversations.routing.eligibility import eligible_agents

    from .conftest import VOICE_NUMBER  # noqa: F401

    available = PresenceState.objects.get_or_create(name="Available", defaults={"is_available": True})[0]
    agent.presence = available
    agent.save()
    other = Conversation.objects.create(customer=offered_call.customer, inbox=offered_call.inbox, channel="voice",
                                        queue=offered_call.queue)
    assert agent.pk not in [a.pk for a in eligible_agents(queue=offered_call.queue, channel="voice",
                                                           conversation_id=other.pk, now=timezone.now())]
    # … until they resolve.
    conversation_resolve(conversation_id=offered_call.pk, by=agent)
    assert agent.pk in [a.pk for a in eligible_agents(queue=offered_call.queue, channel="voice",
                                                       conversation_id=other.pk, now=timezone.now())]


def test_cold_transfer_to_a_queue_holds_the_customer_and_takes_the_agent_out(alice, agent, offered_call, voice_queue):
    control(alice, "answer", offered_call.pk)
    before = len(twilio_requests())
    response = control(alice, "transfer", offered_call.pk, target=f"queue:{voice_queue.pk}", note="Wants a refund")
    assert response.status_code == 200, response.content
    sid = conference_sid_for(conference_name(offered_call.pk))
    moved = twilio_requests()[before:]
    assert [(m, p) for m, p, _ in moved] == [
        ("GET", "Conferences.json"), ("POST", f"Conferences/{sid}/Participants/customer.json"),
        ("GET", "Conferences.json"), ("DELETE", f"Conferences/{sid}/Participants/agent_{agent.pk}.json")]
    assert moved[1][2]["Hold"] == "true"
    offered_call.refresh_from_db()
    assert offered_call.assignee_id is None and call_of(offered_call).state == CallState.WAITING
    transferred = Message.objects.get(conversation=offered_call, event_type=EventType.TRANSFERRED)
    assert transferred.event_data["note"] == "Wants a refund"
    assert events(offered_call)[-2:] == [EventType.TRANSFERRED, EventType.CALL_LEFT]


def test_the_next_agent_answers_a_transferred_call_in_the_same_conference(client, alice, agent, other_agent,
                                                                          offered_call, voice_queue):
    control(alice, "answer", offered_call.pk)
    control(alice, "transfer", offered_call.pk, target=f"queue:{voice_queue.pk}", note="")
    ring(offered_call, other_agent)
    before = len(twilio_requests())
    client.logout()
    client.login(username="bob", password=PASSWORD)
    assert control(client, "answer", offered_call.pk).status_code == 200
    sid = conference_sid_for(conference_name(offered_call.pk))
    answered = twilio_requests()[before:]
    # No second redirect of the customer's leg: Bob joins, and the customer comes off hold.
    assert [(m, p) for m, p, _ in answered] == [
        ("POST", f"Conferences/{conference_name(offered_call.pk)}/Participants.json"),
        ("GET", "Conferences.json"), ("POST", f"Conferences/{sid}/Participants/customer.json")]
    assert answered[0][2]["To"] == f"client:agent_{other_agent.pk}" and answered[2][2]["Hold"] == "false"


def test_warm_transfer_consults_joins_and_leaves(alice, agent, other_agent, offered_call):
    control(alice, "answer", offered_call.pk)
    before = len(twilio_requests())
    assert control(alice, "consult", offered_call.pk, agent=other_agent.pk).json()["call"]["state"] == "consulting"
    assert control(alice, "join", offered_call.pk).json()["call"]["state"] == "conference"
    response = control(alice, "leave", offered_call.pk, note="Knows the order")
    assert response.status_code == 200, response.content
    sid = conference_sid_for(conference_name(offered_call.pk))
    steps = twilio_requests()[before:]
    assert [(m, p) for m, p, _ in steps] == [
        ("GET", "Conferences.json"), ("POST", f"Conferences/{sid}/Participants/customer.json"),      # hold
        ("POST", f"Conferences/{conference_name(offered_call.pk)}/Participants.json"),            # ring Bob
        ("GET", "Conferences.json"), ("POST", f"Conferences/{sid}/Participants/customer.json"),      # join
        ("GET", "Conferences.json"), ("DELETE", f"Conferences/{sid}/Participants/agent_{agent.pk}.json")]  # leave
    assert steps[2][2]["To"] == f"client:agent_{other_agent.pk}"
    offered_call.refresh_from_db()
    assert offered_call.assignee_id == other_agent.pk
    call = call_of(offered_call)
    assert call.state == CallState.CONNECTED and call.agent == other_agent.pk
    assert events(offered_call)[-5:] == [EventType.CALL_CONSULT, EventType.CALL_JOINED, EventType.ASSIGNED,
                                         EventType.TRANSFERRED, EventType.CALL_LEFT]


def test_only_the_agent_on_the_call_drives_it(client, alice, agent, other_agent, supervisor, stranger, offered_call):
    control(alice, "answer", offered_call.pk)
    count = len(twilio_requests())
    client.logout()
    for username in ("bob", "mallory"):
        client.login(username=username, password=PASSWORD)
        for name in ("hold", "hangup", "answer", "transfer", "consult"):
            assert control(client, name, offered_call.pk).status_code == 404, (username, name)
        assert client.get(reverse("softphone:call", args=[offered_call.pk])).status_code == 404
        client.logout()
    # A supervisor sees the conversation but is not on the call.
    client.login(username="carol", password=PASSWORD)
    response = control(client, "hold", offered_call.pk)
    assert response.status_code == 400 and "error" in response.json()
    assert len(twilio_requests()) == count
    assert call_of(offered_call).state == CallState.CONNECTED


def test_an_offer_to_someone_else_cannot_be_answered(client, agent, other_agent, offered_call, voice_queue):
    client.login(username="bob", password=PASSWORD)
    assert control(client, "answer", offered_call.pk).status_code == 404
    # Where the queue lets Bob see waiting conversations, he still cannot take Alice's call.
    voice_queue.allow_pick = True
    voice_queue.save()
    response = control(client, "answer", offered_call.pk)
    assert response.status_code == 400 and "not offered to you" in response.json()["error"]
    assert twilio_requests() == []


def test_the_screen_pop_shows_the_ivr_choices_from_the_call_in_the_readers_language(
        alice, offered_call, voice_inbox, voice_queue):
    from conversations.models import Skill

    voice_inbox.settings = {"ivr": {"options": [{"key": "1", "name": "orders", "label": {"ja": "ご注文", "en": "Orders"}}]}}
    voice_inbox.save()
    voice_queue.required_skills.add(Skill.objects.create(name="Phone orders", slug="phone-orders"))
    Call.objects.filter(call_sid=CALL_SID).update(language="en", callback_requested=True)
    body = alice.get(reverse("softphone:call", args=[offered_call.pk])).json()
    assert body["call"]["state"] == "waiting" and body["call"]["call_sid"] == CALL_SID
    assert body["call"]["ivr"] == [
        {"kind": "language", "label": "Language: English"},
        {"kind": "option", "label": "Menu: Orders (keypad)"},
        {"kind": "queue", "label": "Queue: Phone"},
        {"kind": "skills", "label": "Skills: Phone orders"},
        {"kind": "callback", "label": "Asked to be called back"},
    ]
    assert body["customer_name"] == "山田 花子"
    in_japanese = alice.get(reverse("softphone:call", args=[offered_call.pk]), HTTP_ACCEPT_LANGUAGE="ja").json()
    assert [item["label"] for item in in_japanese["call"]["ivr"]][:2] == ["言語: English", "メニュー: ご注文（キー入力）"]


def test_answering_on_a_phone_without_a_number_is_refused_before_anything_moves(alice, agent, offered_call):
    agent.voice_answer_on = VoiceAnswerOn.PHONE
    agent.save()
    response = control(alice, "answer", offered_call.pk)
    assert response.status_code == 400 and "phone number" in response.json()["error"]
    assert Offer.objects.get(conversation=offered_call).status == OfferStatus.PENDING
    assert twilio_requests() == []


def test_a_colleague_who_does_not_answer_the_consult_leaves_the_caller_on_hold_with_the_first_agent(
        alice, agent, other_agent, offered_call):
    control(alice, "answer", offered_call.pk)
    control(alice, "consult", offered_call.pk, agent=other_agent.pk)
    leg = f"/webhooks/twilio/voice/agent-leg/?conversation={offered_call.pk}&agent={other_agent.pk}"
    for _retry in range(2):
        assert signed_post("http://testserver" + leg, CallSid="CA" + "4" * 32, CallStatus="no-answer").status_code == 204
    call = call_of(offered_call)
    assert call.state == CallState.HELD and call.agent == agent.pk and call.consult_agent is None
    held = Message.objects.filter(conversation=offered_call, event_type=EventType.CALL_HELD).get()
    assert held.event_data["reason"] == "consult_no_answer" and held.author_agent_id == agent.pk
    offered_call.refresh_from_db()
    assert offered_call.assignee_id == agent.pk
    assert control(alice, "resume", offered_call.pk).json()["call"]["state"] == CallState.CONNECTED
