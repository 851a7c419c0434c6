"""The inbound messaging webhook (verify, store the raw event, answer) and what processing the
event does (identity, consent keywords, media, the common ingest). Processing runs eagerly here
(``post_inbound``); the worker path, retries and recovery are in test_twilio_inbound_processing."""

import pytest
from django.test import override_settings

from conversations.channels.twilio_messaging import adapter as twilio_messaging
from conversations.models import Attachment, Channel, Conversation, Message, RecordedProviderRequest, TwilioInboundEvent
from conversations.channels.twilio_messaging.tasks import process_twilio_inbound
from profiles.models import Consent, Customer, Identity

from .twilio_helpers import MESSAGING_PATH, post_inbound, process_inbound_events, signed_post, sms_params

pytestmark = pytest.mark.django_db

SID = "SM" + "a" * 32
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'


@pytest.fixture(autouse=True)
def _our_numbers(db):
    from .twilio_helpers import configure_our_numbers

    configure_our_numbers()


@pytest.fixture
def enqueued(monkeypatch):
    """Tasks queued by ``process_twilio_inbound.apply_async``, instead of reaching a broker."""
    sent = []
    monkeypatch.setattr(process_twilio_inbound, "apply_async", lambda args=(), kwargs=None, **_: sent.append(args))
    return sent


