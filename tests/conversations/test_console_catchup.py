"""Per-conversation sequence numbers and the console's catch-up: what a page that saw sequence n of
each conversation gets back (exactly the entries after n, no gap, no repeat), also under
concurrent writers on PostgreSQL."""

import json
import re
import threading
from datetime import timedelta
from html import unescape
from urllib.parse import unquote

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from conversations.console import selectors
from conversations.models import (
    Conversation,
    DeliveryStatus,
    Direction,
    EventType,
    Message,
    MessageKind,
)
from conversations.sequence import message_seq_next
from conversations.services import InboundMessage, message_receive
from conversations.services.agent_actions import note_add
from conversations.services.outbound import message_send
from conversations.routing.assignment import conversation_resolve
from conversations.services.system_events import system_event_record
from profiles.models import IdentityKind

from ..factories import make_agent, make_conversation, make_customer, make_identity, make_inbox, make_message

pytestmark = pytest.mark.django_db

PHONE = "+819012345678"


def catchup(client, customer, seen=None, **params):
    query = {"seen": json.dumps({str(k): v for k, v in (seen or {}).items()}), **params}
    response = client.get(reverse("console:catchup", args=[customer.pk]), query)
    assert response.status_code == 200, response.content
    return response.json()


def keys(entries) -> list[str]:
    return [entry["key"] for entry in entries]


def inbound(inbox, sid: str, text: str = "hello", **extra):
    return message_receive(InboundMessage(inbox=inbox, sender_kind="phone", sender_address=PHONE, text=text,
                                          provider_id=sid, **extra))


# --- sequence numbers ------------------------------------------------------------------------------------


def test_message_seq_next_counts_per_conversation(customer):
    first, second = make_conversation(customer), make_conversation(customer, make_inbox("email"))
    assert [message_seq_next(first), message_seq_next(first), message_seq_next(second), message_seq_next(first),
            message_seq_next(second)] == [1, 2, 1, 3, 2]
    assert first.last_seq == 3  # the instance is told its number
    assert Conversation.objects.get(pk=first.pk).last_seq == 3
    assert Conversation.objects.get(pk=second.pk).last_seq == 2


def test_a_stale_full_save_never_moves_the_sequence_back(customer):
    conversation = make_conversation(customer)
    stale = Conversation.objects.get(pk=conversation.pk)
    make_message(conversation, "one")
    make_message(conversation, "two")
    stale.subject = "edited in the admin"
    stale.save()
    fresh = Conversation.objects.get(pk=conversation.pk)
    assert (fresh.subject, fresh.last_seq) == ("edited in the admin", 2)
    assert make_message(conversation, "three").seq == 3


def test_every_path_that_writes_to_a_conversation_takes_the_next_number(agent):
    inbox = make_inbox("sms")
    first = inbound(inbox, "SM1", "荷物が届きません")
    conversation = first.conversation
    Conversation.objects.filter(pk=conversation.pk).update(assignee=agent)
    note = note_add(conversation=conversation, agent=agent, text="check the tracking number")
    reply = message_send(conversation=conversation, agent=agent, text="Checking now")
    resolved = conversation_resolve(conversation_id=conversation.pk, by=agent, wrap_up_code="", note="")
    again = inbound(inbox, "SM2", "still nothing")  # reopens: an event, then the message
    assert again.conversation.pk == conversation.pk and again.conversation_reopened
    rows = list(Message.objects.filter(conversation=conversation).order_by("id")
                .values_list("kind", "event_type", "direction", "seq"))
    assert rows == [
        ("message", "", "inbound", 1),
        ("note", "", "internal", 2),
        ("message", "", "outbound", 3),
        ("event", "resolved", "internal", 4),
        ("event", "reopened", "internal", 5),
        ("message", "", "inbound", 6),
    ]
    assert (first.message.seq, note.seq, reply.seq) == (1, 2, 3)
    assert resolved.last_seq == 4
    assert Conversation.objects.get(pk=conversation.pk).last_seq == 6
    # A replayed provider id stores nothing and takes no number.
    assert inbound(inbox, "SM2", "still nothing").duplicate
    assert Conversation.objects.get(pk=conversation.pk).last_seq == 6


