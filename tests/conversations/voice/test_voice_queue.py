"""On hold: position and wait from our routing numbers, the keypad menu, two calls and one free
agent, the agent's acceptance putting the caller through, a callback that keeps its place, a
caller who hangs up (abandoned)."""

from datetime import timedelta

from django.utils import timezone

from conversations.channels.twilio_voice.tasks import voice_put_through
from conversations.models import (
    Call,
    Conversation,
    EventType,
    Message,
    Offer,
    RecordedProviderRequest,
)
from conversations.routing.decisions import route_conversation, route_for_agent
from conversations.routing.offers import offer_accept
from conversations.routing.presence import agent_presence_set

from .conftest import verbs

WAIT = "/webhooks/twilio/voice/wait/"


def _queued_call(phone, *, sender="+819012345678", digits="1"):
    caller = phone(sender=sender)
    caller.dial()
    caller.post("/webhooks/twilio/voice/gather/?attempt=0", Digits=digits)
    return caller, Call.objects.get(call_sid=caller.sid)


def _events(conversation) -> list[str]:
    return list(Message.objects.filter(conversation=conversation, kind="event").order_by("seq")
                .values_list("event_type", flat=True))


def test_the_wait_url_announces_the_exact_position_and_offers_the_keypad_menu_over_hold_music(voice_line, phone):
    first, _ = _queued_call(phone, sender="+819011110001")
    second, _ = _queued_call(phone, sender="+819011110002")
    (gather,) = verbs(second.post(WAIT, QueuePosition="1", QueueTime="12"))
    assert gather.tag == "Gather" and gather.get("numDigits") == "1"
    assert gather.get("action") == "/webhooks/twilio/voice/wait/choice/"
    says = [say.text for say in gather.iter("Say")]
    # Our own routing numbers, not Twilio's QueuePosition: second in line.
    assert says[0] == "現在2番目にお待ちいただいております。"
    assert "2を押してください" in says[-1] or "2、" in says[-1]
    (play,) = gather.iter("Play")
    assert play.text.endswith("/static/voice/hold-music.wav")
    (first_gather,) = verbs(first.post(WAIT))
    assert next(first_gather.iter("Say")).text == "現在1番目にお待ちいただいております。"
    (keep,) = verbs(second.post("/webhooks/twilio/voice/wait/choice/", Digits="1"))
    assert keep.tag == "Say" and keep.text == "このままお待ちください。"


