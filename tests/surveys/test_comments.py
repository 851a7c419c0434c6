"""The "why?" question after a score given by SMS or WhatsApp reply: sent once after the answer,
in the customer's language, and the reply to it kept as the survey's comment (on the timeline, in
the surveyed conversation, which stays resolved), idempotent under Twilio's retries."""

from datetime import time, timedelta
from unittest import mock

import pytest
from django.utils import timezone

from conversations.console.selectors import customer_panel
from conversations.models import (
    Channel,
    Conversation,
    ConversationStatus,
    EventType,
    Inbox,
    Message,
    MessageKind,
    RecordedProviderRequest,
)
from conversations.services import InboundMessage, message_receive
from conversations.tasks import deliver_message
from surveys.comments import survey_ask_why, surveys_why_lost
from surveys.delivery import survey_send
from surveys.models import SurveyFollowUp, SurveyResponse, SurveyStatus
from surveys.scheduling import survey_schedule
from surveys.task_names import ASK_WHY

from ..factories import make_inbox

pytestmark = pytest.mark.django_db
PHONE = "+819012345678"


@pytest.fixture
def daytime(policy):
    policy.quiet_start, policy.quiet_end = time(0, 0), time(0, 1)
    policy.save()
    return policy


@pytest.fixture
def sent_survey(resolved_contact, daytime, csat):
    """``sent_survey(channel=SMS, **customer_fields)``: a CSAT with a "why?" sent by text."""

    def make(channel=Channel.SMS, **customer_fields):
        conversation = resolved_contact(channel, **customer_fields)
        request = survey_schedule(conversation_id=conversation.pk)
        assert survey_send(request_id=request.pk) == SurveyStatus.SENT
        return request

    return make


def _reply(request, text, sid, *, channel=Channel.SMS, **extra):
    inbox = Inbox.objects.get(pk=request.conversation.inbox_id)
    kind = "whatsapp" if channel == Channel.WHATSAPP else "phone"
    return message_receive(InboundMessage(inbox=inbox, sender_kind=kind, sender_address=PHONE, text=text,
                                          provider_id=sid, **extra))


def _answer(request, text, sid, django_capture_on_commit_callbacks, **kwargs):
    """The reply, and the tasks it queued by name at commit."""
    with mock.patch("contactcenter.enqueue.enqueue") as queued, django_capture_on_commit_callbacks(execute=True):
        result = _reply(request, text, sid, **kwargs)
    return result, [call.args for call in queued.call_args_list]


def _why_messages(conversation_id, text="Why?"):
    return Message.objects.filter(conversation_id=conversation_id, direction="outbound", text=text)


def test_a_score_by_sms_is_followed_by_the_why_question_and_the_next_reply_is_the_comment(
        sent_survey, django_capture_on_commit_callbacks):
    request = sent_survey()
    conversation = request.conversation
    answer, queued = _answer(request, "2", "SM-score", django_capture_on_commit_callbacks)
    assert (ASK_WHY, request.pk) in queued
    assert survey_ask_why(request_id=request.pk) is True
    # The task, redelivered or run by a second worker, asks once.
    assert survey_ask_why(request_id=request.pk) is False
    [why] = _why_messages(conversation.pk)
    assert why.created_at >= answer.message.created_at  # after the score on the timeline
    deliver_message.apply(args=[why.pk])
    assert RecordedProviderRequest.objects.get(provider="twilio", body="Why?").to == PHONE
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.RESOLVED  # asking is not a reply: nothing reopens

    comment = _reply(request, "The delivery was late and nobody told me", "SM-why")
    request.refresh_from_db()
    assert request.response.score == 2 and request.response.comment == "The delivery was late and nobody told me"
    # Kept on the timeline in the surveyed conversation, which stays resolved: no new work.
    assert comment.conversation.pk == conversation.pk
    assert not comment.conversation_reopened and not comment.conversation_opened
    assert Conversation.objects.get(pk=conversation.pk).status == ConversationStatus.RESOLVED
    assert Conversation.objects.filter(customer=conversation.customer).exclude(
        pk__in=SurveyFollowUp.objects.values("conversation")).count() == 1
    assert comment.message.text == "The delivery was late and nobody told me"
    # The answer's event (what the customer 360 shows) carries the comment.
    event = Message.objects.get(conversation=conversation, event_type=EventType.SURVEY_ANSWERED)
    assert event.event_data["comment"] == "The delivery was late and nobody told me"
    assert customer_panel(customer=conversation.customer)["surveys"][0]["comment"] == \
        "The delivery was late and nobody told me"
    # The follow-up's owner gets it as a note.
    follow_up = SurveyFollowUp.objects.get(response=request.response).conversation
    assert Message.objects.filter(conversation=follow_up, kind=MessageKind.NOTE,
                                  text__contains="The delivery was late").exists()

    # The next message is an ordinary one: it reopens the conversation for someone to read.
    after = _reply(request, "Also, can I change my address?", "SM-after")
    assert after.conversation_reopened or after.conversation_opened
    request.refresh_from_db()
    assert request.response.comment == "The delivery was late and nobody told me"


