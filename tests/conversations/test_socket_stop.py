"""A console or widget socket whose instance the server cancels (daphne does so to every one on
SIGTERM) disconnects as if its client had left: it closes with 1012 so the client reconnects,
leaves its groups, and its layer probe stops (conversations/socket_stop.py, layer_watch.py; the
instance runs through contactcenter.graceful_stop, as daphne serves it). Before, the instance ended
without ``disconnect()`` and the probe loop ran on, orphaned."""

import asyncio
import contextlib

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from conversations import layer_watch
from conversations.socket_stop import SERVER_RESTART_CLOSE_CODE

from .test_console_socket import _connect as _connect_console
from .test_console_socket import _session_cookie
from .test_widget import _hello, _token, widget  # noqa: F401 - the widget inbox fixture

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _probing_sockets_on_an_in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.CC_CHANNEL_LAYER_CHECK_SECONDS = 0.05


def _probe_loops() -> list[int]:
    """The process's probe loop, once per socket under watch (one loop speaks for them all)."""
    return [layer_watch.probe_loops()] * layer_watch.watched_sockets() if layer_watch.probe_loops() else []


def _memberships() -> int:
    """The sockets' memberships (the process's own probe group is not a socket's)."""
    return sum(len(channels) for group, channels in get_channel_layer().groups.items()
               if not group.startswith("layerwatch."))


async def _stop_server_for(communicator) -> dict:
    """Cancel the instance as daphne's kill_all_applications does; the frames it sent meanwhile."""
    communicator.future.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await communicator.future
    outputs = []
    while not communicator.output_queue.empty():
        outputs.append(communicator.output_queue.get_nowait())
    return outputs[-1] if outputs else {}


async def test_a_console_cancelled_by_a_stopping_server_closes_leaves_its_groups_and_stops_probing(agent):
    cookie = await database_sync_to_async(_session_cookie)(agent.user)
    communicator, connected, _ = await _connect_console(cookie)
    assert connected
    assert (await communicator.receive_json_from())["type"] == "hello"
    await asyncio.sleep(0.2)  # a few probes have been sent and came back
    assert _memberships() > 0 and len(_probe_loops()) == 1

    last = await _stop_server_for(communicator)

    assert last == {"type": "websocket.close", "code": SERVER_RESTART_CLOSE_CODE}
    assert _memberships() == 0
    assert _probe_loops() == []


async def test_a_widget_cancelled_by_a_stopping_server_closes_leaves_its_groups_and_stops_probing(widget):  # noqa: F811
    communicator, history, _status = await _hello(_token())
    assert history["type"] == "history"
    assert _memberships() > 0 and len(_probe_loops()) == 1

    last = await _stop_server_for(communicator)

    assert last == {"type": "websocket.close", "code": SERVER_RESTART_CLOSE_CODE}
    assert _memberships() == 0
    assert _probe_loops() == []


async def test_a_socket_its_client_closed_ends_its_probe_and_disconnects_once(agent):
    cookie = await database_sync_to_async(_session_cookie)(agent.user)
    communicator, connected, _ = await _connect_console(cookie)
    assert connected
    await communicator.receive_json_from()
    await communicator.disconnect(code=1000)
    assert _memberships() == 0
    assert _probe_loops() == []