def test_signed_sms_is_stored_raw_queued_after_commit_and_answered_with_empty_twiml(
        client, enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = signed_post(client, MESSAGING_PATH, sms_params(SID))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert response.content.decode().replace("\n", "") == EMPTY_TWIML
    event = TwilioInboundEvent.objects.get()
    assert (event.message_sid, event.sender, event.recipient) == (SID, "+819012345678", "+815012340000")
    assert event.payload == sms_params(SID)  # every posted parameter, known or not
    assert event.processed_at is None and event.attempts == 0
    assert Message.objects.count() == 0  # the ingest is the task's work, not the webhook's
    assert enqueued == []  # queued only once the event is committed
    for callback in callbacks:
        callback()
    assert enqueued == [(event.pk,)]


def test_processed_event_is_the_message_on_the_customers_timeline(client):
    response = post_inbound(client, sms_params(SID))
    assert response.status_code == 200
    event = TwilioInboundEvent.objects.get()
    assert event.processed_at is not None and event.attempts == 1 and event.last_error == ""
    message = Message.objects.get()
    assert message.created_at == event.received_at  # when Twilio delivered it, not when it was processed
    assert (message.text, message.channel, message.provider_id) == ("こんにちは", "sms", SID)
    assert message.customer.identities.get().value == "+819012345678"
    assert message.metadata["twilio"]["NumSegments"] == "1"  # unknown/extra parameters kept
    from profiles.timeline import customer_timeline

    timeline = customer_timeline(customer_id=message.customer_id).entries
    assert [(e.type, e.item.pk) for e in timeline] == [("message", message.pk)]


@pytest.mark.parametrize("signature", ["", "bm90IGEgc2lnbmF0dXJl", None])
def test_bad_or_missing_signature_is_403_and_nothing_stored(client, signature, django_capture_on_commit_callbacks):
    params = sms_params(SID)
    if signature is None:
        # Signed for other parameters: a tampered body.
        from twilio.request_validator import RequestValidator

        from conversations.channels.twilio_client import auth_token

        signature = RequestValidator(auth_token()).compute_signature("http://testserver" + MESSAGING_PATH,
                                                                     {**params, "Body": "x"})
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = signed_post(client, MESSAGING_PATH, params, signature=signature)
    assert response.status_code == 403
    assert TwilioInboundEvent.objects.count() == 0 and callbacks == []  # nothing stored or enqueued
    assert Message.objects.count() == 0 and Customer.objects.count() == 0


@override_settings(CC_PUBLIC_URL="https://cc.example.com")
def test_signature_behind_a_tls_proxy_uses_the_public_url(client):
    ok = signed_post(client, MESSAGING_PATH, sms_params(SID), url_base="https://cc.example.com")
    assert ok.status_code == 200
    wrong = signed_post(client, MESSAGING_PATH, sms_params("SM" + "b" * 32))  # signed for the internal URL
    assert wrong.status_code == 403


def test_replayed_message_sid_is_one_event_one_task_and_one_message_and_both_are_2xx(
        client, enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = signed_post(client, MESSAGING_PATH, sms_params(SID))
        replay = signed_post(client, MESSAGING_PATH, sms_params(SID))
    assert (first.status_code, replay.status_code) == (200, 200)
    assert replay.content.decode().replace("\n", "") == EMPTY_TWIML
    assert TwilioInboundEvent.objects.count() == 1 and len(enqueued) == 1
    process_inbound_events()
    # Twilio retrying after we processed it: still a no-op.
    assert signed_post(client, MESSAGING_PATH, sms_params(SID)).status_code == 200
    process_inbound_events()
    assert TwilioInboundEvent.objects.count() == 1
    assert Message.objects.filter(kind="message").count() == 1


def test_webhook_without_a_message_sid_is_400_and_stores_nothing(client):
    params = sms_params(SID)
    del params["MessageSid"], params["SmsSid"]
    response = signed_post(client, MESSAGING_PATH, params)
    assert response.status_code == 400 and b"MessageSid" in response.content
    assert TwilioInboundEvent.objects.count() == 0


def test_a_sender_that_is_no_phone_number_is_still_stored_with_its_raw_address(client):
    """The provider delivered it: the message reaches an agent whatever the sender looks like
    (issue 21 §10); the customer's identity is the address as it came."""
    response = post_inbound(client, sms_params(SID, sender="ShopAlerts"))
    assert response.status_code == 200
    event = TwilioInboundEvent.objects.get()
    assert event.processed_at is not None and event.failed_at is None
    message = Message.objects.get()
    assert [(i.kind, i.value) for i in message.customer.identities.all()] == [("phone", "ShopAlerts")]
    assert message.conversation.status == "open"


def test_whatsapp_sender_becomes_a_whatsapp_identity_of_the_same_customer(client):
    post_inbound(client, sms_params(SID, sender="+819012345678"))
    post_inbound(client, sms_params("SM" + "c" * 32, sender="whatsapp:+819012345678",
                                    to="whatsapp:+815012340001", ProfileName="Hanako"))
    assert Customer.objects.count() == 1
    assert set(Identity.objects.values_list("kind", flat=True)) == {"phone", "whatsapp"}
    whatsapp = Message.objects.get(provider_id="SM" + "c" * 32)
    assert whatsapp.channel == Channel.WHATSAPP and whatsapp.inbox.kind == "whatsapp"
    assert Conversation.objects.count() == 2  # one per inbox, both on the one customer


@pytest.mark.parametrize("body", ["STOP", "stop", " Unsubscribe ", "optout", "REVOKE"])
def test_opt_out_keyword_records_consent_and_refuses_later_sends(client, body):
    from conversations.services.outbound import SendRefused, message_send

    post_inbound(client, sms_params(SID, body=body))
    consent = Consent.objects.get()
    assert (consent.status, consent.address, consent.sender, consent.channel) == (
        "opted_out", "+819012345678", "+815012340000", "sms")
    conversation = Conversation.objects.get()
    with pytest.raises(SendRefused) as excinfo:
        message_send(conversation=conversation, agent=None, text="Hello again")
    assert "opted out" in str(excinfo.value)
    assert RecordedProviderRequest.objects.count() == 0
    assert Message.objects.filter(direction="outbound").count() == 0

    post_inbound(client, sms_params("SM" + "d" * 32, body="START"))
    assert Consent.objects.get().status == "opted_in"


def test_opt_out_type_from_twilio_records_consent_and_answers_empty(client):
    response = post_inbound(client, sms_params(SID, body="やめて", OptOutType="STOP"))
    assert "<Message>" not in response.content.decode()
    consent = Consent.objects.get()
    assert consent.status == "opted_out" and "OptOutType" in consent.source


@pytest.mark.parametrize("body", ["停止", "配信停止", "配信停止。"])
def test_japanese_extra_keywords_opt_out_and_get_a_japanese_confirmation(client, body):
    response = post_inbound(client, sms_params(SID, body=body))
    assert "配信を停止しました" in response.content.decode()
    assert Consent.objects.get().status == "opted_out"
    # A Twilio retry of the same message is not confirmed twice.
    assert "<Message>" not in post_inbound(client, sms_params(SID, body=body)).content.decode()


def test_an_inboxs_own_opt_out_keyword_is_confirmed_by_the_webhook(client):
    from conversations.models import Inbox

    Inbox.objects.filter(kind="sms", address="+815012340000").update(settings={"opt_out_keywords": ["やめる"]})
    response = post_inbound(client, sms_params(SID, body="やめる"))
    assert "配信を停止しました" in response.content.decode()
    assert Consent.objects.get().status == "opted_out"
    ordinary = post_inbound(client, sms_params("SM" + "b" * 32, body="やめるかもしれません"))
    assert "<Message>" not in ordinary.content.decode()


def test_help_and_ordinary_text_change_no_consent(client):
    post_inbound(client, sms_params(SID, body="HELP"))
    post_inbound(client, sms_params("SM" + "e" * 32, body="please stop by the store"))
    assert Consent.objects.count() == 0


def test_inbox_can_configure_its_own_keywords():
    from conversations.models import Inbox

    inbox = Inbox(kind="sms", address="+815000000000", settings={"opt_out_keywords": ["やめる"]})
    assert twilio_messaging.classify_keyword("やめる", inbox) == "opt_out"
    assert twilio_messaging.classify_keyword("停止", inbox) == ""


def test_mms_media_becomes_pending_attachments_and_private_urls_are_refused(client, django_capture_on_commit_callbacks):
    params = sms_params("MM" + "f" * 32, NumMedia="2",
                        MediaUrl0="https://169.254.169.254/latest/meta-data/", MediaContentType0="image/jpeg",
                        MediaUrl1="https://evil.example/x.png", MediaContentType1="image/png")
    with django_capture_on_commit_callbacks(execute=False):
        post_inbound(client, params)
    attachments = list(Attachment.objects.order_by("id"))
    assert [a.state for a in attachments] == ["pending", "pending"]
    from conversations.channels.twilio_messaging.tasks import fetch_twilio_media

    assert fetch_twilio_media.apply(args=[attachments[0].message_id]).get() == 0
    states = {a.source_url: (a.state, a.state_reason) for a in Attachment.objects.all()}
    assert states["https://169.254.169.254/latest/meta-data/"][0] == "unavailable"
    assert "host not allowed" in states["https://evil.example/x.png"][1]
    assert Message.objects.filter(kind="message").count() == 1  # the message itself is kept


def test_a_japanese_number_says_nothing_about_the_customers_language(client):
    """SMS and WhatsApp carry no language, and a +81 number is no proof of Japanese (visitors,
    residents, roaming): the customer's language stays unknown rather than guessed."""
    post_inbound(client, sms_params(SID))
    assert Message.objects.get().customer.language == ""
