"""The demo holds weeks of CSAT, NPS and CES answers over several channels, a few detractor
follow-ups waiting in Customer care, and a 30-second survey delay; seeding twice adds nothing."""

import io

import pytest
from django.core.management import call_command
from django.test import override_settings

from conversations.console.selectors import customer_panel
from conversations.models import Conversation, ConversationStatus, EventType, Message
from surveys.models import SurveyDefinition, SurveyFollowUp, SurveyPolicy, SurveyRequest, SurveyResponse

pytestmark = pytest.mark.django_db


def _seed():
    with override_settings(CC_DEMO_PASSWORD="seed-demo-test-pass-42",
                           PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        call_command("seed_demo", stdout=io.StringIO())


def test_the_demo_has_weeks_of_answers_and_follow_ups():
    _seed()
    responses = SurveyResponse.objects.all()
    assert {r.kind for r in responses} == {"csat", "nps", "ces"}
    assert len({r.channel for r in responses}) >= 3
    days = {r.answered_at.date() for r in responses}
    assert (max(days) - min(days)).days >= 21  # weeks of them
    assert all(d.delay_seconds == 30 for d in SurveyDefinition.objects.all())
    follow_ups = SurveyFollowUp.objects.select_related("conversation", "response")
    assert 1 <= follow_ups.count() <= 3
    policy = SurveyPolicy.current()
    for follow_up in follow_ups:
        assert follow_up.conversation.queue == policy.follow_up_queue
        assert follow_up.conversation.status == ConversationStatus.OPEN
        assert follow_up.response.score <= policy.detractor_max(follow_up.response.kind)
    assert policy.follow_up_queue.wrap_up_required
    # Every answer is on its customer's timeline, as the customer 360 shows it.
    answer = responses.first()
    assert Message.objects.filter(conversation=answer.conversation, event_type=EventType.SURVEY_ANSWERED).exists()
    assert customer_panel(customer=answer.customer)["surveys"]
    # One survey per customer per 30 days, across channels.
    per_customer = {}
    for request in SurveyRequest.objects.order_by("sent_at"):
        previous = per_customer.get(request.customer_id)
        assert previous is None or (request.sent_at - previous).days >= 30
        per_customer[request.customer_id] = request.sent_at

    before = (SurveyRequest.objects.count(), SurveyResponse.objects.count(), Conversation.objects.count())
    _seed()
    assert (SurveyRequest.objects.count(), SurveyResponse.objects.count(), Conversation.objects.count()) == before
