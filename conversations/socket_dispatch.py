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

import functools
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from django.conf import settings
from django.db import close_old_connections

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


_reader_pool = None
_reader_pool_lock = threading.Lock()


def _readers() -> ThreadPoolExecutor:
    global _reader_pool
    with _reader_pool_lock:
        if _reader_pool is None:
            size = settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"]
            _reader_pool = ThreadPoolExecutor(max_workers=max(2, min(8, size // 2)),
                                              thread_name_prefix="cc-socket-db")
        return _reader_pool


def database_work_in_parallel(fn):
    """``database_sync_to_async(fn)``, but where connections come from a pool (production's
    ``CC_DB_POOL``) on a few threads of its own instead of the one database thread every consumer
    shares: a reconnect storm's hellos (the Origin check's inbox, the hello's reads) wait on
    PostgreSQL side by side instead of one after the other. Each call takes a pooled connection
    and gives it back (``close_old_connections`` with ``CC_DB_CONN_MAX_AGE=0``), as
    ``database_sync_to_async`` does. Without a pool (SQLite, or a connection per use), the one
    database thread as before."""
    options = settings.DATABASES["default"].get("OPTIONS", {})
    if not (settings.CC_PRODUCTION and options.get("pool")):
        return database_sync_to_async(fn)

    @functools.wraps(fn)
    def on_a_reader_thread(*args, **kwargs):
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(on_a_reader_thread, thread_sensitive=False, executor=_readers())