def test_two_calls_and_one_free_agent_the_first_caller_is_put_through_to_the_agents_browser_in_a_conference(
        voice_line, voice_agent, phone, queued, django_capture_on_commit_callbacks):
    first, first_call = _queued_call(phone, sender="+819011110001")
    second, second_call = _queued_call(phone, sender="+819011110002")
    route_conversation(conversation_id=first_call.conversation_id)
    route_conversation(conversation_id=second_call.conversation_id)
    offer = Offer.objects.get(status="pending")
    assert offer.conversation_id == first_call.conversation_id  # voice capacity 1: one offer
    with django_capture_on_commit_callbacks(execute=True):
        offer_accept(offer_id=offer.pk, agent=voice_agent)
    conversation_id = first_call.conversation_id
    assert queued.args_of("conversations.voice_put_through") == [(conversation_id, voice_agent.pk)]
    assert voice_put_through.apply(args=[conversation_id, voice_agent.pk]).result == "redirect"
    # The REST requests: the caller out of <Enqueue> to our conference URL, the agent's browser in.
    redirect, participant = RecordedProviderRequest.objects.filter(provider="twilio").order_by("id")
    assert redirect.uri.endswith(f"/Calls/{first.sid}.json")
    conference_url = redirect.params["Url"]
    assert conference_url.endswith(f"/webhooks/twilio/voice/conference/?call={first_call.pk}")
    assert participant.uri.endswith(f"/Conferences/conversation-{conversation_id}/Participants.json")
    assert participant.params["To"] == f"client:agent_{voice_agent.pk}"
    assert participant.params["Label"] == f"agent_{voice_agent.pk}"
    assert participant.params["StatusCallback"].endswith(
        f"/webhooks/twilio/voice/agent-leg/?conversation={conversation_id}&agent={voice_agent.pk}")
    # Twilio follows the redirect: the caller joins the conversation's conference.
    path = f"/webhooks/twilio/voice/conference/?call={first_call.pk}"
    (dial,) = verbs(first.post(path))
    (conference,) = list(dial)
    assert dial.tag == "Dial" and conference.tag == "Conference" and conference.text == f"conversation-{conversation_id}"
    assert conference.get("participantLabel") == "customer" and conference.get("endConferenceOnExit") == "true"
    assert conference.get("startConferenceOnEnter") == "false"
    # A retried webhook answers the same; the task run again (or the agent's Answer) asks nothing more.
    assert [v.tag for v in verbs(first.post(path))] == ["Dial"]
    assert voice_put_through.apply(args=[conversation_id, voice_agent.pk]).result == "claimed"
    assert RecordedProviderRequest.objects.filter(provider="twilio").count() == 2
    first_call.refresh_from_db()
    assert first_call.agent == voice_agent and first_call.answered_at is not None
    assert _events(first_call.conversation).count(EventType.CALL_CONNECTED) == 1
    # The second caller is first in line now.
    (gather,) = verbs(second.post(WAIT))
    assert next(gather.iter("Say")).text == "現在1番目にお待ちいただいております。"
    # The call ends: its duration on the timeline.
    first.post("/webhooks/twilio/voice/status/", CallStatus="completed", CallDuration="95")
    first_call.refresh_from_db()
    assert first_call.outcome == "answered" and first_call.duration == 95
    ended = Message.objects.get(conversation=first_call.conversation, event_type=EventType.CALL_ENDED)
    assert ended.event_data["duration_seconds"] == 95 and ended.event_data["duration"] == "1:35"
    assert _events(first_call.conversation)[:3] == [EventType.CALL_STARTED, EventType.IVR_CHOICE, EventType.CALL_QUEUED]


def test_the_conference_url_answers_only_the_call_it_names(voice_line, voice_agent, phone):
    caller, call = _queued_call(phone)
    other, _other_call = _queued_call(phone, sender="+819011110007")
    (hangup,) = verbs(other.post(f"/webhooks/twilio/voice/conference/?call={call.pk}"))
    assert hangup.tag == "Hangup"
    assert caller.post(f"/webhooks/twilio/voice/conference/?call={call.pk}", signature="bad").status_code == 403
    for path in ("/webhooks/twilio/voice/requeue/?call=" + str(call.pk),
                 f"/webhooks/twilio/voice/agent-leg/?conversation={call.conversation_id}&agent={voice_agent.pk}"):
        assert caller.post(path, signature="bad").status_code == 403


def test_an_agent_answering_on_their_phone_is_dialled_on_their_number(voice_line, voice_agent, phone,
                                                                     django_capture_on_commit_callbacks):
    _caller, call = _queued_call(phone)
    voice_agent.voice_answer_on, voice_agent.voice_phone_number = "phone", "+819099998888"
    voice_agent.save()
    route_conversation(conversation_id=call.conversation_id)
    with django_capture_on_commit_callbacks(execute=True):
        offer_accept(offer_id=Offer.objects.get(status="pending").pk, agent=voice_agent)
    voice_put_through.apply(args=[call.conversation_id, voice_agent.pk])
    participant = RecordedProviderRequest.objects.filter(uri__contains="/Participants").get()
    assert participant.params["To"] == "+819099998888" and participant.params["From"] == call.to_address