def test_the_why_question_is_in_the_customers_language(sent_survey, django_capture_on_commit_callbacks):
    request = sent_survey(language="ja")
    _answer(request, "４です", "SM-ja", django_capture_on_commit_callbacks)
    assert survey_ask_why(request_id=request.pk) is True
    assert _why_messages(request.conversation_id, "理由をお聞かせください。").count() == 1


def test_a_twilio_retry_of_the_answer_asks_once_and_is_not_the_comment(sent_survey,
                                                                       django_capture_on_commit_callbacks):
    request = sent_survey()
    _answer(request, "4", "SM-retried", django_capture_on_commit_callbacks)
    survey_ask_why(request_id=request.pk)
    # Twilio retries the same MessageSid: a duplicate, nothing queued, not taken as the comment.
    retry, queued = _answer(request, "4", "SM-retried", django_capture_on_commit_callbacks)
    assert retry.duplicate and queued == []
    request.refresh_from_db()
    assert request.response.comment == "" and _why_messages(request.conversation_id).count() == 1


def test_a_concurrent_duplicate_of_the_comment_changes_nothing(sent_survey, django_capture_on_commit_callbacks):
    """The retry arrives while the first is being stored: it passes the duplicate check, takes the
    comment claim, and is rolled back whole when the message's unique key refuses it."""
    request = sent_survey()
    _answer(request, "3", "SM-score", django_capture_on_commit_callbacks)
    survey_ask_why(request_id=request.pk)
    stored = _reply(request, "too slow", "SM-comment")
    # As the row stood when the retry passed the duplicate check: no comment yet.
    SurveyResponse.objects.filter(request=request).update(comment="")
    Message.objects.filter(conversation=request.conversation, event_type=EventType.SURVEY_ANSWERED).update(
        event_data={"survey": request.pk, "kind": "csat", "score": 3, "comment": "", "about": request.conversation_id})
    with mock.patch("conversations.services.ingest._existing", side_effect=[None, stored.message]):
        duplicate = _reply(request, "too slow", "SM-comment")
    assert duplicate.duplicate and duplicate.message.pk == stored.message.pk
    request.refresh_from_db()
    assert request.response.comment == ""  # the duplicate's comment was rolled back with it


def test_an_answer_that_says_why_is_not_asked_why(sent_survey, django_capture_on_commit_callbacks):
    request = sent_survey()
    _answer(request, "2 too slow", "SM-said", django_capture_on_commit_callbacks)
    request.refresh_from_db()
    assert request.comment_asked_at is None and survey_ask_why(request_id=request.pk) is False
    assert not _why_messages(request.conversation_id).exists()


def test_a_survey_without_a_why_question_asks_nothing(sent_survey, csat, django_capture_on_commit_callbacks):
    csat.follow_up_en = csat.follow_up_ja = ""
    csat.save()
    request = sent_survey()
    _, queued = _answer(request, "5", "SM-plain", django_capture_on_commit_callbacks)
    assert (ASK_WHY, request.pk) not in queued
    second = _reply(request, "thanks again", "SM-plain-2")
    assert second.conversation_reopened  # no question asked: an ordinary message


