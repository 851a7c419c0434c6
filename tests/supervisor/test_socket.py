"""``/ws/supervisor/``: a fresh board on connect, each change pushed soon after its commit,
supervisors only, and the console's Origin rule."""

import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from contactcenter.asgi import application
from conversations.models import Channel, Conversation
from conversations.routing.assignment import conversation_assign
from conversations.services import InboundMessage, message_receive
from profiles.models import Customer
from supervisor.live import consumers
from supervisor.live.board import row_key

from ..conversations.console_socket_helpers import _session_cookie
from ..factories import make_agent, make_conversation, make_customer, make_inbox
from .conftest import desk_agent

pytestmark = [pytest.mark.django_db(transaction=True)]


async def connect(user=None, *, origin="http://127.0.0.1:8000", path="/ws/supervisor/"):
    headers = [(b"origin", origin.encode()), (b"host", b"127.0.0.1:8000")]
    if user is not None:
        cookie = await database_sync_to_async(_session_cookie)(user)
        headers.append((b"cookie", cookie.encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect()
    return communicator, connected, code


# What each test socket shows, as the page's script keeps it: a snapshot replaces it, a delta
# replaces the rows it carries and must apply to the version shown (``base``).
_shown: dict[int, dict] = {}


def _apply(communicator, frame: dict) -> dict:
    if frame["type"] == "wallboard.snapshot":
        _shown[id(communicator)] = {"version": frame["version"], "data": frame["data"]}
        return {**frame, "data": frame["data"]}
    shown = _shown[id(communicator)]
    assert frame["base"] == shown["version"], "a delta that does not apply to the board shown"
    assert frame["version"] > shown["version"]
    data = shown["data"]
    for row in frame["rows"]:
        for section in ("queues", "channels", "agents"):
            rows = data[section]
            for index, old in enumerate(rows):
                if row_key(section, old) == row["key"]:
                    rows[index] = row["data"]
    data["at"] = frame["at"]
    shown["version"] = frame["version"]
    return {**frame, "data": data}


async def next_frame(communicator, timeout=3.0) -> dict:
    """The next snapshot or delta, applied to what the socket shows (``data``: the whole board)."""
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        if frame["type"] in ("wallboard.snapshot", "wallboard.delta"):
            return _apply(communicator, frame)


async def next_board(communicator, timeout=3.0) -> dict:
    """The next whole board (deltas in between applied)."""
    while True:
        frame = await next_frame(communicator, timeout)
        if frame["type"] == "wallboard.snapshot":
            return frame


def _waiting(board: dict, queue_id: int) -> list[int]:
    row = next(q for q in board["data"]["queues"] if q["id"] == queue_id)
    return [w["conversation"] for w in row["oldest"]]


@pytest.fixture
def carol(desk):
    return make_agent("carol", role="supervisor", display_name="Carol", presence=desk.available)


async def test_a_supervisor_gets_the_board_on_connect_in_their_language(desk, carol):
    conversation = await database_sync_to_async(lambda: make_conversation(
        make_customer("Hana <img src=x>"), make_inbox(Channel.SMS), queue=desk.queue))()
    communicator, connected, _ = await connect(carol.user, path="/ws/supervisor/?lang=ja")
    try:
        assert connected
        board = await next_board(communicator)
        assert board["version"] >= 1
        assert _waiting(board, desk.queue.pk) == [conversation.pk]
        assert "Hana &lt;img src=x&gt;" in board["html"] and "<img src=x>" not in board["html"]
        assert "待機中" in board["html"]  # rendered in the page's language
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from() == {"type": "pong"}
        await communicator.send_json_to({"type": "refresh"})
        again = await next_board(communicator)
        assert again["version"] > board["version"]
    finally:
        await communicator.disconnect()


async def test_agents_strangers_and_anonymous_are_refused(desk, stranger):
    alice = await database_sync_to_async(desk_agent)(desk, "alice")
    for user in (alice.user, stranger, None):
        communicator, connected, code = await connect(user)
        assert not connected and code == consumers.FORBIDDEN_CLOSE_CODE
        await communicator.disconnect()


async def test_a_foreign_origin_is_refused_even_for_a_supervisor(desk, carol):
    communicator, connected, _ = await connect(carol.user, origin="https://evil.example")
    assert not connected
    await communicator.disconnect()


async def test_a_new_waiting_customer_and_an_assignment_are_pushed_soon_after_commit(desk, carol, monkeypatch):
    monkeypatch.setattr(consumers, "REFRESH_SECONDS", 3600)  # only events make it read again
    alice = await database_sync_to_async(desk_agent)(desk, "alice")
    communicator, connected, _ = await connect(carol.user)
    try:
        assert connected
        first = await next_board(communicator)
        assert _waiting(first, desk.queue.pk) == []

        def customer_writes():
            inbox = make_inbox(Channel.SMS)
            message_receive(InboundMessage(inbox=inbox, sender_kind="phone", sender_address="090-1111-2222",
                                           text="help", provider_id="SM" + "1" * 32))
            return Conversation.objects.get()

        committed = time.monotonic()
        conversation = await database_sync_to_async(customer_writes)()
        board = await next_frame(communicator)
        assert time.monotonic() - committed < 1.0
        assert board["version"] > first["version"]
        assert _waiting(board, desk.queue.pk) == [conversation.pk]

        committed = time.monotonic()
        await database_sync_to_async(conversation_assign)(conversation_id=conversation.pk, agent=alice, by=carol)
        board = await next_frame(communicator)
        while _waiting(board, desk.queue.pk):  # a board read before the commit may come first
            board = await next_frame(communicator)
        assert time.monotonic() - committed < 1.0
        handling = next(a for a in board["data"]["agents"] if a["id"] == alice.pk)["handling"]
        assert [h["conversation"] for h in handling] == [conversation.pk]
    finally:
        await communicator.disconnect()


async def test_events_in_a_burst_are_read_once(desk, carol, monkeypatch):
    """Many events at once: the first is read at once, the rest together, not one read per event;
    presence changes read the agents' rows only, and each socket of the process does not read
    again what another one's copy of the event already made the hub read."""
    import asyncio

    from channels.layers import get_channel_layer

    from conversations.groups import supervisors_group

    monkeypatch.setattr(consumers, "REFRESH_SECONDS", 3600)
    alice = await database_sync_to_async(desk_agent)(desk, "alice")
    whole, rows = [], []
    real_whole, real_rows = consumers.wallboard_snapshot, consumers.wallboard_agents_refresh
    monkeypatch.setattr(consumers, "wallboard_snapshot", lambda: whole.append(1) or real_whole())
    monkeypatch.setattr(consumers, "wallboard_agents_refresh",
                        lambda board, agents: rows.append(set(agents)) or real_rows(board, agents))
    communicator, connected, _ = await connect(carol.user)
    other, _connected, _ = await connect(carol.user)
    try:
        await next_board(communicator)
        await next_board(other)
        while not await communicator.receive_nothing(timeout=consumers.COALESCE_SECONDS * 3):
            await next_frame(communicator)
        whole.clear()
        await asyncio.gather(*(get_channel_layer().group_send(supervisors_group(), {
            "type": "console.event", "event": {"type": "conversation.snoozed", "conversation": n}})
            for n in range(20)))
        assert await communicator.receive_nothing(timeout=consumers.COALESCE_SECONDS * 3)  # nothing changed
        assert 1 <= len(whole) <= 2
        assert rows == []

        whole.clear()
        await asyncio.gather(*(get_channel_layer().group_send(supervisors_group(), {
            "type": "console.event", "event": {"type": "agent.presence", "agent": alice.pk}}) for _n in range(20)))
        assert await communicator.receive_nothing(timeout=consumers.COALESCE_SECONDS * 3)  # nothing changed
        # Presence reads are not held back (one small query each, at once), but two sockets receiving
        # the same twenty events make at most twenty of them, not forty.
        assert whole == [] and 1 <= len(rows) <= 20 and all(agents == {alice.pk} for agents in rows)

        before = len(rows)
        # Events that change nothing on the board (a delivery receipt) cost no read at all.
        await get_channel_layer().group_send(supervisors_group(), {
            "type": "console.event", "event": {"type": "message.delivery", "message": 1}})
        assert await communicator.receive_nothing(timeout=consumers.COALESCE_SECONDS * 3)
        assert len(rows) == before and whole == []
    finally:
        await communicator.disconnect()
        await other.disconnect()


async def test_a_presence_change_sends_only_the_rows_it_changed(desk, carol, monkeypatch):
    """Alice goes to lunch: her row and the Support queue's (agents by presence) are sent, no
    other row and not the whole board; a socket that connected meanwhile gets a whole board."""
    from conversations.routing.presence import agent_presence_set

    monkeypatch.setattr(consumers, "REFRESH_SECONDS", 3600)
    alice = await database_sync_to_async(desk_agent)(desk, "alice")
    await database_sync_to_async(desk_agent)(desk, "bob")
    communicator, connected, _ = await connect(carol.user)
    try:
        first = await next_board(communicator)
        reads = []
        monkeypatch.setattr(consumers, "wallboard_snapshot", lambda: reads.append("whole"))
        monkeypatch.setattr(consumers, "wallboard_agents_refresh", lambda *args: reads.append("agents"))
        committed = time.monotonic()
        await database_sync_to_async(agent_presence_set)(agent=alice, presence=desk.lunch, reason="agent")
        frame = await next_frame(communicator)
        assert time.monotonic() - committed < 1.0
        assert reads == []  # the event told the change whole: nothing was read
        monkeypatch.undo()
        monkeypatch.setattr(consumers, "REFRESH_SECONDS", 3600)
        assert frame["type"] == "wallboard.delta" and frame["base"] == first["version"]
        assert sorted(row["key"] for row in frame["rows"]) == [f"agent-{alice.pk}", f"queue-{desk.queue.pk}",
                                                             f"queue-{desk.sales.pk}"]
        mine = next(row for row in frame["rows"] if row["key"] == f"agent-{alice.pk}")
        assert mine["data"]["presence"] == "Lunch" and 'data-key="agent-' in mine["html"]
        assert "Lunch" in mine["html"]
        support = next(a for a in frame["data"]["queues"] if a["id"] == desk.queue.pk)
        assert {"presence": "Lunch", "available": False, "agents": 1} in support["serving"]

        # A new agent is a new row: the layout changed, the whole board goes.
        await database_sync_to_async(agent_presence_set)(
            agent=await database_sync_to_async(desk_agent)(desk, "dan", presence=desk.lunch), presence=desk.available)
        frame = await next_frame(communicator)
        while frame["type"] == "wallboard.delta":
            frame = await next_frame(communicator)
        assert len(frame["data"]["agents"]) == 4  # carol, alice, bob, dan
    finally:
        await communicator.disconnect()


async def test_a_socket_that_missed_a_delta_is_sent_the_whole_board(desk, carol, monkeypatch):
    """The hub sends a delta only to a socket showing its base; another gets the whole board."""
    from conversations.routing.presence import agent_presence_set

    monkeypatch.setattr(consumers, "REFRESH_SECONDS", 3600)
    alice = await database_sync_to_async(desk_agent)(desk, "alice")
    communicator, connected, _ = await connect(carol.user)
    try:
        await next_board(communicator)
        board = consumers.hub()
        socket = next(iter(board.sockets))
        socket.version = -1  # as if a frame had not reached it
        await database_sync_to_async(agent_presence_set)(agent=alice, presence=desk.lunch, reason="agent")
        frame = await communicator.receive_json_from(timeout=3)
        while frame["type"] != "wallboard.snapshot":
            frame = await communicator.receive_json_from(timeout=3)
        assert next(a for a in frame["data"]["agents"] if a["id"] == alice.pk)["presence"] == "Lunch"
    finally:
        await communicator.disconnect()


async def test_a_bad_frame_closes_with_4400(desk, carol):
    communicator, connected, _ = await connect(carol.user)
    try:
        await next_board(communicator)
        await communicator.send_to(text_data="[[[[")
        frame = await communicator.receive_json_from()
        assert frame["type"] == "error"
        output = await communicator.receive_output(timeout=3)
        assert output == {"type": "websocket.close", "code": consumers.BAD_FRAME_CLOSE_CODE}
    finally:
        await communicator.disconnect()


async def test_a_reconnecting_board_catches_up_from_a_fresh_snapshot(desk, carol):
    """What changed while the socket was away (no frame reached it) is on the first board after."""
    communicator, connected, _ = await connect(carol.user)
    first = await next_board(communicator)
    await communicator.disconnect()
    conversation = await database_sync_to_async(lambda: make_conversation(
        Customer.objects.create(display_name=""), make_inbox(Channel.SMS), queue=desk.queue))()
    communicator, connected, _ = await connect(carol.user, path="/ws/supervisor/?lang=ja")
    try:
        board = await next_board(communicator)
        assert board["version"] > first["version"]
        assert _waiting(board, desk.queue.pk) == [conversation.pk]
        assert f"お客様 #{conversation.customer_id}" in board["html"]  # no name: by id, in the reader's language
    finally:
        await communicator.disconnect()


async def test_the_board_is_read_again_periodically_without_events(desk, carol, monkeypatch):
    """The day rolls over and a lost notification is made good by a periodic read."""
    from django.utils import timezone

    from conversations.models import Agent

    alice = await database_sync_to_async(desk_agent)(desk, "alice")
    monkeypatch.setattr(consumers, "REFRESH_SECONDS", 0.3)
    communicator, connected, _ = await connect(carol.user)
    try:
        first = await next_board(communicator)
        # A change whose event never came (written behind the services' back).
        await database_sync_to_async(
            lambda: Agent.objects.filter(pk=alice.pk).update(presence=desk.lunch, presence_changed_at=timezone.now()))()
        again = await next_frame(communicator, timeout=3)
        assert again["version"] > first["version"]
        assert next(a for a in again["data"]["agents"] if a["id"] == alice.pk)["presence"] == "Lunch"
    finally:
        await communicator.disconnect()


async def test_a_change_of_roles_makes_the_socket_authenticate_again(desk, carol):
    from channels.layers import get_channel_layer

    from conversations.groups import user_group

    communicator, connected, _ = await connect(carol.user)
    try:
        await next_board(communicator)
        await get_channel_layer().group_send(user_group(carol.user.pk), {"type": "console.reauthenticate",
                                                                         "event": {"type": "reauthenticate"}})
        output = await communicator.receive_output(timeout=3)
        assert output == {"type": "websocket.close", "code": 4001}
    finally:
        await communicator.disconnect()


async def test_when_the_socket_that_tells_the_hub_leaves_the_next_one_does(desk, carol, monkeypatch):
    from conversations.routing.presence import agent_presence_set

    monkeypatch.setattr(consumers, "REFRESH_SECONDS", 3600)
    alice = await database_sync_to_async(desk_agent)(desk, "alice")
    first, _connected, _ = await connect(carol.user)
    second, _connected, _ = await connect(carol.user)
    try:
        await next_board(first)
        await next_board(second)
        await first.disconnect()
        while not await second.receive_nothing(timeout=consumers.COALESCE_SECONDS * 3):
            await next_frame(second)  # the read its leaving asked for (nothing changed: maybe no frame)
        await database_sync_to_async(agent_presence_set)(agent=alice, presence=desk.lunch, reason="agent")
        frame = await next_frame(second)
        assert next(a for a in frame["data"]["agents"] if a["id"] == alice.pk)["presence"] == "Lunch"
    finally:
        await second.disconnect()
