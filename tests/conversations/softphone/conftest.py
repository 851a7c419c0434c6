"""A voice call waiting for an agent, as the server side of voice leaves it: a voice conversation
whose first message carries the customer's CallSid and IVR choices, offered to Alice."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from conversations.models import (
    Call,
    Channel,
    Offer,
    OfferStatus,
    Queue,
    RecordedProviderRequest,
)
from tests.factories import make_conversation, make_inbox

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
    # What the voice webhooks store for a caller on hold: the Call row with the IVR choice.
    Call.objects.create(conversation=conversation, call_sid=CALL_SID, from_address="+819012345678",
                        to_address=VOICE_NUMBER, status="in-progress", language="ja", queued_at=timezone.now(),
                        ivr={"option": "orders", "key": "1", "how": "keypad", "digits": "1"})
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


def signed_post(url: str, **params):
    """A voice webhook as Twilio posts it to ``url`` (the URL we gave Twilio; its path on the test
    server), signed."""
    from urllib.parse import urlsplit

    from django.test import Client
    from twilio.request_validator import RequestValidator

    from conversations.channels.twilio_client import auth_token

    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    signature = RequestValidator(auth_token()).compute_signature("http://testserver" + path, params)
    return Client().post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)
