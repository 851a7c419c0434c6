"""An incoming call through the IVR: TwiML verb by verb, signatures, replays, withheld numbers,
one customer with their SMS, the menu in Japanese then English, options the routing rules see."""

import pytest

from conversations.models import Call, Conversation, EventType, Inbox, Message
from profiles.models import Customer, Identity

from .conftest import CALLER, verbs


def _says(element):
    return [(say.get("language"), say.get("voice"), say.text) for say in element.iter("Say")]


def _events(conversation) -> list[str]:
    return list(Message.objects.filter(conversation=conversation, kind="event").order_by("seq")
                .values_list("event_type", flat=True))


def test_an_incoming_call_hears_the_japanese_greeting_and_menu_then_press_9_for_english(voice_line, phone):
    caller = phone()
    (gather,) = verbs(caller.dial())
    assert gather.tag == "Gather"
    assert gather.get("input") == "dtmf speech"
    assert gather.get("language") == "ja-JP"
    assert gather.get("speechModel") == "googlev2_telephony"
    assert gather.get("actionOnEmptyResult") == "true"
    assert gather.get("action") == "/webhooks/twilio/voice/gather/?attempt=0"
    assert _says(gather) == [
        ("ja-JP", "Polly.Mizuki", "お電話ありがとうございます。さくら茶です。"),
        ("ja-JP", "Polly.Mizuki", "ご注文については1、ご請求については2を押してください。"),
        ("en-US", "Polly.Joanna", "For English, press 9."),
    ]
    call = Call.objects.get(call_sid=caller.sid)
    assert call.conversation.channel == "voice" and call.conversation.status == "pending"
    assert call.conversation.queue is None  # not routed while the caller is in the menu
    assert _events(call.conversation) == [EventType.CALL_STARTED]

    (english,) = verbs(caller.post("/webhooks/twilio/voice/gather/?attempt=0", Digits="9"))
    assert english.get("language") == "en-US"
    assert _says(english) == [("en-US", "Polly.Joanna", "Thank you for calling Sakura Tea."),
                              ("en-US", "Polly.Joanna", "For orders press 1. For billing press 2.")]
    call.refresh_from_db()
    assert call.language == "en"


def test_choosing_an_option_queues_the_call_on_hold_with_our_wait_url(voice_line, phone, queued):
    caller = phone()
    caller.dial()
    say, enqueue = verbs(caller.post("/webhooks/twilio/voice/gather/?attempt=0", Digits="1"))
    assert say.tag == "Say" and say.get("language") == "ja-JP"
    assert enqueue.tag == "Enqueue"
    assert enqueue.text == "support"
    assert enqueue.get("waitUrl") == "/webhooks/twilio/voice/wait/"
    assert enqueue.get("action") == "/webhooks/twilio/voice/enqueue-action/"
    call = Call.objects.get(call_sid=caller.sid)
    conversation = call.conversation
    assert conversation.status == "open" and conversation.queue == voice_line["support"]
    assert conversation.queued_at is not None and conversation.queue_reason == "IVR option orders"
    assert call.ivr["option"] == "orders" and call.ivr["how"] == "keypad"
    assert _events(conversation) == [EventType.CALL_STARTED, EventType.IVR_CHOICE, EventType.CALL_QUEUED]
    assert ("conversations.route_conversation", (conversation.pk,)) in queued


def test_the_routing_rules_see_the_ivr_choice_and_the_option_tags_the_customer(voice_line, phone):
    caller = phone()
    caller.dial()
    verbs(caller.post("/webhooks/twilio/voice/gather/?attempt=0", SpeechResult="請求書について聞きたいです", Confidence="0.9"))
    call = Call.objects.get(call_sid=caller.sid)
    assert call.conversation.queue == voice_line["billing"]
    assert call.conversation.queue_reason == "Billing calls"
    assert call.ivr["how"] == "speech" and call.ivr["option"] == "billing"
    assert list(call.conversation.customer.tags.values_list("name", flat=True)) == ["billing-call"]


def test_no_input_repeats_the_menu_then_takes_the_default_option(voice_line, phone):
    caller = phone()
    caller.dial()
    (retry,) = verbs(caller.post("/webhooks/twilio/voice/gather/?attempt=0"))
    assert retry.tag == "Gather" and retry.get("action") == "/webhooks/twilio/voice/gather/?attempt=1"
    assert _says(retry)[0][2] == "恐れ入りますが、もう一度お選びください。"
    assert Call.objects.get(call_sid=caller.sid).queued_at is None
    _say, enqueue = verbs(caller.post("/webhooks/twilio/voice/gather/?attempt=1"))
    assert enqueue.tag == "Enqueue" and enqueue.text == "support"
    call = Call.objects.get(call_sid=caller.sid)
    assert call.ivr["option"] == "orders" and call.ivr["how"] == "default"


