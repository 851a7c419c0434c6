"""Publishing after commit: every group gets every event, in the order they were published."""

import asyncio

import pytest
from channels.layers import get_channel_layer

from conversations.events import publish_now


async def _drain(layer, channel, count):
    return [(await asyncio.wait_for(layer.receive(channel), 5))["event"]["n"] for _ in range(count)]


@pytest.mark.parametrize("groups", [["events-a"], ["events-a", "events-b", "events-c"]])
def test_each_group_gets_every_event_in_order(groups):
    """In production mode the groups of one event go out together on the publisher loop."""
    layer = get_channel_layer()

    async def subscribe():
        channels = []
        for group in groups:
            channel = await layer.new_channel()
            await layer.group_add(group, channel)
            channels.append(channel)
        return channels

    # The Redis layer's connections belong to the loop that made them: one loop for this test's side.
    loop = asyncio.new_event_loop()
    try:
        channels = loop.run_until_complete(subscribe())
        for n in range(5):
            publish_now([*groups, groups[0]], {"type": "test.event", "n": n})  # a repeated group gets it once
        received = [loop.run_until_complete(_drain(layer, channel, 5)) for channel in channels]
        assert received == [[0, 1, 2, 3, 4]] * len(groups)
        assert all(loop.run_until_complete(_nothing_more(layer, channel)) for channel in channels)
    finally:
        loop.run_until_complete(_cleanup(layer, groups, channels))
        loop.close()


async def _nothing_more(layer, channel):
    try:
        await asyncio.wait_for(layer.receive(channel), 0.3)
    except asyncio.TimeoutError:
        return True
    return False


async def _cleanup(layer, groups, channels):
    for group, channel in zip(groups, channels):
        await layer.group_discard(group, channel)