def test_an_agent_whose_phone_rings_out_sends_the_caller_back_to_the_queue_in_the_same_place(
        voice_line, voice_agent, phone, queued, django_capture_on_commit_callbacks):
    caller, call = _queued_call(phone)
    conversation = Conversation.objects.get(pk=call.conversation_id)
    queued_at = conversation.queued_at
    route_conversation(conversation_id=conversation.pk)
    with django_capture_on_commit_callbacks(execute=True):
        offer_accept(offer_id=Offer.objects.get(status="pending").pk, agent=voice_agent)
    voice_put_through.apply(args=[conversation.pk, voice_agent.pk])
    leg = f"/webhooks/twilio/voice/agent-leg/?conversation={conversation.pk}&agent={voice_agent.pk}"
    agent_leg_sid = "CA" + "e" * 32
    before = RecordedProviderRequest.objects.count()
    for _retry in range(2):  # Twilio retries: the second changes nothing
        response = caller.post(leg, CallSid=agent_leg_sid, CallStatus="no-answer", ParentCallSid="")
        assert response.status_code == 204
    conversation.refresh_from_db()
    assert conversation.assignee_id is None and conversation.queued_at == queued_at
    assert queued.args_of("conversations.route_conversation")[-1] == (conversation.pk,)
    (redirect,) = RecordedProviderRequest.objects.filter(pk__gt=0).order_by("id")[before:]
    assert redirect.uri.endswith(f"/Calls/{caller.sid}.json")
    assert redirect.params["Url"].endswith(f"/webhooks/twilio/voice/requeue/?call={call.pk}")
    say, enqueue = verbs(caller.post(f"/webhooks/twilio/voice/requeue/?call={call.pk}"))
    assert say.text.startswith("申し訳ございません。担当者が応答できませんでした")
    assert enqueue.tag == "Enqueue" and enqueue.text == "support"
    assert enqueue.get("waitUrl") == WAIT
    call.refresh_from_db()
    assert call.agent is None and call.answered_at is None and call.outcome == "" and call.connected_for is None
    left = Message.objects.filter(conversation=conversation, event_type=EventType.CALL_LEFT).get()
    assert left.event_data["reason"] == "no_answer"
    # Offered again, the next agent's put-through redirects from <Enqueue> again (not a resume).
    from conversations.channels.twilio_voice.softphone.calls import call_of

    state = call_of(conversation)
    assert state.state == "waiting" and not state.in_conference
    # As after an offer that timed out, the agent is not at their desk: not offered the call again.
    voice_agent.refresh_from_db()
    assert voice_agent.presence.name == "Missed offer" and not voice_agent.presence.is_available
    route_conversation(conversation_id=conversation.pk)
    assert not Offer.objects.filter(status="pending").exists()
    # Back at their desk, they are offered it again (a colleague would be just the same).
    agent_presence_set(agent=voice_agent, presence=voice_line["available"])
    route_conversation(conversation_id=conversation.pk)
    with django_capture_on_commit_callbacks(execute=True):
        offer_accept(offer_id=Offer.objects.get(status="pending").pk, agent=voice_agent)
    assert voice_put_through.apply(args=[conversation.pk, voice_agent.pk]).result == "redirect"


def test_an_agent_leg_that_answered_is_kept_and_is_not_a_missed_call(
        voice_line, voice_agent, phone, django_capture_on_commit_callbacks):
    caller, call = _queued_call(phone)
    route_conversation(conversation_id=call.conversation_id)
    with django_capture_on_commit_callbacks(execute=True):
        offer_accept(offer_id=Offer.objects.get(status="pending").pk, agent=voice_agent)
    voice_put_through.apply(args=[call.conversation_id, voice_agent.pk])
    leg = f"/webhooks/twilio/voice/agent-leg/?conversation={call.conversation_id}&agent={voice_agent.pk}"
    caller.post(leg, CallSid="CA" + "f" * 32, CallStatus="in-progress")
    caller.post(leg, CallSid="CA" + "f" * 32, CallStatus="no-answer")
    call.refresh_from_db()
    assert call.agent_call_sid == "CA" + "f" * 32
    assert Conversation.objects.get(pk=call.conversation_id).assignee == voice_agent


