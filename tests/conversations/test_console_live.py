"""Live console frames: watching a conversation (authorised like the page), the customer's
timeline events, typing, and the collision warning when two agents look at one conversation."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from contactcenter.asgi import application
from conversations.services.agent_actions import note_add
from tests.factories import make_agent, make_conversation, make_inbox

pytestmark = [pytest.mark.django_db(transaction=True)]


def _session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


async def _socket(user) -> WebsocketCommunicator:
    cookie = await database_sync_to_async(_session_cookie)(user)
    headers = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000"), (b"cookie", cookie.encode())]
    communicator = WebsocketCommunicator(application, "/ws/console/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from())["type"] == "hello"
    return communicator


async def _until(communicator, predicate, limit: int = 20) -> dict:
    """The first frame matching ``predicate`` (frames are expected: never wait on silence)."""
    for _ in range(limit):
        frame = await communicator.receive_json_from(timeout=5)
        if predicate(frame):
            return frame
    raise AssertionError("frame not received")


async def _pong(communicator) -> list[dict]:
    """Every frame queued before a ping's answer: proves what did NOT arrive without a timeout."""
    await communicator.send_json_to({"type": "ping"})
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=5)
        if frame["type"] == "pong":
            return frames
        frames.append(frame)


async def test_a_stranger_conversation_cannot_be_watched(agent, other_agent, customer):
    conversation = await database_sync_to_async(make_conversation)(customer, assignee=other_agent)
    socket = await _socket(agent.user)
    try:
        await socket.send_json_to({"type": "watch", "conversation": conversation.pk})
        frame = await socket.receive_json_from(timeout=5)
        assert frame == {"type": "error", "code": 404, "reason": "no such conversation", "for": "watch"}
        # Not subscribed: a note on that conversation does not reach this socket.
        await database_sync_to_async(note_add)(conversation=conversation, agent=other_agent, text="secret")
        assert [f for f in await _pong(socket) if f.get("conversation") == conversation.pk] == []
    finally:
        await socket.disconnect()


async def test_watching_brings_every_conversation_of_the_customer(agent, customer):
    sms = await database_sync_to_async(make_conversation)(customer, assignee=agent)
    email = await database_sync_to_async(make_conversation)(customer, inbox=await database_sync_to_async(make_inbox)("email", "help@example.jp"))
    socket = await _socket(agent.user)
    try:
        await socket.send_json_to({"type": "watch", "conversation": sms.pk})
        assert await _until(socket, lambda f: f["type"] == "ack") == {"type": "ack", "for": "watch", "conversation": sms.pk}
        helper = await database_sync_to_async(make_agent)("dave", display_name="Dave")
        note = await database_sync_to_async(note_add)(conversation=email, agent=helper, text="seen on email")
        frame = await _until(socket, lambda f: f["type"] == "message.created")
        assert frame["conversation"] == email.pk and frame["customer"] == customer.pk
        assert frame["seq"] == note.seq == 1
    finally:
        await socket.disconnect()


async def test_two_agents_on_one_conversation_see_each_other_and_typing(agent, supervisor, customer):
    conversation = await database_sync_to_async(make_conversation)(customer, assignee=agent)
    alice = await _socket(agent.user)
    carol = await _socket(supervisor.user)
    try:
        await alice.send_json_to({"type": "watch", "conversation": conversation.pk})
        await _until(alice, lambda f: f["type"] == "ack")
        await carol.send_json_to({"type": "watch", "conversation": conversation.pk})
        await _until(carol, lambda f: f["type"] == "ack")
        # Alice hears Carol arrive; Carol hears Alice's answer (so the newcomer knows too).
        seen_by_alice = await _until(alice, lambda f: f["type"] == "viewer")
        assert seen_by_alice["name"] == supervisor.display_name and seen_by_alice["state"] == "viewing"
        seen_by_carol = await _until(carol, lambda f: f["type"] == "viewer")
        assert seen_by_carol["name"] == agent.display_name and seen_by_carol["state"] == "viewing"

        await carol.send_json_to({"type": "typing", "conversation": conversation.pk, "on": True})
        typing = await _until(alice, lambda f: f["type"] == "viewer" and f["state"] == "typing")
        assert typing["name"] == supervisor.display_name
        # Carol is not told about her own typing as a collision.
        assert [f for f in await _pong(carol) if f["type"] == "viewer"] == []

        await carol.disconnect()
        left = await _until(alice, lambda f: f["type"] == "viewer" and f["state"] == "left")
        assert left["name"] == supervisor.display_name
    finally:
        await alice.disconnect()


async def test_typing_is_refused_for_a_conversation_not_watched(agent, customer):
    conversation = await database_sync_to_async(make_conversation)(customer, assignee=agent)
    socket = await _socket(agent.user)
    try:
        await socket.send_json_to({"type": "typing", "conversation": conversation.pk, "on": True})
        assert [f for f in await _pong(socket) if f["type"] in ("typing", "viewer")] == []
    finally:
        await socket.disconnect()


def test_an_expired_session_gets_a_json_401_from_actions(client, agent, customer):
    conversation = make_conversation(customer, assignee=agent)
    response = client.post(f"/console/conversations/{conversation.pk}/note/", {"text": "hi"},
                           HTTP_ACCEPT="application/json")
    assert response.status_code == 401
    assert response.json()["login"] == "/accounts/login/"
    # Without script the same post goes to the login page.
    assert client.post(f"/console/conversations/{conversation.pk}/note/", {"text": "hi"}).status_code == 302
