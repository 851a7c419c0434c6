"""Click-to-call from the customer 360: refused with the reason when the customer opted out of
calls or it is outside their local calling hours; otherwise the real client creates the call."""

from datetime import UTC, datetime
from xml.etree import ElementTree

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from conversations.channels.twilio_voice.softphone.calls import CallState, call_of
from conversations.channels.twilio_voice.softphone.controls import conference_name
from conversations.models import Channel, Conversation, EventType, Message
from profiles.models import ConsentStatus, IdentityKind
from profiles.services import consent_record
from tests.factories import PASSWORD, make_customer, make_identity

from .conftest import VOICE_NUMBER, twilio_requests

pytestmark = pytest.mark.django_db

PHONE = "+819012345678"


def frozen(monkeypatch, *args):
    moment = datetime(*args, tzinfo=UTC)
    monkeypatch.setattr(timezone, "now", lambda: moment)
    return moment


def call(client, customer):
    return client.post(reverse("softphone:click-to-call", args=[customer.pk]), HTTP_ACCEPT="application/json")


@pytest.fixture
def alice(client, agent, voice_inbox):
    client.login(username="alice", password=PASSWORD)
    return client


def test_a_call_within_hours_is_created_and_the_agent_joins_it(monkeypatch, alice, agent, customer):
    customer.time_zone = "Asia/Tokyo"
    customer.save()
    frozen(monkeypatch, 2026, 12, 5, 1, 0)  # 10:00 in Tokyo
    response = call(alice, customer)
    assert response.status_code == 200, response.content
    conversation = Conversation.objects.get(customer=customer, channel=Channel.VOICE)
    assert conversation.assignee_id == agent.pk
    (m1, p1, create), (m2, p2, participant) = twilio_requests()
    assert (m1, p1) == ("POST", "Calls.json")
    assert create["To"] == PHONE and create["From"] == VOICE_NUMBER
    assert ElementTree.fromstring(create["Twiml"]).find("Dial/Conference").text == conference_name(conversation.pk)
    assert (m2, p2) == ("POST", f"Conferences/{conference_name(conversation.pk)}/Participants.json")
    assert participant["To"] == f"client:agent_{agent.pk}"
    placed = Message.objects.get(conversation=conversation, event_type=EventType.CALL_PLACED)
    assert placed.metadata["call_sid"].startswith("CA") and placed.event_data["to"] == PHONE
    assert call_of(conversation).state == CallState.CONNECTED


def test_refused_when_the_customer_opted_out_of_calls(monkeypatch, alice, customer):
    frozen(monkeypatch, 2026, 12, 5, 1, 0)
    consent_record(customer=customer, channel=Channel.VOICE, address=PHONE, status=ConsentStatus.OPTED_OUT,
                   source="agent")
    response = call(alice, customer)
    assert response.status_code == 400
    assert "opted out" in response.json()["error"]
    assert twilio_requests() == [] and not Conversation.objects.filter(channel=Channel.VOICE).exists()


@pytest.mark.parametrize(("utc", "allowed"), [
    ((2026, 12, 4, 23, 59), False),  # 08:59 in Tokyo
    ((2026, 12, 5, 0, 0), True),     # 09:00
    ((2026, 12, 5, 10, 59), True),   # 19:59
    ((2026, 12, 5, 11, 0), False),   # 20:00
    ((2026, 12, 5, 12, 30), False),  # 21:30
])
def test_calling_hours_are_the_customers_local_time(monkeypatch, alice, customer, utc, allowed):
    customer.time_zone = "Asia/Tokyo"
    customer.save()
    frozen(monkeypatch, *utc)
    response = call(alice, customer)
    if allowed:
        assert response.status_code == 200, response.content
    else:
        assert response.status_code == 400
        assert "Asia/Tokyo" in response.json()["error"] and "09:00" in response.json()["error"]
        assert twilio_requests() == []


@override_settings(CC_DEFAULT_TIME_ZONE="Asia/Tokyo", CC_CALLING_HOURS="10:00-18:00")
def test_without_a_customer_time_zone_the_default_one_and_configured_hours_apply(monkeypatch, alice, customer):
    customer.time_zone = ""
    customer.save()
    frozen(monkeypatch, 2026, 12, 5, 0, 30)  # 09:30 in Tokyo: within 09–20, not within 10–18
    response = call(alice, customer)
    assert response.status_code == 400 and "10:00" in response.json()["error"]


def test_refused_in_the_agents_language(monkeypatch, alice, customer):
    customer.time_zone = "Asia/Tokyo"
    customer.save()
    frozen(monkeypatch, 2026, 12, 5, 12, 30)
    response = alice.post(reverse("softphone:click-to-call", args=[customer.pk]), HTTP_ACCEPT="application/json",
                          HTTP_ACCEPT_LANGUAGE="ja")
    assert "お客様" in response.json()["error"]


def test_a_stranger_cannot_call_anyone(client, stranger, customer, voice_inbox):
    client.login(username="mallory", password=PASSWORD)
    assert call(client, customer).status_code == 404
    assert twilio_requests() == []


def test_refused_while_the_agent_is_on_another_call(monkeypatch, client, agent, offered_call, customer):
    from .conftest import control

    client.login(username="alice", password=PASSWORD)
    control(client, "answer", offered_call.pk)
    other = make_customer("Ken Mori", time_zone="Asia/Tokyo")
    make_identity(other, IdentityKind.PHONE, "+819011119999")
    frozen(monkeypatch, 2026, 12, 5, 1, 0)
    count = len(twilio_requests())
    response = call(client, other)
    assert response.status_code == 400 and "another call" in response.json()["error"]
    assert len(twilio_requests()) == count
