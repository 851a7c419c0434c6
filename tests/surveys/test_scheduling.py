"""Scheduling: resolve → a due survey, the fatigue policy's skips (with their reasons on the
timeline), quiet hours in the customer's zone, cancel on reopen or a new customer message, and the
tick's claim."""

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from conversations.models import Channel, Conversation, ConversationStatus, EventType, Message
from conversations.routing.assignment import conversation_resolve
from conversations.services import InboundMessage, message_receive
from conversations.services.agent_actions import conversation_reopen
from surveys.models import SkipReason, SurveyRequest, SurveyStatus
from surveys.scheduling import out_of_quiet_hours, survey_schedule, surveys_claim_due

from ..factories import make_customer

TOKYO = ZoneInfo("Asia/Tokyo")
pytestmark = pytest.mark.django_db


def tokyo(y, m, d, hh, mm):
    return datetime(y, m, d, hh, mm, tzinfo=TOKYO)


def test_resolving_schedules_one_survey_after_the_delay(resolved_contact, policy, csat, agent,
                                                       django_capture_on_commit_callbacks):
    conversation = resolved_contact()
    Conversation.objects.filter(pk=conversation.pk).update(status=ConversationStatus.OPEN, resolved_at=None)
    with django_capture_on_commit_callbacks(execute=True):
        conversation_resolve(conversation_id=conversation.pk, by=agent)
    request = SurveyRequest.objects.get(conversation=conversation)
    conversation.refresh_from_db()
    assert request.status == SurveyStatus.SCHEDULED and request.definition == csat and request.agent == agent
    # Ten minutes after the resolve, unless that falls in the customer's quiet hours.
    expected = out_of_quiet_hours(conversation.resolved_at + timedelta(minutes=10), customer=conversation.customer,
                                  policy=policy)
    assert abs((request.due_at - expected).total_seconds()) < 5
    # A second resolve hook (a retried task, a double click) adds nothing: one row per conversation.
    assert survey_schedule(conversation_id=conversation.pk) is None
    assert SurveyRequest.objects.filter(conversation=conversation).count() == 1


def test_no_agent_reply_is_skipped_with_its_reason_on_the_timeline(resolved_contact, policy, csat):
    conversation = resolved_contact(reply=False)
    request = survey_schedule(conversation_id=conversation.pk)
    assert request.status == SurveyStatus.SKIPPED and request.skip_reason == SkipReason.NO_AGENT_REPLY
    event = Message.objects.get(conversation=conversation, event_type=EventType.SURVEY_SKIPPED)
    assert event.event_data["reason"] == "no_agent_reply" and event.get_event_type_display() == "Survey not sent"


def test_one_survey_per_customer_per_period_across_channels(resolved_contact, policy, csat):
    first = resolved_contact(Channel.EMAIL)
    SurveyRequest.objects.create(conversation=first, customer=first.customer, channel="email", definition=csat,
                                 status=SurveyStatus.SENT, sent_at=timezone.now() - timedelta(days=10),
                                 due_at=timezone.now() - timedelta(days=10), token="t-email")
    second = resolved_contact(Channel.SMS, customer=first.customer)
    request = survey_schedule(conversation_id=second.pk)
    assert request.skip_reason == SkipReason.RECENTLY_SURVEYED
    # Past the policy's 30 days, the customer may be asked again.
    SurveyRequest.objects.filter(token="t-email").update(sent_at=timezone.now() - timedelta(days=31))
    third = resolved_contact(Channel.SMS, customer=first.customer)
    assert survey_schedule(conversation_id=third.pk).status == SurveyStatus.SCHEDULED


def test_sampling_rate(resolved_contact, policy, csat):
    csat.sampling_percent = 30
    csat.save()
    rng = random.Random(7)
    statuses = [survey_schedule(conversation_id=resolved_contact().pk, rng=rng).skip_reason for _ in range(40)]
    sampled = statuses.count("")
    assert 4 <= sampled <= 20 and statuses.count(SkipReason.NOT_SAMPLED) == 40 - sampled


