"""The database is the truth: the tick claims what is due, a real worker sends it, and two workers
racing for the same due survey send it once."""

import threading

import pytest
from django.db import connections
from django.utils import timezone

from contactcenter import tick
from conversations.models import Channel, Message, RecordedProviderRequest
from conversations.services import InboundMessage, message_receive
from conversations.tasks import deliver_message
from surveys.delivery import survey_send
from surveys.models import SurveyRequest, SurveyStatus
from surveys.scheduling import survey_schedule, surveys_claim_due

from ..conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def due_sms_survey(resolved_contact, policy, csat):
    from datetime import time

    policy.quiet_start, policy.quiet_end = time(0, 0), time(0, 1)
    policy.save()
    conversation = resolved_contact(Channel.SMS)
    request = survey_schedule(conversation_id=conversation.pk)
    SurveyRequest.objects.filter(pk=request.pk).update(due_at=timezone.now())
    return request


def _survey_messages(request):
    return Message.objects.filter(conversation_id=request.conversation_id, direction="outbound",
                                  author_agent__isnull=True)


def test_the_tick_sends_a_due_survey_through_the_worker(due_sms_survey, celery_worker):
    assert tick.run_due_jobs()["surveys_due"] == 1
    wait_for(lambda: SurveyRequest.objects.get(pk=due_sms_survey.pk).status == SurveyStatus.SENT)
    # The outbound path delivers it: the Twilio SDK's request, recorded. (In production mode the
    # worker process queues the delivery where the test worker does not listen: delivered here too;
    # the delivery's own claim makes the two one.)
    deliver_message.apply(args=[_survey_messages(due_sms_survey).get().pk])
    recorded = RecordedProviderRequest.objects.filter(provider="twilio", to="+819012345678")
    wait_for(lambda: recorded.exists())
    assert recorded.count() == 1
    assert tick.run_due_jobs()["surveys_due"] == 0
    assert _survey_messages(due_sms_survey).count() == 1


def _race(target, n=2):
    barrier = threading.Barrier(n)
    results, errors = [], []

    def run():
        try:
            barrier.wait(timeout=10)
            results.append(target())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


@pytest.mark.production
def test_two_workers_racing_claim_one_due_survey_once(due_sms_survey):
    claims = _race(surveys_claim_due)
    assert sorted(len(c) for c in claims) == [0, 1]


@pytest.mark.production
def test_two_executions_of_the_send_send_once(due_sms_survey):
    statuses = _race(lambda: survey_send(request_id=due_sms_survey.pk), n=4)
    assert statuses == [SurveyStatus.SENT] * 4
    assert _survey_messages(due_sms_survey).count() == 1
    assert Message.objects.filter(conversation_id=due_sms_survey.conversation_id,
                                  event_type="survey_sent").count() == 1


def test_a_score_by_sms_gets_the_why_question_from_the_worker(due_sms_survey, celery_worker):
    assert survey_send(request_id=due_sms_survey.pk) == SurveyStatus.SENT
    conversation = due_sms_survey.conversation
    message_receive(InboundMessage(inbox=conversation.inbox, sender_kind="phone", sender_address="+819012345678",
                                   text="2", provider_id="SM-worker-score"))
    # The answer's commit queued the "why?": the worker sends it once, in the surveyed conversation.
    asked = Message.objects.filter(conversation=conversation, direction="outbound", text="Why?")
    wait_for(lambda: asked.exists())
    wait_for(lambda: SurveyRequest.objects.get(pk=due_sms_survey.pk).comment_ask_message_id == asked.get().pk)
    message_receive(InboundMessage(inbox=conversation.inbox, sender_kind="phone", sender_address="+819012345678",
                                   text="nobody called me back", provider_id="SM-worker-why"))
    assert SurveyRequest.objects.get(pk=due_sms_survey.pk).response.comment == "nobody called me back"


@pytest.mark.production
def test_two_executions_of_the_why_question_ask_once(due_sms_survey):
    from surveys.comments import survey_ask_why

    assert survey_send(request_id=due_sms_survey.pk) == SurveyStatus.SENT
    conversation = due_sms_survey.conversation
    message_receive(InboundMessage(inbox=conversation.inbox, sender_kind="phone", sender_address="+819012345678",
                                   text="3", provider_id="SM-race-score"))
    results = _race(lambda: survey_ask_why(request_id=due_sms_survey.pk), n=4)
    assert sorted(results) == [False, False, False, True]
    assert Message.objects.filter(conversation=conversation, direction="outbound", text="Why?").count() == 1
