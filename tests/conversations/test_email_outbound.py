"""Outbound email: our Message-ID as provider id, threading headers, recording backend, errors."""

import email
import email.policy
import smtplib
from pathlib import Path

import pytest
from django.core import mail
from django.test import override_settings

from conversations.channels import PermanentSendError, TransientSendError
from conversations.channels.email import adapter as email_channel
from conversations.channels.registry import adapter_for
from conversations.models import Channel, DeliveryStatus, Direction, Message, RecordedProviderRequest
from conversations.channels.email.ingest import email_receive
from conversations.services.outbound import message_send
from profiles.models import IdentityKind
from tests.conftest import wait_for
from tests.factories import make_customer, make_identity, make_inbox

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "email"
RECORDING = "conversations.channels.email.backend.RecordingEmailBackend"


@pytest.fixture
def thread(db):
    """Hanako wrote in (Gmail, Japanese): the conversation an agent answers."""
    make_inbox(Channel.EMAIL)
    customer = make_customer("Hanako")
    make_identity(customer, IdentityKind.EMAIL, "hanako@example.jp", verified=True)
    return email_receive(raw=(FIXTURES / "gmail_reply_ja.eml").read_bytes())


def outbound(thread, agent, text="ご連絡ありがとうございます。\n<b>発送済み</b>です。") -> Message:
    conversation = thread.conversation
    return Message.objects.create(
        conversation=conversation, customer_id=conversation.customer_id, inbox_id=conversation.inbox_id,
        channel=Channel.EMAIL, direction=Direction.OUTBOUND, author_agent=agent, text=text,
        delivery_status=DeliveryStatus.PENDING,
        metadata={"to": "hanako@example.jp", "from": "support@shop.example.jp"},
    )


def test_registry_knows_email():
    assert adapter_for(Channel.EMAIL) is email_channel


def test_send_builds_a_threaded_multipart_mail(thread, agent):
    message = outbound(thread, agent)
    result = email_channel.send(message, to="hanako@example.jp", from_="support@shop.example.jp")
    [sent] = mail.outbox
    parsed = email.message_from_bytes(sent.message().as_bytes(), policy=email.policy.default)
    assert parsed["From"] == "support@shop.example.jp" and parsed["To"] == "hanako@example.jp"
    assert parsed["Message-ID"] == f"<{result.provider_id}>"
    assert result.provider_id.endswith("@shop.example.jp") and result.status == "sent"
    assert parsed["In-Reply-To"] == "<CAGmail-ja-1@mail.gmail.com>"
    assert parsed["References"] == "<CAGmail-ja-1@mail.gmail.com>"
    assert parsed["Subject"] == "Re: ご注文について"
    assert parsed["Auto-Submitted"] is None  # a person wrote it
    assert parsed.get_body(("plain",)).get_content().startswith("ご連絡ありがとうございます。")
    html = parsed.get_body(("html",)).get_content()
    assert "&lt;b&gt;発送済み&lt;/b&gt;" in html and "<b>" not in html
    # Deterministic: a retry after an ambiguous failure sends the same Message-ID.
    assert email_channel.send(message, to="hanako@example.jp", from_="support@shop.example.jp") == result


def test_automatic_mail_is_marked_auto_submitted(thread):
    message = outbound(thread, None, text="Thanks for your mail. We will answer within a day.")
    email_channel.send(message, to="hanako@example.jp", from_="support@shop.example.jp")
    assert mail.outbox[0].extra_headers["Auto-Submitted"] == "auto-generated"


@override_settings(EMAIL_BACKEND=RECORDING)
def test_recording_backend_keeps_what_the_customer_would_receive(thread, agent):
    message = outbound(thread, agent, text="Hello from support")
    result = email_channel.send(message, to="hanako@example.jp", from_="support@shop.example.jp")
    record = RecordedProviderRequest.objects.get(provider="email")
    assert record.to == "hanako@example.jp" and record.from_address == "support@shop.example.jp"
    assert record.body == "Hello from support"
    assert record.params["message_id"] == f"<{result.provider_id}>"
    assert record.params["subject"] == "Re: ご注文について"
    assert record.params["headers"]["In-Reply-To"] == "<CAGmail-ja-1@mail.gmail.com>"
    assert "Hello from support" in record.params["html"]
    assert email.message_from_string(record.params["raw"])["Message-ID"] == f"<{result.provider_id}>"


def test_customer_reply_to_our_mail_threads_back(thread, agent):
    message = outbound(thread, agent)
    result = email_channel.send(message, to="hanako@example.jp", from_="support@shop.example.jp")
    Message.objects.filter(pk=message.pk).update(provider_id=result.provider_id)
    thread.conversation.status = "resolved"
    thread.conversation.save()
    reply = (b"From: hanako@example.jp\r\nTo: support@shop.example.jp\r\nSubject: Re: x\r\n"
             b"Message-ID: <reply-2@mail.gmail.com>\r\nIn-Reply-To: <" + result.provider_id.encode() + b">\r\n\r\nthanks\r\n")
    again = email_receive(raw=reply)
    assert again.conversation == thread.conversation and again.conversation_reopened


class FailingBackend:
    error: Exception

    def __init__(self, **kwargs):
        pass

    def send_messages(self, messages):
        raise self.error


@pytest.mark.parametrize("error, expected, ambiguous", [
    (smtplib.SMTPRecipientsRefused({"x@y": (550, b"no such user")}), PermanentSendError, None),
    (smtplib.SMTPDataError(554, b"rejected"), PermanentSendError, None),
    (smtplib.SMTPDataError(451, b"try later"), TransientSendError, False),
    (smtplib.SMTPServerDisconnected("gone"), TransientSendError, True),
    (TimeoutError("timed out"), TransientSendError, True),
])
def test_send_errors_are_classified(thread, agent, monkeypatch, error, expected, ambiguous):
    FailingBackend.error = error
    monkeypatch.setattr("django.core.mail.get_connection", lambda **kw: FailingBackend())
    with pytest.raises(expected) as excinfo:
        email_channel.send(outbound(thread, agent), to="hanako@example.jp", from_="support@shop.example.jp")
    if ambiguous is not None:
        assert excinfo.value.ambiguous is ambiguous


@pytest.mark.django_db(transaction=True)
@override_settings(EMAIL_BACKEND=RECORDING)
def test_message_send_delivers_through_the_worker(celery_worker, agent):
    make_inbox(Channel.EMAIL)
    customer = make_customer("Hanako")
    make_identity(customer, IdentityKind.EMAIL, "hanako@example.jp", verified=True)
    inbound = email_receive(raw=(FIXTURES / "gmail_reply_ja.eml").read_bytes())
    message = message_send(conversation=inbound.conversation, agent=agent, text="発送しました。")
    sent = wait_for(lambda: Message.objects.filter(pk=message.pk, delivery_status=DeliveryStatus.SENT).first())
    assert sent.provider_id.endswith("@shop.example.jp")
    record = RecordedProviderRequest.objects.get(provider="email")
    assert record.params["message_id"] == f"<{sent.provider_id}>"
    assert record.params["headers"]["In-Reply-To"] == "<CAGmail-ja-1@mail.gmail.com>"
