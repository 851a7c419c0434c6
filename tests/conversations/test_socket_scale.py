"""Websocket scale (issue 23): sockets closing all at once leave nothing behind, share bounded
Redis pools, are capped per session and per visitor token (the oldest closes with 4429), and a
widget message is acknowledged straight to its socket and again on a resend, stored once."""

import asyncio
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings as django_settings

from conversations import socket_caps
from conversations.models import Message
from conversations.socket_caps import SOCKET_CAP_CLOSE_CODE

from .console_socket_helpers import _connect as _connect_console
from .console_socket_helpers import _cookie_of, _session_cookie, _signed_in
from .test_widget import _hello, _key, _say, _token, online, widget  # noqa: F401 - fixtures

pytestmark = [pytest.mark.django_db(transaction=True)]


async def _closed_with(communicator, timeout=5) -> tuple[list[dict], int | None]:
    """The frames a socket gets until it closes, and its close code (None: still open)."""
    import json

    frames = []
    while True:
        try:
            output = await communicator.receive_output(timeout=timeout)
        except TimeoutError:
            return frames, None
        if output["type"] == "websocket.close":
            return frames, output.get("code")
        frames.append(json.loads(output["text"]))


async def _console_of(cookie):
    communicator, connected, _ = await _connect_console(cookie)
    assert connected
    assert (await communicator.receive_json_from(timeout=5))["type"] == "hello"
    return communicator


# --- a mass disconnect --------------------------------------------------------------------------------

WIDGETS = 40
CONSOLES = 8


@pytest.fixture
def tiny_layer_pool(settings):
    """The production layer with a pool of 3 connections for dozens of sockets closing at once:
    channels_redis's own pool raised MaxConnectionsError here; this one waits."""
    config = dict(django_settings.CHANNEL_LAYERS["default"]["CONFIG"])
    config.update(max_connections=3, prefix=f"{config.get('prefix', 'cc')}-mass-{uuid.uuid4().hex[:6]}")
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "contactcenter.redis_pools.BoundedRedisChannelLayer",
                                           "CONFIG": config}}
    return config


async def _socket_memberships(layer) -> int:
    """Channels still in some group of this layer (the process's probe group is not a socket's)."""
    connection = layer.connection(0)
    total = 0
    async for key in connection.scan_iter(match=f"{layer.prefix}:group:*"):
        if b"layerwatch." not in key:
            total += await connection.zcard(key)
    return total


