"""Issue 3's promise: a person texts, emails and chats as one customer and sees all of it on that
customer's one timeline; replies reach the simulated phone, mailbox and widget."""

import socket

import pytest
from channels.testing import WebsocketCommunicator

from contactcenter.asgi import application
from conversations.management.commands.smtpd import make_controller
from conversations.models import Message, RecordedProviderRequest
from conversations.services.outbound import message_send
from conversations.tasks import deliver_message
from profiles.models import Customer, MergeSuggestion
from profiles.services import merge_suggestion_decide
from profiles.timeline import customer_timeline

from ..conftest import wait_for
from ..factories import make_inbox
from .twilio_helpers import process_inbound_events

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def simulator_on(settings):
    """The simulator is off by default in production mode; these tests are about it."""
    settings.CC_SIMULATOR = True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_listener(settings):
    port = _free_port()
    settings.CC_SMTP_PORT = port
    controller = make_controller(hostname="127.0.0.1", port=port)
    controller.start()
    yield controller
    controller.stop()


async def _visitor_app(scope, receive, send):
    return await application(dict(scope, client=("198.51.100.7", 40000)), receive, send)


async def _chat(text: str, *, token: str, email: str):
    communicator = WebsocketCommunicator(_visitor_app, "/ws/widget/?widget=widget-main",
                                         headers=[(b"origin", b"https://shop.example"), (b"host", b"127.0.0.1")])
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"type": "hello", "widget": "widget-main", "token": token, "locale": "ja"})
    frames = [await communicator.receive_json_from(timeout=5)]
    await communicator.send_json_to({"type": "prechat", "name": "山田 花子", "email": email})
    await communicator.send_json_to({"type": "message", "id": "8d3c1a52-4d0e-4a59-9a55-2f0d2a1f0c01", "text": text})
    while not any(f["type"] == "message" for f in frames):
        frames.append(await communicator.receive_json_from(timeout=5))
    await communicator.disconnect()
    return frames


def test_sms_email_and_chat_become_one_timeline_and_replies_reach_every_channel(client, live_server, smtp_listener,
                                                                                settings, agent, available_presence):
    settings.CC_PUBLIC_URL = live_server.url
    # pytest-django swaps in the locmem backend; the simulator reads what the recording one keeps.
    settings.EMAIL_BACKEND = "conversations.channels.email.backend.RecordingEmailBackend"
    agent.presence = available_presence
    agent.save()
    make_inbox("sms")
    make_inbox("email")
    make_inbox("webchat")

    # 1. SMS from the simulated phone (signed webhook).
    sent = client.post("/simulator/phone/send/", {"from": "090-1234-5678", "to": "+815012340000",
                                                  "body": "注文した急須が届きません"}, content_type="application/json")
    assert sent.status_code == 200, sent.content
    process_inbound_events()  # the worker's part: the webhook only stored the event
    phone_customer = Message.objects.get(channel="sms").customer

    # 2. Email through the SMTP listener; the signature names the same phone number.
    mailed = client.post("/simulator/email/send/", {
        "from": "hanako.yamada@example.jp", "name": "山田 花子", "to": "support@shop.example.jp",
        "subject": "注文 SO-1001 について", "body": "急須が届いていません。\n\n--\n山田 花子\nTEL 090-1234-5678\n",
    }, content_type="application/json")
    assert mailed.status_code == 200, mailed.content
    email_message = wait_for(lambda: Message.objects.filter(channel="email").first())
    suggestion = MergeSuggestion.objects.get(candidate=email_message.customer)
    assert suggestion.customer == phone_customer and suggestion.evidence["phone"] == "+819012345678"

    # 3. Web chat: the visitor types the same email (a claim: a suggestion, never the history).
    from asgiref.sync import async_to_sync

    frames = async_to_sync(_chat)("チャットでも聞きたいです", token="t" * 43, email="hanako.yamada@example.jp")
    history = next(f for f in frames if f["type"] == "history")
    assert history["messages"] == []  # nothing of the email/SMS history leaks to the widget
    chat_message = wait_for(lambda: Message.objects.filter(channel="webchat").first())

    # An agent confirms both suggestions: one customer, one timeline with all three channels.
    for pending in MergeSuggestion.objects.filter(status="pending"):
        merge_suggestion_decide(suggestion=pending, confirm=True)
    phone_customer.refresh_from_db()
    live = Customer.objects.get(pk=phone_customer.merged_into_id or phone_customer.pk)
    channels = {e.item.channel for e in customer_timeline(customer_id=live.pk).entries if e.type == "message"}
    assert channels == {"sms", "email", "webchat"}

    # Replies on each channel reach the simulated phone, mailbox and widget.
    for message in (Message.objects.get(channel="sms"), email_message, chat_message):
        message.refresh_from_db()
        reply = message_send(conversation=message.conversation, agent=None, text=f"{message.channel} への返信です")
        deliver_message.apply(args=[reply.pk])  # in production mode the worker may win the claim
        assert wait_for(lambda r=reply: Message.objects.get(pk=r.pk).provider_id)
    phone_inbox = client.get("/simulator/phone/inbox/", {"number": "090-1234-5678"}).json()
    assert [m["body"] for m in phone_inbox["messages"]] == ["sms への返信です"]
    mailbox = client.get("/simulator/email/inbox/", {"address": "hanako.yamada@example.jp"}).json()
    assert [m["body"].strip() for m in mailbox["messages"]] == ["email への返信です"]
    assert mailbox["messages"][0]["subject"].startswith("Re:")
    assert RecordedProviderRequest.objects.filter(provider="email").count() == 1
    assert Message.objects.get(channel="webchat", direction="outbound").delivery_status == "delivered"


def test_email_client_page_and_validation(client):
    make_inbox("email")
    page = client.get("/simulator/email/")
    assert page.status_code == 200 and b"support@shop.example.jp" in page.content
    bad = client.post("/simulator/email/send/", {"from": "nope", "to": "support@shop.example.jp", "body": "x"},
                      content_type="application/json")
    assert bad.status_code == 400
    assert client.get("/simulator/email/inbox/", {"address": "nope"}).status_code == 400


def test_simulate_command_sends_email_through_the_smtp_listener(smtp_listener, capsys):
    from django.core.management import call_command

    make_inbox("email")
    call_command("simulate", "email", "Where is my parcel?", "--from", "Taro@Example.JP", "--subject", "Order 7",
                 "--smtp-port", str(smtp_listener.port))
    assert "sent email" in capsys.readouterr().out
    message = wait_for(lambda: Message.objects.filter(channel="email").first())
    assert message.text.strip() == "Where is my parcel?"
    assert message.customer.identities.get(kind="email").value == "taro@example.jp"
