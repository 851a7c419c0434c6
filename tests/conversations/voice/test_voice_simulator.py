"""The demo's voice line and the phone that calls it without credentials: ``manage.py simulate
call`` posts signed webhooks and prints each verb; the simulator page's step endpoint does the same."""

import json
from datetime import datetime
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.utils import timezone

from conversations.channels.twilio_voice.settings_checks import voice_settings_problems
from conversations.models import Call, Inbox
from conversations.simulator import voice


class _Answer:
    """What ``requests`` gives back: ``text`` decoded as Latin-1 for text/xml without a charset."""

    def __init__(self, response):
        self.status_code = response.status_code
        self.content = response.content
        self.text = response.content.decode("latin-1")
        self.ok = response.status_code < 400


@pytest.fixture
def demo_line(db, client, monkeypatch):
    """The seeded demo configuration, on a Tuesday at 11:00 in Tokyo (the phone desk is open), with
    the simulator's signed posts going to this test's server."""
    from conversations.demo.seed import ensure_configuration

    ensure_configuration("demo-password-1234")
    tuesday = datetime(2026, 12, 8, 11, 0, tzinfo=ZoneInfo("Asia/Tokyo")).astimezone(ZoneInfo("UTC"))
    monkeypatch.setattr(timezone, "now", lambda: tuesday)

    def post_signed(base_url, path, params, timeout=15):
        from twilio.request_validator import RequestValidator

        from conversations.channels.twilio_client import auth_token

        signature = RequestValidator(auth_token()).compute_signature("http://testserver" + path, params)
        return _Answer(client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature))

    monkeypatch.setattr(voice, "post_signed", post_signed)
    return Inbox.objects.get(kind="voice", address="+815031230003")


def test_the_demo_voice_line_has_a_valid_japanese_ivr_leading_to_the_demo_queues(demo_line):
    ivr = demo_line.settings["ivr"]
    assert voice_settings_problems(demo_line.settings) == []
    assert ivr["greeting"]["ja"].startswith("お電話ありがとうございます")
    assert {option.get("queue") for option in ivr["options"]} == {"support", "sales", None}
    demo_line.full_clean()


def test_simulate_call_presses_2_and_hears_each_verb_until_the_caller_hangs_up_on_hold(demo_line):
    out = StringIO()
    call_command("simulate", "call", "--from", "090-1234-5678", "--digits", "2", "--url", "http://testserver",
                 stdout=out)
    printed = out.getvalue()
    assert "Say [ja-JP Polly.Mizuki] お電話ありがとうございます。さくら茶カスタマーセンターでございます。" in printed
    assert "Say [en-US Polly.Joanna] For English, press 9." in printed
    assert "(the caller presses 2)" in printed
    assert "Enqueue in “billing”" in printed  # the rule ivr == "billing"
    assert "現在1番目にお待ちいただいております。" in printed
    assert "Play ♪ /static/voice/hold-music.wav" in printed
    assert "hung up (abandoned)" in printed
    call = Call.objects.get()
    assert call.from_address == "+819012345678" and call.ivr["option"] == "billing"
    assert call.conversation.queue.slug == "billing" and call.conversation.abandoned_at is not None


def test_simulate_call_to_voicemail_from_hold(demo_line):
    out = StringIO()
    call_command("simulate", "call", "--from", "090-1234-5678", "--digits", "13", "--url", "http://testserver",
                 stdout=out)
    printed = out.getvalue()
    assert "Record (max 120 s" in printed and "(the caller leaves a message after the tone)" in printed
    call = Call.objects.get()
    assert call.outcome == "voicemail" and call.recording_sid.startswith("RE")
    assert call.conversation.messages.filter(kind="message").get().text.endswith("no transcript")


def test_the_simulator_phone_page_steps_through_a_call(demo_line, client, settings):
    """The page's endpoint posts from a worker thread (the webhook is served by the same process):
    its step function is run here directly, the view's own checks through the client."""
    from conversations.simulator.views import _call_step

    settings.CC_SIMULATOR = True
    page = client.get("/simulator/phone/")
    assert page.status_code == 200 and b"+815031230003" in page.content
    caller = {"from": "090-1234-5678", "to": "+815031230003"}
    dialed = _call_step("http://testserver", caller, "+819012345678", "+815031230003")
    assert dialed["next"]["kind"] == "gather"
    assert dialed["verbs"][0]["verb"] == "Gather"
    assert dialed["verbs"][0]["children"][0]["text"].startswith("お電話ありがとうございます")
    pressed = _call_step("http://testserver", {**caller, "call_sid": dialed["call_sid"], "path": dialed["next"]["action"],
                                               "digits": "1"}, "+819012345678", "+815031230003")
    assert pressed["next"]["kind"] == "hold" and pressed["next"]["queue"] == "support"
    held = _call_step("http://testserver", {**caller, "call_sid": dialed["call_sid"], "path": pressed["next"]["wait_url"],
                                            "hold": True}, "+819012345678", "+815031230003")
    assert held["verbs"][0]["children"][0]["text"] == "現在1番目にお待ちいただいております。"
    refused = client.post("/simulator/phone/call/", json.dumps({**caller, "call_sid": dialed["call_sid"], "path": "/admin/"}),
                          content_type="application/json")
    assert refused.status_code == 400