def test_a_callback_keeps_the_callers_place_and_the_agent_who_takes_it_calls_them_back(
        voice_line, voice_agent, phone, queued, django_capture_on_commit_callbacks):
    voice_agent.presence = None
    voice_agent.save()  # nobody free yet
    first, first_call = _queued_call(phone, sender="+819011110001")
    second, _second_call = _queued_call(phone, sender="+819011110002")
    queued_at = Conversation.objects.get(pk=first_call.conversation_id).queued_at
    (leave,) = verbs(first.post("/webhooks/twilio/voice/wait/choice/", Digits="2"))
    assert leave.tag == "Leave"
    say, hangup = verbs(first.post("/webhooks/twilio/voice/enqueue-action/", QueueResult="leave", QueueTime="30"))
    assert say.text.startswith("順番が来ましたら") and hangup.tag == "Hangup"
    first.post("/webhooks/twilio/voice/status/", CallStatus="completed", CallDuration="40")
    conversation = Conversation.objects.get(pk=first_call.conversation_id)
    assert conversation.abandoned_at is None and conversation.status == "open"
    assert conversation.queued_at == queued_at  # the same place in line
    first_call.refresh_from_db()
    assert first_call.callback_requested and first_call.callback_number == "+819011110001"
    assert first_call.outcome == "callback"
    (gather,) = verbs(second.post(WAIT))
    assert next(gather.iter("Say")).text == "現在2番目にお待ちいただいております。"  # still behind the first

    voice_agent.presence = voice_line["available"]
    voice_agent.save()
    route_for_agent(agent_id=voice_agent.pk)  # the agent is free: their next work, in line order
    offer = Offer.objects.get(status="pending")
    assert offer.conversation_id == first_call.conversation_id  # their turn came first
    with django_capture_on_commit_callbacks(execute=True):
        offer_accept(offer_id=offer.pk, agent=voice_agent)
    conversation_id = first_call.conversation_id
    assert queued.args_of("conversations.voice_put_through") == [(conversation_id, voice_agent.pk)]
    assert voice_put_through.apply(args=[conversation_id, voice_agent.pk]).result == "callback"
    placed = RecordedProviderRequest.objects.get(uri__endswith="/Calls.json")
    assert placed.to == "+819011110001" and placed.from_address == voice_line["inbox"].address
    assert placed.params["Url"].endswith(f"/webhooks/twilio/voice/conference/?call={first_call.pk}")
    participant = RecordedProviderRequest.objects.get(uri__contains="/Participants")
    assert participant.uri.endswith(f"/Conferences/conversation-{conversation_id}/Participants.json")
    # The customer answers our call: told why, then into the same conference as the agent.
    first.sid = placed.sid
    say, dial = verbs(first.post(f"/webhooks/twilio/voice/conference/?call={first_call.pk}", Direction="outbound-api"))
    assert say.text.startswith("お待たせいたしました")
    assert dial.find("Conference").text == f"conversation-{conversation_id}"
    assert voice_put_through.apply(args=[conversation_id, voice_agent.pk]).result == "claimed"
    assert RecordedProviderRequest.objects.filter(uri__endswith="/Calls.json").count() == 1
    events = _events(conversation)
    assert EventType.CALLBACK_REQUESTED in events and EventType.CALLBACK_STARTED in events
    assert events.count(EventType.CALL_CONNECTED) == 1
    # The agent's leg rings out: the customer on our callback goes on hold, and the next agent's
    # put-through redirects that leg (their own call ended long ago).
    first.post(f"/webhooks/twilio/voice/agent-leg/?conversation={conversation_id}&agent={voice_agent.pk}",
               CallSid="CA" + "9" * 32, CallStatus="no-answer")
    requeue = RecordedProviderRequest.objects.filter(uri__endswith=f"/Calls/{placed.sid}.json").get()
    assert requeue.params["Url"].endswith(f"/webhooks/twilio/voice/requeue/?call={first_call.pk}")
    assert [v.tag for v in verbs(first.post(f"/webhooks/twilio/voice/requeue/?call={first_call.pk}"))] == ["Say", "Enqueue"]
    agent_presence_set(agent=voice_agent, presence=voice_line["available"])  # back at their desk
    route_for_agent(agent_id=voice_agent.pk)
    with django_capture_on_commit_callbacks(execute=True):
        offer_accept(offer_id=Offer.objects.get(status="pending").pk, agent=voice_agent)
    assert voice_put_through.apply(args=[conversation_id, voice_agent.pk]).result == "redirect"
    again = RecordedProviderRequest.objects.filter(uri__endswith=f"/Calls/{placed.sid}.json").order_by("id").last()
    assert again.params["Url"].endswith(f"/webhooks/twilio/voice/conference/?call={first_call.pk}")
    assert RecordedProviderRequest.objects.filter(uri__endswith="/Calls.json").count() == 1  # not called twice