def test_a_new_conversation_starts_at_one(customer):
    inbox = make_inbox("sms")
    first = inbound(inbox, "SMa")
    other = inbound(make_inbox("sms", address="+815099998888"), "SMb")
    assert other.conversation.pk != first.conversation.pk
    assert (first.message.seq, other.message.seq) == (1, 1)


# --- catch-up ------------------------------------------------------------------------------------------------


@pytest.fixture
def two_conversations(agent, customer):
    """Hanako's SMS conversation (Alice's) with three entries, and an email one with two."""
    make_identity(customer, IdentityKind.EMAIL, "hanako@example.jp")
    sms = make_conversation(customer, make_inbox("sms"), assignee=agent)
    email = make_conversation(customer, make_inbox("email"), subject="Invoice")
    start = timezone.now() - timedelta(minutes=10)
    make_message(sms, "sms one", created_at=start)
    make_message(email, "email one", created_at=start + timedelta(minutes=1))
    make_message(sms, "sms two", created_at=start + timedelta(minutes=2), direction=Direction.OUTBOUND,
                 author_agent=agent)
    make_message(email, "", created_at=start + timedelta(minutes=3), kind=MessageKind.EVENT,
                 direction=Direction.INTERNAL, event_type=EventType.ASSIGNED)
    make_message(sms, "sms note", created_at=start + timedelta(minutes=4), kind=MessageKind.NOTE,
                 direction=Direction.INTERNAL, author_agent=agent)
    return sms, email


def by_seq(conversation, *numbers) -> list[str]:
    rows = Message.objects.filter(conversation=conversation, seq__in=numbers).order_by("created_at", "id")
    return [f"m-{pk}" for pk in rows.values_list("pk", flat=True)]


def test_catchup_returns_exactly_what_the_client_has_not_seen(client, agent, customer, two_conversations):
    sms, email = two_conversations
    client.force_login(agent.user)
    data = catchup(client, customer, {sms.pk: 1, email.pk: 2})
    assert data["complete"] is True
    assert keys(data["entries"]) == by_seq(sms, 2, 3)
    assert [(e["conversation"], e["seq"]) for e in data["entries"]] == [(sms.pk, 2), (sms.pk, 3)]
    assert data["seen"] == {str(sms.pk): 3, str(email.pk): 2}
    assert "sms two" in data["entries"][0]["html"] and "sms note" in data["entries"][1]["html"]
    assert "Private note" in data["entries"][1]["html"]
    # Several conversations at once, oldest first, events included.
    data = catchup(client, customer, {sms.pk: 1, email.pk: 1})
    assert keys(data["entries"]) == by_seq(sms, 2) + by_seq(email, 2) + by_seq(sms, 3)
    assert 'class="entry entry-event' in data["entries"][1]["html"]


def test_a_conversation_the_client_never_saw_comes_whole(client, agent, customer, two_conversations):
    sms, email = two_conversations
    client.force_login(agent.user)
    data = catchup(client, customer, {sms.pk: 3})
    assert keys(data["entries"]) == by_seq(email, 1, 2)
    assert data["seen"] == {str(sms.pk): 3, str(email.pk): 2}
    # A brand-new conversation on another channel appears too.
    web = make_conversation(customer, make_inbox("webchat"))
    make_message(web, "hi from the website")
    data = catchup(client, customer, data["seen"])
    assert keys(data["entries"]) == by_seq(web, 1)
    assert data["seen"][str(web.pk)] == 1
    # Nothing at all seen: everything, oldest first.
    assert len(catchup(client, customer)["entries"]) == 6


def test_nothing_when_up_to_date(client, agent, customer, two_conversations):
    sms, email = two_conversations
    client.force_login(agent.user)
    client.get(reverse("console:catchup", args=[customer.pk]))  # warm up the session
    with CaptureQueriesContext(connection) as captured:
        data = catchup(client, customer, {sms.pk: 3, email.pk: 2})
    # The sequence numbers alone say nothing is missing: the messages are not even read.
    assert not [q["sql"] for q in captured if Message._meta.db_table in q["sql"]]
    assert data == {"complete": True, "seen": {str(sms.pk): 3, str(email.pk): 2}, "entries": []}
    # Seen further than exists (a stale or forged map) returns nothing, and says where things are.
    assert catchup(client, customer, {sms.pk: 99, email.pk: 99})["entries"] == []


