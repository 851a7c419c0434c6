"""Answers: tolerant reading of text replies, a reply that is not an answer never swallowed, the
first answer counting, the answer on the customer's timeline and 360, and the closed loop (a
detractor's follow-up in the care queue, routed, its outcome asked, never surveyed itself)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.console.selectors import customer_panel
from conversations.models import (
    AgentSkill,
    Channel,
    Conversation,
    ConversationStatus,
    EventType,
    Message,
    MessageKind,
    Offer,
    QueueSkill,
    Skill,
)
from conversations.routing.assignment import conversation_resolve
from conversations.routing.decisions import route_conversation
from conversations.routing.offers import RoutingError
from conversations.services import InboundMessage, message_receive
from surveys.answers import answer_parse, survey_answer
from surveys.delivery import survey_send
from surveys.models import SkipReason, SurveyDefinition, SurveyFollowUp, SurveyKind, SurveyRequest, SurveyStatus
from surveys.scheduling import survey_schedule

from ..factories import make_agent

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("text", "kind", "score", "comment"), [
    ("4", "csat", 4, ""),
    ("４", "csat", 4, ""),
    ("4です", "csat", 4, ""),
    ("４です。", "csat", 4, ""),
    ("5 thanks", "csat", 5, ""),
    ("5 thanks!", "csat", 5, ""),
    ("10!", "nps", 10, ""),
    ("１０点", "nps", 10, ""),
    ("0", "nps", 0, ""),
    ("2 too slow", "csat", 2, "too slow"),
    ("3 待ち時間が長かった", "ces", 3, "待ち時間が長かった"),
    ("  7  ", "ces", 7, ""),
])
def test_replies_read_as_answers(text, kind, score, comment):
    parsed = answer_parse(text, kind=kind)
    assert (parsed.score, parsed.comment) == (score, comment)


@pytest.mark.parametrize(("text", "kind"), [
    ("I have a question about my order", "csat"),
    ("注文番号 12345 について", "csat"),
    ("3 items are missing from order 1234", "csat"),
    ("5?", "csat"),
    ("can I return it? 5 days ago", "csat"),
    ("6", "csat"),        # off the 1–5 scale
    ("11", "nps"),
    ("0", "csat"),
    ("123", "nps"),
    ("", "csat"),
    ("4 " + "x" * 80, "csat"),  # a long message that starts with a number
])
def test_messages_that_are_not_answers(text, kind):
    assert answer_parse(text, kind=kind) is None


@pytest.fixture
def sent_sms_survey(resolved_contact, policy, csat):
    from datetime import time

    policy.quiet_start, policy.quiet_end = time(0, 0), time(0, 1)
    policy.save()
    conversation = resolved_contact(Channel.SMS)
    request = survey_schedule(conversation_id=conversation.pk)
    assert survey_send(request_id=request.pk) == SurveyStatus.SENT
    return request


def _reply(conversation, text, sid):
    return message_receive(InboundMessage(inbox=conversation.inbox, sender_kind="phone",
                                          sender_address="+819012345678", text=text, provider_id=sid))


def test_a_full_width_answer_by_sms_is_recorded_and_the_conversation_stays_resolved(sent_sms_survey):
    conversation = sent_sms_survey.conversation
    result = _reply(conversation, "４です", "SM-answer")
    sent_sms_survey.refresh_from_db()
    assert sent_sms_survey.status == SurveyStatus.ANSWERED and sent_sms_survey.response.score == 4
    assert sent_sms_survey.response.via == "reply"
    # The reply is kept on the timeline, in the surveyed conversation, which stays resolved.
    assert result.conversation.pk == conversation.pk and not result.conversation_reopened
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.RESOLVED
    assert Conversation.objects.filter(customer=conversation.customer).count() == 1
    event = Message.objects.get(conversation=conversation, event_type=EventType.SURVEY_ANSWERED)
    assert event.event_data["score"] == 4 and event.event_data["kind"] == "csat"
    assert event.event_data["about"] == conversation.pk


def test_a_reply_that_is_not_an_answer_is_never_swallowed(sent_sms_survey):
    conversation = sent_sms_survey.conversation
    result = _reply(conversation, "Where is my refund? Order 5521", "SM-question")
    sent_sms_survey.refresh_from_db()
    assert sent_sms_survey.status == SurveyStatus.SENT  # still unanswered
    assert result.conversation_reopened or result.conversation_opened
    assert Conversation.objects.get(pk=result.conversation.pk).status == ConversationStatus.OPEN
    assert result.message.text == "Where is my refund? Order 5521"


def test_only_the_first_text_answer_counts(sent_sms_survey):
    conversation = sent_sms_survey.conversation
    _reply(conversation, "5", "SM-first")
    second = _reply(conversation, "1", "SM-second")
    sent_sms_survey.refresh_from_db()
    assert sent_sms_survey.response.score == 5
    # The second is an ordinary message: it reopens the conversation for someone to read.
    assert second.conversation_reopened and second.message.text == "1"


def test_after_the_answer_window_a_number_is_just_a_message(sent_sms_survey):
    SurveyRequest.objects.filter(pk=sent_sms_survey.pk).update(sent_at=timezone.now() - timedelta(hours=49))
    result = _reply(sent_sms_survey.conversation, "5", "SM-late")
    sent_sms_survey.refresh_from_db()
    assert sent_sms_survey.status == SurveyStatus.SENT and result.conversation_reopened


def test_the_answer_shows_in_the_customer_360(sent_sms_survey):
    _reply(sent_sms_survey.conversation, "5 very helpful", "SM-360")
    panel = customer_panel(customer=sent_sms_survey.customer)
    assert panel["surveys"][0]["kind"] == "CSAT" and panel["surveys"][0]["score"] == 5
    assert panel["surveys"][0]["comment"] == "very helpful"


def test_a_detractor_opens_a_routed_follow_up_whose_outcome_is_asked(sent_sms_survey, care_queue,
                                                                     available_presence, agent):
    skill = Skill.objects.create(name="Care", slug="care")
    QueueSkill.objects.create(queue=care_queue, skill=skill)
    carer = make_agent("carer", presence=available_presence)
    AgentSkill.objects.create(agent=carer, skill=skill)
    response, _ = survey_answer(request_id=sent_sms_survey.pk, score=1, comment="nobody called back", via="reply")
    follow_up = SurveyFollowUp.objects.get(response=response).conversation
    assert follow_up.queue == care_queue and follow_up.priority >= 10 and follow_up.status == ConversationStatus.OPEN
    note = Message.objects.get(conversation=follow_up, kind=MessageKind.NOTE)
    assert "CSAT 1 of 5" in note.text and "nobody called back" in note.text
    assert f"/console/conversations/{sent_sms_survey.conversation_id}/" in note.text
    # Routed like any conversation: offered to the agent who serves the care queue.
    route_conversation(conversation_id=follow_up.pk)
    assert Offer.objects.get(conversation=follow_up).agent == carer
    # Resolving it asks for the outcome (the care queue's wrap-up codes) ...
    with pytest.raises(RoutingError):
        conversation_resolve(conversation_id=follow_up.pk, by=carer)
    conversation_resolve(conversation_id=follow_up.pk, by=carer, wrap_up_code="called-back")
    # ... and the customer is not surveyed about the follow-up.
    Message.objects.create(seq=None, conversation=follow_up, customer=follow_up.customer, inbox=follow_up.inbox,
                           channel=follow_up.channel, direction="outbound", author_agent=carer, text="We called")
    request = survey_schedule(conversation_id=follow_up.pk)
    assert request.status == SurveyStatus.SKIPPED and request.skip_reason == SkipReason.FOLLOW_UP


def test_promoters_and_passives_open_no_follow_up(resolved_contact, policy):
    nps = SurveyDefinition.objects.create(name="NPS", kind=SurveyKind.NPS, question_en="Would you recommend us?")
    conversation = resolved_contact(Channel.SMS)
    request = survey_schedule(conversation_id=conversation.pk)
    assert request.definition == nps
    SurveyRequest.objects.filter(pk=request.pk).update(status=SurveyStatus.SENT, sent_at=timezone.now(),
                                                       sent_channel="sms", sent_mode="reply")
    survey_answer(request_id=request.pk, score=7, via="reply")
    assert not SurveyFollowUp.objects.exists()


def test_thresholds_are_configurable(sent_sms_survey, policy):
    policy.csat_detractor_max = 3
    policy.save()
    survey_answer(request_id=sent_sms_survey.pk, score=3, via="reply")
    assert SurveyFollowUp.objects.count() == 1


def test_a_number_sent_to_another_of_our_numbers_is_not_taken_as_the_answer(sent_sms_survey):
    from ..factories import make_inbox

    other = make_inbox(Channel.SMS, address="+815077770000")
    result = message_receive(InboundMessage(inbox=other, sender_kind="phone", sender_address="+819012345678",
                                            text="5", provider_id="SM-other-number"))
    sent_sms_survey.refresh_from_db()
    assert sent_sms_survey.status == SurveyStatus.SENT and result.conversation.inbox == other


def test_without_a_follow_up_queue_the_contacts_own_queue_owns_the_unhappy_answer(sent_sms_survey, policy):
    from conversations.models import Queue

    policy.follow_up_queue = None
    policy.save()
    sales = Queue.objects.create(name="Sales", slug="sales")
    Conversation.objects.filter(pk=sent_sms_survey.conversation_id).update(queue=sales)
    response, _ = survey_answer(request_id=sent_sms_survey.pk, score=1, comment="rude", via="reply")
    follow_up = SurveyFollowUp.objects.get(response=response).conversation
    assert follow_up.queue == sales and follow_up.status == ConversationStatus.OPEN
    assert follow_up.priority >= policy.follow_up_priority