@pytest.mark.production
async def test_sockets_closing_all_at_once_leave_no_group_and_no_error_on_a_small_pool(
        widget, online, agent, tiny_layer_pool):  # noqa: F811
    from contactcenter.redis_pools import shared_cache_pools

    layer = get_channel_layer()
    widgets = []
    for n in range(WIDGETS):
        communicator, history, _status = await _hello(_token(), ip=f"198.51.100.{n % 200 + 1}")
        assert history["type"] == "history"
        widgets.append(communicator)
    cookies = [await database_sync_to_async(_session_cookie)(agent.user) for _ in range(CONSOLES)]
    consoles = [await _console_of(cookie) for cookie in cookies]
    assert await _socket_memberships(layer) >= WIDGETS + CONSOLES * 3

    # Every cache call of those sockets went through one bounded pool of this process (before,
    # each socket's context kept a Redis client of its own).
    pools = shared_cache_pools()
    assert len(pools) == 1
    assert len(pools[0]._connections) <= min(pools[0].max_connections, WIDGETS // 4)

    # All at once, as a deploy or a network blip closes them: every consumer ends cleanly (a
    # consumer's exception would be raised here) and no membership is left behind.
    await asyncio.gather(*(communicator.disconnect(code=1001) for communicator in widgets + consoles))
    assert await _socket_memberships(layer) == 0
    await layer.flush()


async def test_a_layer_that_refuses_leaves_is_retried_and_never_fails_the_disconnect(
        widget, online, settings, monkeypatch):  # noqa: F811
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    communicator, history, _ = await _hello(_token())
    assert history["type"] == "history"
    layer = get_channel_layer()
    real_discard, refusals = layer.group_discard, []

    async def refuse_twice(group, channel):
        if len(refusals) < 2:
            refusals.append(group)
            raise ConnectionError("max number of clients reached")
        return await real_discard(group, channel)

    monkeypatch.setattr(layer, "group_discard", refuse_twice)
    await communicator.disconnect()  # would raise the consumer's exception
    assert len(refusals) == 2
    assert sum(len(channels) for group, channels in layer.groups.items() if not group.startswith("layerwatch.")) == 0


# --- at most N sockets per session and per visitor token ----------------------------------------------

@pytest.fixture
def cap_of_three(settings):
    settings.CC_SOCKETS_PER_OWNER = 3


async def test_the_oldest_console_of_a_session_closes_with_4429_past_the_cap(agent, cap_of_three):
    browser = await database_sync_to_async(_signed_in)(agent.user)
    other_browser = await database_sync_to_async(_session_cookie)(agent.user)
    tabs = [await _console_of(_cookie_of(browser)) for _ in range(3)]
    elsewhere = await _console_of(other_browser)
    try:
        assert all([await tab.receive_nothing(timeout=0.1) for tab in tabs])
        newest = await _console_of(_cookie_of(browser))  # a fourth tab of the same session
        frames, code = await _closed_with(tabs[0])
        assert code == SOCKET_CAP_CLOSE_CODE
        assert frames[-1] == {"type": "error", "code": 429, "reason": "too many open consoles"}
        # The others, the newest and the other browser's session stay, and still answer.
        for communicator in (*tabs[1:], newest, elsewhere):
            await communicator.send_json_to({"type": "ping"})
            assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}
        session_key = browser.cookies[django_settings.SESSION_COOKIE_NAME].value
        assert await database_sync_to_async(socket_caps.socket_count)(kind="console", owner=session_key) == 3
    finally:
        for communicator in (*tabs, newest, elsewhere):
            await communicator.disconnect()
    assert await database_sync_to_async(socket_caps.socket_count)(kind="console", owner=session_key) == 0


async def test_the_oldest_widget_tab_of_a_visitor_closes_with_4429_past_the_cap(widget, online, cap_of_three):  # noqa: F811
    token = _token()
    tabs = [(await _hello(token))[0] for _ in range(3)]
    stranger, _, _ = await _hello(_token())
    try:
        newest, history, _ = await _hello(token)
        assert history["type"] == "history"
        frames, code = await _closed_with(tabs[0])
        assert code == SOCKET_CAP_CLOSE_CODE
        assert frames[-1] == {"type": "error", "code": 429, "reason": "too_many_tabs"}
        for communicator in (*tabs[1:], newest, stranger):
            await communicator.send_json_to({"type": "ping"})
            assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}
        assert await database_sync_to_async(socket_caps.socket_count)(kind="widget", owner=_key(token)) == 3
    finally:
        for communicator in (*tabs, newest, stranger):
            await communicator.disconnect()


# --- acknowledgements ---------------------------------------------------------------------------------

async def test_the_ack_goes_straight_to_the_sender_even_when_the_layer_drops_the_echo(
        widget, online, monkeypatch):  # noqa: F811
    """At saturation channels_redis drops what exceeds a process's capacity ("channel over
    capacity"): an ack that only travelled through the visitor's group was lost with it."""
    layer = get_channel_layer()
    real_group_send = layer.group_send

    async def drop_widget_events(group, message):
        if message.get("type") == "widget.event":
            return None  # dropped, as a full channel does
        return await real_group_send(group, message)

    communicator, _, _ = await _hello(_token())
    try:
        monkeypatch.setattr(layer, "group_send", drop_widget_events)
        client_id = str(uuid.uuid4())
        ack = await _say(communicator, "is my order shipped?", client_id=client_id)
        assert ack["type"] == "message" and ack["client_id"] == client_id
    finally:
        await communicator.disconnect()