def test_catchup_past_the_limit_is_incomplete_and_keeps_the_old_position(client, agent, customer):
    conversation = make_conversation(customer, assignee=agent)
    start = timezone.now() - timedelta(days=1)
    Message.objects.bulk_create([
        Message(conversation=conversation, customer=customer, inbox=conversation.inbox, channel="sms",
                direction=Direction.INBOUND, text=f"bulk {n}", seq=n, created_at=start + timedelta(seconds=n))
        for n in range(1, 206)
    ])
    Conversation.objects.filter(pk=conversation.pk).update(last_seq=205)
    client.force_login(agent.user)
    data = catchup(client, customer, {conversation.pk: 4})
    assert data["complete"] is False
    assert len(data["entries"]) == 200 and data["entries"][0]["seq"] == 5  # the client reloads the pane instead
    assert data["seen"] == {str(conversation.pk): 4}
    data = catchup(client, customer, {conversation.pk: 5})
    assert data["complete"] is True and len(data["entries"]) == 200
    assert data["seen"] == {str(conversation.pk): 205}
    # The selector's limit is exact.
    rows, seen, complete = selectors.timeline_catchup(customer_id=customer.pk, seen={conversation.pk: 202}, limit=3)
    assert ([m.seq for m in rows], seen, complete) == ([203, 204, 205], {conversation.pk: 205}, True)
    rows, seen, complete = selectors.timeline_catchup(customer_id=customer.pk, seen={conversation.pk: 201}, limit=3)
    assert ([m.seq for m in rows], seen, complete) == ([202, 203, 204], {conversation.pk: 201}, False)


def test_catchup_after_console_actions_gives_just_the_new_entries(client, agent, customer, two_conversations):
    sms, email = two_conversations
    client.force_login(agent.user)
    page = client.get(reverse("console:conversation", args=[sms.pk])).content.decode()
    seen = json.loads(re.search(r'<script type="application/json" id="seen-map">(.*?)</script>', page).group(1))
    on_page = set(re.findall(r'data-key="(m-\d+)"', page))
    headers = {"HTTP_ACCEPT": "application/json"}
    reply = client.post(reverse("console:reply", args=[sms.pk]), {"text": "on its way"}, **headers).json()
    note = client.post(reverse("console:note", args=[sms.pk]), {"text": "courier called"}, **headers).json()
    inbound_email = make_message(email, "thanks!")
    data = catchup(client, customer, {int(k): v for k, v in seen.items()}, current=sms.pk)
    assert keys(data["entries"]) == [f"m-{reply['message']}", f"m-{note['message']}", f"m-{inbound_email.pk}"]
    assert [e["seq"] for e in data["entries"]] == [reply["seq"], note["seq"], 3]
    assert ["in-current" in e["html"] for e in data["entries"]] == [True, True, False]
    # The page plus the catch-up is what a fresh page shows.
    fresh = client.get(reverse("console:conversation", args=[sms.pk])).content.decode()
    assert on_page | set(keys(data["entries"])) == set(re.findall(r'data-key="(m-\d+)"', fresh))


def test_refresh_rerenders_messages_of_this_customer_only(client, agent, customer, two_conversations):
    sms, email = two_conversations
    reply = Message.objects.get(conversation=sms, seq=2)
    Message.objects.filter(pk=reply.pk).update(delivery_status=DeliveryStatus.UNDELIVERED, delivery_error_code="30003")
    stranger_customer = make_customer("Other Customer")
    theirs = make_message(make_conversation(stranger_customer), "someone else's secret")
    client.force_login(agent.user)
    data = catchup(client, customer, {sms.pk: 3, email.pk: 2}, refresh=f"{reply.pk},{theirs.pk},junk,")
    assert keys(data["entries"]) == [f"m-{reply.pk}"]
    assert "Undelivered" in data["entries"][0]["html"] and "30003" in data["entries"][0]["html"]
    assert 'data-delivery="undelivered"' in data["entries"][0]["html"]
    # A seen map naming another customer's conversation reveals nothing either.
    data = catchup(client, customer, {sms.pk: 3, email.pk: 2, theirs.conversation_id: 0})
    assert data["entries"] == [] and str(theirs.conversation_id) not in data["seen"]


