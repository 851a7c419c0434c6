"""Sending a due survey on each channel through its real path (the Twilio SDK with the recording
client, the email backend, the widget socket), and what is skipped instead, with the reason."""

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from conversations.models import Channel, ConversationStatus, EventType, Inbox, Message, RecordedProviderRequest
from conversations.tasks import deliver_message
from profiles.models import ConsentStatus
from profiles.services import consent_record
from surveys.delivery import survey_send
from surveys.models import SkipReason, SurveyRequest, SurveyStatus
from surveys.scheduling import survey_schedule

from ..factories import make_conversation, make_inbox

pytestmark = pytest.mark.django_db


def _due(conversation):
    """Schedule and make it due now (daytime in Tokyo is not guaranteed while the suite runs)."""
    request = survey_schedule(conversation_id=conversation.pk)
    assert request.status == SurveyStatus.SCHEDULED
    return request


def _send(request, *, now=None):
    now = now or timezone.now()
    SurveyRequest.objects.filter(pk=request.pk).update(due_at=now, claimed_at=now)
    return survey_send(request_id=request.pk, now=now)


def _deliver_survey_message(conversation):
    message = Message.objects.filter(conversation=conversation, direction="outbound", author_agent__isnull=True).get()
    deliver_message.apply(args=[message.pk])
    return message


@pytest.fixture
def daytime(policy):
    """Quiet hours that never apply, so a test's send is not moved to the morning."""
    from datetime import time

    policy.quiet_start, policy.quiet_end = time(0, 0), time(0, 1)
    policy.save()
    return policy


def test_sms_question_with_the_scale_through_twilio(resolved_contact, daytime, csat):
    conversation = resolved_contact(Channel.SMS)
    request = _due(conversation)
    assert _send(request) == SurveyStatus.SENT
    _deliver_survey_message(conversation)
    recorded = RecordedProviderRequest.objects.get(provider="twilio")
    assert recorded.to == "+819012345678"
    assert "How satisfied were you with our help?" in recorded.body
    assert "Reply with a number from 1 (Very dissatisfied) to 5 (Very satisfied)." in recorded.body
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.RESOLVED  # a survey is not a reply: nothing reopens
    assert Message.objects.filter(conversation=conversation, event_type=EventType.SURVEY_SENT).count() == 1
    # A second run of the task (redelivered, another worker) sends nothing more.
    assert survey_send(request_id=request.pk) == SurveyStatus.SENT
    assert Message.objects.filter(conversation=conversation, direction="outbound", author_agent__isnull=True).count() == 1


def test_japanese_customer_gets_the_japanese_question(resolved_contact, daytime, csat):
    conversation = resolved_contact(Channel.SMS, language="ja")
    _send(_due(conversation))
    _deliver_survey_message(conversation)
    body = RecordedProviderRequest.objects.get(provider="twilio").body
    assert "今回の対応にどのくらい満足されましたか？" in body and "1（大変不満）〜5（大変満足）" in body


def test_sms_link_mode_sends_a_link_that_works_end_to_end(resolved_contact, daytime, csat, client):
    inbox = make_inbox(Channel.SMS, address="+815099990000")
    Inbox.objects.filter(pk=inbox.pk).update(settings={"survey_mode": "link"})
    inbox.refresh_from_db()
    conversation = resolved_contact(Channel.SMS, inbox=inbox)
    request = _due(conversation)
    _send(request)
    _deliver_survey_message(conversation)
    body = RecordedProviderRequest.objects.get(provider="twilio").body
    assert "Reply with" not in body
    url = re.search(r"https?://\S+", body).group(0)
    path = url.split("://", 1)[1].split("/", 1)[1]
    page = client.get("/" + path)
    assert page.status_code == 200 and "How satisfied were you with our help?" in page.content.decode()
    assert not SurveyRequest.objects.get(pk=request.pk).status == SurveyStatus.ANSWERED
    done = client.post("/" + path, {"score": "4", "comment": "quick & kind"})
    assert done.status_code == 200
    request.refresh_from_db()
    assert request.status == SurveyStatus.ANSWERED and request.response.score == 4
    assert request.response.comment == "quick & kind" and request.response.via == "link"


def test_whatsapp_outside_24_hours_without_a_template_is_skipped(resolved_contact, daytime, csat):
    conversation = resolved_contact(Channel.WHATSAPP)
    Message.objects.filter(conversation=conversation).update(created_at=timezone.now() - timedelta(days=2))
    request = _due(conversation)
    assert _send(request) == SurveyStatus.SKIPPED
    request.refresh_from_db()
    assert request.skip_reason == SkipReason.WHATSAPP_WINDOW
    assert Message.objects.filter(conversation=conversation, event_type=EventType.SURVEY_SKIPPED).exists()


def test_whatsapp_outside_24_hours_uses_the_approved_survey_template(resolved_contact, daytime, csat):
    inbox = make_inbox(Channel.WHATSAPP)
    Inbox.objects.filter(pk=inbox.pk).update(settings={"whatsapp_templates": [
        {"name": "survey_csat", "content_sid": "HX" + "1" * 32, "purpose": "survey"}]})
    inbox.refresh_from_db()
    conversation = resolved_contact(Channel.WHATSAPP, inbox=inbox)
    Message.objects.filter(conversation=conversation).update(created_at=timezone.now() - timedelta(days=2))
    request = _due(conversation)
    assert _send(request) == SurveyStatus.SENT
    _deliver_survey_message(conversation)
    recorded = RecordedProviderRequest.objects.get(provider="twilio")
    assert recorded.params["ContentSid"] == "HX" + "1" * 32 and recorded.to == "whatsapp:+819012345678"