@pytest.mark.production
async def test_a_message_whose_ack_was_lost_is_resent_stored_once_and_acked_once(widget, online):  # noqa: F811
    token = _token()
    client_id = str(uuid.uuid4())
    dropped, _, _ = await _hello(token)
    await dropped.send_json_to({"type": "message", "id": client_id, "text": "where is my parcel?"})
    await dropped.disconnect()  # the connection drops before the ack arrives

    again, history, _ = await _hello(token)
    try:
        assert [m["client_id"] for m in history["messages"]] == [client_id]  # it was stored
        # widget.js resends every message not acknowledged, by its id, on the new socket
        await again.send_json_to({"type": "message", "id": client_id, "text": "where is my parcel?"})
        ack = await again.receive_json_from(timeout=5)
        assert ack["type"] == "message" and ack["client_id"] == client_id
        assert await again.receive_nothing(timeout=0.5)  # once: not again through the visitor's group
        stored = await database_sync_to_async(list)(
            Message.objects.filter(inbox=widget, metadata__client_id=client_id).values_list("pk", flat=True))
        assert stored == [ack["id"]]
    finally:
        await again.disconnect()


async def test_a_new_message_is_acked_exactly_once_on_its_socket_and_echoed_to_the_other_tab(widget, online):  # noqa: F811
    token = _token()
    tab, _, _ = await _hello(token)
    other, _, _ = await _hello(token)
    try:
        ack = await _say(tab, "hello")
        assert ack["type"] == "message"
        assert await other.receive_json_from(timeout=5) == ack
        assert await tab.receive_nothing(timeout=0.5)
        assert await other.receive_nothing(timeout=0.1)
    finally:
        await tab.disconnect()
        await other.disconnect()


# --- a cheaper hello ----------------------------------------------------------------------------------

def _hello_statements(widget, token) -> int:  # noqa: F811 - the inbox, passed on
    """Statements the whole hello runs on the database thread (the consumer's ``_hello``, as
    on_hello calls it after the Origin check read the inbox)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from conversations.channels.webchat.consumer import WidgetConsumer

    consumer = WidgetConsumer()
    consumer.scope = {"widget_inbox_id": widget.pk, "widget_inbox": widget,
                      "query_string": f"widget={widget.address}".encode()}
    consumer.ip = "198.51.100.7"
    with CaptureQueriesContext(connection) as captured:
        visitor, ids, _history, status, cards = consumer._hello(
            {"type": "hello", "widget": widget.address, "token": token, "locale": "en"})
    assert visitor.key == _key(token) and status["type"] == "status" and cards == []
    return len(captured.captured_queries), ids


def test_a_hello_reads_the_inbox_once_and_the_visitor_once(widget, online):  # noqa: F811
    """The Origin check's inbox serves the hello (no second read), and the visitor's customer is
    read once for the history, the status and the rating cards (it was read three times): a new
    visitor's hello ran 8 statements, now 4 (their customer: none; the rules, the default queue,
    an available agent), a returning one's 12, now 9."""
    from profiles.models import IdentityKind
    from tests.factories import (
        make_conversation,
        make_customer,
        make_identity,
        make_message,
    )

    new_visitor, ids = _hello_statements(widget, _token())
    assert ids == []
    assert new_visitor == 4

    token = _token()
    customer = make_customer("Returning")
    make_identity(customer, IdentityKind.WEB_VISITOR, _key(token))
    chat = make_conversation(customer, widget)
    make_message(chat, "hello again",
                 metadata={"visitor": _key(token), "client_id": "c" * 16})
    returning, ids = _hello_statements(widget, token)
    assert ids == [chat.pk]
    assert returning == 9  # + its conversations, history, chat; the surveys app's policy and cards