@pytest.mark.parametrize("seen", ["not json", '{"x": 1}', '{"1": "two"}', '{"1": null}'])
def test_bad_seen_map_is_400(client, agent, customer, seen):
    client.force_login(agent.user)
    response = client.get(reverse("console:catchup", args=[customer.pk]), {"seen": seen})
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid catch-up position."}


def test_catchup_for_an_unknown_customer_is_404(client, agent):
    client.force_login(agent.user)
    assert client.get("/console/customers/999999/catchup/").status_code == 404


# --- older pages ------------------------------------------------------------------------------------------------


def test_older_fragment_pages_back_without_gaps(client, agent, customer):
    conversation = make_conversation(customer, assignee=agent)
    start = timezone.now() - timedelta(days=1)
    for number in range(60):
        make_message(conversation, f"msg-{number:03d}", created_at=start + timedelta(minutes=number))
    client.force_login(agent.user)
    page = client.get(reverse("console:conversation", args=[conversation.pk])).content.decode()
    timeline = re.search(r'<ol class="timeline".*?</ol>', page, re.S).group(0)
    assert re.findall(r"msg-(\d{3})", timeline) == [f"{n:03d}" for n in range(10, 60)]
    cursor = unquote(unescape(re.search(r'data-older href="[^"?]*\?before=([^"]+)"', page).group(1)))
    response = client.get(reverse("console:older", args=[customer.pk]), {"before": cursor, "current": conversation.pk})
    assert response.status_code == 200
    older = response.content.decode()
    assert older.startswith("<ol>") and "<html" not in older
    assert re.findall(r"msg-(\d{3})", older) == [f"{n:03d}" for n in range(10)]
    assert "data-older" not in older and "in-current" in older
    assert client.get(reverse("console:older", args=[customer.pk]), {"before": "garbage"}).status_code == 400


# --- concurrency (PostgreSQL) ---------------------------------------------------------------------------------


WRITERS = 6
ROUNDS = 8


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_get_unique_gap_free_numbers_and_the_catchup_never_skips_one():
    """Notes, replies, events and bare inserts land on one conversation at once while a reader follows
    it the way the console does. The reader must never be told "seen up to n" while a number below n
    is still invisible to it: that entry would be lost for good."""
    from django.db import connections, transaction

    inbox = make_inbox("sms")
    agent = make_agent("concurrent", display_name="Concurrent")
    conversation = inbound(inbox, "SMfirst").conversation
    customer_id = conversation.customer_id
    barrier = threading.Barrier(WRITERS + 1)
    writers_done = threading.Event()
    errors: list[BaseException] = []
    collected: dict[int, int] = {}  # message id → seq, as the reader saw them
    holes: list[tuple[int, list[int]]] = []

    def write(index: int) -> None:
        try:
            barrier.wait(10)
            for round_ in range(ROUNDS):
                kind = (index + round_) % 4
                if kind == 0:
                    note_add(conversation=conversation, agent=agent, text=f"note {index}/{round_}")
                elif kind == 1:
                    message_send(conversation=conversation, agent=agent, text=f"reply {index}/{round_}")
                elif kind == 2:
                    with transaction.atomic():  # the bare allocation, no lock taken before it
                        make_message(conversation, f"raw {index}/{round_}")
                else:
                    with transaction.atomic():
                        system_event_record(conversation, EventType.ASSIGNED, agent=agent, round=round_)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    def read() -> None:
        seen: dict[int, int] = {}
        try:
            barrier.wait(10)
            while True:
                last_pass = writers_done.is_set()
                rows, new_seen, complete = selectors.timeline_catchup(customer_id=customer_id, seen=seen)
                assert complete
                for message in rows:
                    collected[message.pk] = message.seq
                have = set(collected.values())
                up_to = new_seen.get(conversation.pk, 0)
                missing = [n for n in range(1, up_to + 1) if n not in have]
                if missing:
                    holes.append((up_to, missing))
                seen = new_seen
                if last_pass:
                    break
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
    reader = threading.Thread(target=read)
    for thread in threads + [reader]:
        thread.start()
    for thread in threads:
        thread.join(60)
    writers_done.set()
    reader.join(60)
    assert not errors, errors
    assert not holes, holes[:3]

    total = 1 + WRITERS * ROUNDS
    numbers = sorted(Message.objects.filter(conversation=conversation).values_list("seq", flat=True))
    assert numbers == list(range(1, total + 1))
    assert Conversation.objects.get(pk=conversation.pk).last_seq == total
    assert sorted(collected.values()) == numbers  # the reader got every entry, each once


