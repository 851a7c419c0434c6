"""The post-call keypad survey: the agent hangs up with the caller still on the line, the surveys
app decides a survey applies (queue, fatigue), the caller's call is redirected out of the
conference to a ``<Gather input="dtmf">`` in their language, and their key is the survey's
answer on the timeline, as on every channel."""

from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.channels.twilio_voice.softphone.controls import call_hang_up
from conversations.channels.twilio_voice.tasks import voice_put_through
from conversations.models import (
    Call,
    Conversation,
    EventType,
    Message,
    Offer,
    RecordedProviderRequest,
)
from conversations.routing.decisions import route_conversation
from conversations.routing.offers import offer_accept
from surveys.models import (
    SurveyDefinition,
    SurveyKind,
    SurveyPolicy,
    SurveyRequest,
    SurveyResponse,
)

from .conftest import verbs


@pytest.fixture
def support_csat(voice_line):
    SurveyPolicy.objects.create()
    definition = SurveyDefinition.objects.create(
        name="Phone CSAT", kind=SurveyKind.CSAT, question_en="How satisfied were you with this call?",
        question_ja="今回のお電話の対応にどのくらい満足されましたか？")
    definition.queues.add(voice_line["support"])
    return definition


def _answered_call(phone, voice_agent, capture, *, english=False):
    caller = phone()
    caller.dial()
    if english:
        caller.post("/webhooks/twilio/voice/gather/?attempt=0", Digits="9")
    caller.post("/webhooks/twilio/voice/gather/?attempt=0", Digits="1")
    call = Call.objects.get(call_sid=caller.sid)
    route_conversation(conversation_id=call.conversation_id)
    with capture(execute=True):
        offer_accept(offer_id=Offer.objects.get(status="pending").pk, agent=voice_agent)
    voice_put_through.apply(args=[call.conversation_id, voice_agent.pk])
    return caller, call, Conversation.objects.get(pk=call.conversation_id)


def test_the_agent_hangs_up_and_the_caller_answers_the_keypad_survey_in_japanese(
        voice_line, voice_agent, phone, support_csat, django_capture_on_commit_callbacks):
    caller, call, conversation = _answered_call(phone, voice_agent, django_capture_on_commit_callbacks)
    call_hang_up(conversation=conversation, agent=voice_agent)
    # The caller's leg is redirected to the survey, not completed.
    redirect = RecordedProviderRequest.objects.filter(uri__endswith=f"/Calls/{caller.sid}.json").order_by("id").last()
    assert redirect.params["Url"].endswith(f"/webhooks/twilio/voice/survey/?call={call.pk}")
    assert "Status" not in redirect.params
    request = SurveyRequest.objects.get(conversation=conversation)
    assert (request.status, request.sent_channel, request.sent_mode) == ("sent", "voice", "keypad")
    (gather,) = verbs(caller.post(f"/webhooks/twilio/voice/survey/?call={call.pk}"))
    assert gather.tag == "Gather" and gather.get("input") == "dtmf" and gather.get("language") == "ja-JP"
    assert gather.get("numDigits") == "1"
    assert gather.get("action") == f"/webhooks/twilio/voice/survey/?call={call.pk}&attempt=1"
    (question,) = list(gather)
    assert question.get("language") == "ja-JP" and question.get("voice") == "Polly.Mizuki"
    assert question.text == "今回のお電話の対応にどのくらい満足されましたか？ 1から5までの番号でお答えください。"
    for _retry in range(2):  # Twilio retries the answer: one response, the same TwiML
        thanks, hangup = verbs(caller.post(f"/webhooks/twilio/voice/survey/?call={call.pk}&attempt=1", Digits="4"))
        assert thanks.text == "ご回答ありがとうございました。" and hangup.tag == "Hangup"
    response = SurveyResponse.objects.get(request=request)
    assert (response.score, response.via, response.channel) == (4, "keypad", "voice")
    answered = Message.objects.get(conversation=conversation, event_type=EventType.SURVEY_ANSWERED)
    assert answered.event_data["score"] == 4 and answered.text == "CSAT 4 of 5"
    ended = Message.objects.filter(conversation=conversation, event_type=EventType.CALL_ENDED).last()
    assert ended.event_data["to_survey"] is True


