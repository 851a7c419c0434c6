from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from conversations.models import Direction, EventType, MessageKind
from profiles.models import CustomerNote
from profiles.services import customer_merge
from profiles.timeline import customer_timeline

from ..factories import (
    make_agent,
    make_conversation,
    make_customer,
    make_inbox,
    make_message,
    make_touchpoint,
)

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0) - timedelta(days=30)


def _build_history(customer, *, conversations: int, per_conversation: int, touchpoints: int):
    channels = ["sms", "email", "webchat", "voice"]
    agent = make_agent(f"agent{customer.pk}")
    step = 0
    for index in range(conversations):
        conv = make_conversation(customer, make_inbox(channels[index % 4]))
        for number in range(per_conversation):
            step += 1
            make_message(conv, f"c{index} m{number}", created_at=T0 + timedelta(minutes=step),
                         direction=Direction.OUTBOUND if number % 2 else Direction.INBOUND,
                         author_agent=agent if number % 2 else None)
    for index in range(touchpoints):
        step += 1
        make_touchpoint(customer, f"page {index}", occurred_at=T0 + timedelta(minutes=step))


def _walk_older(customer_id, limit):
    page = customer_timeline(customer_id=customer_id, limit=limit)
    seen = list(page.entries)
    while page.older_cursor:
        page = customer_timeline(customer_id=customer_id, before=page.older_cursor, limit=limit)
        seen = page.entries + seen
    return seen


def test_one_chronological_stream_across_channels_notes_events_and_touchpoints():
    customer = make_customer("Hanako")
    sms = make_conversation(customer, make_inbox("sms"))
    email = make_conversation(customer, make_inbox("email"))
    agent = make_agent("alice")
    make_message(email, "email first", created_at=T0 + timedelta(minutes=1))
    make_touchpoint(customer, "Viewed returns policy", occurred_at=T0 + timedelta(minutes=2))
    make_message(sms, "sms second", created_at=T0 + timedelta(minutes=3))
    make_message(sms, "internal note", kind=MessageKind.NOTE, direction=Direction.INTERNAL, author_agent=agent,
                 created_at=T0 + timedelta(minutes=4))
    make_message(sms, "", kind=MessageKind.EVENT, direction=Direction.INTERNAL, event_type=EventType.ASSIGNED,
                 event_data={"agent": agent.pk}, created_at=T0 + timedelta(minutes=5))
    other = make_customer("Someone else")
    make_message(make_conversation(other, make_inbox("sms")), "not hers", created_at=T0 + timedelta(minutes=6))

    page = customer_timeline(customer_id=customer.pk)
    kinds = [(entry.type, getattr(entry.item, "text", None) or getattr(entry.item, "title", "")) for entry in page.entries]
    assert kinds == [
        ("message", "email first"),
        ("touchpoint", "Viewed returns policy"),
        ("message", "sms second"),
        ("message", "internal note"),
        ("message", ""),
    ]
    assert page.entries[-1].item.event_type == EventType.ASSIGNED
    assert not page.has_older and not page.has_newer


def test_pages_walk_both_ways_without_gaps_or_repeats():
    customer = make_customer()
    _build_history(customer, conversations=4, per_conversation=9, touchpoints=7)
    # Same timestamp on a message and a touchpoint: the (at, rank, id) order still totals.
    conv = customer.conversations.first()
    make_message(conv, "tie", created_at=T0 + timedelta(minutes=5))
    make_touchpoint(customer, "tie", occurred_at=T0 + timedelta(minutes=5))

    backwards = _walk_older(customer.pk, limit=5)
    assert len(backwards) == 4 * 9 + 7 + 2
    positions = [entry.position for entry in backwards]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)

    # And forwards from the oldest entry.
    first = customer_timeline(customer_id=customer.pk, before=backwards[1].cursor, limit=5)
    assert [e.position for e in first.entries] == [backwards[0].position]
    forwards = list(first.entries)
    page = first
    while True:
        page = customer_timeline(customer_id=customer.pk, after=forwards[-1].cursor, limit=6)
        forwards += page.entries
        if not page.has_newer:
            break
    assert [e.position for e in forwards] == positions


@pytest.mark.parametrize("size", [(1, 3, 1), (12, 20, 30)])
def test_query_count_is_fixed_whatever_the_history_size(size, django_assert_num_queries):
    customer = make_customer()
    conversations, per_conversation, touchpoints = size
    _build_history(customer, conversations=conversations, per_conversation=per_conversation, touchpoints=touchpoints)
    # messages (+ joined author), their attachments, touchpoints.
    with django_assert_num_queries(3):
        page = customer_timeline(customer_id=customer.pk, limit=50)
        for entry in page.entries:
            if entry.type == "message":
                _ = (entry.item.channel, entry.item.conversation_id, list(entry.item.attachments.all()),
                     entry.item.author_agent and entry.item.author_agent.display_name)
    # A deep page (older than the newest entry) costs the same.
    cursor = page.older_cursor or page.entries[-1].cursor
    with django_assert_num_queries(3):
        customer_timeline(customer_id=customer.pk, before=cursor, limit=50)


def test_merged_customer_history_is_on_the_target_timeline():
    target, source = make_customer("T"), make_customer("S")
    make_message(make_conversation(target, make_inbox("sms")), "from target", created_at=T0)
    make_message(make_conversation(source, make_inbox("email")), "from source", created_at=T0 + timedelta(minutes=1))
    make_touchpoint(source, "source page", occurred_at=T0 + timedelta(minutes=2))
    customer_merge(source=source, target=target)
    entries = customer_timeline(customer_id=target.pk).entries
    assert [e.type for e in entries] == ["message", "message", "touchpoint"]
    assert customer_timeline(customer_id=source.pk).entries == []
    assert CustomerNote.objects.count() == 0


@pytest.mark.parametrize("cursor", ["garbage", "eyJ4IjoxfQ", "W10"])
def test_bad_cursor_is_a_validation_error(cursor):
    with pytest.raises(ValidationError):
        customer_timeline(customer_id=1, before=cursor)


def test_before_and_after_together_is_an_error():
    with pytest.raises(ValidationError):
        customer_timeline(customer_id=1, before="a", after="b")
