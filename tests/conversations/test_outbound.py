import json
from datetime import timedelta

import pytest
from django.utils import timezone
from twilio.http.response import Response

from conversations.channels.twilio_client import RecordingHttpClient
from conversations.models import Message, MessageStatusEvent, RecordedProviderRequest
from conversations.services import InboundMessage, message_receive
from conversations.services.outbound import SendRefused, delivery_status_receive, message_send
from conversations.tasks import deliver_message
from profiles.models import Consent

from ..conftest import wait_for
from ..factories import make_inbox
from .twilio_helpers import STATUS_PATH, signed_post


@pytest.fixture
def sms_conversation(db):
    inbox = make_inbox("sms")
    return message_receive(InboundMessage(inbox=inbox, sender_kind="phone", sender_address="090-1234-5678",
                                          text="hi", provider_id="SMin")).conversation


@pytest.fixture
def fault():
    yield RecordingHttpClient
    RecordingHttpClient.fault = None


def _send(conversation, agent=None, text="お問い合わせありがとうございます"):
    message = message_send(conversation=conversation, agent=agent, text=text)
    deliver_message.apply(args=[message.pk])
    message.refresh_from_db()
    return message


@pytest.mark.django_db
def test_reply_goes_through_the_twilio_sdk_with_a_status_callback(sms_conversation, agent):
    message = _send(sms_conversation, agent)
    request = RecordedProviderRequest.objects.get()
    assert request.to == "+819012345678" and request.from_address == "+815012340000"
    assert request.params["StatusCallback"].endswith("/webhooks/twilio/messaging/status/")
    assert request.uri.endswith("/Messages.json")
    assert message.provider_id == request.sid and message.delivery_status == "queued"
    sms_conversation.refresh_from_db()
    assert sms_conversation.first_response_at == message.created_at and sms_conversation.waiting_since is None


@pytest.mark.django_db(transaction=True)
def test_delivery_runs_through_the_worker_after_commit(sms_conversation, agent, celery_worker):
    message = message_send(conversation=sms_conversation, agent=agent, text="worker path")
    wait_for(lambda: Message.objects.get(pk=message.pk).provider_id)
    assert RecordedProviderRequest.objects.filter(body="worker path").count() == 1


@pytest.mark.django_db
def test_transient_error_retries_and_sends_once(sms_conversation, fault):
    calls = []

    def flaky(method, uri, data):
        calls.append(method)
        if len(calls) == 1:
            return Response(503, json.dumps({"code": 20503, "message": "Service unavailable", "status": 503}))
        return None

    fault.fault = flaky
    message = _send(sms_conversation)
    assert message.delivery_status == "queued" and message.provider_id
    assert RecordedProviderRequest.objects.count() == 1


@pytest.mark.django_db
def test_timeout_after_the_provider_sent_does_not_send_twice(sms_conversation, fault):
    sent = []

    def sent_then_timed_out(method, uri, data):
        if method == "POST" and not sent:
            fault.fault = None
            RecordingHttpClient().request(method, uri, data=data)  # Twilio got it and sent it…
            sent.append(1)
            fault.fault = sent_then_timed_out
            from twilio.base.exceptions import TwilioException

            raise TwilioException("read timed out")  # …but our connection broke before the answer
        return None

    fault.fault = sent_then_timed_out
    message = _send(sms_conversation, text="only once please")
    assert RecordedProviderRequest.objects.filter(body="only once please").count() == 1
    assert message.provider_id == RecordedProviderRequest.objects.get().sid


@pytest.mark.django_db
@pytest.mark.parametrize("code, consent_after", [(21211, False), (21610, True)])
def test_permanent_error_marks_failed_with_the_reason(sms_conversation, fault, code, consent_after):
    fault.fault = lambda method, uri, data: Response(
        400, json.dumps({"code": code, "message": "Refused by provider", "status": 400}))
    message = _send(sms_conversation)
    assert message.delivery_status == "failed"
    assert message.delivery_error_code == str(code)
    assert "Refused by provider" in message.delivery_error
    assert Consent.objects.filter(status="opted_out").exists() is consent_after


@pytest.mark.django_db
def test_body_over_the_limit_is_refused_before_storing(sms_conversation):
    with pytest.raises(SendRefused, match="1600"):
        message_send(conversation=sms_conversation, agent=None, text="x" * 1601)
    assert Message.objects.filter(direction="outbound").count() == 0


