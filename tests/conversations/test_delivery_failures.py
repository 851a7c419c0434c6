"""A delivery that cannot succeed ends failed with the reason, on every channel, and the agent can
retry it from the console; nothing stays "pending" forever."""

import json
import smtplib

import pytest
from django.test import override_settings
from django.urls import reverse
from twilio.http.response import Response

from conversations import recovery
from conversations.channels.twilio_client import RecordingHttpClient
from conversations.models import Channel, Conversation, DeliveryStatus, Message, RecordedProviderRequest
from conversations.channels.webchat import ingest as webchat_ingest
from conversations.channels.webchat import visitors as webchat_visitors
from conversations.services import InboundMessage, message_receive
from conversations.services.outbound import message_send
from conversations.tasks import MAX_DELIVERY_ATTEMPTS, deliver_message

from ..factories import make_inbox

pytestmark = pytest.mark.django_db
RECORDING = "conversations.channels.email.backend.RecordingEmailBackend"


@pytest.fixture
def fault():
    yield RecordingHttpClient
    RecordingHttpClient.fault = None


def conversation_on(channel: str) -> Conversation:
    if channel == Channel.WEBCHAT:
        visitor = webchat_visitors.visitor_hello(inbox=make_inbox("webchat"), token="t" * 40, ip="203.0.113.5")
        webchat_ingest.visitor_message_receive(visitor=visitor, client_id="c-00000001", text="Is anyone there?")
        return Conversation.objects.get()
    addresses = {Channel.SMS: ("phone", "090-1234-5678"), Channel.WHATSAPP: ("whatsapp", "+819012345678"),
                 Channel.EMAIL: ("email", "hanako@example.jp")}
    kind, address = addresses[channel]
    return message_receive(InboundMessage(inbox=make_inbox(channel), sender_kind=kind, sender_address=address,
                                          text="hi", provider_id=f"in-{channel}", subject="Order")).conversation


def send_and_deliver(conversation, agent=None, text="Your parcel left today.") -> Message:
    message = message_send(conversation=conversation, agent=agent, text=text)
    deliver_message.apply(args=[message.pk])
    message.refresh_from_db()
    return message


class BrokenBackend:
    error: Exception

    def __init__(self, **kwargs):
        pass

    def send_messages(self, messages):
        raise self.error


# --- permanent errors, per channel ---------------------------------------------------------------------------

@pytest.mark.parametrize("channel, code", [(Channel.SMS, 21211), (Channel.WHATSAPP, 21610)])
def test_twilio_4xx_ends_failed_with_the_reason(fault, channel, code):
    fault.fault = lambda method, uri, data: Response(
        400, json.dumps({"code": code, "message": "Invalid 'To' Phone Number", "status": 400}))
    message = send_and_deliver(conversation_on(channel))
    assert message.delivery_status == DeliveryStatus.FAILED
    assert message.delivery_error_code == str(code) and "Invalid 'To' Phone Number" in message.delivery_error


@pytest.mark.parametrize("channel", [Channel.SMS, Channel.WHATSAPP])
def test_an_unexpected_error_from_the_twilio_sdk_ends_failed_not_pending(monkeypatch, channel):
    def broken(*args, **kwargs):
        raise ValueError("Unable to create record: bad media URL")

    monkeypatch.setattr("twilio.rest.api.v2010.account.message.MessageList.create", broken)
    message = send_and_deliver(conversation_on(channel))
    assert message.delivery_status == DeliveryStatus.FAILED
    assert "bad media URL" in message.delivery_error


def test_email_recipient_refused_ends_failed_with_the_reason(monkeypatch):
    BrokenBackend.error = smtplib.SMTPRecipientsRefused({"hanako@example.jp": (550, b"5.1.1 no such user")})
    monkeypatch.setattr("django.core.mail.get_connection", lambda **kw: BrokenBackend())
    message = send_and_deliver(conversation_on(Channel.EMAIL))
    assert message.delivery_status == DeliveryStatus.FAILED
    assert message.delivery_error_code == "550" and "no such user" in message.delivery_error


