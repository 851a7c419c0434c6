"""Console actions (POST): each one does what it says, refuses in words, and only on conversations
the user may see (404 and nothing changed otherwise)."""

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone

from contactcenter import tick
from conversations.models import (
    Agent,
    AgentSkill,
    Channel,
    Conversation,
    ConversationRead,
    ConversationStatus,
    DeliveryStatus,
    Direction,
    EventType,
    Message,
    MessageKind,
    Offer,
    OfferStatus,
    PresenceState,
    Queue,
    Skill,
    WrapUpCode,
)
from conversations.services import InboundMessage, message_receive
from conversations.channels.webchat import ingest as webchat_ingest
from conversations.channels.webchat import visitors as webchat_visitors
from conversations.services.agent_actions import snoozed_wake
from profiles.models import (
    ConsentStatus,
    Customer,
    CustomerMerge,
    IdentityKind,
    JourneyStage,
    MergeSuggestion,
    SuggestionStatus,
)
from profiles.services import consent_record

from ..factories import make_agent, make_conversation, make_customer, make_identity, make_inbox, make_message

pytestmark = pytest.mark.django_db

PHONE = "+819012345678"


def act(client, name: str, *args, json: bool = True, **data):
    """POST a console action, as the page's script does (``json=True``) or as a plain form."""
    headers = {"HTTP_ACCEPT": "application/json"} if json else {}
    return client.post(reverse(f"console:{name}", args=args), data, **headers)


def outbound():
    return Message.objects.filter(direction=Direction.OUTBOUND)


def events(conversation, event_type):
    return list(Message.objects.filter(conversation=conversation, kind=MessageKind.EVENT, event_type=event_type)
                .order_by("seq"))


def seqs(conversation) -> list[int]:
    return list(Message.objects.filter(conversation=conversation).order_by("seq").values_list("seq", flat=True))


@pytest.fixture
def sms_inbox(db):
    return make_inbox("sms")


@pytest.fixture
def mine(agent, customer, sms_inbox):
    """Alice's SMS conversation with Hanako (she wrote first)."""
    conversation = make_conversation(customer, sms_inbox, assignee=agent, assigned_at=timezone.now())
    make_message(conversation, "荷物が届きません")
    return conversation


@pytest.fixture
def bobs(other_agent, support_queue):
    """Bob's conversation: not offered to Alice, not waiting in any queue."""
    someone = make_customer("Someone Else")
    make_identity(someone, IdentityKind.PHONE, "+819099990000")
    conversation = make_conversation(someone, make_inbox("sms"), assignee=other_agent, queue=support_queue)
    make_message(conversation, "bob's business")
    return conversation


# --- access ------------------------------------------------------------------------------------------------


CONVERSATION_ACTIONS = {
    "reply": {"text": "hello"},
    "note": {"text": "a note"},
    "resolve": {"note": "done"},
    "snooze": {"preset": "1h"},
    "reopen": {},
    "transfer": {"target": "queue:{queue}", "note": "over to you"},
    "pick": {},
    "assign": {"agent": "{agent}"},
    "read": {"seq": "1"},
}


def _snapshot(conversation):
    conversation = Conversation.objects.get(pk=conversation.pk)
    return (
        conversation.status, conversation.assignee_id, conversation.queue_id, conversation.snoozed_until,
        conversation.last_seq, Message.objects.count(), Conversation.objects.count(),
        list(Offer.objects.values_list("pk", "status")), ConversationRead.objects.count(),
    )


def _fill(data: dict, *, queue, agent) -> dict:
    return {key: value.format(queue=queue.pk, agent=agent.pk) for key, value in data.items()}


@pytest.mark.parametrize("action", CONVERSATION_ACTIONS)
def test_an_action_on_a_conversation_the_agent_cannot_see_is_404_and_changes_nothing(
        client, agent, bobs, support_queue, action):
    before = _snapshot(bobs)
    client.force_login(agent.user)
    data = _fill(CONVERSATION_ACTIONS[action], queue=support_queue, agent=agent)
    for as_json in (True, False):
        response = act(client, action, bobs.pk, json=as_json, **data)
        assert response.status_code == 404, (action, as_json)
    assert _snapshot(bobs) == before


@pytest.mark.parametrize("action", CONVERSATION_ACTIONS)
def test_a_user_without_a_role_gets_404_and_changes_nothing(client, stranger, mine, support_queue, agent, action):
    before = _snapshot(mine)
    client.force_login(stranger)
    response = act(client, action, mine.pk, **_fill(CONVERSATION_ACTIONS[action], queue=support_queue, agent=agent))
    assert response.status_code == 404
    assert _snapshot(mine) == before


def test_anonymous_posts_go_to_login_and_change_nothing(client, mine, customer):
    before = _snapshot(mine)
    for response in (act(client, "note", mine.pk, text="x"), act(client, "customer-edit", customer.pk, tags="x"),
                     act(client, "presence", presence="1")):
        # The page's fetches get a 401 they can act on; a plain post (no script) goes to the login page.
        assert response.status_code == 401 and response.json()["login"] == "/accounts/login/"
    plain = client.post(reverse("console:note", args=[mine.pk]), {"text": "x"})
    assert plain.status_code == 302 and plain["Location"].startswith("/accounts/login/?next=")
    assert _snapshot(mine) == before