def test_a_caller_who_hangs_up_on_hold_is_abandoned(voice_line, phone):
    caller, call = _queued_call(phone)
    assert verbs(caller.post("/webhooks/twilio/voice/enqueue-action/", QueueResult="hangup")) == []
    caller.post("/webhooks/twilio/voice/status/", CallStatus="completed", CallDuration="20")
    conversation = Conversation.objects.get(pk=call.conversation_id)
    assert conversation.abandoned_at is not None
    call.refresh_from_db()
    assert call.outcome == "abandoned"
    events = _events(conversation)
    assert events.count(EventType.ABANDONED) == 1 and events[-1] in (EventType.CALL_ENDED, EventType.ABANDONED)


def test_a_caller_who_hangs_up_in_the_menu_closes_the_conversation(voice_line, phone):
    caller = phone()
    caller.dial()
    caller.post("/webhooks/twilio/voice/status/", CallStatus="completed", CallDuration="8")
    call = Call.objects.get(call_sid=caller.sid)
    assert call.outcome == "ivr_hangup" and call.conversation.status == "resolved"
    assert call.conversation.abandoned_at is None


def test_a_caller_waiting_longer_than_the_limit_is_offered_a_callback_or_voicemail_and_silence_is_voicemail(
        voice_line, phone):
    caller, call = _queued_call(phone)
    Call.objects.filter(pk=call.pk).update(queued_at=timezone.now() - timedelta(seconds=601))
    gather, leave = verbs(caller.post(WAIT))
    sorry, menu = list(gather)
    assert gather.get("action") == "/webhooks/twilio/voice/wait/choice/" and leave.tag == "Leave"
    assert sorry.text == "大変お待たせして申し訳ございません。ただいま担当者がすべて対応中です。"
    assert menu.text.startswith("順番はそのままで折り返しのお電話をご希望の場合は2")
    verbs_after = verbs(caller.post("/webhooks/twilio/voice/enqueue-action/", QueueResult="leave"))
    assert [v.tag for v in verbs_after] == ["Say", "Record", "Say", "Hangup"]
    call.refresh_from_db()
    assert call.outcome == "voicemail" and call.ivr["voicemail"] == "no_agent"
    assert Conversation.objects.get(pk=call.conversation_id).status == "pending"  # not offered meanwhile


def test_a_caller_past_the_limit_may_still_keep_their_place_with_a_callback(voice_line, phone):
    caller, call = _queued_call(phone)
    Call.objects.filter(pk=call.pk).update(queued_at=timezone.now() - timedelta(seconds=601))
    verbs(caller.post(WAIT))
    (leave,) = verbs(caller.post("/webhooks/twilio/voice/wait/choice/", Digits="2"))
    assert leave.tag == "Leave"
    say, hangup = verbs(caller.post("/webhooks/twilio/voice/enqueue-action/", QueueResult="leave"))
    assert say.text.startswith("順番が来ましたら") and hangup.tag == "Hangup"
    call.refresh_from_db()
    assert call.callback_requested and call.outcome == ""


def test_the_timeline_shows_the_ivr_choice_the_queue_and_the_calls_duration(voice_line, phone):
    from django.template.loader import render_to_string

    caller, call = _queued_call(phone)
    caller.post("/webhooks/twilio/voice/enqueue-action/", QueueResult="hangup")
    caller.post("/webhooks/twilio/voice/status/", CallStatus="completed", CallDuration="42")
    rendered = {
        message.event_type: render_to_string("console/_timeline_entry.html", {"entry": {
            "type": "message", "item": message, "cursor": message.pk, "at": message.created_at}})
        for message in Message.objects.filter(conversation_id=call.conversation_id, kind="event")
    }
    assert "IVR orders" in rendered[EventType.IVR_CHOICE]
    assert "· Support" in rendered[EventType.CALL_QUEUED]
    assert "duration 0:42" in rendered[EventType.CALL_ENDED] and "Call ended" in rendered[EventType.CALL_ENDED]