def test_a_key_off_the_scale_asks_again_in_english_then_says_goodbye(
        voice_line, voice_agent, phone, support_csat, django_capture_on_commit_callbacks):
    caller, call, conversation = _answered_call(phone, voice_agent, django_capture_on_commit_callbacks, english=True)
    call_hang_up(conversation=conversation, agent=voice_agent)
    (gather,) = verbs(caller.post(f"/webhooks/twilio/voice/survey/?call={call.pk}"))
    assert gather.get("language") == "en-US"
    assert next(iter(gather)).text == "How satisfied were you with this call? Please press a number from 1 to 5."
    (again,) = verbs(caller.post(f"/webhooks/twilio/voice/survey/?call={call.pk}&attempt=1", Digits="9"))
    sorry, question = list(again)
    assert sorry.text == "Sorry, please answer with a key." and again.get("action").endswith("attempt=2")
    assert question.text.startswith("How satisfied were you")
    goodbye, hangup = verbs(caller.post(f"/webhooks/twilio/voice/survey/?call={call.pk}&attempt=2", Digits=""))
    assert goodbye.text == "Thank you for calling. Goodbye." and hangup.tag == "Hangup"
    assert not SurveyResponse.objects.exists()


def test_a_caller_surveyed_recently_is_not_asked_and_the_call_simply_ends(
        voice_line, voice_agent, phone, support_csat, django_capture_on_commit_callbacks):
    caller, call, conversation = _answered_call(phone, voice_agent, django_capture_on_commit_callbacks)
    earlier = Conversation.objects.create(customer=conversation.customer, inbox=conversation.inbox, channel="voice",
                                          status="resolved")
    SurveyRequest.objects.create(conversation=earlier, customer=conversation.customer, channel="voice",
                                 definition=support_csat, status="answered", due_at=timezone.now(), token="t-earlier",
                                 sent_at=timezone.now() - timedelta(days=2))
    call_hang_up(conversation=conversation, agent=voice_agent)
    last = RecordedProviderRequest.objects.filter(uri__endswith=f"/Calls/{caller.sid}.json").order_by("id").last()
    assert last.params["Status"] == "completed" and "Url" not in last.params
    skipped = SurveyRequest.objects.get(conversation=conversation)
    assert skipped.status == "skipped" and skipped.skip_reason == "recently_surveyed"
    goodbye, hangup = verbs(caller.post(f"/webhooks/twilio/voice/survey/?call={call.pk}"))
    assert goodbye.text == "お電話ありがとうございました。" and hangup.tag == "Hangup"  # a stray request: nothing asked


def test_without_a_survey_for_the_queue_the_agents_hang_up_completes_the_call(
        voice_line, voice_agent, phone, django_capture_on_commit_callbacks):
    caller, _call, conversation = _answered_call(phone, voice_agent, django_capture_on_commit_callbacks)
    call_hang_up(conversation=conversation, agent=voice_agent)
    last = RecordedProviderRequest.objects.filter(uri__endswith=f"/Calls/{caller.sid}.json").order_by("id").last()
    assert last.params["Status"] == "completed"
    assert not SurveyRequest.objects.exists()


def test_the_survey_url_refuses_another_call_and_an_unsigned_request(
        voice_line, voice_agent, phone, support_csat, django_capture_on_commit_callbacks):
    caller, call, conversation = _answered_call(phone, voice_agent, django_capture_on_commit_callbacks)
    call_hang_up(conversation=conversation, agent=voice_agent)
    stranger = phone(sender="+819055556666")
    (hangup,) = verbs(stranger.post(f"/webhooks/twilio/voice/survey/?call={call.pk}&attempt=1", Digits="1"))
    assert hangup.tag == "Hangup"
    assert caller.post(f"/webhooks/twilio/voice/survey/?call={call.pk}&attempt=1", Digits="1",
                       signature="bad").status_code == 403
    assert not SurveyResponse.objects.exists()