def test_an_email_that_cannot_be_built_ends_failed_with_the_reason(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise UnicodeEncodeError("ascii", "x", 0, 1, "the mailer cannot encode this header")

    monkeypatch.setattr("django.core.mail.EmailMultiAlternatives.message", refuse)
    message = send_and_deliver(conversation_on(Channel.EMAIL))
    assert message.delivery_status == DeliveryStatus.FAILED
    assert message.delivery_error_code == "bad_email" and "could not be built" in message.delivery_error


def test_an_unexpected_error_in_the_web_chat_adapter_ends_failed(monkeypatch):
    def broken(message, *, agent_name):
        raise KeyError("widget settings")

    conversation = conversation_on(Channel.WEBCHAT)
    monkeypatch.setattr("conversations.channels.webchat.events.widget_message_frame", broken)
    message = send_and_deliver(conversation)
    assert message.delivery_status == DeliveryStatus.FAILED
    assert "KeyError" in message.delivery_error and "widget settings" in message.delivery_error


# --- transient errors keep bounded retries --------------------------------------------------------------------

@override_settings(EMAIL_BACKEND=RECORDING)
def test_transient_errors_retry_then_end_failed_after_the_last(monkeypatch):
    BrokenBackend.error = smtplib.SMTPServerDisconnected("connection dropped")
    monkeypatch.setattr("django.core.mail.get_connection", lambda **kw: BrokenBackend())
    message = send_and_deliver(conversation_on(Channel.EMAIL))
    assert message.delivery_status == DeliveryStatus.FAILED
    assert message.delivery_error.startswith("Gave up after retries") and "connection dropped" in message.delivery_error
    assert message.metadata["delivery_attempts"] == deliver_message.max_retries + 1


def test_a_send_the_tick_keeps_requeueing_ends_failed_after_the_attempt_limit():
    """A worker that dies during the send (no exception reaches us) is retried by the tick; after
    MAX_DELIVERY_ATTEMPTS claims it ends failed instead of pending for ever."""
    message = message_send(conversation=conversation_on(Channel.SMS), agent=None, text="hello")
    Message.objects.filter(pk=message.pk).update(metadata={**message.metadata,
                                                           "delivery_attempts": MAX_DELIVERY_ATTEMPTS})
    assert deliver_message.apply(args=[message.pk]).get() == "failed"
    message.refresh_from_db()
    assert message.delivery_status == DeliveryStatus.FAILED and "attempts" in message.delivery_error
    assert not RecordedProviderRequest.objects.exists()
    assert recovery.requeue_stuck_outbound() == 0


# --- the agent's Retry ------------------------------------------------------------------------------------------

def retry(client, message, json=True):
    headers = {"HTTP_ACCEPT": "application/json"} if json else {}
    return client.post(reverse("console:message-retry", args=[message.pk]), **headers)


@pytest.fixture
def failed_sms(fault, agent):
    conversation = conversation_on(Channel.SMS)
    Conversation.objects.filter(pk=conversation.pk).update(assignee=agent)
    fault.fault = lambda method, uri, data: Response(503, json.dumps({"code": 20503, "message": "down", "status": 503}))
    message = message_send(conversation=conversation, agent=agent, text="Sorry for the wait")
    fault.fault = lambda method, uri, data: Response(400, json.dumps({"code": 21211, "message": "bad To", "status": 400}))
    deliver_message.apply(args=[message.pk])
    fault.fault = None
    message.refresh_from_db()
    assert message.delivery_status == DeliveryStatus.FAILED
    return message


def test_the_console_shows_a_failed_reply_with_its_reason_and_a_retry_button(client, agent, failed_sms):
    client.force_login(agent.user)
    page = client.get(reverse("console:conversation", args=[failed_sms.conversation_id])).content.decode()
    assert "bad To" in page
    assert reverse("console:message-retry", args=[failed_sms.pk]) in page


def test_retry_queues_the_delivery_again_and_it_goes(client, agent, failed_sms, django_capture_on_commit_callbacks):
    client.force_login(agent.user)
    with django_capture_on_commit_callbacks() as callbacks:  # the delivery is queued after commit
        response = retry(client, failed_sms)
    assert response.status_code == 200 and response.json()["delivery_status"] == "pending"
    assert callbacks
    failed_sms.refresh_from_db()
    assert failed_sms.delivery_status == DeliveryStatus.PENDING and "delivery_attempts" not in failed_sms.metadata
    deliver_message.apply(args=[failed_sms.pk])  # what the worker does with it
    failed_sms.refresh_from_db()
    assert failed_sms.provider_id and failed_sms.delivery_status == DeliveryStatus.QUEUED
    assert failed_sms.delivery_error == "" and failed_sms.metadata["retries"][0]["code"] == "21211"
    assert RecordedProviderRequest.objects.filter(body="Sorry for the wait").count() == 1


def test_retry_is_404_for_an_agent_without_access_and_for_a_stranger(client, other_agent, stranger, failed_sms):
    for user in (other_agent.user, stranger):
        client.force_login(user)
        for as_json in (True, False):
            assert retry(client, failed_sms, json=as_json).status_code == 404
    failed_sms.refresh_from_db()
    assert failed_sms.delivery_status == DeliveryStatus.FAILED


def test_retry_is_refused_for_a_message_the_provider_accepted(client, agent, failed_sms):
    Message.objects.filter(pk=failed_sms.pk).update(delivery_status=DeliveryStatus.SENT, provider_id="SMaccepted")
    client.force_login(agent.user)
    response = retry(client, failed_sms)
    assert response.status_code == 409 and "error" in response.json()
    assert Message.objects.get(pk=failed_sms.pk).delivery_status == DeliveryStatus.SENT


def test_retry_after_the_customer_opted_out_is_refused_with_the_reason(client, agent, failed_sms):
    from profiles.models import ConsentStatus, Customer
    from profiles.services import consent_record

    consent_record(customer=Customer.objects.get(pk=failed_sms.customer_id), channel=Channel.SMS,
                   address=failed_sms.metadata["to"], sender=failed_sms.metadata["from"],
                   status=ConsentStatus.OPTED_OUT, source="STOP", evidence="STOP")
    client.force_login(agent.user)
    response = retry(client, failed_sms)
    assert response.status_code == 400 and "Not sent" in response.json()["error"]
    assert Message.objects.get(pk=failed_sms.pk).delivery_status == DeliveryStatus.FAILED


def test_asking_twilio_whether_it_was_sent_failing_is_retried_not_failed(fault):
    from twilio.base.exceptions import TwilioException

    calls = []

    def flaky(method, uri, data):
        calls.append(method)
        if len(calls) <= 2:  # the send times out, then the check whether it went out fails too
            raise TwilioException("read timed out")
        return None

    fault.fault = flaky
    message = send_and_deliver(conversation_on(Channel.SMS), text="asked twice")
    assert calls[:3] == ["POST", "GET", "GET"]
    assert message.delivery_status == DeliveryStatus.QUEUED and message.provider_id
    assert RecordedProviderRequest.objects.filter(body="asked twice").count() == 1
