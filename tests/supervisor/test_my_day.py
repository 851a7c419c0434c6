""""My day": an agent's own figures, read-only, for anyone with an agent profile."""

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest

from conversations.models import Channel, ConversationStatus, Offer, OfferStatus
from supervisor.live.selectors import agent_day

from ..factories import make_conversation, make_customer, make_inbox
from .conftest import desk_agent

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 15, 30, tzinfo=dt_timezone.utc)  # 00:30 in Tokyo


def _day(desk):
    alice = desk_agent(desk, "alice", display_name="Alice", presence_changed_at=NOW - timedelta(minutes=5))
    bob = desk_agent(desk, "bob", display_name="Bob")
    sms = make_inbox(Channel.SMS)
    open_now = make_conversation(make_customer("Open now"), sms, queue=desk.queue, assignee=alice,
                                 queued_at=NOW - timedelta(minutes=3), assigned_at=NOW - timedelta(minutes=2))
    # Resolved at 23:50 Tokyo yesterday: not today.
    make_conversation(make_customer("Yesterday"), sms, queue=desk.queue, assignee=alice,
                      status=ConversationStatus.RESOLVED, assigned_at=NOW - timedelta(minutes=50),
                      resolved_at=NOW - timedelta(minutes=40))
    make_conversation(make_customer("Resolved today"), sms, queue=desk.queue, assignee=alice,
                      status=ConversationStatus.RESOLVED, assigned_at=NOW - timedelta(minutes=20),
                      resolved_at=NOW - timedelta(minutes=10))
    make_conversation(make_customer("Bob's"), sms, queue=desk.queue, assignee=bob, assigned_at=NOW)
    make_conversation(make_customer("Waiting"), sms, queue=desk.queue, queued_at=NOW)
    Offer.objects.create(conversation=open_now, agent=alice, queue=desk.queue, channel="sms", step="queue",
                         status=OfferStatus.TIMEOUT, decided_at=NOW - timedelta(minutes=4))
    return alice, bob, open_now


def test_an_agents_own_figures_in_eight_queries(desk, django_assert_num_queries):
    alice, _bob, open_now = _day(desk)
    alice.refresh_from_db()
    agent = type(alice).objects.select_related("presence").get(pk=alice.pk)
    with django_assert_num_queries(8):
        day = agent_day(agent=agent, now=NOW)
    assert (day["presence"], day["presence_seconds"]) == ("Available", 300)
    assert [h["conversation"] for h in day["handling"]] == [open_now.pk]
    assert (day["assigned_today"], day["resolved_today"], day["missed_offers_today"]) == (2, 1, 1)
    assert next(row for row in day["load"] if row["channel"] == "sms") == {"channel": "sms", "load": 1, "capacity": 5}
    # Sales requires no skill: every agent serves it.
    assert day["queues"] == [{"id": desk.sales.pk, "name": "Sales", "waiting": 0},
                             {"id": desk.queue.pk, "name": "Support", "waiting": 1}]


def test_the_page_shows_only_the_agents_own_day(desk, client, stranger):
    alice, bob, open_now = _day(desk)
    assert "/accounts/login/" in client.get("/supervisor/me/")["Location"]
    client.force_login(stranger)
    assert client.get("/supervisor/me/").status_code == 403
    client.force_login(alice.user)
    page = client.get("/supervisor/me/").content.decode()
    assert "Open now" in page and "Bob&#x27;s" not in page and "Bob's" not in page
    assert f"/console/conversations/{open_now.pk}/" in page
    assert "/supervisor/conversations/" not in page  # read-only: no intervention
    page = client.get("/supervisor/me/", HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert "今日の自分" in page
