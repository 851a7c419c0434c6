"""Console and widget sockets notice a channel layer that no longer delivers to them (a Redis
restart forgets every group membership; a Redis that is down refuses sends) and close with 4503,
so the client reconnects and catches up from the database (conversations/layer_watch.py). The
layer here is the in-memory one in both modes: forgetting its groups is what a Redis restart
does to channels_redis; the fault suite (tests/faults) restarts a real Redis."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from conversations.groups import agent_group
from conversations.layer_watch import LAYER_LOST_CLOSE_CODE

from .test_console_socket import _connect as _connect_console
from .test_console_socket import _session_cookie
from .test_widget import _connect as _connect_widget
from .test_widget import _hello, _token, widget  # noqa: F401 - the widget inbox fixture

pytestmark = [pytest.mark.django_db(transaction=True)]

CHECK_SECONDS = 0.05  # each socket probes its group this often in these tests


@pytest.fixture(autouse=True)
def _quick_checks_on_an_in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.CC_CHANNEL_LAYER_CHECK_SECONDS = CHECK_SECONDS


async def _console(agent):
    cookie = await database_sync_to_async(_session_cookie)(agent.user)
    communicator, connected, _ = await _connect_console(cookie)
    assert connected
    assert (await communicator.receive_json_from())["type"] == "hello"
    return communicator


async def _closed_with(communicator) -> int | None:
    """The close code the socket ends with (frames before it skipped), None if it stays open."""
    while True:
        try:
            output = await communicator.receive_output(timeout=40 * CHECK_SECONDS)
        except TimeoutError:
            return None
        if output["type"] == "websocket.close":
            return output.get("code")


async def test_a_console_whose_groups_were_forgotten_closes_with_4503_and_one_that_was_not_stays(agent):
    communicator = await _console(agent)
    try:
        # Many check periods pass: every probe comes back, the socket stays and still hears events.
        assert await communicator.receive_nothing(timeout=20 * CHECK_SECONDS)
        await get_channel_layer().group_send(agent_group(agent.pk), {"type": "console.event", "event": {"type": "x"}})
        assert await communicator.receive_json_from(timeout=2) == {"type": "x"}

        get_channel_layer().groups.clear()  # what a Redis restart does to channels_redis's groups
        assert await _closed_with(communicator) == LAYER_LOST_CLOSE_CODE
    finally:
        await communicator.disconnect()


async def test_a_console_closes_with_4503_when_the_layer_refuses_its_probe(agent, monkeypatch):
    communicator = await _console(agent)
    try:
        async def refused(*args, **kwargs):
            raise ConnectionError("Redis is down")

        monkeypatch.setattr(get_channel_layer(), "group_send", refused)
        assert await _closed_with(communicator) == LAYER_LOST_CLOSE_CODE
    finally:
        await communicator.disconnect()


async def test_a_widget_whose_groups_were_forgotten_closes_with_4503(widget):  # noqa: F811
    communicator, history, _status = await _hello(_token())
    try:
        assert history["type"] == "history"
        assert await communicator.receive_nothing(timeout=20 * CHECK_SECONDS)
        get_channel_layer().groups.clear()
        assert await _closed_with(communicator) == LAYER_LOST_CLOSE_CODE
    finally:
        await communicator.disconnect()


async def test_a_widget_before_hello_checks_the_layer_itself(widget, monkeypatch):  # noqa: F811
    communicator, connected, _ = await _connect_widget()
    assert connected
    try:
        assert await communicator.receive_nothing(timeout=20 * CHECK_SECONDS)

        async def refused(*args, **kwargs):
            raise ConnectionError("Redis is down")

        monkeypatch.setattr(get_channel_layer(), "send", refused)
        assert await _closed_with(communicator) == LAYER_LOST_CLOSE_CODE
    finally:
        await communicator.disconnect()


async def test_a_probe_late_on_a_busy_server_closes_nothing_while_the_membership_is_there(agent, monkeypatch):
    """A daphne busy with a reconnect storm answers its own probe late: closing every socket for
    that started the next storm (bench/connections). The layer is asked whether the process's
    membership is still there; it is, so the sockets stay."""
    from conversations import layer_watch

    async def never(self, channel, token):
        await asyncio.Event().wait()

    monkeypatch.setattr(layer_watch.ProcessLayerWatch, "_returned", never)
    communicator = await _console(agent)
    try:
        assert await communicator.receive_nothing(timeout=40 * CHECK_SECONDS)  # many patience periods: still open
        await get_channel_layer().group_send(agent_group(agent.pk), {"type": "console.event", "event": {"type": "x"}})
        assert await communicator.receive_json_from(timeout=2) == {"type": "x"}
    finally:
        await communicator.disconnect()


@pytest.mark.production
async def test_on_redis_a_late_probe_asks_redis_for_the_membership(agent, monkeypatch, settings):
    """The same on channels_redis: kept while the process's membership is in Redis, closed with
    4503 once it is gone (what a Redis restarted empty looks like)."""
    from contactcenter import settings as project_settings
    from conversations import layer_watch

    settings.CHANNEL_LAYERS = {"default": dict(project_settings.CHANNEL_LAYERS["default"])}  # channels_redis
    layer = get_channel_layer()
    await layer.flush()

    async def never(self, channel, token):
        await asyncio.Event().wait()

    monkeypatch.setattr(layer_watch.ProcessLayerWatch, "_returned", never)
    communicator = await _console(agent)
    try:
        assert await communicator.receive_nothing(timeout=40 * CHECK_SECONDS)
        connection = layer.connection(0)
        keys = [key async for key in connection.scan_iter(match=f"{layer.prefix}:group:layerwatch.*")]
        assert len(keys) == 1
        await connection.delete(*keys)
        assert await _closed_with(communicator) == LAYER_LOST_CLOSE_CODE
    finally:
        await communicator.disconnect()
        await layer.flush()
