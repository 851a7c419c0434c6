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


async def next_board(communicator, timeout=3.0) -> dict:
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
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
        board = await next_board(communicator)
        assert time.monotonic() - committed < 1.0
        assert board["version"] > first["version"]
        assert _waiting(board, desk.queue.pk) == [conversation.pk]

        committed = time.monotonic()
        await database_sync_to_async(conversation_assign)(conversation_id=conversation.pk, agent=alice, by=carol)
        board = await next_board(communicator)
        while _waiting(board, desk.queue.pk):  # a board read before the commit may come first
            board = await next_board(communicator)
        assert time.monotonic() - committed < 1.0
        handling = next(a for a in board["data"]["agents"] if a["id"] == alice.pk)["handling"]
        assert [h["conversation"] for h in handling] == [conversation.pk]
    finally:
        await communicator.disconnect()


async def test_events_in_a_burst_are_read_once(desk, carol, monkeypatch):
    """Many events at once: the first is read at once, the rest together, not one read per event."""
    from channels.layers import get_channel_layer

    from conversations.groups import supervisors_group

    monkeypatch.setattr(consumers, "REFRESH_SECONDS", 3600)
    reads = []
    real = consumers.board_build
    monkeypatch.setattr(consumers, "board_build", lambda languages: reads.append(1) or real(languages))
    communicator, connected, _ = await connect(carol.user)
    try:
        await next_board(communicator)
        reads.clear()
        for n in range(20):
            await get_channel_layer().group_send(supervisors_group(), {
                "type": "console.event", "event": {"type": "agent.presence", "agent": n}})
        await next_board(communicator)
        while not await communicator.receive_nothing(timeout=consumers.COALESCE_SECONDS * 3):
            await next_board(communicator)
        assert 1 <= len(reads) <= 2
        before = len(reads)
        # Events that change nothing on the board (a delivery receipt) cost no read at all.
        await get_channel_layer().group_send(supervisors_group(), {
            "type": "console.event", "event": {"type": "message.delivery", "message": 1}})
        assert await communicator.receive_nothing(timeout=consumers.COALESCE_SECONDS * 3)
        assert len(reads) == before
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
    monkeypatch.setattr(consumers, "REFRESH_SECONDS", 0.3)
    communicator, connected, _ = await connect(carol.user)
    try:
        first = await next_board(communicator)
        again = await next_board(communicator, timeout=3)
        assert again["version"] > first["version"]
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