def _run_interleaved(first, second) -> list[BaseException]:
    """Run two writers in their own threads and connections; return what they raised."""
    from django.db import connections

    errors: list[BaseException] = []

    def run(target):
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(target,)) for target in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    return errors


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_a_reply_on_another_channel_racing_a_note_there_does_not_deadlock(monkeypatch):
    """The reply opens (here: finds) the email conversation under the customer's lock, then waits
    for that conversation's lock, which a note holds; the note then inserts its row, whose foreign
    key check needs a share lock on the customer. With the customer locked FOR UPDATE the two
    wait for each other."""
    from conversations.services import agent_actions

    agent = make_agent("racer", display_name="Racer")
    customer = make_customer("Racing Customer")
    make_identity(customer, IdentityKind.PHONE, PHONE)
    make_identity(customer, IdentityKind.EMAIL, "race@example.jp")
    sms = make_conversation(customer, make_inbox("sms"), assignee=agent)
    email = make_conversation(customer, make_inbox("email"), assignee=agent)
    note_holds_conversation, reply_holds_customer = threading.Event(), threading.Event()
    original_seq, original_open = agent_actions.message_seq_next, agent_actions.conversation_for_channel

    def seq_then_wait(conversation):
        seq = original_seq(conversation)
        note_holds_conversation.set()
        reply_holds_customer.wait(10)
        return seq

    def open_then_signal(**kwargs):
        conversation = original_open(**kwargs)
        reply_holds_customer.set()
        return conversation

    monkeypatch.setattr(agent_actions, "message_seq_next", seq_then_wait)
    monkeypatch.setattr(agent_actions, "conversation_for_channel", open_then_signal)

    def note():
        note_add(conversation=email, agent=agent, text="note first")

    def reply():
        assert note_holds_conversation.wait(10)
        agent_actions.reply_send(conversation=sms, agent=agent, text="by email", channel="email")

    assert _run_interleaved(note, reply) == []
    assert list(Message.objects.filter(conversation=email).order_by("seq").values_list("kind", "seq")) == [
        ("note", 1), ("message", 2)]


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_an_inbound_message_racing_an_agents_note_does_not_deadlock(monkeypatch):
    from conversations.services import agent_actions, ingest

    agent = make_agent("racer", display_name="Racer")
    inbox = make_inbox("sms")
    conversation = inbound(inbox, "SMopen").conversation
    note_holds_conversation, ingest_holds_customer = threading.Event(), threading.Event()
    original_seq, original_find = agent_actions.message_seq_next, ingest._find_or_open_conversation

    def seq_then_wait(conversation):
        seq = original_seq(conversation)
        note_holds_conversation.set()
        ingest_holds_customer.wait(10)
        return seq

    def find_after_signal(**kwargs):
        ingest_holds_customer.set()  # message_receive holds the customer's row lock here
        return original_find(**kwargs)

    monkeypatch.setattr(agent_actions, "message_seq_next", seq_then_wait)
    monkeypatch.setattr(ingest, "_find_or_open_conversation", find_after_signal)

    def note():
        note_add(conversation=conversation, agent=agent, text="note")

    def receive():
        assert note_holds_conversation.wait(10)
        inbound(inbox, "SMrace", "the customer writes at the same moment")

    assert _run_interleaved(note, receive) == []
    assert list(Message.objects.filter(conversation=conversation).order_by("seq").values_list("kind", "seq")) == [
        ("message", 1), ("note", 2), ("message", 3)]