def test_the_simulator_phone_leaves_a_voicemail_and_answers_our_callback(demo_line):
    from conversations.channels.twilio_voice.tasks import voice_put_through
    from conversations.models import Agent, Message
    from conversations.routing.assignment import conversation_assign
    from conversations.simulator.views import _call_step

    caller = {"from": "090-1234-5678", "to": "+815031230003"}
    numbers = ("+819012345678", "+815031230003")
    dialed = _call_step("http://testserver", caller, *numbers)
    sid = dialed["call_sid"]
    held = _call_step("http://testserver", {**caller, "call_sid": sid, "path": dialed["next"]["action"], "digits": "1"}, *numbers)
    waiting = _call_step("http://testserver", {**caller, "call_sid": sid, "path": held["next"]["wait_url"], "hold": True}, *numbers)
    left = _call_step("http://testserver", {**caller, "call_sid": sid, "path": waiting["next"]["action"], "digits": "2"}, *numbers)
    assert left["next"]["kind"] == "left"
    goodbye = _call_step("http://testserver", {**caller, "call_sid": sid, "path": held["next"]["action"],
                                               "QueueResult": "leave"}, *numbers)
    assert goodbye["next"]["kind"] == "ended"
    assert _call_step("http://testserver", {**caller, "call_sid": sid, "ring": True}, *numbers)["callback"] is None
    call = Call.objects.get(call_sid=sid)
    agent = Agent.objects.get(user__username="alice")
    conversation_assign(conversation_id=call.conversation_id, agent=agent, by=None)
    assert voice_put_through.apply(args=[call.conversation_id, agent.pk]).result == "callback"
    rang = _call_step("http://testserver", {**caller, "ring": True}, *numbers)["callback"]
    assert rang is not None
    answered = _call_step("http://testserver", {**caller, "call_sid": rang["call_sid"], "path": rang["path"],
                                                "direction": "outbound-api"}, *numbers)
    assert answered["next"]["kind"] == "connected" and answered["next"]["to"] == [
        ("Conference", f"conversation-{call.conversation_id}")]

    # A second call, to voicemail from the hold menu, recorded from the page.
    second = _call_step("http://testserver", caller, *numbers)
    sid2 = second["call_sid"]
    held2 = _call_step("http://testserver", {**caller, "call_sid": sid2, "path": second["next"]["action"], "digits": "1"}, *numbers)
    _call_step("http://testserver", {**caller, "call_sid": sid2, "path": "/webhooks/twilio/voice/wait/choice/", "digits": "3"}, *numbers)
    record = _call_step("http://testserver", {**caller, "call_sid": sid2, "path": held2["next"]["action"],
                                              "QueueResult": "leave"}, *numbers)
    assert record["next"]["kind"] == "record"
    done = _call_step("http://testserver", {**caller, "call_sid": sid2, "path": record["next"]["action"],
                                            "record_callback": record["next"]["callback"], "seconds": "9"}, *numbers)
    assert done["next"]["kind"] == "ended"
    voicemail = Message.objects.get(conversation__calls__call_sid=sid2, kind="message")
    assert voicemail.text == "Voicemail (9 s): no transcript"


def test_the_simulator_phone_is_put_through_then_taken_to_the_keypad_survey_when_the_agent_hangs_up(demo_line):
    from conversations.channels.twilio_voice.softphone.controls import call_hang_up
    from conversations.channels.twilio_voice.tasks import voice_put_through
    from conversations.models import Agent, Conversation
    from conversations.routing.assignment import conversation_assign
    from conversations.simulator.views import _call_step
    from surveys.models import SurveyDefinition, SurveyPolicy, SurveyResponse

    SurveyPolicy.objects.get_or_create(pk=1)
    SurveyDefinition.objects.update(is_active=False)
    SurveyDefinition.objects.create(name="Phone", kind="csat", question_en="How was it?", question_ja="いかがでしたか？")
    caller = {"from": "090-1234-5678", "to": "+815031230003"}
    numbers = ("+819012345678", "+815031230003")
    dialed = _call_step("http://testserver", caller, *numbers)
    sid = dialed["call_sid"]
    held = _call_step("http://testserver", {**caller, "call_sid": sid, "path": dialed["next"]["action"], "digits": "1"}, *numbers)
    call = Call.objects.get(call_sid=sid)
    agent = Agent.objects.get(user__username="alice")
    conversation_assign(conversation_id=call.conversation_id, agent=agent, by=None)
    assert voice_put_through.apply(args=[call.conversation_id, agent.pk]).result == "redirect"
    # The hold loop's next request follows our redirect: into the conference.
    joined = _call_step("http://testserver", {**caller, "call_sid": sid, "path": held["next"]["wait_url"], "hold": True},
                        *numbers)
    assert joined["next"]["kind"] == "connected"
    assert joined["next"]["to"] == [("Conference", f"conversation-{call.conversation_id}")]
    waiting = _call_step("http://testserver", {**caller, "call_sid": sid, "path": joined["path"], "connected": True}, *numbers)
    assert waiting["next"] == {"kind": "connected", "waiting": True} and waiting["verbs"] == []
    call_hang_up(conversation=Conversation.objects.get(pk=call.conversation_id), agent=agent)
    survey = _call_step("http://testserver", {**caller, "call_sid": sid, "path": joined["path"], "connected": True}, *numbers)
    assert survey["next"]["kind"] == "gather" and survey["verbs"][0]["children"][0]["text"].startswith("いかがでしたか？")
    thanks = _call_step("http://testserver", {**caller, "call_sid": sid, "path": survey["next"]["action"], "digits": "5"},
                        *numbers)
    assert thanks["next"]["kind"] == "ended" and thanks["verbs"][0]["text"] == "ご回答ありがとうございました。"
    assert SurveyResponse.objects.get().score == 5
