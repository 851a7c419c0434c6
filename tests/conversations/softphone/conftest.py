"""A voice call waiting for an agent, as the server side of voice leaves it: a voice conversation
whose first message carries the customer's CallSid and IVR choices, offered to Alice."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from conversations.models import (
    Channel,
    Direction,
    Offer,
    OfferStatus,
    Queue,
    RecordedProviderRequest,
)
from tests.factories import make_conversation, make_inbox, make_message

CALL_SID = "CA" + "1" * 32
VOICE_NUMBER = "+815012340002"


@pytest.fixture
def voice_queue(db) -> Queue:
    return Queue.objects.create(name="Phone", slug="phone", channels=[Channel.VOICE], allow_pick=False)


@pytest.fixture
def voice_inbox(db, voice_queue):
    return make_inbox(Channel.VOICE, VOICE_NUMBER, default_queue=voice_queue)


def ring(conversation, agent):
    return Offer.objects.create(conversation=conversation, agent=agent, queue=conversation.queue,
                                channel=Channel.VOICE, step="queue", status=OfferStatus.PENDING,
                                expires_at=timezone.now() + timedelta(minutes=2))


@pytest.fixture
def waiting_call(db, customer, voice_inbox, voice_queue):
    conversation = make_conversation(customer, voice_inbox, queue=voice_queue, queued_at=timezone.now())
    make_message(conversation, "Incoming call", direction=Direction.INBOUND,
                 metadata={"call_sid": CALL_SID, "ivr": [{"menu": "main", "digits": "1", "label": "Orders"}]})
    return conversation


@pytest.fixture
def offered_call(waiting_call, agent):
    ring(waiting_call, agent)
    return waiting_call


def control(client, name: str, conversation_id: int, **data):
    return client.post(reverse(f"softphone:{name}", args=[conversation_id]), data, HTTP_ACCEPT="application/json")


def twilio_requests():
    """What Twilio would have been asked, oldest first: (method, path after the account, params)."""
    rows = RecordedProviderRequest.objects.filter(provider="twilio").order_by("created_at", "id")
    return [(row.method, row.uri.split("/Accounts/", 1)[1].split("/", 1)[1], row.params) for row in rows]