def test_customer_and_offer_actions_are_404_for_a_user_without_a_role(client, stranger, agent, customer, mine,
                                                                        support_queue, available_presence):
    other = make_customer("Duplicate")
    suggestion = MergeSuggestion.objects.create(customer=customer, candidate=other, reason="same_name_same_domain")
    offer = Offer.objects.create(conversation=mine, agent=agent, queue=support_queue, channel="sms", step="queue")
    client.force_login(stranger)
    for name, args, data in [
        ("customer-edit", [customer.pk], {"tags": "hacked", "journey_stage": JourneyStage.PURCHASE}),
        ("customer-merge", [customer.pk], {"other": other.pk}),
        ("customer-merge", [customer.pk], {"suggestion": suggestion.pk}),
        ("suggestion-dismiss", [suggestion.pk], {}),
        ("offer-accept", [offer.pk], {}),
        ("offer-reject", [offer.pk], {}),
        ("presence", [], {"presence": available_presence.pk}),
    ]:
        assert act(client, name, *args, **data).status_code == 404, name
    customer.refresh_from_db()
    other.refresh_from_db()
    assert customer.tags.count() == 0 and customer.journey_stage != JourneyStage.PURCHASE
    assert other.merged_into_id is None and not CustomerMerge.objects.exists()
    assert MergeSuggestion.objects.get().status == SuggestionStatus.PENDING
    assert Offer.objects.get().status == OfferStatus.PENDING


def test_actions_are_post_only(client, agent, mine):
    client.force_login(agent.user)
    assert client.get(reverse("console:note", args=[mine.pk])).status_code == 405
    assert client.get(reverse("console:presence")).status_code == 405


def test_assign_is_for_supervisors_only(client, agent, other_agent, supervisor, mine):
    client.force_login(agent.user)
    assert act(client, "assign", mine.pk, agent=other_agent.pk).status_code == 404  # even on her own conversation
    mine.refresh_from_db()
    assert mine.assignee == agent
    client.force_login(supervisor.user)
    response = act(client, "assign", mine.pk, agent=other_agent.pk, note="Bob knows this customer")
    assert response.status_code == 200 and response.json() == {"ok": True}
    mine.refresh_from_db()
    assert mine.assignee == other_agent
    event = events(mine, EventType.ASSIGNED)[-1]
    assert event.author_agent == supervisor and event.event_data["via"] == "manual"
    assert event.event_data["note"] == "Bob knows this customer"
    assert act(client, "assign", mine.pk, agent=999999).json() == {"error": "Choose an agent."}


# --- reply --------------------------------------------------------------------------------------------------


def test_reply_stores_an_outbound_message_and_queues_delivery(client, agent, mine, django_capture_on_commit_callbacks):
    client.force_login(agent.user)
    with django_capture_on_commit_callbacks() as callbacks:
        response = act(client, "reply", mine.pk, text="  お問い合わせありがとうございます  ")
    assert response.status_code == 200
    message = outbound().get()
    assert response.json() == {"ok": True, "message": message.pk, "conversation": mine.pk, "seq": 2}
    assert (message.conversation, message.kind, message.author_agent, message.text, message.delivery_status) == (
        mine, MessageKind.MESSAGE, agent, "お問い合わせありがとうございます", DeliveryStatus.PENDING)
    assert message.metadata["to"] == PHONE
    assert callbacks  # delivery and the live events leave after commit
    mine.refresh_from_db()
    assert mine.waiting_since is None and mine.first_response_at == message.created_at


def test_reply_without_script_redirects_back_to_the_conversation(client, agent, mine):
    client.force_login(agent.user)
    response = act(client, "reply", mine.pk, json=False, text="plain form")
    assert response.status_code == 302 and response["Location"] == f"/console/conversations/{mine.pk}/"
    assert outbound().get().text == "plain form"
    # A foreign "next" is never followed.
    response = act(client, "note", mine.pk, json=False, text="n", next="https://evil.example/")
    assert response["Location"] == f"/console/conversations/{mine.pk}/"


def test_reply_to_an_opted_out_number_is_refused_with_the_reason_and_nothing_stored(client, agent, customer, mine):
    consent_record(customer=customer, channel=Channel.SMS, address=PHONE, status=ConsentStatus.OPTED_OUT,
                   source="STOP keyword")
    before = _snapshot(mine)
    client.force_login(agent.user)
    response = act(client, "reply", mine.pk, text="are you there?")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("Not sent: ") and PHONE in error and "opted out" in error and "STOP keyword" in error
    assert _snapshot(mine) == before and not outbound().exists()
    # The plain form says the same in a flash message.
    response = act(client, "reply", mine.pk, json=False, text="are you there?",
                   next=f"/console/conversations/{mine.pk}/")
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert re.search(r'<div class="toast toast-error">Not sent: [^<]*opted out', page)
    assert _snapshot(mine)[:-1] == before[:-1]  # (the page view marked the conversation read)


def _whatsapp_conversation(agent, *, hours_ago: float):
    inbox = make_inbox("whatsapp", settings={"whatsapp_templates": [
        {"name": "follow_up", "content_sid": "HX" + "1" * 32, "language": "ja", "body": "ご連絡しました。"}]})
    result = message_receive(InboundMessage(
        inbox=inbox, sender_kind="whatsapp", sender_address=f"whatsapp:{PHONE}", text="hi", provider_id="SMwa",
        received_at=timezone.now() - timedelta(hours=hours_ago)))
    Conversation.objects.filter(pk=result.conversation.pk).update(assignee=agent)
    return result.conversation


def test_whatsapp_reply_outside_24_hours_is_refused_but_an_approved_template_goes(client, agent):
    conversation = _whatsapp_conversation(agent, hours_ago=25)
    before = _snapshot(conversation)
    client.force_login(agent.user)
    response = act(client, "reply", conversation.pk, text="free form")
    assert response.status_code == 400
    assert "24 hours" in response.json()["error"] and "template" in response.json()["error"]
    assert _snapshot(conversation) == before
    response = act(client, "reply", conversation.pk, text="", template="HX" + "1" * 32)
    assert response.status_code == 200
    assert outbound().get().metadata["template"] == {"content_sid": "HX" + "1" * 32}
    assert act(client, "reply", conversation.pk, template="HXforged").status_code == 400


def test_whatsapp_reply_inside_24_hours_goes(client, agent):
    conversation = _whatsapp_conversation(agent, hours_ago=23)
    client.force_login(agent.user)
    assert act(client, "reply", conversation.pk, text="free form").json()["ok"] is True
    assert outbound().get().channel == Channel.WHATSAPP


