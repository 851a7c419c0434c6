"""A socket's check that the channel layer still delivers to it.

Why: when Redis dies, or restarts empty, a socket stays open but its group memberships are gone
(channels_redis keeps them in Redis), so the console or widget silently hears nothing more; the
fault suite saw consoles miss every event after a Redis restart. channels_redis offers no
notification of that, so every ``CC_CHANNEL_LAYER_CHECK_SECONDS`` each socket sends a probe
through one of its own groups and expects it back within two checks (one is too strict: a busy
server answered late and closed sockets for nothing in the fault suite). A probe that does not
come back, or a layer that refuses the send, closes the socket with 4503: the client reconnects,
joins its groups again, and catches up from the database (the console by sequence numbers, the
widget by its history). The same check catches memberships channels_redis expired (a day, by
default) on a socket open that long.
"""

import asyncio
import contextlib
import logging
import uuid

from django.conf import settings

logger = logging.getLogger(__name__)

LAYER_LOST_CLOSE_CODE = 4503  # the clients reconnect on any code but their "stop" ones


class ChannelLayerWatch:
    """Mixin for an async websocket consumer. ``layer_watch_group()`` names the group the probe
    travels through (None: a direct send to the socket's own channel, which proves the layer is
    up but no membership); ``layer_watch_lost()`` is called, once, when the check fails."""

    _layer_watch_task: asyncio.Task | None = None
    _layer_probe: str | None = None
    _layer_probe_waits = 0  # checks the outstanding probe has been waited for
    PROBE_PATIENCE = 2  # checks a probe may take to come back

    async def __call__(self, scope, receive, send):
        # However the socket's instance ends (disconnect, server stop cancelling it, an error), the
        # probe loop ends with it: nothing keeps probing for a socket that is gone.
        try:
            return await super().__call__(scope, receive, send)
        finally:
            await self._layer_watch_end()

    async def _layer_watch_end(self) -> None:
        task = self._layer_watch_task
        self.layer_watch_stop()
        if task is not None and task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def layer_watch_start(self) -> None:
        period = settings.CC_CHANNEL_LAYER_CHECK_SECONDS
        if period > 0 and self.channel_layer is not None and self._layer_watch_task is None:
            self._layer_watch_task = asyncio.create_task(self._layer_watch(period))

    def layer_watch_stop(self) -> None:
        task, self._layer_watch_task = self._layer_watch_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def layer_watch_group(self) -> str | None:
        return None

    async def layer_watch_lost(self) -> None:
        raise NotImplementedError

    async def _layer_watch(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            if self._layer_probe is not None:
                self._layer_probe_waits += 1
                if self._layer_probe_waits >= self.PROBE_PATIENCE:
                    reason = "a probe did not come back (group memberships lost?)"
                    break
                continue
            self._layer_probe_waits = 0
            token = uuid.uuid4().hex
            self._layer_probe = token
            probe = {"type": "layer.probe", "token": token}
            group = self.layer_watch_group()
            try:
                if group is None:
                    await self.channel_layer.send(self.channel_name, probe)
                else:
                    await self.channel_layer.group_send(group, probe)
            except Exception as exc:  # noqa: BLE001 - any failure of the layer means: reconnect
                reason = f"the channel layer refused a probe: {type(exc).__name__}: {exc}"
                break
        logger.warning("closing %s: %s", type(self).__name__, reason)
        self._layer_watch_task = None
        with contextlib.suppress(Exception):
            await self.layer_watch_lost()

    async def layer_probe(self, event) -> None:
        """Our probe came back (other sockets of the same group ignore it: not their token)."""
        if event.get("token") == self._layer_probe:
            self._layer_probe = None