@pytest.mark.parametrize(("resolved", "due"), [
    (tokyo(2026, 3, 2, 21, 30), tokyo(2026, 3, 3, 9, 0)),   # evening: the next morning
    (tokyo(2026, 3, 2, 19, 55), tokyo(2026, 3, 3, 9, 0)),   # the delay runs into the quiet hours
    (tokyo(2026, 3, 3, 2, 0), tokyo(2026, 3, 3, 9, 0)),     # after midnight: this morning
    (tokyo(2026, 3, 3, 8, 55), tokyo(2026, 3, 3, 9, 5)),    # the delay ends after the quiet hours
    (tokyo(2026, 3, 3, 14, 0), tokyo(2026, 3, 3, 14, 10)),  # daytime: just the delay
])
def test_quiet_hours_in_the_customers_time_zone(resolved_contact, policy, csat, resolved, due):
    conversation = resolved_contact()
    request = survey_schedule(conversation_id=conversation.pk, now=resolved.astimezone(UTC))
    assert request.due_at == due.astimezone(UTC)


def test_quiet_hours_follow_the_customers_own_zone(resolved_contact, policy, csat):
    customer = make_customer("Ann", time_zone="Europe/London")
    conversation = resolved_contact(customer=customer)
    at = datetime(2026, 3, 3, 14, 0, tzinfo=TOKYO)  # 05:00 in London: quiet there
    request = survey_schedule(conversation_id=conversation.pk, now=at.astimezone(UTC))
    assert request.due_at == datetime(2026, 3, 3, 9, 0, tzinfo=ZoneInfo("Europe/London")).astimezone(UTC)


def test_reopen_before_the_due_time_cancels_and_a_new_resolve_schedules_again(resolved_contact, policy, csat, agent):
    conversation = resolved_contact()
    survey_schedule(conversation_id=conversation.pk)
    conversation_reopen(conversation=conversation, agent=agent)
    assert SurveyRequest.objects.get(conversation=conversation).status == SurveyStatus.CANCELED
    conversation_resolve(conversation_id=conversation.pk, by=agent)
    assert survey_schedule(conversation_id=conversation.pk).status == SurveyStatus.SCHEDULED


def test_a_new_customer_message_before_the_due_time_cancels(resolved_contact, policy, csat):
    conversation = resolved_contact()
    survey_schedule(conversation_id=conversation.pk)
    message_receive(InboundMessage(inbox=conversation.inbox, sender_kind="phone", sender_address="+819012345678",
                                   text="one more thing", provider_id="SM-more"))
    assert SurveyRequest.objects.get(conversation=conversation).status == SurveyStatus.CANCELED


def test_the_tick_claims_a_due_survey_once(resolved_contact, policy, csat):
    conversation = resolved_contact()
    request = survey_schedule(conversation_id=conversation.pk)
    assert surveys_claim_due(now=request.due_at - timedelta(seconds=1)) == []
    assert surveys_claim_due(now=request.due_at) == [request.pk]
    assert surveys_claim_due(now=request.due_at + timedelta(seconds=1)) == []
    # A claim whose task was lost is claimed again after a while.
    assert surveys_claim_due(now=request.due_at + timedelta(minutes=11)) == [request.pk]


def test_a_call_from_the_customer_before_the_due_time_cancels(resolved_contact, policy, csat):
    from conversations.channels.twilio_voice.calls import call_start

    from ..factories import make_inbox

    conversation = resolved_contact(Channel.SMS)
    survey_schedule(conversation_id=conversation.pk)
    voice = make_inbox(Channel.VOICE, address="+815011112222")
    call, created = call_start(call_sid="CA" + "1" * 32, from_="+819012345678", to=voice.address)
    assert created and call.conversation.customer_id == conversation.customer_id
    assert SurveyRequest.objects.get(conversation=conversation).status == SurveyStatus.CANCELED


@pytest.mark.parametrize(("resolved", "due"), [
    # The night the clocks go forward (2026-03-08 in New York): 09:00 EDT the next morning.
    (datetime(2026, 3, 7, 21, 0, tzinfo=ZoneInfo("America/New_York")),
     datetime(2026, 3, 8, 13, 0, tzinfo=UTC)),
    # And back (2026-11-01): 09:00 EST.
    (datetime(2026, 10, 31, 22, 0, tzinfo=ZoneInfo("America/New_York")),
     datetime(2026, 11, 1, 14, 0, tzinfo=UTC)),
])
def test_quiet_hours_across_a_daylight_saving_change(resolved_contact, policy, csat, resolved, due):
    customer = make_customer("Jo", time_zone="America/New_York")
    conversation = resolved_contact(customer=customer)
    request = survey_schedule(conversation_id=conversation.pk, now=resolved.astimezone(UTC))
    assert request.due_at == due