def test_empty_reply_is_refused(client, agent, mine):
    client.force_login(agent.user)
    response = act(client, "reply", mine.pk, text="   ")
    assert response.status_code == 400 and response.json() == {"error": "The message is empty."}
    assert not outbound().exists()


def test_reply_on_another_channel_opens_an_email_conversation_for_the_agent(client, agent, customer, mine):
    make_identity(customer, IdentityKind.EMAIL, "hanako@example.jp")
    email_inbox = make_inbox("email")
    client.force_login(agent.user)
    response = act(client, "reply", mine.pk, text="Details by email", channel="email")
    assert response.status_code == 200
    message = outbound().get()
    email = message.conversation
    assert response.json() == {"ok": True, "message": message.pk, "conversation": email.pk, "seq": 2}
    assert email.pk != mine.pk
    assert (email.channel, email.inbox, email.customer, email.assignee, email.status) == (
        Channel.EMAIL, email_inbox, customer, agent, ConversationStatus.OPEN)
    assert (message.channel, message.text, message.metadata["to"]) == (Channel.EMAIL, "Details by email",
                                                                        "hanako@example.jp")
    created = events(email, EventType.CREATED)
    assert len(created) == 1 and created[0].seq == 1 and created[0].event_data["origin"] == mine.pk
    # The SMS conversation is untouched; the next email reply joins the same email conversation.
    assert seqs(mine) == [1]
    act(client, "reply", mine.pk, text="One more thing", channel="email")
    assert Conversation.objects.filter(channel=Channel.EMAIL).count() == 1
    assert seqs(email) == [1, 2, 3]
    # Alice holds it: it is in her work list.
    assert f'data-conversation="{email.pk}"' in client.get(reverse("console:sidebar")).content.decode()


def test_reply_on_another_channel_uses_the_customers_active_conversation_there(client, agent, customer, mine):
    make_identity(customer, IdentityKind.EMAIL, "hanako@example.jp")
    existing = make_conversation(customer, make_inbox("email"), subject="Invoice", assignee=agent)
    client.force_login(agent.user)
    response = act(client, "reply", mine.pk, text="Answering here", channel="email")
    assert response.json()["conversation"] == existing.pk
    assert Conversation.objects.count() == 2


@pytest.mark.parametrize(("channel", "setup", "reason"), [
    ("email", "opted_out", "opted out"),
    ("email", "no_inbox", "No Email inbox is set up."),
    ("webchat", "no_chat", "The visitor has no open chat."),
    ("voice", "", "Replies cannot be sent on that channel."),
    ("carrier-pigeon", "", "Replies cannot be sent on that channel."),
])
def test_reply_on_another_channel_refused_stores_nothing(client, agent, customer, mine, channel, setup, reason):
    make_identity(customer, IdentityKind.EMAIL, "hanako@example.jp")
    make_identity(customer, IdentityKind.WEB_VISITOR, "v" * 64)
    make_inbox("webchat")
    if setup != "no_inbox":
        make_inbox("email")
    if setup == "opted_out":
        consent_record(customer=customer, channel=Channel.EMAIL, address="hanako@example.jp",
                       status=ConsentStatus.OPTED_OUT, source="unsubscribe")
    before = _snapshot(mine)
    client.force_login(agent.user)
    response = act(client, "reply", mine.pk, text="hello", channel=channel)
    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert _snapshot(mine) == before  # no new conversation, no message, no event


# --- notes ---------------------------------------------------------------------------------------------------


def test_note_is_stored_as_a_private_note(client, agent, mine):
    client.force_login(agent.user)
    response = act(client, "note", mine.pk, text="  Customer is upset, be gentle  ")
    note = Message.objects.get(kind=MessageKind.NOTE)
    assert response.json() == {"ok": True, "message": note.pk, "seq": 2}
    assert (note.direction, note.author_agent, note.text, note.delivery_status) == (
        Direction.INTERNAL, agent, "Customer is upset, be gentle", "")
    assert act(client, "note", mine.pk, text=" ").json() == {"error": "The note is empty."}
    assert "at most" in act(client, "note", mine.pk, text="x" * 10_001).json()["error"]
    assert Message.objects.filter(kind=MessageKind.NOTE).count() == 1


def test_notes_never_reach_the_web_chat_visitor(client, agent):
    inbox = make_inbox("webchat")
    visitor = webchat_visitors.visitor_hello(inbox=inbox, token="t" * 40, ip="203.0.113.5")
    webchat_ingest.visitor_message_receive(visitor=visitor, client_id="c-00000001", text="Is anyone there?")
    conversation = Conversation.objects.get()
    Conversation.objects.filter(pk=conversation.pk).update(assignee=agent)
    client.force_login(agent.user)
    assert act(client, "note", conversation.pk, text="INTERNAL: VIP, refund approved").status_code == 200
    assert act(client, "reply", conversation.pk, text="Yes, how can I help?").status_code == 200
    history = webchat_ingest.visitor_history(visitor)
    texts = [frame.get("text") for frame in history]
    assert "Is anyone there?" in texts and "Yes, how can I help?" in texts
    assert not any("INTERNAL" in str(frame) for frame in history)
    # The agent sees it on the timeline, marked as private.
    page = client.get(reverse("console:conversation", args=[conversation.pk])).content.decode()
    assert re.search(r'class="entry entry-message is-note.*?Private note.*?INTERNAL: VIP', page, re.S)


# --- resolve ---------------------------------------------------------------------------------------------------