def test_a_call_whose_end_twilio_never_reported_is_ended_by_the_tick(voice_line, phone):
    from contactcenter import tick

    in_menu = phone(sender="+819011110003")
    in_menu.dial()
    _on_hold, held = _queued_call(phone, sender="+819011110004")
    Call.objects.update(started_at=timezone.now() - timedelta(hours=5))
    fresh = phone(sender="+819011110005")
    fresh.dial()
    assert tick.registered()["voice_stale_calls_end"]() == 2
    menu_call = Call.objects.get(call_sid=in_menu.sid)
    assert menu_call.outcome == "ivr_hangup" and menu_call.conversation.status == "resolved"
    held.refresh_from_db()
    assert held.outcome == "abandoned" and Conversation.objects.get(pk=held.conversation_id).abandoned_at is not None
    assert Call.objects.get(call_sid=fresh.sid).ended_at is None


def test_the_wait_limit_is_the_lines_else_the_queues_overflow_time_when_it_overflows_nowhere(voice_line, phone):
    support = voice_line["support"]
    support.overflow_after_seconds = 120
    support.save()
    caller, call = _queued_call(phone)
    assert call.ivr["wait_limit"] == 120
    Call.objects.filter(pk=call.pk).update(queued_at=timezone.now() - timedelta(seconds=121))
    _gather, leave = verbs(caller.post(WAIT))
    assert leave.tag == "Leave"
    inbox = voice_line["inbox"]
    inbox.settings = {"ivr": {**inbox.settings["ivr"], "max_wait_seconds": 300}}
    inbox.save()
    _other, second = _queued_call(phone, sender="+819011110009")
    assert second.ivr["wait_limit"] == 300


def test_the_timeline_says_when_an_agents_phone_rang_out_in_the_readers_language(
        voice_line, voice_agent, phone, queued, django_capture_on_commit_callbacks):
    from django.template.loader import render_to_string
    from django.utils import translation

    caller, call = _queued_call(phone)
    route_conversation(conversation_id=call.conversation_id)
    with django_capture_on_commit_callbacks(execute=True):
        offer_accept(offer_id=Offer.objects.get(status="pending").pk, agent=voice_agent)
    voice_put_through.apply(args=[call.conversation_id, voice_agent.pk])
    caller.post(f"/webhooks/twilio/voice/agent-leg/?conversation={call.conversation_id}&agent={voice_agent.pk}",
                CallSid="CA" + "e" * 32, CallStatus="busy")
    left = Message.objects.get(conversation_id=call.conversation_id, event_type=EventType.CALL_LEFT)

    def rendered(language):
        with translation.override(language):
            return render_to_string("console/_timeline_entry.html", {"entry": {
                "type": "message", "item": left, "cursor": left.pk, "at": left.created_at}})

    assert "the agent's phone was not answered: back in the queue" in rendered("en")
    assert "担当者が応答しなかったため、キューに戻しました" in rendered("ja")


def test_an_agent_leg_callback_naming_another_agent_changes_nothing(
        voice_line, voice_agent, phone, queued, django_capture_on_commit_callbacks):
    from .conftest import make_agent_for_line

    caller, call = _queued_call(phone)
    route_conversation(conversation_id=call.conversation_id)
    with django_capture_on_commit_callbacks(execute=True):
        offer_accept(offer_id=Offer.objects.get(status="pending").pk, agent=voice_agent)
    voice_put_through.apply(args=[call.conversation_id, voice_agent.pk])
    other = make_agent_for_line(voice_line, "ren")
    before = RecordedProviderRequest.objects.count()
    caller.post(f"/webhooks/twilio/voice/agent-leg/?conversation={call.conversation_id}&agent={other.pk}",
                CallSid="CA" + "e" * 32, CallStatus="no-answer")
    assert Conversation.objects.get(pk=call.conversation_id).assignee == voice_agent
    assert RecordedProviderRequest.objects.count() == before
    # Nor does a put-through for an agent the conversation is not assigned to.
    assert voice_put_through.apply(args=[call.conversation_id, other.pk]).result == "not_assigned"
    assert caller.post("/webhooks/twilio/voice/agent-leg/?conversation=x&agent=1").status_code == 400
