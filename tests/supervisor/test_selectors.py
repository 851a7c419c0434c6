"""The wallboard's figures on a hand-made day with known answers, in a fixed number of queries.

The scenario's "now" is 00:30 in Tokyo (15:30 UTC the day before): a customer who entered the
queue at 23:59 Tokyo time belongs to yesterday, although it is the same UTC day."""

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.test import override_settings

from conversations.models import Channel, ConversationStatus, Offer, OfferStatus
from supervisor.live.selectors import day_start, wallboard_snapshot

from ..factories import make_conversation, make_customer, make_inbox
from .conftest import desk_agent

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 15, 30, tzinfo=dt_timezone.utc)  # 2026-03-11 00:30 in Tokyo


def at(hh, mm, ss=0):
    return datetime(2026, 3, 10, hh, mm, ss, tzinfo=dt_timezone.utc)


def test_the_day_starts_at_midnight_in_tokyo():
    assert day_start(NOW) == datetime(2026, 3, 10, 15, 0, tzinfo=dt_timezone.utc)
    assert day_start(at(14, 59, 59)) == datetime(2026, 3, 9, 15, 0, tzinfo=dt_timezone.utc)


def _scenario(desk):
    alice = desk_agent(desk, "alice", display_name="Alice", presence_changed_at=NOW - timedelta(seconds=300))
    bob = desk_agent(desk, "bob", display_name="Bob", presence=desk.lunch, skilled=False,
                     presence_changed_at=NOW - timedelta(seconds=60))
    sms, webchat = make_inbox(Channel.SMS), make_inbox(Channel.WEBCHAT)
    q = desk.queue

    def conv(name, inbox=sms, queue=q, **fields):
        return make_conversation(make_customer(name), inbox, queue=queue, **fields)

    c = {
        # 23:59 Tokyo, yesterday: not in today's figures, but Alice is handling it.
        "yesterday": conv("Yesterday", queued_at=at(14, 59), answered_at=at(15, 0, 10), assigned_at=at(15, 0, 10),
                          assignee=alice),
        # Answered by Bob in 30 s, reassigned to Alice at 15:20: answered within the SLA all the same.
        "in_sla": conv("In SLA", queued_at=at(15, 1), answered_at=at(15, 1, 30), assigned_at=at(15, 20),
                       assignee=alice, status=ConversationStatus.PENDING),
        "late": conv("Late", queued_at=at(15, 2), answered_at=at(15, 4), assigned_at=at(15, 4), assignee=alice,
                     status=ConversationStatus.RESOLVED),
        "short": conv("Short", queued_at=at(15, 3), abandoned_at=at(15, 3, 3)),
        "abandoned": conv("Abandoned", queued_at=at(15, 5), abandoned_at=at(15, 7)),
        "waiting_long": conv("Waiting long <b>", queued_at=at(15, 10)),
        "waiting_new": conv("Waiting new", queued_at=at(15, 29, 40)),
        "sales": conv("Sales chat", inbox=webchat, queue=desk.sales, queued_at=at(15, 20)),
    }
    Offer.objects.create(conversation=c["waiting_new"], agent=bob, queue=q, channel="sms", step="queue",
                         created_at=at(15, 29, 45))
    Offer.objects.create(conversation=c["short"], agent=alice, queue=q, channel="sms", step="queue",
                         status=OfferStatus.TIMEOUT, decided_at=at(15, 3, 1))
    Offer.objects.create(conversation=c["yesterday"], agent=alice, queue=q, channel="sms", step="queue",
                         status=OfferStatus.TIMEOUT, decided_at=at(14, 59, 30))
    return alice, bob, c


@override_settings(CC_SHORT_ABANDON_SECONDS=5, CC_DEFAULT_TIME_ZONE="Asia/Tokyo")
def test_queue_figures_today_and_now(desk):
    alice, bob, c = _scenario(desk)
    board = wallboard_snapshot(now=NOW)
    support = next(row for row in board["queues"] if row["id"] == desk.queue.pk)

    assert support["waiting"] == 2
    assert support["longest_wait_seconds"] == 20 * 60
    assert [w["conversation"] for w in support["oldest"]] == [c["waiting_long"].pk, c["waiting_new"].pk]
    assert support["oldest"][0]["customer"] == "Waiting long <b>"  # escaped by the template, not here
    assert support["oldest"][0]["channel"] == "sms"
    # Offered today: everything but yesterday's; SL = 1 in SLA ÷ (6 − 1 short − 1 undecided).
    assert support["today"] == {"offered": 6, "handled": 2, "abandoned": 2, "short_abandoned": 1,
                                "answered_in_sla": 1, "service_level": 25.0}
    assert support["serving"] == [{"presence": "Available", "available": True, "agents": 1}]

    sales = next(row for row in board["queues"] if row["id"] == desk.sales.pk)
    assert sales["waiting"] == 1 and sales["today"]["service_level"] == 0.0  # 10 min > 30 s SLA
    assert sales["serving"] == [{"presence": "Available", "available": True, "agents": 1},
                                {"presence": "Lunch", "available": False, "agents": 1}]

    channels = {row["channel"]: row for row in board["channels"]}
    assert channels["sms"]["waiting"] == 2 and channels["sms"]["today"]["offered"] == 6
    assert channels["webchat"]["waiting"] == 1 and channels["webchat"]["today"]["offered"] == 1
    assert "email" not in channels  # nothing today, nothing waiting
    # Agents with capacity on the channel, by presence.
    assert channels["sms"]["serving"] == [{"presence": "Available", "available": True, "agents": 1},
                                          {"presence": "Lunch", "available": False, "agents": 1}]