def test_resolve_requires_a_wrap_up_code_when_the_queue_says_so(client, agent, mine, support_queue):
    support_queue.wrap_up_required = True
    support_queue.save()
    Conversation.objects.filter(pk=mine.pk).update(queue=support_queue)
    WrapUpCode.objects.create(code="delivery", label="Delivery question")
    WrapUpCode.objects.create(code="retired", label="Retired", is_active=False)
    client.force_login(agent.user)
    response = act(client, "resolve", mine.pk, note="sorted")
    assert response.status_code == 409
    assert response.json() == {"error": "This queue requires a wrap-up code to resolve."}
    for code in ("nonsense", "retired"):
        response = act(client, "resolve", mine.pk, wrap_up_code=code)
        assert response.status_code == 400 and response.json() == {"error": "Unknown wrap-up code."}
    mine.refresh_from_db()
    assert mine.status == ConversationStatus.OPEN and not events(mine, EventType.RESOLVED)
    # The dialog offers the active codes and says it is required.
    page = client.get(reverse("console:conversation", args=[mine.pk])).content.decode()
    assert '<option value="delivery">Delivery question</option>' in page and 'value="retired"' not in page
    assert re.search(r'<select id="wrap-up-code" name="wrap_up_code" required>', page)

    response = act(client, "resolve", mine.pk, wrap_up_code="delivery", note="Resent the parcel")
    assert response.status_code == 200 and response.json() == {"ok": True}
    mine.refresh_from_db()
    assert mine.status == ConversationStatus.RESOLVED and mine.resolved_at is not None
    (event,) = events(mine, EventType.RESOLVED)
    assert event.event_data == {"wrap_up_code": "delivery", "note": "Resent the parcel"}
    assert event.author_agent == agent and event.seq == mine.last_seq


def test_resolve_without_a_required_code_and_as_a_plain_form(client, agent, mine):
    client.force_login(agent.user)
    response = act(client, "resolve", mine.pk, json=False)
    assert response.status_code == 302 and response["Location"] == f"/console/conversations/{mine.pk}/"
    mine.refresh_from_db()
    assert mine.status == ConversationStatus.RESOLVED
    assert events(mine, EventType.RESOLVED)[0].event_data == {"wrap_up_code": "", "note": ""}
    page = client.get(response["Location"]).content.decode()
    assert '<div class="toast toast-ok">Resolved.</div>' in page  # the flash message, once
    assert "Resolved.</div>" not in client.get(response["Location"]).content.decode()


