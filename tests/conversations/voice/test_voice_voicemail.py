"""Voicemail: after hours (told when the line opens, in the caller's language), on request from
hold, with and without a transcript; the recording fetched with Twilio's credentials as an
attachment; the conversation routed as a follow-up."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from conversations.channels import media
from conversations.channels.twilio_messaging.tasks import fetch_twilio_media
from conversations.models import Attachment, Call, Conversation, EventType, Message

from .conftest import verbs

RECORDING_URL = "https://api.twilio.com/2010-04-01/Accounts/AC" + "d" * 32 + "/Recordings/RE" + "a" * 32
CLOSED_ALL_WEEK = {"time_zone": "Asia/Tokyo", "weekly": {"mon": [["09:00", "18:00"]]}, "holidays": []}


def _close_the_line(voice_line):
    queue = voice_line["support"]
    queue.business_hours = CLOSED_ALL_WEEK
    queue.save()


def _recording(caller, *, sid="RE" + "a" * 32, duration="14"):
    return caller.post("/webhooks/twilio/voice/recording/", RecordingSid=sid, RecordingUrl=RECORDING_URL,
                       RecordingStatus="completed", RecordingDuration=duration, RecordingChannels="1")


def test_after_hours_the_caller_hears_when_the_line_opens_and_can_leave_a_voicemail(voice_line, phone, monkeypatch):
    _close_the_line(voice_line)
    # Tuesday 2026-12-08 10:00 in Tokyo: closed until Monday 09:00.
    now = datetime(2026, 12, 8, 10, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    monkeypatch.setattr(timezone, "now", lambda: now.astimezone(ZoneInfo("UTC")))
    caller = phone()
    closed, prompt, record, none, hangup = verbs(caller.dial())
    assert closed.tag == "Say" and closed.get("language") == "ja-JP"
    assert closed.text == "ただいま営業時間外です。受付は12月14日 月曜日 9時00分に再開いたします。"
    assert prompt.tag == "Say" and record.tag == "Record"
    assert record.get("recordingStatusCallback") == "/webhooks/twilio/voice/recording/"
    assert record.get("action") == "/webhooks/twilio/voice/voicemail/"
    assert record.get("transcribe") is None  # Twilio does not transcribe Japanese
    assert [none.tag, hangup.tag] == ["Say", "Hangup"]
    call = Call.objects.get(call_sid=caller.sid)
    assert call.outcome == "voicemail" and call.conversation.status == "pending"
    assert caller.dial().content == caller.dial().content  # Twilio's retry hears the same
    assert [verb.tag for verb in verbs(caller.dial())] == ["Say", "Say", "Record", "Say", "Hangup"]


def test_an_english_caller_after_hours_hears_it_in_english_with_a_transcript(voice_line, phone, queued):
    caller = phone()
    caller.dial()
    caller.post("/webhooks/twilio/voice/gather/?attempt=0", Digits="9")
    caller.post("/webhooks/twilio/voice/gather/?attempt=0", Digits="1")
    caller.post("/webhooks/twilio/voice/wait/choice/", Digits="3")
    say, record, _none, _hangup = verbs(caller.post("/webhooks/twilio/voice/enqueue-action/", QueueResult="leave"))
    assert say.get("language") == "en-US" and say.get("voice") == "Polly.Joanna"
    assert record.get("transcribe") == "true"
    assert record.get("transcribeCallback") == "/webhooks/twilio/voice/transcription/"
    call = Call.objects.get(call_sid=caller.sid)
    assert call.conversation.status == "pending"  # no offer while they record

    assert _recording(caller).status_code == 204
    message = Message.objects.get(conversation=call.conversation, kind="message")
    assert message.text == "Voicemail (14 s): transcript pending"
    caller.post("/webhooks/twilio/voice/transcription/", RecordingSid="RE" + "a" * 32,
                TranscriptionText="Hi, my invoice is wrong.", TranscriptionStatus="completed")
    message.refresh_from_db()
    assert message.text == "Voicemail (14 s): Hi, my invoice is wrong."
    call.refresh_from_db()
    assert call.transcript == "Hi, my invoice is wrong."


def test_a_voicemail_without_transcript_becomes_a_follow_up_with_the_recording_attached(
        voice_line, phone, queued, monkeypatch):
    caller = phone()
    caller.dial()
    caller.post("/webhooks/twilio/voice/gather/?attempt=0", Digits="1")
    (leave,) = verbs(caller.post("/webhooks/twilio/voice/wait/choice/", Digits="3"))
    assert leave.tag == "Leave"
    caller.post("/webhooks/twilio/voice/enqueue-action/", QueueResult="leave")
    say, hangup = verbs(caller.post("/webhooks/twilio/voice/voicemail/", RecordingUrl=RECORDING_URL, RecordingDuration="14"))
    assert say.text.startswith("メッセージをお預かりしました") and hangup.tag == "Hangup"
    caller.post("/webhooks/twilio/voice/status/", CallStatus="completed", CallDuration="35")
    _recording(caller)
    _recording(caller)  # Twilio retries: still one message
    call = Call.objects.get(call_sid=caller.sid)
    conversation = Conversation.objects.get(pk=call.conversation_id)
    message = Message.objects.get(conversation=conversation, kind="message")
    assert message.text == "Voicemail (14 s): no transcript"
    assert conversation.status == "open" and conversation.abandoned_at is None
    assert conversation.follow_up_at is not None and conversation.follow_up_channel == "voice"
    assert ("conversations.route_conversation", (conversation.pk,)) in queued
    assert ("conversations.fetch_twilio_media", (message.pk,)) in queued
    attachment = Attachment.objects.get(message=message)
    assert attachment.state == "pending" and attachment.source_url == RECORDING_URL + ".mp3"
    assert call.outcome == "voicemail"
    events = list(Message.objects.filter(conversation=conversation, kind="event").values_list("event_type", flat=True))
    assert events.count(EventType.VOICEMAIL) == 2  # prompted, then recorded

    fetched = []

    def fake_fetch(url, *, auth, max_bytes, **kwargs):
        fetched.append((url, auth))
        return media.FetchedMedia(content=b"ID3fake-mp3", content_type="audio/mpeg")

    monkeypatch.setattr(media, "fetch", fake_fetch)
    assert fetch_twilio_media.apply(args=[message.pk]).result == 1
    attachment.refresh_from_db()
    assert attachment.state == "stored" and attachment.file.read() == b"ID3fake-mp3"
    assert fetched[0][0] == RECORDING_URL + ".mp3" and fetched[0][1][0].startswith("AC")


@pytest.mark.parametrize("status", ["failed"])
def test_a_failed_transcription_says_no_transcript(voice_line, phone, status):
    inbox = voice_line["inbox"]
    caller = phone()
    caller.dial()
    caller.post("/webhooks/twilio/voice/gather/?attempt=0", Digits="9")
    caller.post("/webhooks/twilio/voice/gather/?attempt=0", Digits="1")
    caller.post("/webhooks/twilio/voice/wait/choice/", Digits="3")
    _recording(caller, duration="3")
    caller.post("/webhooks/twilio/voice/transcription/", RecordingSid="RE" + "a" * 32, TranscriptionText="",
                TranscriptionStatus=status)
    assert Message.objects.get(inbox=inbox, kind="message").text == "Voicemail (3 s): no transcript"


def test_a_caller_waiting_when_the_queue_closes_is_told_and_offered_a_callback_or_voicemail(voice_line, phone, monkeypatch):
    _close_the_line(voice_line)  # open on Mondays 09:00-18:00 (Tokyo)
    clock = {"now": datetime(2026, 12, 7, 17, 55, tzinfo=ZoneInfo("Asia/Tokyo"))}
    monkeypatch.setattr(timezone, "now", lambda: clock["now"].astimezone(ZoneInfo("UTC")))
    caller = phone()
    caller.dial()
    caller.post("/webhooks/twilio/voice/gather/?attempt=0", Digits="1")
    (gather,) = verbs(caller.post("/webhooks/twilio/voice/wait/"))  # still open: their place in line
    assert next(gather.iter("Say")).text == "現在1番目にお待ちいただいております。"

    clock["now"] = datetime(2026, 12, 7, 18, 1, tzinfo=ZoneInfo("Asia/Tokyo"))
    for _retry in range(2):  # every round of the hold loop says it; the timeline has it once
        gather, leave = verbs(caller.post("/webhooks/twilio/voice/wait/"))
        closing, menu = list(gather)
        assert gather.get("action") == "/webhooks/twilio/voice/wait/choice/" and gather.get("input") == "dtmf"
        assert closing.text == ("申し訳ございません。受付時間を過ぎたため、本日はおつなぎできません。"
                                "受付は12月14日 月曜日 9時00分に再開いたします。")
        assert menu.text.startswith("折り返しのお電話をご希望の場合は2") and leave.tag == "Leave"
    call = Call.objects.get(call_sid=caller.sid)
    assert call.ivr["closed_while_waiting"] is True
    conversation = call.conversation
    assert Message.objects.filter(conversation=conversation, event_type=EventType.IVR_CHOICE,
                                  event_data__choice="queue_closed").count() == 1
    # Silence: the <Leave/> after the menu takes them to voicemail, for that reason.
    say, record, _none, _hangup = verbs(caller.post("/webhooks/twilio/voice/enqueue-action/", QueueResult="leave"))
    assert say.text.startswith("発信音のあとに") and record.tag == "Record"
    call.refresh_from_db()
    assert call.outcome == "voicemail" and call.ivr["voicemail"] == "closed_while_waiting"


def test_a_caller_waiting_when_the_queue_closes_may_ask_for_a_callback_in_english(voice_line, phone, monkeypatch):
    _close_the_line(voice_line)
    clock = {"now": datetime(2026, 12, 7, 17, 55, tzinfo=ZoneInfo("Asia/Tokyo"))}
    monkeypatch.setattr(timezone, "now", lambda: clock["now"].astimezone(ZoneInfo("UTC")))
    caller = phone()
    caller.dial()
    caller.post("/webhooks/twilio/voice/gather/?attempt=0", Digits="9")
    caller.post("/webhooks/twilio/voice/gather/?attempt=0", Digits="1")
    clock["now"] = datetime(2026, 12, 7, 18, 1, tzinfo=ZoneInfo("Asia/Tokyo"))
    gather, _leave = verbs(caller.post("/webhooks/twilio/voice/wait/"))
    closing, _menu = list(gather)
    assert closing.get("language") == "en-US"
    assert closing.text == "We are sorry: we have just closed and cannot connect you today. We open again Monday, December 14 at 9:00."
    (leave,) = verbs(caller.post("/webhooks/twilio/voice/wait/choice/", Digits="2"))
    assert leave.tag == "Leave"
    say, hangup = verbs(caller.post("/webhooks/twilio/voice/enqueue-action/", QueueResult="leave"))
    assert say.text.startswith("We will call you back") and hangup.tag == "Hangup"
    call = Call.objects.get(call_sid=caller.sid)
    assert call.callback_requested and call.conversation.abandoned_at is None