@override_settings(CC_SHORT_ABANDON_SECONDS=5)
def test_agent_figures(desk):
    alice, bob, c = _scenario(desk)
    board = wallboard_snapshot(now=NOW)
    agents = {row["id"]: row for row in board["agents"]}

    a = agents[alice.pk]
    assert (a["presence"], a["available"], a["presence_seconds"]) == ("Available", True, 300)
    assert [(h["conversation"], h["seconds"]) for h in a["handling"]] == [
        (c["yesterday"].pk, 30 * 60 - 10), (c["in_sla"].pk, 10 * 60)]  # the resolved one is done; since 15:20
    sms_load = next(row for row in a["load"] if row["channel"] == "sms")
    assert sms_load == {"channel": "sms", "load": 2, "capacity": 5}
    assert a["missed_offers_today"] == 1  # the one at 23:59:30 Tokyo was yesterday

    b = agents[bob.pk]
    assert (b["presence"], b["available"], b["handling"]) == ("Lunch", False, [])
    assert next(row for row in b["load"] if row["channel"] == "sms")["load"] == 1  # the pending offer
    assert b["pending_offers"] == 1 and b["missed_offers_today"] == 0


def test_a_short_abandon_threshold_moves_abandons_in_and_out_of_the_service_level(desk):
    _scenario(desk)
    with override_settings(CC_SHORT_ABANDON_SECONDS=200):  # both abandons are short now
        support = wallboard_snapshot(now=NOW)["queues"][1]
    assert support["name"] == "Support"
    assert support["today"]["short_abandoned"] == 2
    assert support["today"]["service_level"] == round(100 / 3, 1)  # 1 ÷ (6 − 2 − 1)


def test_the_snapshot_takes_ten_queries_however_much_there_is(desk, django_assert_num_queries):
    _scenario(desk)
    with django_assert_num_queries(10):
        small = wallboard_snapshot(now=NOW)
    for n in range(5):
        desk_agent(desk, f"extra{n}")
        make_conversation(make_customer(f"More {n}"), make_inbox(Channel.EMAIL), queue=desk.queue,
                          queued_at=at(15, 20 + n))
    with django_assert_num_queries(10):
        large = wallboard_snapshot(now=NOW)
    assert len(large["agents"]) == len(small["agents"]) + 5


def test_a_transfer_or_reassignment_does_not_move_the_answer_time(desk):
    """The service level and the wait are measured to the *first* acceptance: a supervisor's
    reassignment or an agent's transfer later does not make a customer answered in 30 s look
    answered after two minutes. Entering a queue again starts a new wait."""
    from django.utils import timezone

    from conversations.models import Conversation
    from conversations.routing.assignment import conversation_assign, conversation_transfer

    alice, bob = desk_agent(desk, "alice"), desk_agent(desk, "bob")
    conversation = make_conversation(make_customer("Ken"), make_inbox(Channel.SMS), queue=desk.queue,
                                     queued_at=timezone.now())
    conversation_assign(conversation_id=conversation.pk, agent=alice, by=None, via="offer")
    answered = Conversation.objects.get(pk=conversation.pk).answered_at
    # As if it had entered the queue 130 s ago and been answered 30 s later.
    Conversation.objects.filter(pk=conversation.pk).update(
        queued_at=answered - timedelta(seconds=130), answered_at=answered - timedelta(seconds=100),
        assigned_at=answered - timedelta(seconds=100))
    conversation_transfer(conversation_id=conversation.pk, by=alice, note="billing", to_agent=bob)
    conversation_assign(conversation_id=conversation.pk, agent=alice, by=bob, note="back to you")
    row = Conversation.objects.get(pk=conversation.pk)
    assert row.answered_at == answered - timedelta(seconds=100)
    assert row.assigned_at >= answered  # since when Alice has it again
    support = next(q for q in wallboard_snapshot()["queues"] if q["id"] == desk.queue.pk)
    assert support["today"]["answered_in_sla"] == 1 and support["today"]["service_level"] == 100.0

    conversation_transfer(conversation_id=conversation.pk, by=alice, note="sales", to_queue=desk.sales)
    assert Conversation.objects.get(pk=conversation.pk).answered_at == answered - timedelta(seconds=100)
    conversation_assign(conversation_id=conversation.pk, agent=bob, by=None, via="offer")
    row = Conversation.objects.get(pk=conversation.pk)
    assert row.answered_at == row.assigned_at and row.answered_at >= row.queued_at  # its wait in Sales


def test_an_agents_presence_is_read_again_in_one_query(desk, django_assert_num_queries):
    """What the wallboard reads for a presence event that does not tell the change whole."""
    from django.utils import timezone

    from conversations.models import Agent
    from supervisor.live.selectors import wallboard_agents_refresh

    alice, bob = _scenario(desk)[:2]
    board = wallboard_snapshot(now=NOW)
    Agent.objects.filter(pk=alice.pk).update(presence=desk.lunch, presence_changed_at=timezone.now())
    with django_assert_num_queries(1):
        after = wallboard_agents_refresh(board, {alice.pk}, now=NOW)
    assert next(a for a in after["agents"] if a["id"] == alice.pk)["presence"] == "Lunch"
    support = next(q for q in after["queues"] if q["id"] == desk.queue.pk)
    assert support["serving"] == [{"presence": "Lunch", "available": False, "agents": 1}]
    assert wallboard_agents_refresh(board, {alice.pk, 10**6}, now=NOW) is None  # one is gone: read it whole
