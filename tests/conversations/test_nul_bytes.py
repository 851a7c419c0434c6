"""NUL (U+0000) in anything from outside: stored without it, the raw payload kept, never a 500
and never a retry loop (issue 21 §9). PostgreSQL refuses NUL in text and jsonb, SQLite does not,
so these matter in production mode (`make test` runs them in both)."""

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from contactcenter.storable import json_restored, json_storable, json_without_nul, text_storable
from conversations.models import Message, MessageKind, MessageStatusEvent, TwilioInboundEvent
from conversations.services import InboundAttachment, InboundMessage, message_receive

from ..factories import make_conversation, make_inbox, make_message
from .twilio_helpers import MESSAGING_PATH, STATUS_PATH, configure_our_numbers, process_inbound_events, signed_post, sms_params

pytestmark = pytest.mark.django_db

SID = "SM" + "0" * 32


def test_storable_forms():
    raw = {"Body": "a\x00b\x00", "list": ["\x00", "x"], "key\x00": 1, "n": 2}
    stored = json_storable(raw)
    assert "\x00" not in repr(stored)
    assert json_restored(stored) == {"Body": "a\x00b\x00", "list": ["\x00", "x"], "key": 1, "n": 2}
    assert json_storable(stored) == stored  # storing twice changes nothing
    assert json_without_nul({"k\x00": ["v\x00", {"x": "\x00y"}]}) == {"k": ["v", {"x": "y"}]}
    assert text_storable("a\x00b") == "ab"


def test_a_signed_sms_with_nul_is_stored_and_its_raw_payload_kept(client):
    configure_our_numbers()
    params = sms_params(SID, body="荷物が\x00届きません\x00", ProfileName="Hana\x00ko", Extra="\x00")
    response = signed_post(client, MESSAGING_PATH, params)
    assert response.status_code == 200
    assert process_inbound_events() == ["processed"]
    message = Message.objects.get(provider_id=SID)
    assert message.text == "荷物が届きません"
    event = TwilioInboundEvent.objects.get(message_sid=SID)
    assert event.failed_at is None and event.attempts == 1
    assert json_restored(event.payload) == params  # byte for byte what Twilio posted
    assert json_restored(message.metadata["twilio"])["Body"] == params["Body"]


def test_nul_in_the_destination_or_sender_is_no_500(client):
    configure_our_numbers()
    response = signed_post(client, MESSAGING_PATH, sms_params(SID, to="+81501234\x000000", sender="+8190\x0012345678"))
    assert response.status_code == 200
    assert process_inbound_events() == ["processed"]
    message = Message.objects.get()
    assert (message.inbox.address, message.customer.identities.get().value) == ("+815012340000", "+819012345678")
    other = "SM" + "2" * 32
    assert signed_post(client, MESSAGING_PATH, sms_params(other, to="\x00junk")).status_code == 200
    assert process_inbound_events() == ["failed"]  # none of our numbers: kept, with the reason
    assert "No SMS inbox" in TwilioInboundEvent.objects.get(message_sid=other).last_error
    bad_sid = signed_post(client, MESSAGING_PATH, sms_params("SM\x00" + "1" * 31))
    assert bad_sid.status_code == 400


def test_a_status_callback_with_nul_is_kept(client):
    response = signed_post(client, STATUS_PATH, {"MessageSid": "SM" + "9" * 32, "MessageStatus": "delivered",
                                                 "ErrorCode": "3\x000", "Junk": "\x00"})
    assert response.status_code == 204
    event = MessageStatusEvent.objects.get()
    assert event.error_code == "30" and json_restored(event.payload)["Junk"] == "\x00"


def test_every_text_of_an_inbound_message_is_stored_without_nul(customer):
    inbox = make_inbox("email")
    result = message_receive(InboundMessage(
        inbox=inbox, sender_kind="email", sender_address="hana\x00ko@example.jp", text="body\x00", html="<p>\x00</p>",
        subject="Sub\x00ject", sender_name="Hana\x00ko", provider_id="<id\x00@example.jp>",
        metadata={"headers": {"X-Raw": "a\x00b"}}, thread_refs=["<r\x00@x>"],
        attachments=[InboundAttachment(filename="a\x00.txt", content_type="text/plain\x00", content=b"\x00bytes")],
    ))
    message = Message.objects.get(pk=result.message.pk)
    assert (message.text, message.html, message.conversation.subject) == ("body", "<p></p>", "Subject")
    assert message.customer.display_name == "Hanako"
    assert message.customer.identities.get().value == "hanako@example.jp"
    assert json_restored(message.metadata) == {"headers": {"X-Raw": "a\x00b"}}
    attachment = message.attachments.get()
    assert attachment.filename == "a.txt" and attachment.file.read() == b"\x00bytes"  # files keep their bytes


def test_agents_replies_notes_and_custom_attributes_are_stored_without_nul(agent, customer):
    conversation = make_conversation(customer, make_inbox("sms"), assignee=agent, assigned_at=timezone.now())
    make_message(conversation, "hello")
    console = Client()
    console.force_login(agent.user)
    for action, text in (("reply", "お待たせ\x00しました"), ("note", "memo\x00")):
        response = console.post(reverse(f"console:{action}", args=[conversation.pk]), {"text": text},
                                HTTP_ACCEPT="application/json")
        assert response.status_code == 200, response.content
    assert list(conversation.messages.filter(author_agent=agent).order_by("seq").values_list("kind", "text")) == [
        (MessageKind.MESSAGE, "お待たせしました"), (MessageKind.NOTE, "memo")]
    api = APIClient()
    api.force_login(agent.user)
    response = api.patch(reverse("api-customer-detail", args=[customer.pk]),
                         {"custom_attributes": {"plan\u0000": "gold\u0000", "list": ["\u0000"]}}, format="json")
    assert response.status_code == 200, response.content
    customer.refresh_from_db()
    assert customer.custom_attributes == {"plan": "gold", "list": [""]}
    # A name is a form field: refused with the reason, as DRF refuses NUL in any text field.
    response = api.patch(reverse("api-customer-detail", args=[customer.pk]), {"display_name": "a\u0000"}, format="json")
    assert response.status_code == 400