def test_an_agent_who_hangs_up_their_own_phone_leaves_the_caller_to_the_survey_once(
        voice_line, voice_agent, phone, support_csat, django_capture_on_commit_callbacks):
    caller, _call, conversation = _answered_call(phone, voice_agent, django_capture_on_commit_callbacks)
    leg = f"/webhooks/twilio/voice/agent-leg/?conversation={conversation.pk}&agent={voice_agent.pk}"
    agent_leg = "CA" + "b" * 32
    caller.post(leg, CallSid=agent_leg, CallStatus="in-progress")
    # Somebody else's leg (or another agent's id) ending changes nothing.
    caller.post(leg, CallSid="CA" + "c" * 32, CallStatus="completed")
    from .conftest import make_agent_for_line

    other = make_agent_for_line(voice_line, "ren")
    caller.post(f"/webhooks/twilio/voice/agent-leg/?conversation={conversation.pk}&agent={other.pk}",
                CallSid=agent_leg, CallStatus="completed")
    assert not SurveyRequest.objects.exists()
    for _retry in range(2):
        assert caller.post(leg, CallSid=agent_leg, CallStatus="completed").status_code == 204
    redirects = RecordedProviderRequest.objects.filter(uri__endswith=f"/Calls/{caller.sid}.json", params__has_key="Url")
    assert [r.params["Url"].rsplit("/", 2)[-2] for r in redirects.order_by("id")] == ["conference", "survey"]
    ended = Message.objects.get(conversation=conversation, event_type=EventType.CALL_ENDED)
    assert ended.event_data["ended_by"] == "agent_left" and ended.event_data["to_survey"] is True
    assert SurveyRequest.objects.get(conversation=conversation).status == "sent"


def test_a_caller_who_hung_up_first_is_not_surveyed_when_the_agents_leg_ends_after(
        voice_line, voice_agent, phone, support_csat, django_capture_on_commit_callbacks):
    caller, _call, conversation = _answered_call(phone, voice_agent, django_capture_on_commit_callbacks)
    leg = f"/webhooks/twilio/voice/agent-leg/?conversation={conversation.pk}&agent={voice_agent.pk}"
    caller.post(leg, CallSid="CA" + "b" * 32, CallStatus="in-progress")
    caller.post("/webhooks/twilio/voice/status/", CallStatus="completed", CallDuration="70")
    caller.post(leg, CallSid="CA" + "b" * 32, CallStatus="completed")
    assert not SurveyRequest.objects.exists()
    assert not any("/survey/" in str(row.params.get("Url", "")) for row in RecordedProviderRequest.objects.all())


def test_a_survey_redirect_twilio_refuses_leaves_no_survey_marked_sent(
        voice_line, voice_agent, phone, support_csat, django_capture_on_commit_callbacks, monkeypatch):
    """The caller hung up just as the agent did: Twilio refuses the redirect. The agent is told,
    and no survey is recorded as sent that was never played (the resolve may still survey them)."""
    from twilio.base.exceptions import TwilioRestException

    from conversations.channels.twilio_voice.softphone import controls

    caller, call, conversation = _answered_call(phone, voice_agent, django_capture_on_commit_callbacks)

    class CallGone:
        def calls(self, sid):
            class Leg:
                def update(self, **params):
                    raise TwilioRestException(404, f"/Calls/{sid}.json", "The requested resource was not found")
            return Leg()

    monkeypatch.setattr(controls, "twilio_client", CallGone)
    with pytest.raises(controls.CallControlError):
        call_hang_up(conversation=conversation, agent=voice_agent)
    assert not SurveyRequest.objects.filter(conversation=conversation).exists()
    assert not Message.objects.filter(conversation=conversation, event_type=EventType.CALL_ENDED).exists()
