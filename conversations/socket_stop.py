"""A socket's instance cancelled because the server stops: it disconnects as if the client had left.

Why: on SIGTERM daphne cancels every application instance (contactcenter.graceful_stop passes the
cancellation on to sockets and waits for them), so a consumer never receives
``websocket.disconnect``: its ``disconnect()`` never ran, leaving its channel in its groups until
channels_redis expires them (a day) and the console's last "seen" (conversations.routing.
console_presence) a refresh behind. So the cancelled instance first closes the socket with 1012
("service restart": console.js and widget.js reconnect, to another process or this one restarted)
and runs the consumer's own disconnect, bounded, then ends as cancelled.

However the instance ends (its client left, the server cancelled it, a handler raised), its
``_clean_up()`` (leave the groups, leave the layer watch, give back its socket slot) then runs to
its end once more, even under cancellation (conversations.socket_cleanup): it is idempotent, so
after a ``disconnect()`` that did it all this costs nothing.
"""

import asyncio
import contextlib
import logging

from channels.exceptions import StopConsumer

from contactcenter.graceful_stop import SERVER_RESTART_CLOSE_CODE

from .socket_cleanup import finish_despite_cancellation

logger = logging.getLogger(__name__)


class DisconnectWhenServerStops:
    """Mixin for an async websocket consumer, listed before the Channels base class."""

    DISCONNECT_BUDGET_SECONDS = 5.0
    _disconnecting = False

    async def websocket_disconnect(self, message):
        self._disconnecting = True
        await super().websocket_disconnect(message)

    async def __call__(self, scope, receive, send):
        try:
            return await super().__call__(scope, receive, send)
        except asyncio.CancelledError:
            if not self._disconnecting and getattr(self, "channel_layer", None) is not None:
                await self._disconnect_on_stop()
            raise
        finally:
            clean_up = getattr(self, "_clean_up", None)
            if clean_up is not None and getattr(self, "channel_layer", None) is not None:
                await finish_despite_cancellation(clean_up(), timeout=self.DISCONNECT_BUDGET_SECONDS)

    async def _disconnect_on_stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.close(code=SERVER_RESTART_CLOSE_CODE), timeout=1)
        try:
            await asyncio.wait_for(
                self.websocket_disconnect({"type": "websocket.disconnect", "code": SERVER_RESTART_CLOSE_CODE}),
                timeout=self.DISCONNECT_BUDGET_SECONDS,
            )
        except StopConsumer:
            pass
        except Exception:  # the server is stopping: log it, never keep the server from stopping
            logger.warning("%s: disconnect on server stop failed", type(self).__name__, exc_info=True)