def test_opted_out_customer_is_not_surveyed(resolved_contact, daytime, csat):
    conversation = resolved_contact(Channel.SMS)
    consent_record(customer=conversation.customer, channel="sms", address="+819012345678",
                   status=ConsentStatus.OPTED_OUT, source="STOP")
    request = _due(conversation)
    assert _send(request) == SurveyStatus.SKIPPED
    request.refresh_from_db()
    assert request.skip_reason == SkipReason.OPTED_OUT
    assert not RecordedProviderRequest.objects.exists()


def test_another_open_conversation_holds_the_survey_back(resolved_contact, daytime, csat):
    conversation = resolved_contact(Channel.SMS)
    make_conversation(conversation.customer, make_inbox(Channel.EMAIL))  # open, on another channel
    request = _due(conversation)
    assert _send(request) == SurveyStatus.SKIPPED
    request.refresh_from_db()
    assert request.skip_reason == SkipReason.ANOTHER_OPEN


def test_quiet_hours_at_send_time_move_it_to_the_morning(resolved_contact, policy, csat):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    conversation = resolved_contact(Channel.SMS)
    request = _due(conversation)
    night = datetime(2026, 3, 2, 23, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert _send(request, now=night) == SurveyStatus.SCHEDULED
    request.refresh_from_db()
    assert request.due_at == datetime(2026, 3, 3, 9, 0, tzinfo=ZoneInfo("Asia/Tokyo")) and request.claimed_at is None
    assert not Message.objects.filter(conversation=conversation, direction="outbound", author_agent__isnull=True).exists()


def test_email_one_click_links_and_the_mail_scanner_get(resolved_contact, daytime, csat, client):
    conversation = resolved_contact(Channel.EMAIL)
    request = _due(conversation)
    _send(request)
    _deliver_survey_message(conversation)
    [sent] = mail.outbox
    assert sent.to == ["hanako@example.jp"]
    links = dict(re.findall(r"^(\d)\b.*?: (https?://\S+)$", sent.body, re.MULTILINE))
    assert set(links) == {"1", "2", "3", "4", "5"}
    two = "/" + links["2"].split("://", 1)[1].split("/", 1)[1]
    # A scanner (or the customer) following the link: a page, nothing recorded.
    for _ in range(3):
        page = client.get(two)
        assert page.status_code == 200
        assert 'value="2" checked' in page.content.decode()
    request.refresh_from_db()
    assert request.status == SurveyStatus.SENT and not hasattr(request, "response") or \
        not SurveyRequest.objects.get(pk=request.pk).status == SurveyStatus.ANSWERED
    # Confirmed: recorded. Then changed through the page: replaced, and said so.
    assert client.post(two, {"score": "2", "comment": "slow"}).status_code == 200
    changed = client.post(two, {"score": "4"})
    assert "changed from 2 to 4" in changed.content.decode()
    request.refresh_from_db()
    assert request.response.score == 4 and request.response.previous_score == 2
    assert request.response.changed_at is not None and request.response.comment == "slow"


def test_a_forged_or_altered_link_is_not_found(resolved_contact, daytime, csat, client):
    conversation = resolved_contact(Channel.EMAIL)
    request = _due(conversation)
    from surveys.links import link_key

    key = link_key(request)
    assert client.get(f"/surveys/a/{key}x/").status_code == 404
    SurveyRequest.objects.filter(pk=request.pk).update(token="another-token")
    assert client.get(f"/surveys/a/{key}/").status_code == 404


def test_link_answers_close_with_the_answer_window(resolved_contact, daytime, csat, client):
    conversation = resolved_contact(Channel.EMAIL)
    request = _due(conversation)
    _send(request, now=timezone.now() - timedelta(hours=49))
    from surveys.links import link_key

    response = client.post(f"/surveys/a/{link_key(request)}/", {"score": "5"})
    assert response.status_code == 409
    request.refresh_from_db()
    assert request.status == SurveyStatus.EXPIRED


def test_voice_contact_gets_the_sms_survey(resolved_contact, daytime, csat):
    make_inbox(Channel.SMS)
    conversation = resolved_contact(Channel.VOICE)
    request = _due(conversation)
    assert _send(request) == SurveyStatus.SENT
    request.refresh_from_db()
    assert request.sent_channel == Channel.SMS and request.sent_conversation.channel == Channel.SMS
    _deliver_survey_message(request.sent_conversation)
    assert RecordedProviderRequest.objects.get(provider="twilio").to == "+819012345678"


def test_the_link_page_speaks_the_customers_language(resolved_contact, daytime, csat, client):
    conversation = resolved_contact(Channel.EMAIL, language="ja")
    request = _due(conversation)
    _send(request)
    from surveys.links import link_key

    page = client.get(f"/surveys/a/{link_key(request)}/?score=5").content.decode()
    assert '<html lang="ja">' in page and "今回の対応にどのくらい満足されましたか？" in page
    # The scale's meaning is read with the score group by a screen reader.
    assert '<fieldset aria-describedby="survey-scale">' in page and 'id="survey-scale">1 = 大変不満 · 5 = 大変満足<' in page
    assert "回答を送信する" in page and "理由をお聞かせください。" in page
    done = client.post(f"/surveys/a/{link_key(request)}/", {"score": "5"}).content.decode()
    assert "ありがとうございました。回答 5 を受け付けました。" in done