def test_a_wrong_signature_is_refused_and_nothing_is_stored(voice_line, phone):
    caller = phone()
    response = caller.post("/webhooks/twilio/voice/", signature="bm90IHRoZSBzaWduYXR1cmU=")
    assert response.status_code == 403
    unsigned = caller.client.post("/webhooks/twilio/voice/", caller.params())
    assert unsigned.status_code == 403
    assert not Call.objects.exists() and not Conversation.objects.exists() and not Customer.objects.exists()
    # A step of a call is checked too.
    assert caller.post("/webhooks/twilio/voice/status/", signature="x", CallStatus="completed").status_code == 403


def test_a_retried_webhook_is_the_same_call_the_same_conversation_and_the_same_twiml(voice_line, phone):
    caller = phone()
    first, again = caller.dial(), caller.dial()
    assert first.content == again.content
    assert Call.objects.filter(call_sid=caller.sid).count() == 1
    assert Conversation.objects.count() == 1
    chosen = caller.post("/webhooks/twilio/voice/gather/?attempt=0", Digits="1")
    retried = caller.post("/webhooks/twilio/voice/gather/?attempt=0", Digits="1")
    assert chosen.content == retried.content
    conversation = Conversation.objects.get()
    assert _events(conversation).count(EventType.CALL_QUEUED) == 1


@pytest.mark.parametrize("withheld", ["anonymous", "+266696687", "+86282452253", "", "Restricted", "Unavailable"])
def test_a_withheld_number_gets_a_customer_of_its_own_each_time(voice_line, phone, withheld):
    first, second = phone(sender=withheld), phone(sender=withheld)
    verbs(first.dial())
    verbs(second.dial())
    calls = list(Call.objects.order_by("pk"))
    assert len(calls) == 2
    assert calls[0].conversation.customer_id != calls[1].conversation.customer_id
    assert not Identity.objects.exists()  # no shared "anonymous" phone identity


def test_a_caller_and_their_sms_land_on_one_customer(voice_line, phone, client):
    from ..twilio_helpers import configure_our_numbers, post_inbound, sms_params

    configure_our_numbers()
    post_inbound(client, sms_params("SM" + "1" * 32, sender=CALLER))
    verbs(phone(sender="090-1234-5678").dial())
    sms_customer = Message.objects.get(channel="sms").customer_id
    assert Call.objects.get().conversation.customer_id == sms_customer
    assert Customer.objects.count() == 1


def test_a_call_to_a_number_that_is_no_voice_line_is_hung_up(voice_line, phone):
    (hangup,) = verbs(phone(to="+815000000000").dial())
    assert hangup.tag == "Hangup"
    assert not Call.objects.exists()


def test_the_ivr_is_checked_when_the_inbox_is_saved(voice_line):
    from django.core.exceptions import ValidationError

    inbox = Inbox(kind="voice", name="Bad", address="+815011112222", settings={"ivr": {
        "greeting": {"ja": ""}, "options": [{"key": "1", "name": "Orders!", "queue": "nowhere"},
                                            {"key": "1", "name": "b"}, {"key": "9", "name": "c"}],
        "default_option": "zzz", "voices": {"ja": "Polly.Joanna"}, "retries": 10}})
    with pytest.raises(ValidationError) as raised:
        inbox.full_clean()
    problems = raised.value.message_dict["settings"]
    assert any("Japanese text is required" in p for p in problems)
    assert any('no active queue has the slug "nowhere"' in p for p in problems)
    assert any('"1" is used twice' in p for p in problems)
    assert any("switches to English" in p for p in problems)
    assert any("ivr.options[1].name" in p for p in problems)
    assert any("default_option" in p for p in problems)
    assert any("Polly.Joanna" in p and "ja-JP" in p for p in problems)
    assert any("ivr.retries" in p for p in problems)
    voice_line["inbox"].full_clean()  # the good one passes


def test_an_admin_saving_a_voice_inbox_with_a_broken_ivr_is_told_what_is_wrong(voice_line, admin_client, phone):
    import json

    inbox = voice_line["inbox"]
    bad = {"ivr": {**inbox.settings["ivr"], "default_option": "nothing", "voices": {"ja": "Polly.Joanna"}}}
    response = admin_client.post(f"/admin/conversations/inbox/{inbox.pk}/change/", {
        "name": inbox.name, "kind": "voice", "address": inbox.address, "default_queue": voice_line["support"].pk,
        "reopen_window_days": 7, "is_active": "on", "secret": "", "settings": json.dumps(bad)})
    assert response.status_code == 200  # the form again, with the errors
    assert "ivr.default_option" in response.content.decode() and "Polly.Joanna" in response.content.decode()
    inbox.refresh_from_db()
    assert inbox.settings["ivr"]["default_option"] == "orders"
    phone().dial()
    assert admin_client.get("/admin/conversations/call/").status_code == 200


def test_a_browser_clients_call_is_no_customer(voice_line, phone):
    (hangup,) = verbs(phone(sender="client:agent_7").dial())
    assert hangup.tag == "Hangup"
    assert not Customer.objects.exists() and not Call.objects.exists()