def test_a_resolved_conversations_composer_says_a_reply_reopens_it(client, agent, mine):
    client.force_login(agent.user)

    def composer() -> str:
        html = client.get(f"/console/conversations/{mine.pk}/").content.decode()
        return re.search(r'<form class="composer.*?</form>', html, re.S).group(0)

    open_composer = composer()
    assert 'data-resolved=""' in open_composer and "is-resolved" not in open_composer
    assert re.search(r'<p class="composer-resolved" id="composer-resolved" role="status" hidden>', open_composer)
    assert re.search(r"<span data-reopen-label hidden>Send and reopen</span>", open_composer)
    act(client, "resolve", mine.pk)
    resolved = composer()
    assert 'data-resolved="1"' in resolved and 'class="composer is-resolved"' in resolved
    assert re.search(r'<p class="composer-resolved" id="composer-resolved" role="status">This conversation is resolved. '
                     r"Sending a reply reopens it", resolved)
    assert "<span data-send-label hidden>Send</span><span data-reopen-label>Send and reopen</span>" in resolved
    # What it says is what happens: the reply reopens it.
    assert act(client, "reply", mine.pk, text="One more thing").status_code == 200
    mine.refresh_from_db()
    assert mine.status == ConversationStatus.OPEN
    assert 'data-resolved=""' in composer()
    act(client, "resolve", mine.pk)
    japanese = client.get(f"/console/conversations/{mine.pk}/", HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert "This conversation is resolved." not in japanese and "Send and reopen" not in japanese  # in Japanese


# --- read marks ------------------------------------------------------------------------------------------------


def test_the_page_marks_the_open_conversation_read_as_far_as_it_shows_it(client, agent, mine):
    make_message(mine, "second")
    make_message(mine, "third")
    mine.refresh_from_db()
    client.force_login(agent.user)
    ConversationRead.objects.filter(agent=agent).delete()
    assert act(client, "read", mine.pk, seq=2).json() == {"ok": True, "conversation": mine.pk}
    assert ConversationRead.objects.get(agent=agent, conversation=mine).last_read_seq == 2
    act(client, "read", mine.pk, seq=1)  # a late answer from a page that had seen less
    assert ConversationRead.objects.get(agent=agent, conversation=mine).last_read_seq == 2
    act(client, "read", mine.pk, seq=10_000)  # never beyond what exists
    assert ConversationRead.objects.get(agent=agent, conversation=mine).last_read_seq == mine.last_seq
    assert act(client, "read", mine.pk, seq="x").status_code == 400
    assert act(client, "read", mine.pk).status_code == 400


# --- snooze, wake, reopen ------------------------------------------------------------------------------------------


def test_snooze_with_a_preset_then_the_tick_wakes_it_when_due(client, agent, mine):
    client.force_login(agent.user)
    start = timezone.now()
    response = act(client, "snooze", mine.pk, preset="4h")
    assert response.status_code == 200
    mine.refresh_from_db()
    assert mine.status == ConversationStatus.SNOOZED
    assert timedelta(hours=4) <= mine.snoozed_until - start < timedelta(hours=4, seconds=30)
    (event,) = events(mine, EventType.SNOOZED)
    assert event.author_agent == agent and datetime.fromisoformat(event.event_data["until"]) == mine.snoozed_until
    # Still in her work list, marked snoozed.
    sidebar = client.get(reverse("console:sidebar")).content.decode()
    assert re.search(rf'data-conversation="{mine.pk}".*?status-snoozed', sidebar, re.S)

    assert "snoozed_wake" in tick.registered()
    assert snoozed_wake() == 0  # not due yet
    Conversation.objects.filter(pk=mine.pk).update(snoozed_until=timezone.now() - timedelta(seconds=1))
    assert snoozed_wake() == 1
    mine.refresh_from_db()
    assert (mine.status, mine.snoozed_until, mine.assignee) == (ConversationStatus.OPEN, None, agent)
    (woken,) = events(mine, EventType.REOPENED)
    assert woken.event_data == {"reason": "snooze_ended"} and woken.seq == mine.last_seq
    assert snoozed_wake() == 0  # idempotent


def test_snooze_until_a_time_in_the_agents_time_zone(client, customer, sms_inbox):
    tokyo = make_agent("kenji", time_zone="Asia/Tokyo")
    conversation = make_conversation(customer, sms_inbox, assignee=tokyo)
    client.force_login(tokyo.user)
    target = (timezone.now() + timedelta(days=2)).astimezone(ZoneInfo("Asia/Tokyo")).replace(
        hour=10, minute=30, second=0, microsecond=0)
    response = act(client, "snooze", conversation.pk, until=target.strftime("%Y-%m-%dT%H:%M"))
    assert response.status_code == 200
    conversation.refresh_from_db()
    assert conversation.snoozed_until == target


@pytest.mark.parametrize(("data", "error"), [
    ({"until": "not a date"}, "Give a date and time to snooze until."),
    ({"until": ""}, "Give a date and time to snooze until."),
    ({"until": "2001-01-01T10:00"}, "Snooze until a time in the future."),
    ({"until": "2999-01-01T10:00"}, "Snooze for at most 90 days."),
])
def test_snooze_refusals(client, agent, mine, data, error):
    client.force_login(agent.user)
    response = act(client, "snooze", mine.pk, **data)
    assert response.status_code == 400 and response.json() == {"error": error}
    mine.refresh_from_db()
    assert mine.status == ConversationStatus.OPEN and not events(mine, EventType.SNOOZED)


def test_resolved_conversation_cannot_be_snoozed_but_can_be_reopened(client, agent, mine):
    client.force_login(agent.user)
    act(client, "resolve", mine.pk)
    response = act(client, "snooze", mine.pk, preset="1h")
    assert response.status_code == 400 and "reopen it first" in response.json()["error"]
    page = client.get(reverse("console:conversation", args=[mine.pk])).content.decode()
    assert reverse("console:reopen", args=[mine.pk]) in page
    response = act(client, "reopen", mine.pk)
    assert response.status_code == 200
    mine.refresh_from_db()
    assert (mine.status, mine.resolved_at, mine.assignee) == (ConversationStatus.OPEN, None, agent)
    (event,) = events(mine, EventType.REOPENED)
    assert event.author_agent == agent and event.event_data == {"reason": "agent"}
    # Reopening an open conversation does nothing more.
    act(client, "reopen", mine.pk)
    assert len(events(mine, EventType.REOPENED)) == 1


def test_reopening_an_unassigned_conversation_takes_it(client, agent, customer, sms_inbox, support_queue):
    conversation = make_conversation(customer, sms_inbox, queue=support_queue, status=ConversationStatus.RESOLVED,
                                     resolved_at=timezone.now())
    client.force_login(agent.user)
    assert act(client, "reopen", conversation.pk).status_code == 200
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.OPEN and conversation.assignee == agent


# --- transfer, pick, offers --------------------------------------------------------------------------------------


def test_transfer_to_an_agent_with_a_handoff_note(client, agent, other_agent, mine):
    client.force_login(agent.user)
    response = act(client, "transfer", mine.pk, target=f"agent:{other_agent.pk}", note="Wants a refund <b>today</b>")
    assert response.status_code == 200 and response.json() == {"ok": True}
    mine.refresh_from_db()
    assert mine.assignee == other_agent
    (event,) = events(mine, EventType.TRANSFERRED)
    assert event.author_agent == agent
    assert event.event_data == {"to_agent": other_agent.pk, "note": "Wants a refund <b>today</b>"}
    # Alice no longer holds it…
    assert client.get(reverse("console:conversation", args=[mine.pk])).status_code == 404
    # …Bob reads the note first.
    client.force_login(other_agent.user)
    page = client.get(reverse("console:conversation", args=[mine.pk])).content.decode()
    handoff = re.search(r'<div class="handoff" role="note">.*?</div>', page, re.S).group(0)
    assert "Handoff note from Alice" in handoff and "Wants a refund &lt;b&gt;today&lt;/b&gt;" in handoff
    assert page.index('class="handoff"') < page.index('id="timeline-entries"') < page.index('id="composer"')


def test_transfer_to_a_queue(client, agent, other_agent, mine, django_capture_on_commit_callbacks):
    skill = Skill.objects.create(name="Billing", slug="billing")
    billing = Queue.objects.create(name="Billing", slug="billing")
    billing.required_skills.add(skill)
    AgentSkill.objects.create(agent=other_agent, skill=skill)
    client.force_login(agent.user)
    response = act(client, "transfer", mine.pk, json=False, target=f"queue:{billing.pk}", note="Invoice question")
    assert response.status_code == 302 and response["Location"] == "/console/"
    mine.refresh_from_db()
    assert (mine.assignee, mine.queue) == (None, billing)
    assert events(mine, EventType.TRANSFERRED)[0].event_data == {"to_queue": billing.pk, "note": "Invoice question"}
    # Bob serves the queue: he sees it waiting, with the note on top.
    client.force_login(other_agent.user)
    page = client.get(reverse("console:conversation", args=[mine.pk])).content.decode()
    assert "Invoice question" in re.search(r'<div class="handoff".*?</div>', page, re.S).group(0)
    assert reverse("console:pick", args=[mine.pk]) in page
    # Alice lacks the skill: gone for her.
    client.force_login(agent.user)
    assert client.get(reverse("console:conversation", args=[mine.pk])).status_code == 404


@pytest.mark.parametrize("target", ["", "agent:", "agent:999999", "queue:999999", "team:1", "queue:inactive"])
def test_transfer_needs_a_real_target(client, agent, mine, target):
    inactive = Queue.objects.create(name="Old", slug="old", is_active=False)
    client.force_login(agent.user)
    response = act(client, "transfer", mine.pk, target=target.replace("inactive", str(inactive.pk)))
    assert response.status_code == 400
    assert response.json() == {"error": "Choose an agent or a queue to transfer to."}
    mine.refresh_from_db()
    assert mine.assignee == agent and not events(mine, EventType.TRANSFERRED)


def test_pick_a_waiting_conversation(client, agent, other_agent, customer, sms_inbox, support_queue):
    conversation = make_conversation(customer, sms_inbox, queue=support_queue, queued_at=timezone.now())
    client.force_login(agent.user)
    response = act(client, "pick", conversation.pk)
    assert response.json() == {"ok": True, "conversation": conversation.pk}
    conversation.refresh_from_db()
    assert conversation.assignee == agent
    assert events(conversation, EventType.ASSIGNED)[0].event_data["via"] == "pick"
    # Taken: Bob no longer sees it.
    client.force_login(other_agent.user)
    assert act(client, "pick", conversation.pk).status_code == 404


def test_pick_refused_where_the_queue_does_not_allow_it_and_when_taken(client, agent, supervisor, customer,
                                                                       sms_inbox, support_queue):
    support_queue.allow_pick = False
    support_queue.save()
    conversation = make_conversation(customer, sms_inbox, queue=support_queue)
    client.force_login(agent.user)
    # Serving a queue that does not allow picking shows none of its conversations (access rule).
    assert act(client, "pick", conversation.pk).status_code == 404
    # Offered it, she sees it; picking it instead of accepting is still refused, in words.
    Offer.objects.create(conversation=conversation, agent=agent, queue=support_queue, channel="sms", step="queue",
                         expires_at=timezone.now() + timedelta(minutes=2))
    response = act(client, "pick", conversation.pk)
    assert response.status_code == 400 and response.json() == {"error": "This queue does not allow picking."}
    assert Conversation.objects.get(pk=conversation.pk).assignee is None
    # A supervisor sees everything, and is told when someone was faster.
    support_queue.allow_pick = True
    support_queue.save()
    Conversation.objects.filter(pk=conversation.pk).update(assignee=agent)
    client.force_login(supervisor.user)
    response = act(client, "pick", conversation.pk)
    assert response.status_code == 409 and response.json() == {"error": "Someone already took this conversation."}


def test_a_supervisor_takes_a_waiting_conversation_from_a_queue_that_does_not_allow_picking(
        client, agent, supervisor, customer, sms_inbox, support_queue):
    support_queue.allow_pick = False
    support_queue.save()
    conversation = make_conversation(customer, sms_inbox, queue=support_queue, queued_at=timezone.now())
    offer = Offer.objects.create(conversation=conversation, agent=agent, queue=support_queue, channel="sms",
                                 step="queue", expires_at=timezone.now() + timedelta(minutes=2))
    client.force_login(supervisor.user)
    response = act(client, "pick", conversation.pk)
    assert response.status_code == 200 and response.json() == {"ok": True, "conversation": conversation.pk}
    conversation.refresh_from_db()
    assert conversation.assignee == supervisor
    (event,) = events(conversation, EventType.ASSIGNED)
    assert event.author_agent == supervisor and event.event_data["via"] == "assign"
    offer.refresh_from_db()
    assert offer.status == OfferStatus.RESCINDED  # the agent's offer is closed, not left dangling
    # Without script: back to the conversation with the outcome.
    other = make_conversation(make_customer("Other"), sms_inbox, queue=support_queue, queued_at=timezone.now())
    response = act(client, "pick", other.pk, json=False)
    assert response.status_code == 302 and response["Location"] == f"/console/conversations/{other.pk}/"
    assert Conversation.objects.get(pk=other.pk).assignee == supervisor


def test_a_supervisor_never_takes_a_conversation_someone_already_has(client, agent, supervisor, customer, sms_inbox,
                                                                     support_queue):
    support_queue.allow_pick = False
    support_queue.save()
    conversation = make_conversation(customer, sms_inbox, queue=support_queue, assignee=agent)
    client.force_login(supervisor.user)
    response = act(client, "pick", conversation.pk)
    assert response.status_code == 409 and response.json() == {"error": "Someone already took this conversation."}
    assert Conversation.objects.get(pk=conversation.pk).assignee == agent
    assert not events(conversation, EventType.ASSIGNED)


def test_an_agent_still_picks_only_where_the_queue_allows_it(client, agent, customer, sms_inbox, support_queue):
    support_queue.allow_pick = False
    support_queue.save()
    conversation = make_conversation(customer, sms_inbox, queue=support_queue, queued_at=timezone.now())
    Offer.objects.create(conversation=conversation, agent=agent, queue=support_queue, channel="sms", step="queue",
                         expires_at=timezone.now() + timedelta(minutes=2))
    client.force_login(agent.user)
    response = act(client, "pick", conversation.pk)
    assert response.status_code == 400 and response.json() == {"error": "This queue does not allow picking."}
    assert Conversation.objects.get(pk=conversation.pk).assignee is None
    assert not events(conversation, EventType.ASSIGNED)


def test_a_supervisor_assigns_a_waiting_conversation_from_the_conversation_head(client, agent, supervisor, customer,
                                                                               sms_inbox, support_queue):
    conversation = make_conversation(customer, sms_inbox, queue=support_queue, queued_at=timezone.now())
    # The languages each agent speaks help pick who can answer this customer (hostile text stays text).
    Agent.objects.filter(pk=supervisor.pk).update(languages=["ja", "<b>en</b>"])
    client.force_login(supervisor.user)
    page = client.get(reverse("console:conversation", args=[conversation.pk])).content.decode()
    dialog = re.search(r'<dialog class="dialog" id="assign-dialog".*?</dialog>', page, re.S).group(0)
    assert f'<option value="{supervisor.pk}">Carol · ja/&lt;b&gt;en&lt;/b&gt;</option>' in dialog
    form_action = re.search(r'<form method="post" action="([^"]+)" data-action="assign">', dialog).group(1)
    assert form_action == reverse("console:assign", args=[conversation.pk])
    assert f'<option value="{agent.pk}">Alice</option>' in dialog
    assert 'data-open-dialog="assign-dialog"' in page
    response = client.post(form_action, {"agent": agent.pk, "note": "VIP, please call back"},
                           HTTP_ACCEPT="application/json")
    assert response.json() == {"ok": True}
    conversation.refresh_from_db()
    assert conversation.assignee == agent
    (event,) = events(conversation, EventType.ASSIGNED)
    assert event.author_agent == supervisor and event.event_data["note"] == "VIP, please call back"


def test_accept_an_offer_from_the_console(client, agent, other_agent, customer, sms_inbox, support_queue):
    conversation = make_conversation(customer, sms_inbox, queue=support_queue)
    offer = Offer.objects.create(conversation=conversation, agent=agent, queue=support_queue, channel="sms",
                                 step="queue", expires_at=timezone.now() + timedelta(minutes=2))
    client.force_login(other_agent.user)
    assert act(client, "offer-accept", offer.pk).status_code == 404  # not his
    client.force_login(agent.user)
    page = client.get(reverse("console:conversation", args=[conversation.pk])).content.decode()
    assert reverse("console:offer-accept", args=[offer.pk]) in page
    response = act(client, "offer-accept", offer.pk)
    assert response.json() == {"ok": True, "offer": offer.pk, "status": "accepted", "conversation": conversation.pk}
    conversation.refresh_from_db()
    assert conversation.assignee == agent
    response = act(client, "offer-accept", offer.pk)
    assert response.status_code == 409 and "no longer open" in response.json()["error"]


def test_reject_an_offer_as_a_plain_form(client, agent, customer, sms_inbox, support_queue):
    conversation = make_conversation(customer, sms_inbox, queue=support_queue)
    offer = Offer.objects.create(conversation=conversation, agent=agent, queue=support_queue, channel="sms",
                                 step="queue", expires_at=timezone.now() + timedelta(minutes=2))
    client.force_login(agent.user)
    response = act(client, "offer-reject", offer.pk, json=False)
    assert response.status_code == 302 and response["Location"] == "/console/"
    offer.refresh_from_db()
    assert offer.status == OfferStatus.REJECTED
    assert Conversation.objects.get(pk=conversation.pk).assignee is None


# --- presence ---------------------------------------------------------------------------------------------------


def test_presence(client, agent, admin_user, available_presence):
    away = PresenceState.objects.create(name="Lunch")
    client.force_login(agent.user)
    response = act(client, "presence", presence=available_presence.pk)
    assert response.json() == {"ok": True, "presence": available_presence.pk, "name": "Available", "available": True}
    agent.refresh_from_db()
    assert agent.presence == available_presence
    act(client, "presence", presence=away.pk)
    agent.refresh_from_db()
    assert agent.presence == away
    page = client.get(reverse("console:sidebar")).content.decode()
    assert f'<option value="{away.pk}" selected>Lunch</option>' in page
    assert act(client, "presence", presence=999999).json() == {"error": "Unknown presence."}
    # An admin without an agent profile has no presence.
    client.force_login(admin_user)
    response = act(client, "presence", presence=available_presence.pk)
    assert response.status_code == 403 and response.json() == {"error": "You have no agent profile."}


# --- customer ---------------------------------------------------------------------------------------------------


def test_built_in_presences_show_in_the_agents_language_and_an_admins_own_as_entered(
        client, agent, other_agent, supervisor, available_presence):
    lunch = PresenceState.objects.create(name="Lunch")
    own = PresenceState.objects.create(name="Training <b>")
    Agent.objects.filter(pk=agent.pk).update(presence=lunch)
    Agent.objects.filter(pk=other_agent.pk).update(presence=own)
    make_conversation(make_customer("Waiting"), make_inbox("sms"), assignee=agent,
                      waiting_since=timezone.now() - timedelta(hours=1, minutes=35, seconds=5))
    client.force_login(agent.user)

    japanese = client.get(reverse("console:sidebar"), HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert f'<option value="{lunch.pk}" selected>昼休み</option>' in japanese
    assert f'<option value="{available_presence.pk}">対応可能</option>' in japanese
    assert f'<option value="{own.pk}">Training &lt;b&gt;</option>' in japanese  # data: as entered, escaped
    english = client.get(reverse("console:sidebar"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f'<option value="{lunch.pk}" selected>Lunch</option>' in english

    client.force_login(supervisor.user)  # who is waiting on an agent who is away, and why
    unattended = client.get(reverse("console:sidebar"), HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert "Alice · 昼休み" in unattended and "Alice · Lunch" not in unattended
    assert "1時間、35分" in unattended  # Japanese list separator, not Django's ", "
    # The stored name stays what the API and the admin show.
    assert act(client, "presence", presence=lunch.pk, HTTP_ACCEPT_LANGUAGE="ja").json()["name"] == "Lunch"


def test_every_presence_the_product_creates_has_a_label_in_each_language():
    from django.utils import translation

    from conversations.demo.seed import PRESENCES
    from conversations.models import BUILT_IN_PRESENCE_LABELS
    from conversations.routing.console_presence import OFFLINE_PRESENCE
    from conversations.routing.presence import MISSED_OFFER_PRESENCE

    created = {name for name, *_flags in PRESENCES} | {OFFLINE_PRESENCE, MISSED_OFFER_PRESENCE}
    assert created == set(BUILT_IN_PRESENCE_LABELS)
    with translation.override("ja"):
        for name in created:
            label = PresenceState(name=name).label
            assert label and label != name, name
    with translation.override("en"):
        assert {PresenceState(name=name).label for name in created} == created


def test_edit_tags_and_journey_stage(client, agent, customer):
    client.force_login(agent.user)
    response = act(client, "customer-edit", customer.pk, tags="VIP, wholesale、返品, ,VIP",
                   journey_stage=JourneyStage.PURCHASE_DECISION)
    assert response.json() == {"ok": True, "customer": customer.pk, "tags": ["VIP", "wholesale", "返品"],
                               "journey_stage": "purchase_decision"}
    customer.refresh_from_db()
    assert customer.journey_stage == JourneyStage.PURCHASE_DECISION
    assert sorted(t.name for t in customer.tags.all()) == ["VIP", "wholesale", "返品"]
    # Stage alone keeps the tags; an empty tag field clears them.
    act(client, "customer-edit", customer.pk, journey_stage=JourneyStage.PURCHASE)
    assert customer.tags.count() == 3
    act(client, "customer-edit", customer.pk, tags="")
    assert customer.tags.count() == 0
    response = act(client, "customer-edit", customer.pk, journey_stage="nonsense")
    assert response.status_code == 400 and "error" in response.json()
    customer.refresh_from_db()
    assert customer.journey_stage == JourneyStage.PURCHASE


def test_merge_from_a_suggestion_and_undo(client, agent, customer, sms_inbox):
    duplicate = make_customer("山田 花子 (email)")
    make_identity(duplicate, IdentityKind.EMAIL, "hanako@example.jp")
    theirs = make_conversation(duplicate, make_inbox("email"), subject="Old mail")
    make_message(theirs, "from the duplicate")
    suggestion = MergeSuggestion.objects.create(customer=customer, candidate=duplicate,
                                                reason="same_name_same_domain", evidence={"domain": "example.jp"})
    client.force_login(agent.user)
    page = client.get(reverse("console:customer", args=[customer.pk])).content.decode()
    assert f'name="suggestion" value="{suggestion.pk}"' in page

    response = act(client, "customer-merge", customer.pk, suggestion=suggestion.pk)
    merge = CustomerMerge.objects.get()
    assert response.json() == {"ok": True, "merge": merge.pk, "customer": customer.pk}
    duplicate.refresh_from_db()
    assert duplicate.merged_into == customer and (merge.source, merge.target) == (duplicate, customer)
    assert MergeSuggestion.objects.get().status == SuggestionStatus.CONFIRMED
    assert Conversation.objects.get(pk=theirs.pk).customer == customer
    assert customer.identities.filter(value="hanako@example.jp").exists()
    # The merged timeline is one; the pane offers the undo.
    page = client.get(reverse("console:customer", args=[customer.pk])).content.decode()
    assert "from the duplicate" in page and reverse("console:merge-undo", args=[merge.pk]) in page
    # A decided suggestion cannot be used again.
    assert act(client, "customer-merge", customer.pk, suggestion=suggestion.pk).status_code == 404

    response = act(client, "merge-undo", merge.pk)
    assert response.json() == {"ok": True, "source": duplicate.pk, "target": customer.pk}
    duplicate.refresh_from_db()
    assert duplicate.merged_into is None
    assert Conversation.objects.get(pk=theirs.pk).customer == duplicate
    assert not customer.identities.filter(value="hanako@example.jp").exists()
    assert act(client, "merge-undo", merge.pk).status_code == 400  # already undone


def test_merge_from_the_candidates_side_and_by_id(client, agent, customer):
    duplicate = make_customer("Hanako Y.")
    suggestion = MergeSuggestion.objects.create(customer=duplicate, candidate=customer, reason="signature_phone")
    client.force_login(agent.user)
    # Shown on the candidate's page too; merging from there keeps the customer on screen.
    page = client.get(reverse("console:customer", args=[customer.pk])).content.decode()
    assert "Phone number found in an email signature" in page
    response = act(client, "customer-merge", customer.pk, suggestion=suggestion.pk)
    assert response.json()["customer"] == customer.pk
    duplicate.refresh_from_db()
    assert duplicate.merged_into == customer
    assert MergeSuggestion.objects.get().status == SuggestionStatus.CONFIRMED
    # By id, as a plain form: back to the target's page.
    third = make_customer("Third")
    response = act(client, "customer-merge", customer.pk, json=False, other=third.pk)
    assert response.status_code == 302 and response["Location"] == f"/console/customers/{customer.pk}/"
    assert Customer.objects.get(pk=third.pk).merged_into == customer
    response = act(client, "customer-merge", customer.pk, other=customer.pk)
    assert response.status_code == 400 and "itself" in response.json()["error"]
    assert act(client, "customer-merge", customer.pk, other=999999).status_code == 404


def test_a_suggestion_for_someone_else_cannot_be_merged_here(client, agent, customer):
    a, b = make_customer("A"), make_customer("B")
    suggestion = MergeSuggestion.objects.create(customer=a, candidate=b, reason="signature_phone")
    client.force_login(agent.user)
    assert act(client, "customer-merge", customer.pk, suggestion=suggestion.pk).status_code == 404
    assert not CustomerMerge.objects.exists()


def test_dismiss_a_suggestion(client, agent, customer):
    duplicate = make_customer("Not the same")
    suggestion = MergeSuggestion.objects.create(customer=customer, candidate=duplicate, reason="signature_phone")
    client.force_login(agent.user)
    assert act(client, "suggestion-dismiss", suggestion.pk).json() == {"ok": True}
    suggestion.refresh_from_db()
    assert suggestion.status == SuggestionStatus.DISMISSED and suggestion.decided_by == agent.user
    assert Customer.objects.get(pk=duplicate.pk).merged_into is None
    response = act(client, "suggestion-dismiss", suggestion.pk)
    assert response.status_code == 409 and "already decided" in response.json()["error"]
    assert act(client, "suggestion-dismiss", 999999).status_code == 404