def test_a_question_after_the_why_question_is_never_swallowed(sent_survey, django_capture_on_commit_callbacks):
    """A happy customer asked "why?" who writes back a new question: it is a message for someone to
    answer (routed), not a survey comment nobody reads; and what they write next belongs to the
    conversation that question opened, not to the survey."""
    request = sent_survey()
    _answer(request, "5", "SM-score", django_capture_on_commit_callbacks)
    assert survey_ask_why(request_id=request.pk) is True
    question = _reply(request, "Thanks! Can I also change my delivery address？", "SM-question")
    assert question.conversation_reopened or question.conversation_opened
    request.refresh_from_db()
    assert request.response.comment == ""
    following = _reply(request, "It is 1-2-3 Shibuya now", "SM-following")
    request.refresh_from_db()
    assert request.response.comment == ""
    assert following.conversation.pk == question.conversation.pk


def test_after_the_comment_window_a_reply_is_an_ordinary_message(sent_survey, daytime,
                                                                 django_capture_on_commit_callbacks):
    request = sent_survey()
    _answer(request, "4", "SM-score", django_capture_on_commit_callbacks)
    survey_ask_why(request_id=request.pk)
    request.refresh_from_db()
    Message.objects.filter(pk=request.comment_ask_message_id).update(
        created_at=timezone.now() - timedelta(minutes=daytime.comment_window_minutes + 1))
    late = _reply(request, "My order 5521 has not arrived", "SM-late")
    assert late.conversation_reopened
    request.refresh_from_db()
    assert request.response.comment == ""


def test_a_stop_after_the_why_question_is_not_a_comment(sent_survey, django_capture_on_commit_callbacks):
    request = sent_survey()
    _answer(request, "4", "SM-score", django_capture_on_commit_callbacks)
    survey_ask_why(request_id=request.pk)
    _reply(request, "STOP", "SM-stop", metadata={"keyword": "opt_out"})
    request.refresh_from_db()
    assert request.response.comment == ""


def test_a_late_or_refused_why_is_dropped_and_a_lost_one_is_queued_again(sent_survey, daytime,
                                                                        django_capture_on_commit_callbacks):
    request = sent_survey()
    _answer(request, "4", "SM-score", django_capture_on_commit_callbacks)
    # Its task was lost: the tick queues it again after a while, not at once.
    with mock.patch("contactcenter.enqueue.enqueue") as queued, django_capture_on_commit_callbacks(execute=True):
        assert surveys_why_lost() == 0
        assert surveys_why_lost(now=timezone.now() + timedelta(minutes=3)) == 1
    assert queued.call_args.args == (ASK_WHY, request.pk)
    # Past the comment window, asking "why?" out of the blue is not done.
    later = timezone.now() + timedelta(minutes=daytime.comment_window_minutes + 1)
    assert survey_ask_why(request_id=request.pk, now=later) is False
    request.refresh_from_db()
    assert request.comment_asked_at is None and surveys_why_lost(now=later) == 0


def test_whatsapp_answer_to_a_template_survey_is_asked_why_inside_the_reopened_window(
        resolved_contact, daytime, csat, django_capture_on_commit_callbacks):
    inbox = make_inbox(Channel.WHATSAPP)
    Inbox.objects.filter(pk=inbox.pk).update(settings={"whatsapp_templates": [
        {"name": "survey_csat", "content_sid": "HX" + "1" * 32, "purpose": "survey"}]})
    inbox.refresh_from_db()
    conversation = resolved_contact(Channel.WHATSAPP, inbox=inbox)
    Message.objects.filter(conversation=conversation).update(created_at=timezone.now() - timedelta(days=2))
    request = survey_schedule(conversation_id=conversation.pk)
    assert survey_send(request_id=request.pk) == SurveyStatus.SENT
    request.refresh_from_db()
    assert request.sent_mode == "template"
    _answer(request, "5", "SM-wa", django_capture_on_commit_callbacks, channel=Channel.WHATSAPP)
    # The customer's reply opened the 24 hours again: the free-form question may go.
    assert survey_ask_why(request_id=request.pk) is True
    comment = _reply(request, "very quick", "SM-wa-2", channel=Channel.WHATSAPP)
    request.refresh_from_db()
    assert request.response.comment == "very quick" and comment.conversation.pk == conversation.pk
