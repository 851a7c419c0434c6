"""The surveys' words on the timeline and in the console are in the viewer's language (English or
Japanese), whatever process wrote them; the customer-facing words in the customer's."""

from datetime import time

import pytest
from django.template.loader import render_to_string
from django.utils import translation

from conversations.models import Channel, EventType, Message
from conversations.selectors import MessageTimelineSource
from profiles.timeline import Position, TimelineEntry
from surveys.answers import survey_answer, widget_answer
from surveys.delivery import survey_send
from surveys.models import SurveyFollowUp, SurveyRequest, SurveyStatus
from surveys.scheduling import survey_schedule

pytestmark = pytest.mark.django_db


@pytest.fixture
def daytime(policy):
    policy.quiet_start, policy.quiet_end = time(0, 0), time(0, 1)
    policy.save()
    return policy


def _entry_html(event: Message, language: str) -> str:
    entry = TimelineEntry(MessageTimelineSource.type, Position(event.created_at, MessageTimelineSource.rank, event.pk),
                          event)
    with translation.override(language):
        return render_to_string("console/_timeline_entry.html", {"entry": entry, "current_id": event.conversation_id})


def test_a_skip_reason_reads_in_the_agents_language(resolved_contact, policy, csat):
    conversation = resolved_contact(reply=False)
    survey_schedule(conversation_id=conversation.pk)
    event = Message.objects.get(conversation=conversation, event_type=EventType.SURVEY_SKIPPED)
    assert "Survey not sent — No agent replied in the conversation" in _entry_html(event, "en")
    assert "アンケート未送信 — 会話でエージェントが返信していない" in _entry_html(event, "ja")
    assert event.text == "No agent replied in the conversation"  # stored in English


def test_sent_and_answered_events_read_in_the_agents_language(resolved_contact, daytime, csat, client):
    conversation = resolved_contact(Channel.SMS)
    request = survey_schedule(conversation_id=conversation.pk)
    survey_send(request_id=request.pk)
    sent = Message.objects.get(conversation=conversation, event_type=EventType.SURVEY_SENT)
    assert "CSAT by SMS, question with a reply scale" in _entry_html(sent, "en")
    assert "CSAT（SMS、返信用の尺度付きの質問）" in _entry_html(sent, "ja")
    survey_answer(request_id=request.pk, score=2, comment="slow", via="reply")
    survey_answer(request_id=request.pk, score=4, via="link", allow_change=True)
    changed = Message.objects.filter(conversation=conversation, event_type=EventType.SURVEY_ANSWERED).latest("id")
    assert "CSAT 4 of 5 (changed from 2) — “slow”" in _entry_html(changed, "en")
    assert "CSAT 4／5 （2 から変更） — “slow”" in _entry_html(changed, "ja")


def test_the_follow_up_is_written_in_the_sites_language_whoever_answered(resolved_contact, daytime, csat, client):
    """A Japanese customer answering on the link page (its language active) does not make the
    agents' follow-up Japanese in an English console, nor English in a Japanese one."""
    conversation = resolved_contact(Channel.EMAIL, language="ja")
    request = survey_schedule(conversation_id=conversation.pk)
    survey_send(request_id=request.pk)
    from surveys.links import link_key

    assert client.post(f"/surveys/a/{link_key(request)}/", {"score": "1", "comment": "遅い"}).status_code == 200
    follow_up = SurveyFollowUp.objects.get(response__request=request).conversation
    assert follow_up.subject == "Survey follow-up: CSAT 1"
    note = Message.objects.get(conversation=follow_up, kind="note")
    assert note.text.startswith("Unhappy survey answer: CSAT 1 of 5. Comment: 遅い.")


def test_the_widget_thanks_in_the_customers_language(resolved_contact, daytime, csat):
    conversation = resolved_contact(Channel.WEBCHAT, language="ja")
    request = survey_schedule(conversation_id=conversation.pk)
    SurveyRequest.objects.filter(pk=request.pk).update(status=SurveyStatus.SENT, sent_mode="card",
                                                       sent_channel="webchat", sent_at=request.due_at)
    customer_id = conversation.customer_id
    assert widget_answer(customer_id=customer_id, payload={"token": "unknown", "score": 5})["message"] == \
        "このアンケートの回答受付は終了しました。"
    result = widget_answer(customer_id=customer_id, payload={"token": request.token, "score": 5})
    assert result["ok"] and result["message"] == "ご回答ありがとうございました。"


def test_a_comment_on_the_timeline_is_escaped(resolved_contact, daytime, csat):
    conversation = resolved_contact(Channel.SMS)
    request = survey_schedule(conversation_id=conversation.pk)
    survey_send(request_id=request.pk)
    survey_answer(request_id=request.pk, score=5, comment="<img src=x onerror=alert(1)>", via="reply")
    event = Message.objects.get(conversation=conversation, event_type=EventType.SURVEY_ANSWERED)
    html = _entry_html(event, "ja")
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_a_survey_request_names_its_status_in_the_admins_language(resolved_contact, policy, csat):
    request = survey_schedule(conversation_id=resolved_contact().pk)
    with translation.override("ja"):
        assert str(request) == f"CSAT #{request.conversation_id} (予約済み)"
