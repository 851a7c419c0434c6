"""The board's HTML is rendered block by block, and a block that did not change is reused."""

from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.models import Agent
from supervisor.live.board import BlockCache, board_render
from supervisor.live.selectors import wallboard_snapshot

from ..factories import make_conversation, make_customer, make_inbox
from .conftest import desk_agent

pytestmark = pytest.mark.django_db


def test_only_the_blocks_an_event_changed_are_rendered_again(desk):
    desk_agent(desk, "alice")
    bob = desk_agent(desk, "bob", skilled=False)  # serves Sales only (it requires no skill)
    make_conversation(make_customer("Waiting"), make_inbox(), queue=desk.queue, queued_at=timezone.now())
    cache = BlockCache()
    now = timezone.now()
    first = board_render(wallboard_snapshot(now=now), "en", cache=cache)
    rendered = len(cache._blocks)
    assert rendered == 2 + 1 + 2  # two queues, one channel, two agents

    # Ten seconds later nothing changed but the clocks: nothing is rendered again.
    later = board_render(wallboard_snapshot(now=now + timedelta(seconds=10)), "en", cache=cache)
    assert len(cache._blocks) == rendered
    assert later.count("data-since") == first.count("data-since")

    # Bob goes to lunch: his row, the Sales queue's and the SMS channel's (agents by presence)
    # change, nothing else.
    Agent.objects.filter(pk=bob.pk).update(presence=desk.lunch, presence_changed_at=now)
    page = board_render(wallboard_snapshot(now=now + timedelta(seconds=11)), "en", cache=cache)
    assert len(cache._blocks) == rendered + 3
    assert "Lunch: 1" in page

    # Another language is rendered (and kept) apart.
    board_render(wallboard_snapshot(now=now + timedelta(seconds=12)), "ja", cache=cache)
    assert len(cache._blocks) == rendered + 3 + 5


def test_a_presence_event_older_than_the_row_is_left_out(desk):
    from supervisor.live.selectors import board_with_presences, presence_from_event

    alice = desk_agent(desk, "alice")
    board = wallboard_snapshot()
    row = next(a for a in board["agents"] if a["id"] == alice.pk)
    event = {"type": "agent.presence", "agent": alice.pk, "presence": desk.lunch.pk, "name": "Lunch",
             "available": False, "offline": False}
    assert presence_from_event(event) is None  # no "since": the agent is read instead
    assert presence_from_event({**event, "since": "2026-03-10T15:00:00"}) is None  # naive: not ours
    older = presence_from_event({**event, "since": (row["presence_since"] - timedelta(seconds=5)).isoformat()})
    newer = presence_from_event({**event, "since": (row["presence_since"] + timedelta(seconds=5)).isoformat()})
    assert next(a for a in board_with_presences(board, {alice.pk: older})["agents"]
                if a["id"] == alice.pk)["presence"] == "Available"
    after = board_with_presences(board, {alice.pk: newer})
    assert next(a for a in after["agents"] if a["id"] == alice.pk)["presence"] == "Lunch"
    support = next(q for q in after["queues"] if q["id"] == desk.queue.pk)
    assert support["serving"] == [{"presence": "Lunch", "available": False, "agents": 1}]
    assert next(a for a in board["agents"] if a["id"] == alice.pk)["presence"] == "Available"  # not changed