@pytest.mark.django_db
def test_whatsapp_free_form_only_inside_24_hours(db):
    inbox = make_inbox("whatsapp", settings={"whatsapp_templates": [
        {"name": "follow_up", "content_sid": "HX" + "0" * 32, "language": "ja", "body": "{{1}}様、お問い合わせの件でご連絡しました。"}]})
    old = timezone.now() - timedelta(hours=25)
    conversation = message_receive(InboundMessage(inbox=inbox, sender_kind="whatsapp", sender_address="whatsapp:+819012345678",
                                                  text="hi", provider_id="SMwa", received_at=old)).conversation
    with pytest.raises(SendRefused, match="24 hours"):
        message_send(conversation=conversation, agent=None, text="free form")
    with pytest.raises(SendRefused, match="not an approved"):
        message_send(conversation=conversation, agent=None, text="", template={"content_sid": "HXforged"})
    template = {"content_sid": "HX" + "0" * 32, "variables": {"1": "Hanako"}}
    message = message_send(conversation=conversation, agent=None, text="", template=template)
    deliver_message.apply(args=[message.pk])
    request = RecordedProviderRequest.objects.get()
    assert request.to == "whatsapp:+819012345678" and request.params["ContentSid"] == template["content_sid"]
    message_receive(InboundMessage(inbox=inbox, sender_kind="whatsapp", sender_address="whatsapp:+819012345678",
                                   text="thanks", provider_id="SMwa2"))
    assert message_send(conversation=conversation, agent=None, text="now free form is fine")


@pytest.mark.django_db
def test_status_callbacks_rank_keep_every_event_and_dedupe(client, sms_conversation):
    message = _send(sms_conversation)
    sid = message.provider_id
    for status in ["delivered", "sent", "sent", "queued"]:
        response = signed_post(client, STATUS_PATH, {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC1"})
        assert response.status_code == 204
    message.refresh_from_db()
    assert message.delivery_status == "delivered"
    assert sorted(MessageStatusEvent.objects.filter(message=message).values_list("status", flat=True)) == [
        "delivered", "queued", "sent"]
    signed_post(client, STATUS_PATH, {"MessageSid": sid, "MessageStatus": "read"})
    message.refresh_from_db()
    assert message.delivery_status == "read"


@pytest.mark.django_db
def test_unsigned_status_callback_is_403(client):
    response = client.post(STATUS_PATH, {"MessageSid": "SMx", "MessageStatus": "delivered"})
    assert response.status_code == 403
    assert MessageStatusEvent.objects.count() == 0


@pytest.mark.django_db
def test_failure_callback_records_error_and_21610_opts_out(client, sms_conversation):
    message = _send(sms_conversation)
    signed_post(client, STATUS_PATH, {"MessageSid": message.provider_id, "MessageStatus": "undelivered", "ErrorCode": "21610"})
    message.refresh_from_db()
    assert message.delivery_status == "undelivered" and message.delivery_error_code == "21610"
    assert Consent.objects.get().status == "opted_out"


@pytest.mark.django_db
def test_callback_before_the_message_is_recorded_is_kept_and_reconciled(sms_conversation, fault):
    early_sid = "SM" + "9" * 32

    def answer_with_known_sid(method, uri, data):
        if method == "POST":
            # The status callback raced ahead of our own write of the sid.
            delivery_status_receive(provider_id=early_sid, status="delivered")
            return Response(201, json.dumps({"sid": early_sid, "status": "queued", "to": data["To"], "from": data["From"]}))
        return None

    fault.fault = answer_with_known_sid
    message = _send(sms_conversation)
    assert message.provider_id == early_sid
    assert message.delivery_status == "delivered"
    assert MessageStatusEvent.objects.get().message_id == message.pk


@pytest.mark.django_db
def test_a_second_execution_of_the_same_delivery_never_sends_again(sms_conversation):
    from conversations.models import Message as MessageModel
    from django.utils import timezone as tz

    message = message_send(conversation=sms_conversation, agent=None, text="claimed")
    # Another worker is in the middle of sending it (claimed a moment ago, no provider id yet).
    MessageModel.objects.filter(pk=message.pk).update(delivery_claimed_at=tz.now())
    assert deliver_message.apply(args=[message.pk]).get() == "claimed elsewhere"
    assert RecordedProviderRequest.objects.count() == 0
    # A claim from a worker that died long ago is taken over.
    MessageModel.objects.filter(pk=message.pk).update(delivery_claimed_at=tz.now() - timedelta(minutes=6))
    assert deliver_message.apply(args=[message.pk]).get() == "sent"
    assert RecordedProviderRequest.objects.count() == 1
