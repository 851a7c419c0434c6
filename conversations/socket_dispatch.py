"""No trip to the database thread for every websocket frame and channel-layer message.

Why (issue 23): Channels 4.3 runs ``close_old_connections`` on the single database thread before
every handler (``AsyncConsumer.dispatch``) and again after ``disconnect()``: one hop to that thread
per frame, per layer message and per close, even when the handler never touches the database. In
a reconnect storm or a mass disconnect those hops queue behind the hellos' real work on the one
thread; closes waited long enough for daphne to kill the instances (bench/connections). Our
consumers touch the database only through ``database_sync_to_async``, which closes stale
connections around every call itself, so the per-event hop buys nothing here.

Also: a frame sent to a client that has just left is dropped instead of ending the consumer with
daphne's "Attempt to send on a closed protocol".
"""

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer

try:
    from autobahn.exception import (
        Disconnected as _ClientGone,  # daphne's: a send after the client left
    )
except ImportError:  # pragma: no cover - another server
    _ClientGone = ()


class NoDatabaseHopPerEvent:
    """Mixin for an async websocket consumer without ``groups`` class attribute (the groups it
    joins, it leaves itself), listed before the Channels base class."""

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def send(self, *args, **kwargs):
        """A frame for a client that left meanwhile (a reconnect storm's impatient ones) is
        dropped: its disconnect follows, and the cleanup with it; never a consumer error."""
        try:
            await super().send(*args, **kwargs)
        except _ClientGone:
            pass

    async def websocket_disconnect(self, message):
        await self.disconnect(message["code"])
        raise StopConsumer()
