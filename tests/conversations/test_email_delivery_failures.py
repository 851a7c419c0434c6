"""Outbound email that cannot be built or sent ends failed with the reason, never pending forever;
headers built from customer input carry no control characters."""

import base64
import email
import email.policy

import pytest
from django.test import override_settings

from conversations.models import Channel, DeliveryStatus, RecordedProviderRequest
from conversations.channels.email.ingest import email_receive
from conversations.services.outbound import message_send
from conversations.tasks import deliver_message
from tests.factories import make_inbox

RECORDING = "conversations.channels.email.backend.RecordingEmailBackend"


def inbound_mail(subject: str, from_header: str = "Hanako <hanako@example.jp>") -> bytes:
    if not subject.isascii():  # as a mailer writes it: an RFC 2047 encoded word
        subject = "=?utf-8?b?" + base64.b64encode(subject.encode()).decode() + "?="
    return (
        f"From: {from_header}\r\nTo: support@shop.example.jp\r\nSubject: {subject}\r\n"
        "Message-ID: <ctl-1@example.jp>\r\nReferences: <older@example.jp>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nWhere is my order?\r\n"
    ).encode()


@pytest.mark.django_db
@override_settings(EMAIL_BACKEND=RECORDING)
@pytest.mark.parametrize("control", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028"])
def test_reply_to_a_subject_with_a_control_character_is_delivered_with_a_clean_header(agent, control):
    make_inbox(Channel.EMAIL)
    received = email_receive(raw=inbound_mail(f"Order 12{control}Name: evil"))
    reply = message_send(conversation=received.conversation, agent=agent, text="It shipped.")
    assert deliver_message.apply(args=[reply.pk]).get() == "sent"
    reply.refresh_from_db()
    assert reply.delivery_status == DeliveryStatus.SENT
    record = RecordedProviderRequest.objects.get(provider="email")
    sent = email.message_from_bytes(record.params["raw"].encode(), policy=email.policy.default)
    assert sent["Subject"] == "Re: Order 12 Name: evil"
    assert "Name" not in sent  # no header was smuggled in
    assert not any(ord(ch) < 0x20 or ch in "\x7f\x85\u2028\u2029" for ch in record.params["subject"])
